"""The simulator: reproducible, calibrated, and holding every look-alike detectors must survive."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from likelens import sim
from likelens.sim.stats import stats


@pytest.fixture(scope="module")
def big_day() -> sim.SimResult:
    return sim.simulate(sim.load_scenario("baseline", users=14000), 3)


def test_same_seed_same_files_different_seed_different(tmp_path: Path) -> None:
    cfg = sim.load_scenario("demo", users=1500)
    a = sim.write(sim.simulate(cfg, 5), tmp_path / "a")
    b = sim.write(sim.simulate(cfg, 5), tmp_path / "b")
    c = sim.write(sim.simulate(cfg, 6), tmp_path / "c")
    for name in ("events", "truth"):
        assert a[name].read_bytes() == b[name].read_bytes()
        assert a[name].read_bytes() != c[name].read_bytes()


@pytest.mark.parametrize("name", sim.scenario_names())
def test_every_scenario_generates(name: str) -> None:
    result = sim.simulate(sim.load_scenario(name, users=1200), 1)
    assert result.events.num_rows > 1000
    assert result.events.num_rows == result.truth.num_rows


def test_calibration_targets(big_day: sim.SimResult) -> None:
    s = stats(big_day)
    assert 0.02 <= s["organic_like_rate"] <= 0.06
    assert 0.5 <= s["completion_median"] <= 0.8
    assert 0.05 <= s["bought_like_share"] <= 0.2
    for kind in ("bot", "pool", "crowd"):
        assert s[f"likes_{kind}"] > 0


def test_lookalikes_exist(big_day: sim.SimResult) -> None:
    con = duckdb.connect()
    con.register("e", big_day.events)
    con.register("t", big_day.truth)
    # organic videos with many likes in their first 10 minutes (push bursts after a publish)
    burst = con.execute("""
        WITH f AS (SELECT video_id, min(ts) AS t0 FROM e GROUP BY 1)
        SELECT count(*) FROM (
            SELECT e.video_id, count(*) AS n FROM e JOIN t USING (event_id) JOIN f USING (video_id)
            WHERE action = 'like' AND kind = 'organic' AND e.ts < f.t0 + 600000
            GROUP BY 1 HAVING count(*) >= 20)
    """).fetchall()[0][0]
    assert burst >= 1
    # addresses shared by more than 1000 organic users (carrier-grade NAT)
    shared = con.execute("""
        SELECT max(n) FROM (SELECT ip, count(DISTINCT user_id) AS n FROM e JOIN t USING (event_id)
                            WHERE kind = 'organic' GROUP BY ip)
    """).fetchall()[0][0]
    assert shared > 1000
    # phones shared within a family
    family = con.execute("""
        SELECT count(*) FROM (SELECT device_id FROM e JOIN t USING (event_id)
                              WHERE kind = 'organic' GROUP BY 1
                              HAVING count(DISTINCT user_id) BETWEEN 2 AND 4)
    """).fetchall()[0][0]
    assert family >= 10


def test_ids_do_not_separate_fake_from_organic(big_day: sim.SimResult) -> None:
    con = duckdb.connect()
    con.register("e", big_day.events)
    con.register("t", big_day.truth)
    rows = con.execute("""SELECT fake, median(user_id), median(event_id) FROM e
                          JOIN t USING (event_id) WHERE action = 'like' GROUP BY 1""").fetchall()
    med = {fake: (u, ev) for fake, u, ev in rows}
    assert abs(np.log10(med[True][0]) - np.log10(med[False][0])) < 0.5


def test_truth_is_kept_apart_from_events(big_day: sim.SimResult) -> None:
    assert not {"fake", "kind", "order_id", "package", "price"} & set(big_day.events.column_names)


KUAIRAND = Path(__file__).resolve().parents[2] / "shared" / "data" / "kuairand-pure"


def test_video_durations_and_fan_counts_follow_kuairand(big_day: sim.SimResult) -> None:
    """Compare simulated distributions with the real KuaiRand-Pure tables when they are here."""
    videos = KUAIRAND / "video_features_basic_pure.csv"
    users = KUAIRAND / "user_features_pure.csv"
    if not videos.exists() or not users.exists():
        pytest.skip("../shared/data/kuairand-pure is not present")
    import pyarrow.csv as pacsv

    real_ms = np.array(pacsv.read_csv(videos)["video_duration"].to_pylist(), dtype=float)
    real_ms = real_ms[np.isfinite(real_ms) & (real_ms > 0)]
    sim_ms = np.array(big_day.events["video_ms"].drop_null().unique().to_pylist(), dtype=float)
    # medians of the log-durations within 0.25 (a factor of about 1.3)
    assert abs(np.median(np.log(sim_ms)) - np.median(np.log(real_ms))) < 0.25
    real_fans = np.array(pacsv.read_csv(users)["fans_user_num"].to_pylist(), dtype=float)
    cfg = sim.load_scenario("baseline")["world"]
    assert abs(cfg["fans_log1p_mean"] - np.log1p(real_fans[np.isfinite(real_fans)]).mean()) < 0.05
