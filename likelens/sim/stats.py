"""`likelens simulate --stats`: the figures a scenario is calibrated against."""

from __future__ import annotations

import duckdb
from rich.table import Table

from likelens.sim import SimResult


def stats(result: SimResult) -> dict[str, float]:
    """Like rate per view, completion median, bought share and the look-alike counts."""
    con = duckdb.connect()
    con.register("e", result.events)
    con.register("t", result.truth)
    row = con.execute("""
        SELECT
          count(*) AS events,
          count(*) FILTER (WHERE action = 'view') AS views,
          count(*) FILTER (WHERE action = 'like') AS likes,
          count(*) FILTER (WHERE action = 'like' AND kind = 'organic')::DOUBLE
            / nullif(count(*) FILTER (WHERE action = 'view' AND kind = 'organic'), 0)
            AS organic_like_rate,
          median(least(watch_ms::DOUBLE / video_ms, 1.0)) FILTER (WHERE action = 'view'
            AND kind = 'organic') AS completion_median,
          count(*) FILTER (WHERE action = 'like' AND fake)::DOUBLE
            / nullif(count(*) FILTER (WHERE action = 'like'), 0) AS bought_like_share,
          count(DISTINCT order_id) AS orders,
          count(DISTINCT user_id) AS accounts
        FROM e JOIN t USING (event_id)
    """).fetchall()[0]
    names = ["events", "views", "likes", "organic_like_rate", "completion_median",
             "bought_like_share", "orders", "accounts"]
    out = {k: float(v or 0) for k, v in zip(names, row, strict=True)}
    by_kind = con.execute("""
        SELECT kind, count(*) FROM e JOIN t USING (event_id) WHERE action = 'like'
        GROUP BY 1 ORDER BY 1
    """).fetchall()
    for kind, n in by_kind:
        out[f"likes_{kind}"] = float(n)
    if "organic_cause" in result.truth.column_names:
        by_cause = con.execute("""
            SELECT organic_cause, count(*) FROM e JOIN t USING (event_id)
            WHERE action = 'like' AND NOT fake GROUP BY 1 ORDER BY 1
        """).fetchall()
        for cause, n in by_cause:
            out[f"organic_likes_{cause}"] = float(n)
    con.close()
    return out


def stats_table(result: SimResult) -> Table:
    t = Table(title="simulated day")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in stats(result).items():
        t.add_row(k, f"{v:,.4f}" if v < 10 else f"{v:,.0f}")
    return t
