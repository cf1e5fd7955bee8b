"""Ranking by authentic engagement: one score per video from what its real audience did.

Raw like counts reward whoever buys them. The rank score counts only what is likely real, and
weighs it by what it cost the viewer:

    a(e)        = 0 if e is flagged, else 1 - score(e)          (authenticity of engagement e)
    like value  = a × (W0 + (1 - W0) × watch)                   watch: the share of the video the
                                                                 liker watched just before
    depth       = Σ a × weight(action)    comment 0.5, share 0.75, follow 0.75, and 0.5 per
                                           liker who returns (likes another of the creator's
                                           videos)
    engagement  = Σ like values + depth                          (in like-equivalents)
    rate        = (engagement + m × r0) / (views + m)            engagement per view, shrunk
    rank_score  = engagement × rate / r0

r0 is the log's engagement per view and m its median views per video: the rate of a video with
a handful of views is pulled to the typical rate (a Bayesian average), so two lucky likes do not
top the list, while a video whose real viewers engage more than usual per view moves up. The
score keeps volume (reach earned by good videos is evidence of quality) and scales it by that
shrunk efficiency. Bought engagement adds nothing, and the views a seller's accounts made before
liking still count in the denominator, so buying lowers a video's rate.

A like after a full watch is worth 1, one with no watching W0. Depth weighs less than a watched
like because the market sells comment and share bundles with its likes, so a missed bought
comment would otherwise count more than a real watched like; these weights were picked among a
few on one simulated seed and are reported on another (bench/ranking.md). A log without views
(an engagement-only export) has no rate; the score is then the engagement itself.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from likelens.errors import InputError

W0 = 0.2  # what a like with no watching before it is worth, against one after a full watch
DEPTH = {"comment": 0.5, "share": 0.75, "follow": 0.75}
RETURN = 0.5


def read_scan(scan_dir: Path) -> tuple[pa.Table, pa.Table]:
    """engagements.parquet and videos.parquet of a scan directory, with a clear error."""
    out = []
    for name in ("engagements.parquet", "videos.parquet"):
        path = scan_dir / name
        if not path.exists():
            raise InputError("no such file (is this a scan directory?)", file=str(path))
        out.append(pq.read_table(path))
    eng, videos = out
    missing = {"video_id", "creator_id", "action", "score", "flagged", "user_id"} - set(
        eng.schema.names)
    if missing:
        raise InputError(f"engagements.parquet lacks {', '.join(sorted(missing))}",
                         file=str(scan_dir / "engagements.parquet"))
    return eng, videos


def rank(engagements: pa.Table, videos: pa.Table) -> pa.Table:
    """One row per video: video_id, creator_id, rank_score, rank, and the score's parts."""
    con = duckdb.connect()
    try:
        if "watch_frac" not in engagements.schema.names:  # a scan from before watch_frac
            engagements = engagements.append_column(
                "watch_frac", pa.nulls(engagements.num_rows, pa.float64()))
        con.register("eng", engagements)
        con.register("vids", videos)
        depth = " + ".join(f"coalesce(sum(a) FILTER (WHERE action = '{k}'), 0) * {w}"
                           for k, w in DEPTH.items())
        return con.sql(f"""
            WITH e AS (
                SELECT *, CASE WHEN flagged THEN 0.0 ELSE 1.0 - score END AS a
                FROM eng WHERE video_id IS NOT NULL
            ), liker AS (   -- accounts that liked two or more videos of a creator: returns
                SELECT user_id, creator_id FROM e WHERE action = 'like' AND a > 0
                GROUP BY ALL HAVING count(DISTINCT video_id) >= 2
            ), v AS (
                SELECT e.video_id, any_value(e.creator_id) AS creator_id,
                       count(*) FILTER (WHERE action = 'like') AS likes,
                       coalesce(sum(a) FILTER (WHERE action = 'like'), 0) AS authentic_likes,
                       coalesce(sum(a * ({W0} + {1 - W0} * least(coalesce(watch_frac,
                           vids.completion, 0.5), 1.0))) FILTER (WHERE action = 'like'), 0)
                           AS watched_likes,
                       {depth} AS interaction,
                       coalesce(sum(a) FILTER (WHERE action = 'like'
                           AND liker.user_id IS NOT NULL), 0) * {RETURN} AS returns
                FROM e LEFT JOIN vids USING (video_id)
                LEFT JOIN liker ON liker.user_id = e.user_id
                                AND liker.creator_id = e.creator_id
                GROUP BY e.video_id
            ), j AS (
                SELECT coalesce(v.video_id, vids.video_id) AS video_id,
                       coalesce(v.creator_id, vids.creator_id) AS creator_id,
                       coalesce(vids.views, 0) AS views, coalesce(v.likes, 0) AS likes,
                       coalesce(v.authentic_likes, 0) AS authentic_likes,
                       coalesce(v.watched_likes, 0) AS watched_likes,
                       coalesce(v.interaction, 0) AS interaction,
                       coalesce(v.returns, 0) AS returns,
                       coalesce(v.watched_likes, 0) + coalesce(v.interaction, 0)
                           + coalesce(v.returns, 0) AS engagement
                FROM v FULL JOIN vids ON v.video_id = vids.video_id
            ), prior AS (
                SELECT sum(engagement) FILTER (WHERE views > 0)
                           / nullif(sum(views) FILTER (WHERE views > 0), 0) AS r0,
                       greatest(median(views) FILTER (WHERE views > 0), 1) AS m,
                       count(*) FILTER (WHERE views > 0) > 0 AS has_views
                FROM j
            )
            , s AS (
                SELECT j.*, prior.*,
                       CASE WHEN has_views AND r0 > 0
                            THEN (engagement + m * r0) / (views + m) END AS rate
                FROM j, prior
            )
            SELECT video_id, creator_id,
                   round(CASE WHEN rate IS NOT NULL THEN engagement * rate / r0
                         ELSE engagement END, 6) AS rank_score,
                   CAST(row_number() OVER (ORDER BY CASE WHEN rate IS NOT NULL
                         THEN engagement * rate / r0 ELSE engagement END DESC,
                         engagement DESC, video_id) AS BIGINT) AS rank,
                   views, likes, round(authentic_likes, 6) AS authentic_likes,
                   round(watched_likes, 6) AS watched_likes,
                   round(interaction, 6) AS interaction, round(returns, 6) AS returns,
                   round(engagement, 6) AS engagement,
                   round(1000 * rate, 6) AS rate_per_1000_views,
                   round(1000 * coalesce(r0, 0), 6) AS prior_rate_per_1000_views,
                   m AS prior_views
            FROM s
            ORDER BY rank
        """).to_arrow_table()
    finally:
        con.close()


def write(table: pa.Table, out: Path) -> None:
    """Parquet, or CSV when the name ends in .csv."""
    from likelens.review import write_table

    write_table(table, out)
