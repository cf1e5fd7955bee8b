"""bench/robustness.md's summary lines, on hand-made world results."""

from __future__ import annotations

from likelens.robustness import WorldResult, markdown


def _world(seed: int, shape: str, f1: float, fpr: float, est: float) -> WorldResult:
    return WorldResult(seed=seed, events=1000, likes=100, shape=shape, f1=f1, precision=f1,
                       recall=f1, organic_fpr=fpr, estimated_fpr=est,
                       recall_kind={"crowd": 0.0 if "no views" in shape else 0.9},
                       cause_flagged={"push": (1, 100)})


def test_report_counts_optimistic_estimates_and_splits_exports_without_views() -> None:
    results = [_world(1, "int ids", 0.99, 0.0005, 0.001),
               _world(2, "string ids", 0.97, 0.001, 0.0004),   # estimate below half
               _world(3, "int ids, no views", 0.90, 0.0002, 0.00005)]  # below half too
    md = markdown(results, "# header")
    assert "optimistic) in 2 of 3 worlds" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()
            if line.startswith("| with views") or line.startswith("| no views")}
    assert rows["with views"].split("|")[2:4] == [" 2 ", " 0.980 "]
    assert rows["no views"].split("|")[2:5] == [" 1 ", " 0.900 ", " 0.900 "]
    assert rows["with views"].rstrip(" |").endswith("1")
    assert "| recall crowd | 0.900 | 0.000 |" in md
