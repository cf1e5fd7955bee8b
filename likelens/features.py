"""Per-engagement and per-account features, computed once in DuckDB and shared by the detectors.

Every feature is a plain column on one table: detectors read columns, never raw events, so a new
detector costs no extra pass over the log. Joins on time are ASOF joins or window frames over
sorted partitions (never range self-joins, see DESIGN.md "Measured facts").
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

SESSION_MS = 10 * 60_000  # views this close (in whole minutes) count as the feed session
REFERRAL_MS = 30 * 60_000  # an engagement this soon after someone else shared the video


@dataclass
class Features:
    """The engagement table with its features, and the connection that holds the log."""

    con: duckdb.DuckDBPyConnection
    engagements: pa.Table  # one row per non-view event, in input order
    has_views: bool
    has_device: bool
    has_ip: bool
    has_text: bool

    @property
    def account_codes(self) -> np.ndarray:
        """Dense 0-based account code per engagement (same order as ``engagements``)."""
        return self.engagements["acc"].to_numpy(zero_copy_only=False)

    @property
    def n_accounts(self) -> int:
        codes = self.account_codes
        return int(codes.max()) + 1 if len(codes) else 0

    def per_account_max(self, values: np.ndarray) -> np.ndarray:
        """Each engagement gets the maximum of ``values`` over its account's engagements."""
        codes = self.account_codes
        best = np.full(self.n_accounts, -np.inf)
        np.maximum.at(best, codes, values)
        return best[codes]


def build_features(events: pa.Table, *, threads: int | None = None) -> Features:
    """Register the canonical events with DuckDB (no copy) and derive the engagement features.

    Nothing here sorts the whole log: views are first cut down to the (account, video) pairs
    and accounts that have engagements, the view before each engagement is an ASOF join on that
    small set, and feed-session context is counted in one-minute buckets with an equi-join.
    """
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    rid = pa.array(np.arange(events.num_rows, dtype=np.int64))
    con.register("events_arrow", events.append_column("rid", rid))
    con.execute("CREATE VIEW ev AS SELECT * FROM events_arrow")

    def any_value(col: str, where: str = "true") -> bool:
        # DuckDB 2: fetchall() finishes the result; fetchone() would leave it open.
        return bool(con.execute(f"SELECT count({col}) > 0 FROM ev WHERE {where}").fetchall()[0][0])

    has_views = any_value("*", "action = 'view'")
    has_device, has_ip, has_text = any_value("device_hash"), any_value("ip_net"), any_value("text")
    minute = 60_000
    reach = SESSION_MS // minute
    con.execute("""
        CREATE TEMP TABLE e0 AS
        SELECT *, CASE WHEN action = 'follow' THEN 'c:' || CAST(creator_id AS VARCHAR)
                       ELSE action[1:1] || ':' || CAST(video_id AS VARCHAR) END AS target
        FROM ev WHERE action <> 'view'
    """)
    con.execute(f"""
        CREATE TEMP TABLE near AS
        WITH vm AS (
            SELECT user_id, ts // {minute} AS m, count(*) AS c FROM ev
            WHERE action = 'view' AND user_id IN (SELECT DISTINCT user_id FROM e0)
            GROUP BY ALL
        ), probe AS (
            SELECT rid, user_id, ts // {minute} + o AS m
            FROM e0, range(-{reach}, {reach} + 1) AS r(o)
        )
        SELECT probe.rid, sum(vm.c) AS near_views
        FROM probe JOIN vm USING (user_id, m) GROUP BY probe.rid
    """)
    con.execute(f"""
        CREATE TABLE eng AS
        WITH pairs AS (SELECT DISTINCT user_id, video_id FROM e0 WHERE video_id IS NOT NULL),
        v AS (
            SELECT ev.user_id, ev.video_id, ts AS view_ts, watch_ms AS view_watch,
                   video_ms AS view_video_ms
            FROM ev SEMI JOIN pairs USING (user_id, video_id) WHERE action = 'view'
        ), s AS (
            SELECT video_id, user_id AS share_user, ts AS share_ts FROM ev WHERE action = 'share'
        ), j0 AS (
            SELECT e0.*, v.view_ts, v.view_watch, v.view_video_ms
            FROM e0 ASOF LEFT JOIN v
              ON e0.user_id = v.user_id AND e0.video_id = v.video_id AND e0.ts >= v.view_ts
        ), j AS (
            SELECT j0.*, s.share_user, s.share_ts
            FROM j0 ASOF LEFT JOIN s ON j0.video_id = s.video_id AND j0.ts > s.share_ts
        )
        SELECT (row_number() OVER (ORDER BY j.rid) - 1)::INTEGER AS pos, j.rid,
               (dense_rank() OVER (ORDER BY user_id) - 1)::INTEGER AS acc,
               event_id, ts, user_id, action, video_id, creator_id, target,
               device_hash, ip_hash, ip_net, region, text,
               view_ts IS NOT NULL AS has_view,
               view_watch AS watch_ms,
               coalesce(video_ms, view_video_ms) AS video_ms,
               CASE WHEN view_watch IS NOT NULL AND coalesce(video_ms, view_video_ms) > 0
                    THEN view_watch / coalesce(video_ms, view_video_ms) END AS watch_frac,
               ts - view_ts AS since_view_ms,
               coalesce(share_user <> user_id AND ts - share_ts <= {REFERRAL_MS}, false)
                   AS after_share,
               greatest(coalesce(near.near_views, 0) - CASE WHEN view_ts IS NOT NULL
                        AND ts - view_ts <= {SESSION_MS} THEN 1 ELSE 0 END, 0)
                   AS session_views
        FROM j LEFT JOIN near USING (rid)
        ORDER BY j.rid
    """)
    con.execute("DROP TABLE near")
    con.execute("DROP TABLE e0")
    eng = con.sql("SELECT * FROM eng").to_arrow_table()
    return Features(con, eng, has_views, has_device, has_ip, has_text)
