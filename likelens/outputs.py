"""Write a scan's tables, summary and report into an output directory (DESIGN.md's file list)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq

from likelens.scan import ScanResult, peak_rss_gib

TABLES = ("engagements", "accounts", "groups", "videos", "creators", "quarantine")


def write(result: ScanResult, out: Path, *, report: bool = True) -> dict[str, Path]:
    """Write every output file; returns their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths: dict[str, Path] = {}
    for name in TABLES:
        paths[name] = out / f"{name}.parquet"
        pq.write_table(getattr(result, name), paths[name])
    if report:
        from likelens.report.html import render

        paths["report"] = out / "report.html"
        paths["report"].write_text(render(result), encoding="utf-8")
    result.summary.setdefault("timings_s", {})["outputs"] = round(time.perf_counter() - t0, 4)
    result.summary.setdefault("peak_rss_gib", {})["outputs"] = peak_rss_gib()
    paths["summary"] = out / "summary.json"
    paths["summary"].write_text(json.dumps(result.summary, indent=2, sort_keys=True) + "\n",
                                encoding="utf-8")
    return paths
