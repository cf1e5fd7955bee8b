"""SQL coercion: one DuckDB query per file turns raw columns into the contract and gives every
row the list of reasons it breaks it (``schema.quarantine_reason``)."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from likelens.schema import ACTIONS, COLUMN_BY_NAME, ID_COLUMNS
from likelens.schema import quarantine_reason as Q


def _sql(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def int_like_ids(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> set[str]:
    """Text id columns whose every value is a plain integer: those become int64 ids."""
    text_ids = [c for c in ID_COLUMNS if c in schema.names and not _is_int(schema.field(c).type)]
    if not text_ids:
        return set()
    checks = ", ".join(
        f"coalesce(bool_and(regexp_full_match(trim(CAST(\"{c}\" AS VARCHAR)), "
        f"'-?(0|[1-9][0-9]{{0,17}})')) FILTER (WHERE NULLIF(trim(CAST(\"{c}\" AS VARCHAR)), '') "
        f"IS NOT NULL), true)" for c in text_ids)
    row = con.execute(f"SELECT {checks} FROM raw").fetchall()[0]
    return {c for c, ok in zip(text_ids, row, strict=True) if ok}


def coerce_sql(schema: pa.Schema, int_ids: set[str]) -> str:
    """The DuckDB SELECT that coerces one raw file to the canonical columns plus ``_reason``."""
    present = {n for n in schema.names}
    exprs: dict[str, str] = {}
    reasons: list[str] = []

    def text(c: str) -> str:
        return f"NULLIF(trim(CAST(\"{c}\" AS VARCHAR)), '')"

    # time
    t = schema.field("ts").type
    if _is_int(t):
        exprs["ts"] = "CAST(ts AS BIGINT)"
    elif pa.types.is_timestamp(t) or pa.types.is_date(t):
        exprs["ts"] = "epoch_ms(CAST(ts AS TIMESTAMP))"
    elif pa.types.is_floating(t):
        exprs["ts"] = "CASE WHEN ts = floor(ts) THEN CAST(ts AS BIGINT) END"
    else:
        s = text("ts")
        exprs["ts"] = (
            f"CASE WHEN regexp_full_match({s}, '-?[0-9]+') THEN TRY_CAST({s} AS BIGINT) "
            f"WHEN regexp_matches({s}, '(Z|z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$') "
            f"AND regexp_matches({s}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]') "
            f"THEN epoch_ms(TRY_CAST({s} AS TIMESTAMPTZ)) END"
        )
    reasons.append(f"CASE WHEN ts IS NULL THEN {_sql(Q('missing_value', 'ts'))} "
                   f"WHEN ({exprs['ts']}) IS NULL THEN {_sql(Q('bad_time'))} END")

    # action
    acts = ", ".join(f"'{a}'" for a in ACTIONS)
    exprs["action"] = f"lower({text('action')})"
    reasons.append(f"CASE WHEN {text('action')} IS NULL THEN "
                   f"{_sql(Q('missing_value', 'action'))} WHEN lower({text('action')}) NOT IN "
                   f"({acts}) THEN {_sql(Q('unknown_action'))} END")

    # ids: keep integers as BIGINT, everything else as trimmed text
    for c in ID_COLUMNS:
        if c not in present:
            continue
        if _is_int(schema.field(c).type):
            exprs[c] = f"CAST(\"{c}\" AS BIGINT)"
        elif c in int_ids:
            exprs[c] = f"CAST({text(c)} AS BIGINT)"
        else:
            exprs[c] = text(c)
    reasons.append(f"CASE WHEN {exprs['user_id']} IS NULL THEN "
                   f"{_sql(Q('missing_value', 'user_id'))} END")
    if "video_id" in present:
        reasons.append(f"CASE WHEN {exprs['video_id']} IS NULL AND "
                       f"coalesce(lower({text('action')}), '') <> 'follow' "
                       f"THEN {_sql(Q('missing_value', 'video_id'))} END")
    creator = exprs.get("creator_id", "NULL")
    reasons.append(f"CASE WHEN lower({text('action')}) = 'follow' AND {creator} IS NULL "
                   f"THEN {_sql(Q('missing_value', 'creator_id'))} END")

    # counts
    for c, low in (("watch_ms", 0), ("video_ms", 1)):
        if c not in present:
            continue
        ft = schema.field(c).type
        if _is_int(ft):
            val = f"CAST(\"{c}\" AS BIGINT)"
        elif pa.types.is_floating(ft):
            val = f"CASE WHEN \"{c}\" = floor(\"{c}\") THEN CAST(\"{c}\" AS BIGINT) END"
        else:
            val = (f"CASE WHEN regexp_full_match({text(c)}, '-?[0-9]+(\\.0*)?') "
                   f"THEN TRY_CAST(TRY_CAST({text(c)} AS DOUBLE) AS BIGINT) END")
        exprs[c] = val
        reasons.append(f"CASE WHEN \"{c}\" IS NOT NULL AND {text(c)} IS NOT NULL AND "
                       f"coalesce({val} < {low}, true) THEN {_sql(Q('bad_number', c))} END")

    for c in ("region", "text"):
        if c in present:
            exprs[c] = text(c)
    if "ip" in present:
        exprs["ip_hash"], exprs["ip_net"], exprs["ip_sub"] = "_ip_hash", "_ip_net", "_ip_sub"
        reasons.append(f"CASE WHEN _ip_ok = false THEN {_sql(Q('bad_ip'))} END")
    if "device_id" in present:
        exprs["device_hash"] = "_device_hash"
    reasons.append(f"CASE WHEN _bad_utf8 THEN {_sql(Q('invalid_utf8'))} END")

    select = [f"{e} AS {c}" for c, e in exprs.items()]
    reason = "NULLIF(concat_ws('; ', " + ", ".join(reasons) + "), '')"
    keep = [n for n in schema.names if n in COLUMN_BY_NAME or n in ("_ip_hash", "_device_hash")]
    raw_cols = ", ".join(f'"{n}" AS "r_{n}"' for n in keep)
    inner = "SELECT " + ", ".join(select) + f", {reason} AS _reason, _row, {raw_cols} FROM raw"
    contract = [n for n in schema.names if n in COLUMN_BY_NAME]
    return (f"SELECT {', '.join(exprs)}, _reason, _row, CASE WHEN _reason IS NOT NULL THEN "
            f"{_raw_json_sql(contract)} END AS _raw FROM ({inner})")


def _raw_json_sql(names: Sequence[str]) -> str:
    """JSON of a row's raw values, with IP and device replaced by their keyed hashes."""
    parts = []
    for n in names:
        if n == "ip":
            parts.append("'ip', r__ip_hash")
        elif n == "device_id":
            parts.append("'device_id', r__device_hash")
        else:
            parts.append(f"'{n}', \"r_{n}\"")
    return "to_json(json_object(" + ", ".join(parts) + "))"
