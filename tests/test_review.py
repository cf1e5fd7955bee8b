"""Reviewers' verdicts on a probability sample: coverage of the intervals, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from likelens import review as rv
from likelens import sim
from likelens.evaluate import evaluate_tables
from likelens.ingest import ingest
from likelens.scan import scan_events


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, key: bytes):
    """A small zoo world, scanned and written, with its truth."""
    result = sim.simulate(sim.load_scenario("zoo", users=5000), 4242)
    out = tmp_path_factory.mktemp("review")
    paths = sim.write(result, out / "sim")
    scan = scan_events(ingest([paths["events"]], key=key).events)
    scan_dir = out / "scan"
    scan_dir.mkdir()
    pq.write_table(scan.engagements, scan_dir / "engagements.parquet")
    return result, scan.engagements, scan_dir, paths["truth"]


def test_sample_is_stratified_and_includes_unflagged_likes(scanned) -> None:
    _, eng, _, _ = scanned
    likes = rv.scan_likes(eng)
    s = rv.sample(likes, 600, seed=1)
    assert s.num_rows == 600
    assert set(s.column_names) == {"event_id", "stratum", "inclusion_prob"}
    strata = set(s["stratum"].to_pylist())
    assert "flagged" in strata and any(x.startswith("unflagged") for x in strata)
    probs = s["inclusion_prob"].to_numpy()
    assert ((probs > 0) & (probs <= 1)).all()
    assert rv.sample(likes, 600, seed=1).equals(s)  # same seed, same sample


def test_intervals_cover_the_truth(scanned) -> None:
    """Over 200 independent draws, each 95 % interval covers the true value >= 93 % of the time."""
    result, eng, _, _ = scanned
    likes = rv.scan_likes(eng)
    true = evaluate_tables(result.truth, eng)[0]
    target = {"precision": true.precision, "organic_fpr": true.organic_fpr,
              "recall": true.recall}
    hits = dict.fromkeys(target, 0)
    draws = 200
    for d in range(draws):
        s = rv.sample(likes, 2000, seed=d)
        v = rv.simulate_verdicts(result.truth, s, 0.0, seed=d)
        v = pa.table({"event_id": v["event_id"].cast(pa.string()),
                      "bought": v["bought"].cast(pa.float64())})
        est = rv.estimate(likes, v, seed=d)
        for k, t in target.items():
            hits[k] += est[k]["low"] <= t <= est[k]["high"]
    for k, h in hits.items():
        assert h / draws >= 0.93, (k, h / draws, target[k])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "likelens.cli", *args], capture_output=True,
                          text=True, check=False)


def test_cli_sample_simulate_estimate_round_trip(scanned, tmp_path: Path) -> None:
    _, _, scan_dir, truth = scanned
    sample, verdicts = tmp_path / "s.parquet", tmp_path / "v.csv"
    assert run("review", "sample", str(scan_dir), "--size", "300", "--seed", "3", "--out",
               str(sample)).returncode == 0
    assert run("review", "simulate-verdicts", "--truth", str(truth), "--sample", str(sample),
               "--error-rate", "0.05", "--out", str(verdicts)).returncode == 0
    r = run("review", "estimate", str(scan_dir), "--verdicts", str(verdicts))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for k in ("precision", "organic_fpr", "recall"):
        assert out[k]["low"] <= out[k]["estimate"] <= out[k]["high"]
    assert out["verdicts"]["used"] == 300


def test_verdicts_outside_the_scan_are_counted_not_dropped(scanned, tmp_path: Path) -> None:
    _, eng, scan_dir, _ = scanned
    first = str(rv.scan_likes(eng)["event_id"][0].as_py())
    path = tmp_path / "v.csv"
    path.write_text(f"event_id,bought\n{first},true\nno-such-event,false\n", encoding="utf-8")
    r = run("review", "estimate", str(scan_dir), "--verdicts", str(path))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verdicts"] == {"read": 2, "used": 1, "unsure": 0, "not_in_scan": 1}
    assert "not likes of this scan" in r.stderr


@pytest.mark.parametrize("content,column", [
    ("id,bought\n1,true\n", "event_id"),
    ("event_id,verdict\n1,true\n", "bought"),
    ("event_id,bought\n1,true\n1,false\n", "event_id"),
    ("event_id,bought\n1,maybe\n", "bought"),
])
def test_bad_verdict_files_exit_2_naming_file_and_column(scanned, tmp_path: Path, content: str,
                                                          column: str) -> None:
    _, _, scan_dir, _ = scanned
    path = tmp_path / "verdicts.csv"
    path.write_text(content, encoding="utf-8")
    r = run("review", "estimate", str(scan_dir), "--verdicts", str(path))
    assert r.returncode == 2
    assert str(path) in r.stderr and repr(column) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_parquet_verdicts_with_boolean_column(scanned, tmp_path: Path) -> None:
    _, eng, scan_dir, _ = scanned
    ids = rv.scan_likes(eng)["event_id"].slice(0, 5)
    path = tmp_path / "v.parquet"
    pq.write_table(pa.table({"event_id": ids, "bought": [True, False, None, False, True]}),
                   path)
    r = run("review", "estimate", str(scan_dir), "--verdicts", str(path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdicts"]["unsure"] == 1
