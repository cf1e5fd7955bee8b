"""Shared fixtures: one small seeded simulated day and its scan, built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from likelens import sim
from likelens.privacy import DEMO_KEY

KEY = b"test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def key() -> bytes:
    return KEY


@pytest.fixture(scope="session")
def demo_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[sim.SimResult, Path]:
    """The demo scenario, seed 11, written to disk."""
    result = sim.simulate(sim.load_scenario("demo"), 11)
    out = tmp_path_factory.mktemp("demo_day")
    sim.write(result, out)
    return result, out


@pytest.fixture(scope="session")
def demo_scan(demo_day, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo day scanned once (no report): the scan directory, with its model."""
    from likelens import api

    _, sim_dir = demo_day
    out = tmp_path_factory.mktemp("demo_scan") / "scan"
    api.scan([sim_dir / "events.parquet"], key=KEY, out=out, report=False)
    return out


def require_program(name: str) -> str:
    """Path of a system program; skip without it, except under CI=true where it must exist."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


__all__ = ["DEMO_KEY", "KEY", "require_program"]
