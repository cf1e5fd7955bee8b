"""``engine.Engine`` on Spark: the keyed aggregates in Spark SQL, the window kernel per bucket
of targets with ``applyInArrow``.

The SQL is the embedded engine's, in Spark's dialect; the answers come back in the engagement
table's order, so detectors cannot tell the engines apart. Spark's aggregates are exact for
counts and agree with DuckDB's to the last bits or so for means and deviations (tested to
1e-9 against the embedded engine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from likelens.errors import EngineError
from likelens.features import action_mask
from likelens.meetings import meetings
from likelens.viewindex import lookup

# What the aggregates read of the engagement table (dictionaries decoded: Spark takes
# plain columns).
_COLUMNS = ("pos", "rid", "acc", "vid", "action", "ts", "target", "video_id",
            "session_views", "has_view", "watch_frac", "acct_views", "video_views")


class SparkEngine:
    """``Engine`` over the engagement table shipped once to a Spark session."""

    def __init__(self, spark: Any, engagements: pa.Table, partitions: int) -> None:
        self.spark, self.n, self.partitions = spark, engagements.num_rows, partitions
        plain = []
        for c in _COLUMNS:
            col = engagements[c].combine_chunks()
            if pa.types.is_dictionary(col.type):
                col = col.dictionary_decode()
            plain.append(col)
        self.eng = spark.createDataFrame(pa.table(plain, names=list(_COLUMNS))).cache()
        self.eng.createOrReplaceTempView("eng")
        # What the driver spreads per-key answers over, in the table's order.
        self.rid = engagements["rid"].combine_chunks()
        self.acc = engagements["acc"].to_numpy().astype(np.int64)
        self.target = engagements["target"].to_numpy().astype(np.int64)
        self.vid = engagements["vid"].to_numpy().astype(np.int64)
        self.ts = engagements["ts"].to_numpy().astype(np.int64)
        self.like = action_mask(engagements["action"], "like")

    def close(self) -> None:
        self.eng.unpersist()
        self.spark.catalog.dropTempView("eng")

    def _per_key(self, sql: str) -> pa.Table:
        return self.spark.sql(sql).toArrow()

    def account_habits(self, low_watch_frac: float, min_cadence_events: int) -> pa.Table:
        """As ``DuckDBEngine.account_habits``. Spark returns one row per account, and the
        driver spreads them over the account's engagements by account code: a row per
        engagement through Spark's collect path cost seconds per hundred thousand."""
        a = self._per_key(f"""
            WITH a AS (
                SELECT acc,
                       avg(CASE WHEN action IN ('like','comment','share')
                                THEN CAST(session_views = 0 AS INT) END) AS iso_share,
                       avg(CASE WHEN action IN ('like','comment','share')
                                THEN CAST(NOT has_view AS INT) END) AS noview_share,
                       avg(CASE WHEN watch_frac IS NOT NULL
                                THEN CAST(watch_frac < {float(low_watch_frac)!r} AS INT) END)
                           AS low_share,
                       count(*) AS n_eng, any_value(acct_views) AS n_views
                FROM eng GROUP BY acc
            ), gaps AS (
                SELECT acc, ts - lag(ts) OVER (PARTITION BY acc ORDER BY ts) AS gap
                FROM eng WHERE action = 'like'
            ), cad AS (
                SELECT acc, stddev_samp(gap) / nullif(avg(gap), 0) AS cv, count(gap) AS n
                FROM gaps WHERE gap IS NOT NULL GROUP BY acc
            )
            SELECT a.acc, coalesce(a.iso_share, 0D) AS iso_share,
                   coalesce(a.noview_share, 0D) AS noview_share,
                   coalesce(a.low_share, 0D) AS low_share,
                   a.n_eng, a.n_views,
                   CASE WHEN cad.n >= {int(min_cadence_events)} THEN cad.cv END AS cadence_cv
            FROM a LEFT JOIN cad ON cad.acc = a.acc
        """)
        row = _positions(a["acc"].to_numpy(), self.acc)
        out = {"rid": self.rid}
        for c in ("iso_share", "noview_share", "low_share", "n_eng", "n_views",
                  "cadence_cv"):
            out[c] = a[c].take(pa.array(row))
        return pa.table(out)

    def target_piles(self, task: np.ndarray, bucket_views: np.ndarray, bucket_ms: int
                     ) -> pa.Table:
        """As ``DuckDBEngine.target_piles``, from per-target and per-(video, bucket) rows
        spread over the engagements on the driver."""
        b = int(bucket_ms)
        task = np.asarray(task, dtype=bool)
        self.spark.createDataFrame(pa.table({
            "pos": pa.array(np.arange(self.n, dtype=np.int32)),
            "views": pa.array(np.asarray(bucket_views)), "task": pa.array(task)})
        ).createOrReplaceTempView("engine_bucket_views")
        try:
            tt = self._per_key("""
                SELECT target, count(*) FILTER (WHERE bv.task) AS k
                FROM eng JOIN engine_bucket_views bv USING (pos) GROUP BY target""")
            n_targets = self.spark.sql("""
                SELECT count(DISTINCT target) FROM eng
                WHERE action IN ('like', 'comment', 'share')""").first()[0]
            hb = self._per_key(f"""
                WITH lb AS (SELECT vid, ts div {b} AS bucket, count(*) AS likes,
                                   any_value(bv.views) AS views,
                                   any_value(video_views) AS video_views
                            FROM eng JOIN engine_bucket_views bv USING (pos)
                            WHERE action = 'like' GROUP BY vid, ts div {b}),
                lt AS (SELECT vid, sum(likes) AS likes FROM lb GROUP BY vid)
                SELECT lb.vid, lb.bucket, lb.likes,
                       lb.views * (CAST(lt.likes AS DOUBLE) + 1) / (lb.video_views + 1)
                           AS expected
                FROM lb JOIN lt ON lb.vid = lt.vid""")
        finally:
            self.spark.catalog.dropTempView("engine_bucket_views")
        k = tt["k"].take(pa.array(_positions(tt["target"].to_numpy(), self.target)))
        bucket = self.ts // b
        base = int(bucket.min()) if self.n else 0
        span = int(bucket.max()) - base + 1 if self.n else 1
        keys = hb["vid"].to_numpy().astype(np.int64) * span + (hb["bucket"].to_numpy() - base)
        at = lookup(keys, np.maximum(self.vid, 0) * span + (bucket - base))
        at = np.where(self.like, at, -1)
        found = pa.array(np.maximum(at, 0), mask=at < 0)
        return pa.table({
            "pos": pa.array(np.arange(self.n, dtype=np.int32)), "task": pa.array(task),
            "k": k, "n_targets": pa.array(np.full(self.n, n_targets or 0, dtype=np.int64)),
            "hour_likes": hb["likes"].take(found), "hour_expected": hb["expected"].take(found)})

    def group_meetings(self, group_of: np.ndarray, window_ms: int) -> np.ndarray:
        """As ``DuckDBEngine.group_meetings``: the same kernel (``meetings``), run on each
        bucket of targets on an executor; only the engagements of grouped accounts travel."""
        from pyspark.sql import functions as F

        groups = self.spark.createDataFrame(pa.table({
            "acc": pa.array(np.flatnonzero(group_of >= 0).astype(np.int32)),
            "g": pa.array(group_of[group_of >= 0].astype(np.int64))}))
        rows = (self.eng.select("pos", "acc", "target", "ts")
                .join(F.broadcast(groups), "acc")
                .withColumn("bucket", F.pmod(F.xxhash64("target"), F.lit(self.partitions))))
        met = (rows.groupBy("bucket")
               .applyInArrow(_meeter(int(window_ms)), "pos int, met long")
               .where(F.col("met") > 0).toArrow())
        out = np.zeros(self.n)
        out[met["pos"].to_numpy()] = met["met"].to_numpy()
        return out


def _meeter(window_ms: int) -> Callable[[pa.Table], pa.Table]:
    """The executor's side: one bucket of targets in, each row's meetings out. A closure
    with type hints, which is how PySpark tells a table function from a batch iterator."""

    def meet(table: pa.Table) -> pa.Table:
        met = meetings(table["target"].to_numpy(), table["g"].to_numpy(),
                       table["ts"].to_numpy(), table["acc"].to_numpy().astype(np.int64),
                       window_ms)
        return pa.table({"pos": table["pos"], "met": pa.array(met)})

    return meet


def _positions(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row of each query in ``keys`` (every query is there: keys come from the same table)."""
    at = lookup(keys.astype(np.int64), queries)
    if (at < 0).any():
        raise EngineError("Spark returned no aggregate for a key of the engagement table")
    return at
