"""Fitted models: apply reproduces scan, models round-trip, tampering and bad settings fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from likelens import api, sim
from likelens import model as model_io
from likelens.detect.registry import REGISTRY, parse_settings
from likelens.errors import ModelError, SettingError
from likelens.features import build_features
from likelens.ingest import ingest

from .conftest import KEY

OUTPUTS = ("engagements", "accounts", "groups", "videos", "creators")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "likelens.cli", *args], capture_output=True,
                          text=True, check=False,
                          env={"LIKELENS_KEY": KEY.hex(), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A zoo world (every detector has something to learn), scanned with the CLI."""
    root = tmp_path_factory.mktemp("model")
    cfg = sim.load_scenario("zoo", users=3000)
    paths = sim.write(sim.simulate(cfg, 8), root / "sim")
    r = run("scan", str(paths["events"]), "--out", str(root / "scan"), "--no-report",
            "--set", "lockstep.window_s=900", "--set", "burst.near_s=1200")
    assert r.returncode == 0, r.stderr
    return paths["events"], root / "scan", root


def test_apply_on_the_fitted_log_gives_the_scan_exactly(fitted) -> None:
    events, scan_dir, root = fitted
    r = run("apply", str(events), "--model", str(scan_dir / "model"), "--out",
            str(root / "applied"), "--no-report")
    assert r.returncode == 0, r.stderr
    for name in OUTPUTS:
        a = pq.read_table(scan_dir / f"{name}.parquet")
        b = pq.read_table(root / "applied" / f"{name}.parquet")
        assert a.equals(b), name
    summary = json.loads((root / "applied" / "summary.json").read_text())
    assert summary["model"]["fitted_here"] is False
    assert not (root / "applied" / "model").exists()


def test_settings_are_used_and_recorded(fitted) -> None:
    _, scan_dir, _ = fitted
    summary = json.loads((scan_dir / "summary.json").read_text())
    assert summary["detectors"]["lockstep"]["window_s"] == 900
    assert summary["detectors"]["burst"]["near_s"] == 1200
    loaded = model_io.load(scan_dir / "model")
    assert loaded.params["lockstep"]["window_s"] == 900
    assert loaded.params == summary["detectors"]


def test_model_round_trips(fitted, tmp_path: Path) -> None:
    _, scan_dir, _ = fitted
    m = model_io.load(scan_dir / "model")
    again = model_io.load(model_io.save(m, tmp_path / "copy"))
    assert again.params == m.params
    assert np.array_equal(again.fusion.logt, m.fusion.logt)
    assert again.fusion.threshold == m.fusion.threshold
    for name, state in m.states.items():
        assert again.states[name].values == state.values
        assert set(again.states[name].tables) == set(state.tables)
        for t, table in state.tables.items():
            assert again.states[name].tables[t].equals(table)
    assert m.states["lockstep"].values["min_shared"] >= 3
    assert 0.05 <= m.states["burst"].values["conversion_ceiling"] <= 0.6


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_tampered_model_is_refused(fitted, tmp_path: Path) -> None:
    events, scan_dir, _ = fitted
    bad = _copy(scan_dir / "model", tmp_path / "m")
    table = bad / "detectors" / "dense.members.parquet"
    table.write_bytes(table.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="does not match the manifest"):
        model_io.load(bad)
    r = run("apply", str(events), "--model", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "dense.members.parquet" in r.stderr


def test_an_unknown_version_or_missing_manifest_is_refused(fitted, tmp_path: Path) -> None:
    _, scan_dir, _ = fitted
    newer = _copy(scan_dir / "model", tmp_path / "newer")
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["version"] = 99
    (newer / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="version 99"):
        model_io.load(newer)
    (newer / "manifest.json").unlink()
    with pytest.raises(ModelError, match="missing"):
        model_io.load(newer)


def test_bad_settings_name_the_valid_ones(fitted, tmp_path: Path) -> None:
    events, _, _ = fitted
    with pytest.raises(SettingError, match="window_s"):
        parse_settings(["lockstep.windw_s=3"])
    with pytest.raises(SettingError, match="behaviour, infra"):
        parse_settings(["nosuch.x=1"])
    with pytest.raises(SettingError, match="not a int"):
        parse_settings(["lockstep.window_s=soon"])
    assert parse_settings(["dense.seed=4", "burst.full_watch=0.8"]) == {
        "dense": {"seed": 4}, "burst": {"full_watch": 0.8}}
    r = run("scan", str(events), "--out", str(tmp_path / "o"), "--set", "lockstep.nope=1")
    assert r.returncode == 2
    assert "min_group" in r.stderr


@pytest.mark.parametrize("name", [s.name for s in REGISTRY])
def test_each_detector_applied_to_its_own_log_gives_its_fit(name: str, fitted,
                                                            tmp_path: Path) -> None:
    events, _, _ = fitted
    feats = build_features(ingest([events], key=KEY).events)
    spec = next(s for s in REGISTRY if s.name == name)
    det = spec.create().fit(feats)
    m = model_io.Model(model_io.load(fitted[1] / "model").fusion, {name: det.get_params()},
                       {name: det.state_})
    back = model_io.load(model_io.save(m, tmp_path / name))
    again = spec.create(**back.params[name]).apply(feats, back.states[name])
    assert np.array_equal(again.score, det.signal_.score)
    assert set(again.columns) == set(det.signal_.columns)
    for c, v in det.signal_.columns.items():
        assert np.array_equal(np.asarray(again.columns[c]), np.asarray(v), equal_nan=True), c
    assert again.groups == det.signal_.groups


def test_api_load_and_lookups(fitted) -> None:
    _, scan_dir, _ = fitted
    found = api.load(scan_dir)
    flagged = found.engagements.filter(found.engagements["flagged"]).slice(0, 1).to_pylist()[0]
    assert found.engagement(flagged["event_id"])["flagged"] is True
    acct = found.account(flagged["user_id"])
    assert acct is not None and acct["flagged"] is True
    assert found.video(flagged["video_id"])["video_id"] == flagged["video_id"]
    assert found.creator(flagged["creator_id"]) is not None
    assert found.account("no-such-account") is None
    assert found.engagements_of("user_id", flagged["user_id"]).num_rows >= 1
    if found.groups.num_rows:
        assert found.group(0)["group_id"] == 0


def test_api_load_names_what_is_missing(tmp_path: Path) -> None:
    from likelens.errors import InputError

    with pytest.raises(InputError, match=r"summary\.json"):
        api.load(tmp_path)


def test_detectors_params_lists_what_set_takes() -> None:
    r = run("detectors", "--params")
    assert r.returncode == 0, r.stderr
    assert "lockstep.window_s" in r.stdout and "600" in r.stdout


def test_a_model_missing_a_learned_value_is_refused(fitted, tmp_path: Path) -> None:
    events, scan_dir, _ = fitted
    m = model_io.load(scan_dir / "model")
    del m.states["lockstep"].values["chance_share"]
    short = model_io.save(m, tmp_path / "short")  # a consistent manifest, an incomplete state
    r = run("apply", str(events), "--model", str(short), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "chance_share" in r.stderr
