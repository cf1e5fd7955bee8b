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
import pyarrow.compute as pc

from likelens.meetings import meetings

# What the aggregates read of the engagement table (dictionaries decoded: Spark takes
# plain columns).
_COLUMNS = ("pos", "rid", "acc", "user_id", "action", "ts", "target", "video_id",
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
            plain.append(pc.cast(col, pa.string()) if c == "user_id" else col)
        self.eng = spark.createDataFrame(pa.table(plain, names=list(_COLUMNS))).cache()
        self.eng.createOrReplaceTempView("eng")

    def close(self) -> None:
        self.eng.unpersist()
        self.spark.catalog.dropTempView("eng")

    def _ordered(self, sql: str, by: str) -> pa.Table:
        """A query's rows, in the engagement table's order (``by``: pos or rid)."""
        t = self.spark.sql(sql).toArrow()
        return t.take(pc.sort_indices(t[by]))

    def account_habits(self, low_watch_frac: float, min_cadence_events: int) -> pa.Table:
        """As ``DuckDBEngine.account_habits``."""
        return self._ordered(f"""
            WITH a AS (
                SELECT user_id,
                       avg(CASE WHEN action IN ('like','comment','share')
                                THEN CAST(session_views = 0 AS INT) END) AS iso_share,
                       avg(CASE WHEN action IN ('like','comment','share')
                                THEN CAST(NOT has_view AS INT) END) AS noview_share,
                       avg(CASE WHEN watch_frac IS NOT NULL
                                THEN CAST(watch_frac < {float(low_watch_frac)!r} AS INT) END)
                           AS low_share,
                       count(*) AS n_eng, any_value(acct_views) AS n_views
                FROM eng GROUP BY user_id
            ), gaps AS (
                SELECT user_id, ts - lag(ts) OVER (PARTITION BY user_id ORDER BY ts) AS gap
                FROM eng WHERE action = 'like'
            ), cad AS (
                SELECT user_id, stddev_samp(gap) / nullif(avg(gap), 0) AS cv, count(gap) AS n
                FROM gaps WHERE gap IS NOT NULL GROUP BY user_id
            )
            SELECT e.rid, coalesce(a.iso_share, 0D) AS iso_share,
                   coalesce(a.noview_share, 0D) AS noview_share,
                   coalesce(a.low_share, 0D) AS low_share,
                   a.n_eng, a.n_views,
                   CASE WHEN cad.n >= {int(min_cadence_events)} THEN cad.cv END AS cadence_cv
            FROM eng e JOIN a USING (user_id)
            LEFT JOIN cad USING (user_id)
        """, "rid")

    def target_piles(self, task: np.ndarray, bucket_views: np.ndarray, bucket_ms: int
                     ) -> pa.Table:
        """As ``DuckDBEngine.target_piles``."""
        b = int(bucket_ms)
        self.spark.createDataFrame(pa.table({
            "pos": pa.array(np.arange(self.n, dtype=np.int32)),
            "views": pa.array(np.asarray(bucket_views)),
            "task": pa.array(np.asarray(task, dtype=bool))})
        ).createOrReplaceTempView("engine_bucket_views")
        try:
            return self._ordered(f"""
                WITH e AS (SELECT pos, target, video_id, action, ts div {b} AS bucket,
                                  bv.task AS task, video_views, bv.views AS bucket_views
                           FROM eng JOIN engine_bucket_views bv USING (pos)),
                rate AS (SELECT count(DISTINCT target) AS n_targets FROM e
                         WHERE action IN ('like', 'comment', 'share')),
                tt AS (SELECT target, count(*) FILTER (WHERE task) AS k FROM e
                       GROUP BY target),
                lb AS (SELECT video_id, bucket, count(*) AS likes,
                              any_value(bucket_views) AS views,
                              any_value(video_views) AS video_views
                       FROM e WHERE action = 'like' GROUP BY video_id, bucket),
                lt AS (SELECT video_id, sum(likes) AS likes FROM lb GROUP BY video_id),
                hb AS (SELECT lb.video_id, lb.bucket, lb.likes,
                              lb.views * (CAST(lt.likes AS DOUBLE) + 1) / (lb.video_views + 1)
                                  AS expected
                       FROM lb JOIN lt ON lb.video_id = lt.video_id)
                SELECT e.pos, e.task, tt.k, rate.n_targets,
                       hb.likes AS hour_likes, hb.expected AS hour_expected
                FROM e JOIN tt ON tt.target = e.target CROSS JOIN rate
                LEFT JOIN hb ON hb.video_id = e.video_id AND hb.bucket = e.bucket
                            AND e.action = 'like'
            """, "pos")
        finally:
            self.spark.catalog.dropTempView("engine_bucket_views")

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
