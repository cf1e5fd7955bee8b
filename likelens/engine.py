"""The engine boundary: the keyed aggregates and joins detectors need, behind one interface,
and the embedded engine's one DuckDB connection setup, shared by ingest and the features.

Every connection a scan opens is made here, so ``--threads``, the spill directory and the
quiet terminal apply to all of them (ingest used to open its own and ignore ``--threads``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa

from likelens.meetings import meetings, pair_meetings


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for one scan: no progress bar on the terminal, and
    spilling (joins, sorts larger than memory) into the system's temporary directory."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    spill = Path(tempfile.gettempdir()) / "likelens-duckdb"
    con.execute(f"SET temp_directory = '{spill.as_posix()}'")
    return con


class Engine(Protocol):
    """The keyed aggregates and joins the detectors need, over the engagement table.

    Detectors ask for these by name and get Arrow tables or NumPy arrays back, aligned with
    ``Features.engagements``; they hold no SQL of their own. ``DuckDBEngine`` is the embedded
    implementation; a scale-out engine implements the same methods over its own tables.
    """

    def account_habits(self, low_watch_frac: float, min_cadence_events: int) -> pa.Table: ...

    def target_piles(self, task: np.ndarray, bucket_views: np.ndarray, bucket_ms: int
                     ) -> pa.Table: ...

    def group_meetings(self, group_of: np.ndarray, window_ms: int) -> np.ndarray: ...

    def pair_meetings(self, acc: np.ndarray, target: np.ndarray, ts: np.ndarray,
                      creator: np.ndarray, window_ms: int, n_acc: int, min_shared: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class DuckDBEngine:
    """``Engine`` on a DuckDB connection where the engagement table is registered as ``eng``
    (each detector worker has its own cursor); the window kernels read the same table as
    arrays."""

    def __init__(self, con: duckdb.DuckDBPyConnection, engagements: pa.Table) -> None:
        self.con, self.eng, self.n = con, engagements, engagements.num_rows

    def account_habits(self, low_watch_frac: float, min_cadence_events: int) -> pa.Table:
        """Per engagement (in ``rid`` order), its account's habits: the shares of its
        engagements opened alone, with no view, and watched under ``low_watch_frac``; its
        engagements and views; the coefficient of variation of the gaps between its likes
        (null under ``min_cadence_events`` gaps)."""
        return self.con.sql(f"""
            WITH a AS (
                SELECT user_id,
                       avg(CASE WHEN action IN ('like','comment','share')
                                THEN (session_views = 0)::INT END) AS iso_share,
                       avg(CASE WHEN action IN ('like','comment','share')
                                THEN (NOT has_view)::INT END) AS noview_share,
                       avg(CASE WHEN watch_frac IS NOT NULL
                                THEN (watch_frac < {float(low_watch_frac)})::INT END)
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
            SELECT e.rid, coalesce(a.iso_share, 0) AS iso_share,
                   coalesce(a.noview_share, 0) AS noview_share,
                   coalesce(a.low_share, 0) AS low_share,
                   a.n_eng, a.n_views,
                   CASE WHEN cad.n >= {int(min_cadence_events)} THEN cad.cv END AS cadence_cv
            FROM eng e JOIN a USING (user_id)
            LEFT JOIN cad USING (user_id)
            ORDER BY e.rid
        """).to_arrow_table()

    def target_piles(self, task: np.ndarray, bucket_views: np.ndarray, bucket_ms: int
                     ) -> pa.Table:
        """Per engagement (in ``pos`` order): whether it is in ``task``, its target's count of
        task engagements (k), the number of engaged targets, and for likes its video's likes
        in its ``bucket_ms`` bucket against what the bucket's views (``bucket_views``) predict
        at the video's own like rate."""
        b = int(bucket_ms)
        self.con.register("engine_bucket_views", pa.table({
            "pos": pa.array(np.arange(self.n, dtype=np.int32)), "views": bucket_views,
            "task": np.asarray(task, dtype=bool)}))
        try:
            return self.con.sql(f"""
                WITH e AS (SELECT pos, target, video_id, action, ts // {b} AS bucket,
                                  bv.task AS task, video_views, bv.views AS bucket_views
                           FROM eng JOIN engine_bucket_views bv USING (pos)),
                rate AS (SELECT count(DISTINCT target) AS n_targets FROM e
                         WHERE action IN ('like', 'comment', 'share')),
                tt AS (SELECT target, count(*) FILTER (WHERE task) AS k FROM e
                       GROUP BY target),
                lb AS (SELECT video_id, bucket, count(*) AS likes,
                              any_value(bucket_views) AS views,
                              any_value(video_views) AS video_views
                       FROM e WHERE action = 'like' GROUP BY ALL),
                lt AS (SELECT video_id, sum(likes) AS likes FROM lb GROUP BY ALL),
                hb AS (SELECT lb.video_id, lb.bucket, lb.likes,
                              lb.views * (lt.likes::DOUBLE + 1) / (lb.video_views + 1)
                                  AS expected
                       FROM lb JOIN lt USING (video_id))
                SELECT e.pos, e.task, tt.k, rate.n_targets,
                       hb.likes AS hour_likes, hb.expected AS hour_expected
                FROM e JOIN tt USING (target) CROSS JOIN rate
                LEFT JOIN hb ON hb.video_id = e.video_id AND hb.bucket = e.bucket
                            AND e.action = 'like'
                ORDER BY e.pos
            """).to_arrow_table()
        finally:
            self.con.unregister("engine_bucket_views")

    def group_meetings(self, group_of: np.ndarray, window_ms: int) -> np.ndarray:
        """Per engagement: how many other accounts of its group (``group_of`` by account
        code, -1 none) engaged its target within ``window_ms`` of it."""
        acc = self.eng["acc"].to_numpy().astype(np.int64)
        return meetings(self.eng["target"].to_numpy(), group_of[acc],
                        self.eng["ts"].to_numpy(), acc, window_ms).astype(float)

    def pair_meetings(self, acc: np.ndarray, target: np.ndarray, ts: np.ndarray,
                      creator: np.ndarray, window_ms: int, n_acc: int, min_shared: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Account pairs (a < b, ascending) meeting within ``window_ms`` on ``min_shared``
        targets or more of two creators or more, and their shared targets, from rows sorted
        by (target, time) (lockstep's pairs, of the log or of its time-shifted null)."""
        return pair_meetings(acc, target, ts, creator, int(window_ms), n_acc, min_shared)
