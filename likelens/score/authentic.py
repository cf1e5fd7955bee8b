"""Authentic engagement per video and per creator (formula in docs/scoring.md).

A like counts as much as it is likely to be real: authentic likes are the sum of (1 − p) over a
video's likes. The authentic score weighs that share of real likes by how much of the video its
viewers actually watch, so a video cannot buy its way up and a video nobody finishes does not
rank like one everybody does:

    authenticity    = authentic_likes / likes                 (1 when there are no likes)
    completion      = median over views of min(watch / duration, 1)
    authentic_score = 100 × authenticity × (0.5 + 0.5 × completion)

A video is certified when it has at least ``CERTIFY_MIN_LIKES`` likes and at most
``CERTIFY_MAX_FLAGGED`` of them are flagged.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

CERTIFY_MIN_LIKES = 20
CERTIFY_MAX_FLAGGED = 0.01


def video_scores(con: duckdb.DuckDBPyConnection, scored: pa.Table) -> pa.Table:
    """videos.parquet: one row per video that has any event."""
    con.register("scored_eng", scored)
    out = con.sql(f"""
        WITH v AS (SELECT * FROM video_views WHERE video_id IS NOT NULL), l AS (
            SELECT video_id, any_value(creator_id) AS creator_id, count(*) AS likes,
                   count(*) FILTER (WHERE flagged) AS flagged_likes,
                   round(sum(1 - score), 6) AS authentic_likes
            FROM scored_eng WHERE action = 'like' GROUP BY video_id
        )
        SELECT coalesce(v.video_id, l.video_id) AS video_id,
               coalesce(v.creator_id, l.creator_id) AS creator_id,
               coalesce(v.views, 0) AS views, coalesce(l.likes, 0) AS likes,
               coalesce(l.flagged_likes, 0) AS flagged_likes,
               coalesce(l.authentic_likes, 0.0) AS authentic_likes,
               v.completion,
               100 * coalesce(l.authentic_likes / nullif(l.likes, 0), 1.0)
                   * (0.5 + 0.5 * coalesce(v.completion, 0)) AS authentic_score,
               coalesce(l.likes, 0) >= {CERTIFY_MIN_LIKES}
                   AND coalesce(l.flagged_likes, 0) <= {CERTIFY_MAX_FLAGGED} * l.likes
                   AS certified
        FROM v FULL JOIN l ON v.video_id = l.video_id
        ORDER BY likes DESC, video_id
    """).to_arrow_table()
    con.unregister("scored_eng")
    return out


def creator_scores(con: duckdb.DuckDBPyConnection, videos: pa.Table) -> pa.Table:
    """creators.parquet: the creator's videos added up; the score is weighted by likes.

    Sums are rounded to 6 decimals (the precision of an engagement's score): DuckDB adds in
    parallel, and unrounded float sums differ in their last bits from run to run."""
    con.register("video_rows", videos)
    out = con.sql("""
        SELECT creator_id, sum(likes) AS likes, sum(flagged_likes) AS flagged_likes,
               round(sum(authentic_likes), 6) AS authentic_likes,
               round(coalesce(sum(authentic_score * likes) / nullif(sum(likes), 0),
                              avg(authentic_score)), 6) AS authentic_score,
               count(*) AS videos
        FROM video_rows WHERE creator_id IS NOT NULL
        GROUP BY creator_id ORDER BY likes DESC, creator_id
    """).to_arrow_table()
    con.unregister("video_rows")
    return out
