"""The HTML report: self-contained, and it renders in headless Chromium (a screenshot is taken)."""

from __future__ import annotations

from pathlib import Path

import pytest

from likelens import outputs, sim
from likelens.ingest import ingest
from likelens.scan import scan_events

from .conftest import require_program


@pytest.fixture(scope="module")
def report(tmp_path_factory, key: bytes) -> Path:
    result = sim.simulate(sim.load_scenario("demo", users=2500), 41)
    out = tmp_path_factory.mktemp("report")
    paths = sim.write(result, out / "sim")
    scan = scan_events(ingest([paths["events"]], key=key).events)
    return outputs.write(scan, out / "scan")["report"]


def test_report_is_self_contained(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert "<script src=\"http" not in html and "<link href=\"http" not in html
    assert "Plotly" in html  # plotly.js is inlined
    for heading in ("Likes over time", "Watch before the like", "Raw against authentic",
                    "Coordinated groups"):
        assert heading in html


def test_report_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    chromium = require_program("chromium")
    playwright = pytest.importorskip("playwright.sync_api")
    shot = tmp_path / "report.png"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 1600})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(report.as_uri())
        page.wait_for_selector(".plotly .main-svg", timeout=30_000)
        n_plots = page.locator(".js-plotly-plot").count()
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert not errors
    assert n_plots == 3
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few kB
