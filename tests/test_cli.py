"""The command line: exit codes, one-line errors, help texts, and a scan's output files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from likelens.cli import main

VERBS = ["simulate", "scan", "eval", "detectors", "info", "ledger", "bench", "review", "serve",
         "keys", "replay"]


def run(*args: str, env_key: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"LIKELENS_KEY": "cli-test-key-0123456789", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "likelens.cli", *args], capture_output=True,
                          text=True, env=env if env_key else {"PATH": "/usr/bin:/bin"},
                          check=False)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_explains_itself_with_an_example(verb: str) -> None:
    r = run(verb, "--help")
    assert r.returncode == 0
    assert "Usage:" in r.stdout
    if verb in ("simulate", "scan", "eval", "replay"):
        assert "Example" in r.stdout


def test_top_level_help_lists_verbs() -> None:
    r = run("--help")
    assert r.returncode == 0
    for verb in VERBS:
        assert verb in r.stdout


def test_missing_user_id_column_exits_2_with_one_line(tmp_path: Path) -> None:
    f = tmp_path / "export.csv"
    f.write_text("ts,action,video_id\n1,like,2\n")
    r = run("scan", str(f), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "export.csv" in lines[0] and "user_id" in lines[0]
    assert "Traceback" not in r.stderr


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    r = run("scan", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "nope.parquet" in r.stderr and "Traceback" not in r.stderr


def _mixed_csv(path: Path) -> Path:
    good = [f"{1000 + i},{i % 7},{'view' if i % 2 else 'like'},{i % 3},9,,{1000 * i},60000,"
            f"10.0.{i % 5}.{i},dev{i % 4}," for i in range(40)]
    bad = ["1,1,explode,1,9,,,,,,", "nan,2,like,1,9,,,,,,", "3,,like,1,9,,,,,,",
           "4,4,view,1,9,,lots,60000,,,"]
    path.write_text("ts,user_id,action,video_id,creator_id,event_id,watch_ms,video_ms,ip,"
                    "device_id,text\n" + "\n".join(good + bad) + "\n")
    return path


def test_scan_keeps_good_rows_and_quarantines_bad_ones(tmp_path: Path) -> None:
    src = _mixed_csv(tmp_path / "mixed.csv")
    out = tmp_path / "scan"
    r = run("scan", str(src), "--out", str(out), "--no-report")
    assert r.returncode == 0, r.stderr
    for name in ("engagements", "accounts", "groups", "videos", "creators", "quarantine"):
        assert (out / f"{name}.parquet").exists()
    q = pq.read_table(out / "quarantine.parquet")
    assert q.num_rows == 4
    assert sorted(q["row"].to_pylist()) == [40, 41, 42, 43]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"]["events"] == 40
    eng = pq.read_table(out / "engagements.parquet")
    assert eng.num_rows == 20  # every good like is scored
    for stage in ("ingest", "features", "fusion", "outputs"):
        assert stage in summary["timings_s"]


def test_max_bad_rows_exits_3(tmp_path: Path) -> None:
    src = _mixed_csv(tmp_path / "mixed.csv")
    r = run("scan", str(src), "--out", str(tmp_path / "o"), "--max-bad-rows", "3",
            "--no-report")
    assert r.returncode == 3
    assert "4 rows quarantined" in r.stderr
    assert (tmp_path / "o" / "quarantine.parquet").exists()
    ok = run("scan", str(src), "--out", str(tmp_path / "o2"), "--max-bad-rows", "4",
             "--no-report")
    assert ok.returncode == 0


def test_demo_key_warns_loudly(tmp_path: Path) -> None:
    src = _mixed_csv(tmp_path / "mixed.csv")
    r = run("scan", str(src), "--out", str(tmp_path / "o"), "--no-report", env_key=False)
    assert r.returncode == 0
    assert "DEMO key" in r.stderr


def test_unknown_detector_is_usage_error(tmp_path: Path) -> None:
    src = _mixed_csv(tmp_path / "mixed.csv")
    assert main(["scan", str(src), "--out", str(tmp_path / "o"), "--detectors", "magic"]) == 2


def test_unknown_scenario_is_one_line_error(tmp_path: Path) -> None:
    r = run("simulate", "--scenario", "nope", "--out", str(tmp_path))
    assert r.returncode == 2
    assert "unknown scenario" in r.stderr and "Traceback" not in r.stderr


def test_no_clear_ip_or_device_in_any_output(demo_day, tmp_path: Path) -> None:
    result, sim_dir = demo_day
    out = tmp_path / "scan"
    r = run("scan", str(sim_dir / "events.parquet"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    ips = set(result.events["ip"].to_pylist()[:2000])
    devices = set(result.events["device_id"].to_pylist()[:2000])
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())  # model/ too
    text = blob.decode("utf-8", errors="ignore")
    leaked = [v for v in ips | devices if v and v in text]
    # Device ids are numbers and may collide with other numbers: check IPs strictly, and
    # require that no device id appears more often than chance would allow.
    assert not [v for v in leaked if "." in v]
    assert len(leaked) < 0.01 * len(devices)


def test_scan_appends_to_ledger_and_a_bundle_verifies_offline(tmp_path: Path) -> None:
    src = _mixed_csv(tmp_path / "mixed.csv")
    lg = tmp_path / "ledger"
    r = run("scan", str(src), "--out", str(tmp_path / "o"), "--no-report", "--ledger", str(lg))
    assert r.returncode == 0, r.stderr
    assert (lg / "signing.key").stat().st_mode & 0o777 == 0o600
    first = json.loads(run("ledger", "export", "--ledger", str(lg)).stdout.splitlines()[0])
    assert first["record"]["type"] == "scan" and len(first["record"]["input_sha256"]) == 64
    cp = run("ledger", "checkpoint", "--ledger", str(lg))
    assert cp.returncode == 0
    (tmp_path / "cp.txt").write_text(cp.stdout)
    bundle = run("ledger", "prove", "0", "--ledger", str(lg))
    (tmp_path / "b.json").write_text(bundle.stdout)
    ok = run("ledger", "verify", "--bundle", str(tmp_path / "b.json"), "--pubkey",
             str(lg / "public.pem"))
    assert ok.returncode == 0 and ok.stdout.startswith("ok")
    full = run("ledger", "verify", "--ledger", str(lg), "--full", "--checkpoint",
               str(tmp_path / "cp.txt"))
    assert full.returncode == 0, full.stderr
    data = json.loads(bundle.stdout)
    data["record"] = data["record"].replace('"scan"', '"SCAN"')
    (tmp_path / "bad.json").write_text(json.dumps(data))
    bad = run("ledger", "verify", "--bundle", str(tmp_path / "bad.json"), "--pubkey",
              str(lg / "public.pem"))
    assert bad.returncode == 4
    assert "expected" in bad.stderr and "computed" in bad.stderr


def test_views_only_log_scans_to_empty_decisions_and_a_report(tmp_path: Path) -> None:
    src = tmp_path / "views.csv"
    src.write_text("ts,user_id,action,video_id,watch_ms,video_ms\n" +
                   "\n".join(f"{i * 1000},{i % 4},view,{i % 3},5000,60000" for i in range(30)))
    r = run("scan", str(src), "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert pq.read_table(tmp_path / "o" / "engagements.parquet").num_rows == 0
    assert (tmp_path / "o" / "report.html").stat().st_size > 1000
