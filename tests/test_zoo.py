"""The organic look-alike zoo: worlds drawn per seed, every organic cause attributed, and each
cause on its own not mistaken for a bought crowd."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from likelens import sim
from likelens.evaluate import cause_table
from likelens.ingest import ingest
from likelens.scan import scan_events
from likelens.sim.events import CAUSES


def _zoo(seed: int, users: int = 3000) -> sim.SimResult:
    return sim.simulate(sim.load_scenario("zoo", users=users), seed)


def test_zoo_is_listed_and_same_seed_same_world() -> None:
    assert "zoo" in sim.scenario_names()
    a, b, c = _zoo(5), _zoo(5), _zoo(6)
    assert a.events.equals(b.events) and a.truth.equals(b.truth)
    assert a.config == b.config
    assert a.config != c.config  # another seed draws other knobs


def test_truth_attributes_every_organic_event_to_a_cause() -> None:
    r = _zoo(8)
    fake = r.truth["fake"].to_numpy(zero_copy_only=False)
    cause = r.truth["organic_cause"]
    assert cause.null_count == int(fake.sum())  # labelled exactly where organic
    seen = set(pc.unique(cause).drop_null().to_pylist())
    assert seen <= set(CAUSES)
    assert {"feed", "push"} <= seen and len(seen) >= 5


def test_platform_shapes_vary_across_worlds() -> None:
    shapes = [sim.zoo.draw(sim.load_scenario("zoo"), s)["platform"] for s in range(40)]
    assert {p["ids"] for p in shapes} == {"int", "string"}
    assert any(p["ipv6_frac"] > 0 for p in shapes) and any(p["ipv6_frac"] == 0 for p in shapes)
    assert any(p["engagement_only"] for p in shapes)
    assert any(p["watch_report_prob"] < 1 for p in shapes)


def _world_with(platform: dict, seed: int = 3) -> sim.SimResult:
    cfg = sim.load_scenario("demo", users=2000)
    cfg["platform"].update(platform)
    return sim.simulate(cfg, seed)


def test_ipv6_addresses_parse_and_share_few_carrier_prefixes() -> None:
    r = _world_with({"ipv6_frac": 0.8})
    ips = [ipaddress.ip_address(x) for x in r.events["ip"].to_pylist()]
    v6 = [ip for ip in ips if ip.version == 6]
    assert len(v6) > len(ips) / 2
    nets = {ipaddress.ip_network(f"{ip}/48", strict=False) for ip in v6}
    assert len(nets) <= 8  # carrier /48 pools shared by thousands


def test_string_ids_unreported_watch_and_engagement_only_exports() -> None:
    r = _world_with({"ids": "string", "watch_report_prob": 0.5})
    assert r.events["user_id"].type == r.events["video_id"].type
    assert str(r.events["user_id"].type) in ("string", "large_string")
    views = pc.equal(r.events["action"], "view")
    watch = r.events["watch_ms"].filter(views)
    assert 0.3 < watch.null_count / len(watch) < 0.7
    r2 = _world_with({"engagement_only": True})
    assert "view" not in r2.events["action"].to_pylist()


def test_zoo_world_scans_with_views_missing(tmp_path: Path, key: bytes) -> None:
    r = _world_with({"engagement_only": True, "ids": "string"})
    paths = sim.write(r, tmp_path)
    result = scan_events(ingest([paths["events"]], key=key).events)
    assert result.engagements.num_rows == r.events.num_rows
    assert result.summary["signals"]["views"] is False


# One world per organic cause, with the market off and every other collective cause off: every
# flag is a false positive of that cause.
ONLY = {
    "push": {"lookalikes": {"push_rate": 0.15}, "zoo": {"push_alone_frac": 0.7}},
    "share": {"lookalikes": {"friend_group_frac": 0.3}, "zoo": {"share_alone_frac": 0.7}},
    "chat": {"zoo": {"chat_share_prob": 0.3, "share_alone_frac": 0.7}},
    "search": {"zoo": {"search_video_frac": 0.03, "search_alone_frac": 0.7}},
    "live": {"zoo": {"live_fan_join": 0.15}},
    "trend": {"zoo": {"trend_video_frac": 0.01, "trend_alone_frac": 0.7}},
    "fanclub": {"zoo": {"fanclub_prob": 0.08, "push_alone_frac": 0.7}},
}


@pytest.mark.parametrize("cause", list(ONLY))
def test_each_organic_cause_alone_is_not_flagged(cause: str, tmp_path: Path, key: bytes) -> None:
    cfg = sim.load_scenario("demo", users=8000)
    cfg["market"]["enabled"] = False
    if cause != "push":
        cfg["lookalikes"]["push_rate"] = 0.0
    if cause != "share":
        cfg["lookalikes"]["friend_group_frac"] = 0.0
    for section, knobs in ONLY[cause].items():
        cfg[section].update(knobs)
    r = sim.simulate(cfg, 77)
    paths = sim.write(r, tmp_path)
    scan = scan_events(ingest([paths["events"]], key=key).events)
    action = "live_join" if cause == "live" else "like"
    flagged, total = cause_table(r.truth, scan.engagements, action)[cause]
    assert total >= 50  # the cause is really there
    assert flagged / total <= 0.005


@pytest.mark.parametrize("kind,floor", [("bot", 0.95), ("pool", 0.8), ("crowd", 0.6)])
def test_each_supply_kind_is_caught(kind: str, floor: float, tmp_path: Path, key: bytes) -> None:
    cfg = sim.load_scenario("demo", users=8000)
    cfg["market"]["supply_weights"] = [float(k == kind) for k in ("bot", "pool", "crowd")]
    r = sim.simulate(cfg, 31)
    paths = sim.write(r, tmp_path)
    scan = scan_events(ingest([paths["events"]], key=key).events)
    from likelens.evaluate import evaluate_tables

    rows = {row.split: row for row in evaluate_tables(r.truth, scan.engagements)}
    assert rows[f"kind={kind}"].fake > 100
    assert rows[f"kind={kind}"].recall >= floor
    assert rows["all likes"].organic_fpr <= 0.005
    assert np.isfinite(rows["all likes"].precision)


def test_eval_attributes_false_positives_to_causes(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "likelens.cli", *args], capture_output=True,
                              text=True, check=False,
                              env={"LIKELENS_KEY": "zoo-test-key-0123456789", "PATH": "/usr/bin"})

    assert cli("simulate", "--scenario", "zoo", "--seed", "9", "--users", "2000", "--out",
               str(tmp_path / "sim")).returncode == 0
    assert (tmp_path / "sim" / "world.json").exists()
    assert cli("scan", str(tmp_path / "sim" / "events.parquet"), "--out", str(tmp_path / "s"),
               "--no-report").returncode == 0
    r = cli("eval", "--truth", str(tmp_path / "sim" / "truth.parquet"), str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert "by cause" in r.stdout and "feed" in r.stdout
    causes = json.loads((tmp_path / "s" / "quality_causes.json").read_text())
    assert causes["feed"]["total"] > 0
    assert all(0 <= c["flagged"] <= c["total"] for c in causes.values())


@pytest.mark.parametrize("kind", ["pool", "bot"])
def test_an_export_without_views_keeps_rented_accounts_owners_unflagged(
        kind: str, tmp_path: Path, key: bytes) -> None:
    # Without views nothing says which of a rented account's likes its owner made in a feed
    # session: the farm's device or network must place an engagement on the farm, not the
    # account's evidence alone (the owner likes from their own phone).
    from likelens.evaluate import evaluate_tables

    cfg = sim.load_scenario("demo", users=8000)
    cfg["platform"]["engagement_only"] = True
    cfg["market"]["supply_weights"] = [float(k == kind) for k in ("bot", "pool", "crowd")]
    cfg["supply"]["pool"]["owner_use_prob"] = 0.9
    r = sim.simulate(cfg, 41)
    paths = sim.write(r, tmp_path)
    scan = scan_events(ingest([paths["events"]], key=key).events)
    rows = {row.split: row for row in evaluate_tables(r.truth, scan.engagements)}
    assert rows[f"kind={kind}"].fake > 100
    assert rows[f"kind={kind}"].recall >= 0.9
    assert rows["all likes"].organic_fpr <= 0.002
