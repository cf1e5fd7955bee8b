"""The Spark engine (``--engine spark``) on local[2] gives the embedded engine's outputs: every
simulator scenario, the three input formats, messy input, and the errors.

Skips without PySpark or Java, except under CI=true, where the project installs both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from likelens import api, sim
from likelens.errors import InputError, SchemaError
from likelens.ingest import ingest
from likelens.sim.config import scenario_names
from likelens.spark.session import SparkOptions, missing

from .digest import TABLES

KEY = b"spark-test-key-0123456789"
OPTIONS = SparkOptions(master="local[2]", partitions=4)
USERS = 1500


@pytest.fixture(scope="module")
def spark():
    gaps = missing()
    if gaps:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Spark engine needs {', '.join(gaps)} under CI=true")
        pytest.skip(f"the Spark engine needs {', '.join(gaps)}")
    from likelens.spark.session import session

    return session(OPTIONS)


def assert_same_tables(a: pa.Table, b: pa.Table, name: str) -> None:
    """Equal tables: names, types and order; floats within 1e-9, everything else exact."""
    assert a.column_names == b.column_names, name
    assert a.num_rows == b.num_rows, name
    for c in a.column_names:
        x, y = a[c], b[c]
        assert x.type == y.type, f"{name}.{c}: {x.type} against {y.type}"
        if pa.types.is_floating(x.type):
            xa = x.to_numpy(zero_copy_only=False).astype(float)
            ya = y.to_numpy(zero_copy_only=False).astype(float)
            np.testing.assert_allclose(ya, xa, rtol=0, atol=1e-9, err_msg=f"{name}.{c}")
        else:
            assert x.to_pylist() == y.to_pylist(), f"{name}.{c}"


def assert_same_scan(embedded: api.Run, spark_run: api.Run) -> None:
    for t in TABLES:
        assert_same_tables(getattr(embedded.result, t), getattr(spark_run.result, t), t)
    assert_same_tables(embedded.ingest.quarantine, spark_run.ingest.quarantine, "quarantine")
    assert spark_run.result.summary["engine"]["name"] == "spark"
    assert embedded.result.summary["engine"] == {"name": "embedded"}


def both(spark, inputs: list[Path]) -> tuple[api.Run, api.Run]:
    embedded = api.scan(inputs, key=KEY, report=False)
    on_spark = api.scan(inputs, key=KEY, report=False, spark=OPTIONS)
    return embedded, on_spark


@pytest.mark.parametrize("scenario", scenario_names())
def test_every_scenario_scans_the_same_on_spark(spark, scenario: str, tmp_path: Path) -> None:
    paths = sim.write(sim.simulate(sim.load_scenario(scenario, users=USERS), 7), tmp_path)
    embedded, on_spark = both(spark, [paths["events"]])
    assert embedded.result.engagements.num_rows > 0
    assert_same_scan(embedded, on_spark)


def test_csv_jsonl_and_a_mixed_directory_scan_the_same_on_spark(spark, tmp_path: Path
                                                                ) -> None:
    events = sim.simulate(sim.load_scenario("demo", users=USERS), 8).events
    csv_path = tmp_path / "one.csv"
    pacsv.write_csv(events, csv_path)
    jsonl_path = tmp_path / "one.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in events.to_pylist()))
    for path in (csv_path, jsonl_path):
        embedded, on_spark = both(spark, [path])
        assert embedded.result.engagements.num_rows > 0
        assert_same_scan(embedded, on_spark)
    # One log cut into three files of three formats, without event ids: ids are numbered
    # over the whole input, as the embedded ingest numbers them.
    d = tmp_path / "parts"
    d.mkdir()
    third = events.num_rows // 3
    parts = events.drop_columns(["event_id"])
    pq.write_table(parts.slice(0, third), d / "a.parquet")
    pacsv.write_csv(parts.slice(third, third), d / "b.csv")
    (d / "c.jsonl").write_text("".join(json.dumps(r) + "\n"
                                       for r in parts.slice(2 * third).to_pylist()))
    embedded, on_spark = both(spark, [d])
    assert len(on_spark.ingest.files) == 3
    assert_same_scan(embedded, on_spark)


def test_messy_files_are_quarantined_as_the_embedded_ingest_does(spark, tmp_path: Path
                                                                 ) -> None:
    from likelens.spark.ingest import ingest_spark

    d = tmp_path / "messy"
    d.mkdir()
    (d / "a.csv").write_bytes(
        b"ts,user_id,action,video_id,event_id,watch_ms,ip,device_id\n"
        b"1000,1,like,10,7,,1.2.3.4,devA\n"
        b"1001,2,poke,10,8,,,\n"                 # unknown action
        b"yesterday,3,like,10,9,,,\n"            # unparseable time
        b"1003,4,view,10,,-5,,\n"                # negative watch, no event id
        b"1004,5,like,\xff\xfe,11,,,\n"          # invalid UTF-8
        b"1005,6,like,10,12,,300.1.1.1,\n"       # bad address
        b"1006,\"7,like,10\n")                   # broken quoting
    (d / "b.jsonl").write_text(
        json.dumps({"ts": 2000, "user_id": "u8", "action": "like", "video_id": 10,
                    "event_id": 7}) + "\n"         # repeats a.csv's event id 7
        + "{not json\n"
        + json.dumps({"ts": 2001, "user_id": "u9", "action": "follow", "creator_id": 3})
        + "\n")
    a = ingest([d], key=KEY)
    b = ingest_spark(spark, [d], key=KEY, partitions=2)
    assert b.quarantine.num_rows >= 7
    assert "duplicate_event_id" in b.quarantine["reason"].to_pylist()
    assert_same_tables(a.quarantine, b.quarantine, "quarantine")
    assert_same_tables(a.events.cast(b.events.schema), b.events, "events")
    assert (a.files, a.rows_read) == (b.files, b.rows_read)


def test_input_errors_are_the_embedded_ingests(spark, tmp_path: Path) -> None:
    from likelens.spark.ingest import ingest_spark

    (tmp_path / "a.csv").write_text("ts,user_id,action,video_id\n1,1,like,2\n")
    (tmp_path / "b.csv").write_text("ts,user_id,video_id\n1,1,2\n")
    (tmp_path / "c.jsonl").write_bytes(b"")
    with pytest.raises(SchemaError) as embedded:
        ingest([tmp_path], key=KEY)
    with pytest.raises(SchemaError) as on_spark:
        ingest_spark(spark, [tmp_path], key=KEY)
    assert str(on_spark.value) == str(embedded.value)
    assert "b.csv" in str(on_spark.value) and "action" in str(on_spark.value)
    with pytest.raises(InputError, match=r"c\.jsonl.*empty"):
        ingest_spark(spark, [tmp_path / "c.jsonl"], key=KEY)


def test_group_meetings_kernel_per_bucket_equals_the_whole_log(spark) -> None:
    """The window kernel run per bucket of targets on executors gives the whole-log answer,
    on a log with groups spread over many targets and a window edge on exact times."""
    from likelens.engine import DuckDBEngine
    from likelens.spark.engine import SparkEngine

    rng = np.random.default_rng(3)
    n = 4000
    eng = pa.table({
        "pos": pa.array(np.arange(n, dtype=np.int32)), "rid": pa.array(np.arange(n)),
        "acc": pa.array(rng.integers(0, 300, n).astype(np.int32)),
        "user_id": pa.array(rng.integers(0, 300, n).astype(str)),
        "action": pa.array(["like"] * n), "ts": pa.array(rng.integers(0, 20, n) * 30_000),
        "target": pa.array(rng.integers(0, 40, n)), "video_id": pa.array(rng.integers(0, 40, n)),
        "vid": pa.array(rng.integers(0, 40, n).astype(np.int32)),
        "session_views": pa.array(np.zeros(n, dtype=np.int64)),
        "has_view": pa.array(np.zeros(n, dtype=bool)),
        "watch_frac": pa.nulls(n, pa.float64()),
        "acct_views": pa.array(np.zeros(n, dtype=np.int64)),
        "video_views": pa.array(np.zeros(n, dtype=np.int64))})
    group_of = np.where(rng.random(300) < 0.5, rng.integers(0, 6, 300), -1)
    import duckdb

    con = duckdb.connect()
    con.register("eng", eng)
    whole = DuckDBEngine(con, eng).group_meetings(group_of, 60_000)
    on_spark = SparkEngine(spark, eng, 4)
    try:
        per_bucket = on_spark.group_meetings(group_of, 60_000)
    finally:
        on_spark.close()
    assert whole.sum() > 0
    np.testing.assert_array_equal(per_bucket, whole)


def test_lockstep_pairs_per_bucket_equal_the_whole_log(spark) -> None:
    """Lockstep's pair counts, found per bucket of targets on executors and summed by a Spark
    group-by, are the whole log's: the same pairs, shared counts and order, with targets of
    no creator (-1) and meetings exactly at the window's edge."""
    from likelens.engine import DuckDBEngine
    from likelens.spark.engine import SparkEngine

    rng = np.random.default_rng(11)
    n = 6000
    acc = rng.integers(0, 120, n)
    target = rng.integers(0, 60, n)
    ts = rng.integers(0, 40, n) * 30_000
    creator = np.where(target % 7 == 0, -1, target % 5)
    order = np.lexsort((ts, target))
    args = (acc[order], target[order], ts[order], creator[order], 60_000, 120, 3)
    eng = pa.table({"rid": pa.array(np.arange(n)), "acc": pa.array(acc.astype(np.int32)),
                    "target": pa.array(target), "vid": pa.array(target.astype(np.int32)),
                    "ts": pa.array(ts), "action": pa.array(["like"] * n),
                    "video_views": pa.array(np.zeros(n, dtype=np.int64))})
    import duckdb

    whole = DuckDBEngine(duckdb.connect(), eng).pair_meetings(*args)
    on_spark = SparkEngine(spark, eng, 4)
    try:
        per_bucket = on_spark.pair_meetings(*args)
    finally:
        on_spark.close()
    assert len(whole[0]) > 50 and whole[2].max() > 3
    for got, want in zip(per_bucket, whole, strict=True):
        np.testing.assert_array_equal(got, want)


def test_cli_engine_spark_without_spark_exits_2_with_what_to_install(monkeypatch, tmp_path,
                                                                     capsys) -> None:
    from likelens import cli
    from likelens.spark import session as spark_session

    monkeypatch.setattr(spark_session, "missing", lambda: ["PySpark"])
    path = tmp_path / "e.csv"
    path.write_text("ts,user_id,action,video_id\n1,1,like,2\n")
    assert cli.main(["scan", str(path), "--out", str(tmp_path / "o"), "--engine",
                     "spark"]) == 2
    said = capsys.readouterr().err
    assert "PySpark" in said and "likelens[spark]" in said
    assert not (tmp_path / "o").exists()
    assert cli.main(["scan", str(path), "--out", str(tmp_path / "o"), "--partitions",
                     "4"]) == 2
    assert "--engine spark" in capsys.readouterr().err


def test_cli_scan_on_spark_writes_the_outputs_and_says_the_engine(spark, tmp_path) -> None:
    from likelens import cli

    paths = sim.write(sim.simulate(sim.load_scenario("demo", users=800), 9), tmp_path / "s")
    assert cli.main(["scan", str(paths["events"]), "--out", str(tmp_path / "o"),
                     "--no-report", "--engine", "spark", "--master", "local[2]",
                     "--partitions", "3"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["engine"]["name"] == "spark"
    assert summary["engine"]["partitions"] == 3
    assert (tmp_path / "o" / "model").is_dir()


@pytest.mark.parametrize("ids", ["int", "text", "text-int-in-some-row-groups"])
def test_a_parquet_file_cut_into_row_group_tasks_ingests_as_one_file(spark, tmp_path: Path,
                                                                     ids: str) -> None:
    """Row groups become tasks; text ids that look like integers in some row groups only
    (where the embedded ingest keeps text for the whole file) send the file back whole."""
    from likelens.spark import ingest as spark_ingest

    n = 5000
    users = [str(i % 97) for i in range(n)]
    if ids == "text-int-in-some-row-groups":
        users[-1] = "u-last"
    table = pa.table({
        "ts": pa.array(np.arange(n) * 1000), "action": ["view", "like"] * (n // 2),
        "user_id": pa.array(users if ids != "int" else [i % 97 for i in range(n)]),
        "video_id": pa.array(np.arange(n) % 13), "ip": [f"10.0.{i % 7}.{i % 251}"
                                                     for i in range(n)]})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=700)
    tasks = spark_ingest._tasks([path], 4)
    assert tasks.num_rows > 1
    a = ingest([path], key=KEY)
    b = spark_ingest.ingest_spark(spark, [path], key=KEY, partitions=4)
    assert_same_tables(a.events.cast(b.events.schema), b.events, "events")
    assert b.events.schema.field("user_id").type == (pa.int64() if ids != "text-int-in-some-"
                                                     "row-groups" else pa.string())
    assert b.events["user_id"][0].as_py() in (0, "0")


def test_apply_on_spark_scores_a_later_log_as_the_embedded_apply(spark, tmp_path: Path
                                                                 ) -> None:
    """A model fitted by one scan scores another day the same on both engines."""
    monday = sim.write(sim.simulate(sim.load_scenario("demo", users=USERS), 21), tmp_path / "m")
    tuesday = sim.write(sim.simulate(sim.load_scenario("demo", users=USERS), 22),
                        tmp_path / "t")
    fitted = api.scan([monday["events"]], key=KEY, report=False).result.model
    embedded = api.apply([tuesday["events"]], model=fitted, key=KEY, report=False)
    on_spark = api.apply([tuesday["events"]], model=fitted, key=KEY, report=False,
                         spark=OPTIONS)
    assert int(pa.compute.sum(embedded.result.engagements["flagged"]).as_py()) > 0
    assert_same_scan(embedded, on_spark)


def test_a_failure_inside_spark_is_one_engine_error_line(spark) -> None:
    from likelens.errors import EngineError
    from likelens.spark.session import spark_errors

    with pytest.raises(EngineError) as failed, spark_errors():
        spark.sql("SELECT * FROM no_such_table").collect()
    assert str(failed.value).startswith("Spark failed: ")
    assert "\n" not in str(failed.value)
