"""Refactors change nothing: scan outputs on seeded scenarios against recorded digests.

The digests in tests/data/scan_digests.json were taken from scan outputs before the fit/apply
refactor. A change that is meant to change detection re-records them on purpose:
``LIKELENS_RECORD_DIGESTS=1 pytest tests/test_digests.py`` (and says so in its commit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from likelens import sim
from likelens.ingest import ingest
from likelens.privacy import DEMO_KEY
from likelens.scan import scan_events, scan_paths

from .digest import TABLES, table_digest

RECORD = Path(__file__).parent / "data" / "scan_digests.json"
CASES = ("demo_1", "zoo_5", "small-orders_2", "adaptive_3")


@pytest.mark.parametrize("case", CASES)
def test_scan_outputs_match_the_recorded_digests(case: str, tmp_path: Path) -> None:
    recorded = json.loads(RECORD.read_text())
    scenario, seed = case.rsplit("_", 1)
    result = sim.simulate(sim.load_scenario(scenario, users=recorded["users"]), int(seed))
    paths = sim.write(result, tmp_path)
    # Half the cases go the CLI's way (``scan_paths``: views split off as each file is
    # read), half through the whole canonical table: both must give the recorded outputs.
    if CASES.index(case) % 2:
        scan, _ = scan_paths([paths["events"]], key=DEMO_KEY)
    else:
        scan = scan_events(ingest([paths["events"]], key=DEMO_KEY).events)
    got = {t: table_digest(getattr(scan, t)) for t in TABLES}
    if os.environ.get("LIKELENS_RECORD_DIGESTS") == "1":
        recorded["digests"][case] = got
        RECORD.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    assert got == recorded["digests"][case]
