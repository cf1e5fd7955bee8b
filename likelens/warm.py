"""Compile and cache the numba kernels once, at install time (``make`` runs this).

Every kernel is ``cache=True``: compiled code is written beside the module and reused by later
processes. Without this step the first scan after an install spends its first seconds
compiling; with it, ``make demo``'s scan starts on cached code. A tiny simulated day goes through
the whole pipeline so that every kernel meets the argument types a real scan gives it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def main() -> None:
    from likelens import ipcolumn, sim
    from likelens.ingest import ingest
    from likelens.privacy import DEMO_KEY
    from likelens.scan import scan_events

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = sim.simulate(sim.load_scenario("demo", users=400), 0)
        paths = sim.write(result, Path(tmp))
        scan_events(ingest([paths["events"]], key=DEMO_KEY).events)
    ipcolumn.warm()  # the demo day may have no IPv6 traffic, nor a plain address column
    print(f"numba kernels compiled and cached in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
