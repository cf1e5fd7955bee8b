"""Read an engagement log into one canonical Arrow table, and every bad row into quarantine.

Reading is two steps. First each file is read as it is (Parquet with its own types; CSV as bytes,
so that invalid UTF-8 can be caught per row; JSON Lines with Arrow, or line by line when Arrow
refuses the file). Then one DuckDB query per file coerces the values to the contract and gives
every row the list of reasons it breaks the contract. Rows with no reason are events; the others
go to quarantine with their source file, row number and raw values, never dropped in silence.

IP addresses and device ids are pseudonymised before anything is written (see ``privacy``): the
canonical table and the quarantine hold keyed hashes only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from likelens.engine import connect
from likelens.errors import InputError, SchemaError
from likelens.privacy import keyed_hash, pseudonymise_ip, pseudonymise_text
from likelens.schema import ACTIONS, COLUMN_BY_NAME, ID_COLUMNS, REQUIRED
from likelens.schema import quarantine_reason as Q

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl"}

CANONICAL = ("event_id", "ts", "user_id", "action", "video_id", "creator_id", "watch_ms",
             "video_ms", "ip_hash", "ip_net", "ip_sub", "device_hash", "region", "text")

QUARANTINE_SCHEMA = pa.schema([("source", pa.string()), ("row", pa.int64()),
                               ("raw", pa.string()), ("reason", pa.string())])

_IP_LIKE = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b")


@dataclass
class IngestResult:
    """The canonical events, the quarantined rows and what was read.

    ``scan_paths`` hands ``events`` to the scan and leaves an empty table of the same schema
    here (the log is freed once the features are built); ``Features.has_views`` says whether
    the log had views.
    """

    events: pa.Table
    quarantine: pa.Table
    files: list[str]
    rows_read: int



def _sql(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"

def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories into the sorted list of input files."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
            if not found:
                raise InputError("directory holds no .parquet, .csv or .jsonl files", file=str(p))
            files.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in SUFFIXES:
                raise InputError(f"unknown file type {p.suffix!r}; use .parquet, .csv or .jsonl",
                                 file=str(p))
            files.append(p)
        else:
            raise InputError("no such file or directory", file=str(p))
    return files


@dataclass
class _RawFile:
    """One file as read, before coercion: its columns, and rows that never parsed."""

    table: pa.Table
    malformed: list[tuple[int, str, str]]  # (row, raw, reason)
    bad_utf8_rows: pa.Array | None = None  # bool per row


def _redact(text: str, key: bytes) -> str:
    """Replace anything that looks like an IP address in free text by its keyed hash."""
    return _IP_LIKE.sub(lambda m: "ip:" + keyed_hash(key, b"raw:" + m.group(0).encode()), text)


def _read_parquet(path: Path) -> _RawFile:
    try:
        # Text columns decode straight from Parquet's dictionary pages: pseudonymising and
        # validating then touch each distinct value once, never each row.
        names = set(pq.read_schema(path).names)
        table = pq.read_table(path, read_dictionary=[c for c in ("ip", "device_id", "region",
                                                                 "action") if c in names])
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"unreadable Parquet file ({exc})", file=str(path)) from None
    return _RawFile(table, [])


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise InputError("file is empty (no header row)", file=str(path))
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    import csv

    return [c.strip() for c in next(csv.reader([text]))]


def _read_csv(path: Path) -> _RawFile:
    names = _csv_header(path)
    malformed: list[tuple[int, str, str]] = []

    def on_bad(row: pacsv.InvalidRow) -> str:
        # row.number is the 1-based line number, header included, when read single-threaded.
        number = (row.number - 2) if row.number is not None else -1
        malformed.append((number, row.text, Q("malformed_row")))
        return "skip"

    def read(threads: bool) -> pa.Table:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=threads),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_bad),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.binary() for n in names}),
        )

    try:
        table = read(True)
        if malformed:  # numbers are only known single-threaded: read again to get them
            malformed.clear()
            table = read(False)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"unreadable CSV file ({exc})", file=str(path)) from None
    # Rows the handler skipped are missing from the table: recover each good row's number.
    skipped = sorted(r for r, _, _ in malformed)
    row_numbers = _row_numbers(table.num_rows, skipped)
    columns, bad_utf8 = [], None
    for name in names:
        col = table[name]
        try:
            columns.append(pc.cast(col, pa.string()))
        except pa.ArrowInvalid:
            decoded = [None if b is None else b.decode("utf-8", errors="backslashreplace")
                       for b in col.to_pylist()]
            flags = pa.array([b is not None and _not_utf8(b) for b in col.to_pylist()])
            bad_utf8 = flags if bad_utf8 is None else pc.or_(bad_utf8, flags)
            columns.append(pa.array(decoded, pa.string()))
    out = pa.table(columns, names=names).append_column("_row", pa.array(row_numbers, pa.int64()))
    return _RawFile(out, malformed, bad_utf8)


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _row_numbers(n_good: int, skipped: Sequence[int]) -> list[int]:
    """0-based file row numbers of the ``n_good`` rows that remain after ``skipped`` rows."""
    out, s, row = [], 0, 0
    while len(out) < n_good:
        if s < len(skipped) and skipped[s] == row:
            s += 1
        else:
            out.append(row)
        row += 1
    return out


def _read_jsonl(path: Path) -> _RawFile:
    if path.stat().st_size == 0:
        raise InputError("file is empty", file=str(path))
    try:
        return _RawFile(pajson.read_json(path), [])
    except (pa.ArrowException, OSError):
        pass  # mixed types or broken lines: read line by line, quarantining what fails
    rows: list[dict[str, object]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    bad_utf8: list[bool] = []
    with path.open("rb") as fh:
        for number, line in enumerate(fh):
            text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                malformed.append((number, text, Q("malformed_row")))
                continue
            if not isinstance(obj, dict):
                malformed.append((number, text, Q("malformed_row")))
                continue
            rows.append({k: _as_text(v) for k, v in obj.items()})
            numbers.append(number)
            bad_utf8.append(_not_utf8(line))
    names = sorted({k for r in rows for k in r})
    table = pa.table({n: pa.array([r.get(n) for r in rows], pa.string()) for n in names})
    table = table.append_column("_row", pa.array(numbers, pa.int64()))
    return _RawFile(table, malformed, pa.array(bad_utf8) if any(bad_utf8) else None)


def _as_text(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(v, ensure_ascii=False)


READERS = {"parquet": _read_parquet, "csv": _read_csv, "jsonl": _read_jsonl}


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def _int_like_ids(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> set[str]:
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


def _coerce_sql(schema: pa.Schema, int_ids: set[str]) -> str:
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


def _typed_fast_path(table: pa.Table) -> pa.Table | None:
    """The canonical table straight from well-typed columns when every row is valid.

    Platform exports are typed Parquet with no bad rows; checking that takes a few vectorised
    comparisons, where the general path (one DuckDB query that gives each row its reasons) costs
    a full copy. Any doubt (a text id, a bad value) returns None and the general path runs, so
    both paths give the same table.
    """
    names = table.column_names
    ints = [c for c in ("ts", "event_id", "watch_ms", "video_ms") if c in names]
    if not all(pa.types.is_integer(table.schema.field(c).type) for c in ints):
        return None
    if not all(pa.types.is_integer(table.schema.field(c).type) for c in ID_COLUMNS
               if c in names and c != "event_id"):
        return None
    action = table["action"]
    if pa.types.is_dictionary(action.type):
        action = action.unify_dictionaries()
        lowered = [pa.DictionaryArray.from_arrays(
            ch.indices, pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(ch.dictionary,
                                                                      pa.string()))))
            for ch in action.chunks]
        action = pa.chunked_array(lowered) if lowered else pc.cast(action, pa.string())
    elif pa.types.is_string(action.type) or pa.types.is_large_string(action.type):
        action = pc.utf8_lower(pc.utf8_trim_whitespace(action))
    else:
        return None

    def per_row(fn: Callable[[pa.Array], pa.Array]) -> pa.ChunkedArray:
        """``fn`` on the action values: on a dictionary's values only, then spread by index."""
        if pa.types.is_dictionary(action.type):
            return pa.chunked_array([pc.take(fn(ch.dictionary), ch.indices)
                                     for ch in action.chunks], pa.bool_())
        return fn(action)

    ok = pc.and_kleene(pc.is_valid(table["ts"]), pc.is_valid(table["user_id"]))
    ok = pc.and_kleene(ok, per_row(lambda v: pc.is_in(v, value_set=pa.array(ACTIONS))))
    follow = per_row(lambda v: pc.equal(v, "follow"))
    ok = pc.and_kleene(ok, pc.or_kleene(pc.is_valid(table["video_id"]), follow))
    creator = table["creator_id"] if "creator_id" in names else None
    has_creator = pc.is_valid(creator) if creator is not None else pc.invert(follow)
    ok = pc.and_kleene(ok, pc.or_kleene(pc.invert(follow), has_creator))
    for c, low in (("watch_ms", 0), ("video_ms", 1)):
        if c in names:
            fits = pc.or_kleene(pc.is_null(table[c]), pc.greater_equal(table[c], low))
            ok = pc.and_kleene(ok, fits)
    if "_ip_ok" in names:
        ok = pc.and_kleene(ok, pc.or_kleene(pc.is_null(table["_ip_ok"]), table["_ip_ok"]))
    if not pc.all(pc.fill_null(ok, False)).as_py():
        return None
    cols: dict[str, pa.ChunkedArray | pa.Array] = {
        "ts": pc.cast(table["ts"], pa.int64()), "action": action,
        "user_id": pc.cast(table["user_id"], pa.int64())}
    for c in ("event_id", "video_id", "creator_id", "watch_ms", "video_ms"):
        if c in names:
            cols[c] = pc.cast(table[c], pa.int64())
    for c in ("region", "text"):
        if c in names:
            cols[c] = table[c]
    if "_ip_hash" in names:
        cols["ip_hash"], cols["ip_net"] = table["_ip_hash"], table["_ip_net"]
        cols["ip_sub"] = table["_ip_sub"]
    if "_device_hash" in names:
        cols["device_hash"] = table["_device_hash"]
    n = table.num_rows
    cols["_reason"] = pa.nulls(n, pa.string())
    cols["_row"] = table["_row"]
    cols["_raw"] = pa.nulls(n, pa.string())
    return pa.table(cols)


def _coerce(con: duckdb.DuckDBPyConnection, path: Path, raw: _RawFile, key: bytes
            ) -> tuple[pa.Table, pa.Table]:
    """Coerce one raw file; return (rows with their reasons, quarantine rows for malformed)."""
    table = raw.table
    table = table.rename_columns([n if n == "_row" else n.strip().lower()
                                  for n in table.column_names])
    contract = [n for n in table.column_names if n in COLUMN_BY_NAME]
    for col in REQUIRED:
        if col not in table.column_names:
            raise SchemaError(f"required column {col!r} is missing", file=str(path), column=col)
    table = table.select(contract + (["_row"] if "_row" in table.column_names else []))
    if "_row" not in table.column_names:
        table = table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    # Addresses and devices are hashed side by side: much of each is Arrow work that
    # releases the GIL.
    with ThreadPoolExecutor(1) as pool:
        device = (pool.submit(pseudonymise_text, table["device_id"], key, b"dev:")
                  if "device_id" in contract else None)
        if "ip" in contract:
            h, n, sub, ok = pseudonymise_ip(table["ip"], key)
            table = table.append_column("_ip_hash", h).append_column("_ip_net", n)
            table = table.append_column("_ip_sub", sub)
            table = table.append_column("_ip_ok", ok)
        if device is not None:
            table = table.append_column("_device_hash", device.result())
    coerced = _typed_fast_path(table) if raw.bad_utf8_rows is None else None
    if coerced is None:
        bad = raw.bad_utf8_rows if raw.bad_utf8_rows is not None else pa.nulls(
            table.num_rows, pa.bool_())
        table = table.append_column("_bad_utf8", bad)
        con.register("raw", table)
        try:
            sql = _coerce_sql(table.schema, _int_like_ids(con, table.schema))
            coerced = con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise InputError(f"cannot coerce values ({exc})", file=str(path)) from None
        finally:
            con.unregister("raw")
    malformed = pa.table({
        "source": pa.array([str(path)] * len(raw.malformed), pa.string()),
        "row": pa.array([r for r, _, _ in raw.malformed], pa.int64()),
        "raw": pa.array([_redact(t, key) for _, t, _ in raw.malformed], pa.string()),
        "reason": pa.array([why for _, _, why in raw.malformed], pa.string()),
    }, schema=QUARANTINE_SCHEMA)
    return coerced, malformed


def _unify_ids(tables: list[pa.Table]) -> list[pa.Table]:
    """Make every id column one type across files: int64 where all files agree, else text."""
    out = list(tables)
    for c in ID_COLUMNS:
        types = {t.schema.field(c).type for t in out if c in t.column_names}
        if len(types) <= 1:
            continue
        for i, t in enumerate(out):
            if c in t.column_names:
                out[i] = t.set_column(t.column_names.index(c), c, pc.cast(t[c], pa.string()))
    return out


def _canonical(table: pa.Table) -> pa.Table:
    """The canonical columns in their fixed order; absent optional ones as typed nulls."""
    types = {"watch_ms": pa.int64(), "video_ms": pa.int64(), "video_id": pa.int64(),
             "creator_id": pa.int64()}
    cols = []
    for c in CANONICAL:
        if c in table.column_names:
            cols.append(table[c])
        else:
            cols.append(pa.nulls(table.num_rows, types.get(c, pa.string())))
    return pa.table(cols, names=list(CANONICAL))


def _split(table: pa.Table, path: Path, offset: int) -> tuple[pa.Table, pa.Table]:
    """(canonical good rows with their event ids, quarantine rows) of one coerced file."""
    bad_mask = pc.is_valid(table["_reason"])
    if pc.any(bad_mask).as_py():
        bad = table.filter(bad_mask)
        good = table.filter(pc.invert(bad_mask))
    else:  # the common case: nothing to copy
        bad, good = table.slice(0, 0), table
    if "event_id" in good.column_names:
        eid = good["event_id"]
        if eid.null_count:  # the usual export has every id: nothing to fill
            filled = pc.coalesce(eid, pc.cast(pc.add(good["_row"], offset), eid.type))
            good = good.set_column(good.column_names.index("event_id"), "event_id", filled)
    else:
        good = good.append_column("event_id", pc.add(good["_row"], offset))
    quarantine = pa.table({
        "source": pa.array([str(path)] * bad.num_rows, pa.string()), "row": bad["_row"],
        "raw": bad["_raw"], "reason": bad["_reason"]}, schema=QUARANTINE_SCHEMA)
    return _canonical(good).append_column("_file_row", good["_row"]), quarantine


def _duplicates(con: duckdb.DuckDBPyConnection, events: pa.Table) -> np.ndarray:
    """Positions of rows whose event_id an earlier row already used (usually none).

    Integer ids that strictly increase (most exports) are unique by a single comparison pass;
    otherwise a hash aggregate finds the repeated ids and only their rows are then ordered.
    """
    ids = events["event_id"]
    if pa.types.is_integer(ids.type) and ids.null_count == 0:
        arr = ids.to_numpy()
        if len(arr) < 2 or bool((arr[1:] > arr[:-1]).all()):
            return np.empty(0, dtype=np.int64)
    con.register("evs", events.select(["event_id"]))
    repeated = con.sql("SELECT event_id FROM evs GROUP BY 1 HAVING count(*) > 1"
                       ).to_arrow_table()["event_id"]
    con.unregister("evs")
    if len(repeated) == 0:
        return np.empty(0, dtype=np.int64)
    hit = np.flatnonzero(pc.is_in(events["event_id"], value_set=repeated.combine_chunks())
                         .to_numpy(zero_copy_only=False))
    ids = events["event_id"].take(pa.array(hit)).to_pylist()
    seen: set[object] = set()
    dup = []
    for pos, i in zip(hit.tolist(), ids, strict=True):
        if i in seen:
            dup.append(pos)
        seen.add(i)
    return np.array(dup, dtype=np.int64)


def ingest(paths: Iterable[str | Path], *, key: bytes, threads: int | None = None
           ) -> IngestResult:
    """Read every input file into one canonical table and one quarantine table.

    Files are coerced one at a time and kept in input order, so no global sort is needed;
    event ids default to the row number over the whole input.
    """
    files = discover(paths)
    con = connect(threads)
    goods: list[pa.Table] = []
    sources: list[str] = []
    quarantined: list[pa.Table] = []
    offset = 0
    for path in files:
        raw = READERS[SUFFIXES[path.suffix.lower()]](path)
        table, malformed = _coerce(con, path, raw, key)
        n_rows = max([raw.table.num_rows + len(raw.malformed)] +
                     [r + 1 for r, _, _ in raw.malformed])
        del raw
        good, bad = _split(table, path, offset)
        goods.append(good)
        sources.append(str(path))
        quarantined += [malformed, bad]
        offset += n_rows
    goods = _unify_ids(goods)
    events = pa.concat_tables(goods, promote_options="permissive")
    dup = _duplicates(con, events)
    con.close()
    if len(dup):
        # Map each duplicate's global position back to its file and row for the quarantine.
        sizes = np.cumsum([0] + [g.num_rows for g in goods])
        rows = events.take(pa.array(dup))
        file_of = np.searchsorted(sizes, dup, side="right") - 1
        quarantined.append(pa.table({
            "source": pa.array([sources[f] for f in file_of], pa.string()),
            "row": pa.array(_file_rows(goods, dup, sizes, file_of), pa.int64()),
            "raw": pa.array([json.dumps({k: r[k] for k in ("event_id", "ts", "user_id",
                                                            "action", "video_id")},
                                        default=str) for r in rows.to_pylist()]),
            "reason": pa.array([Q("duplicate_event_id")] * len(dup))}, schema=QUARANTINE_SCHEMA))
        keep = np.ones(events.num_rows, dtype=bool)
        keep[dup] = False
        events = events.filter(pa.array(keep))
    events = events.drop_columns(["_file_row"])
    quarantine = pa.concat_tables(quarantined).sort_by([("source", "ascending"),
                                                        ("row", "ascending")])
    return IngestResult(events, quarantine, [str(f) for f in files], offset)


def shared_dictionaries(events: pa.Table) -> pa.Table:
    """One dictionary per text column across every file and chunk.

    Each file's hashed columns share one dictionary among its chunks, but files differ; left
    so, every concatenation (``combine_chunks`` of the engagement table, say) unifies hundreds
    of chunk dictionaries of a million values each (30 s at 100M events over four files).
    Unifying the distinct dictionaries once costs their total size plus one take per row, so
    the features stage calls this on the engagements only, not on the whole log.
    """
    columns = []
    for name in events.column_names:
        col = events[name]
        if not pa.types.is_dictionary(col.type) or col.num_chunks < 2:
            columns.append(col)
            continue
        distinct: dict[tuple[int, int, int], pa.Array] = {}
        for ch in col.chunks:  # chunks built on one dictionary share its buffers
            d = ch.dictionary
            distinct.setdefault((d.buffers()[-1].address if d.buffers()[-1] else 0,
                                 d.offset, len(d)), d)
        if len(distinct) == 1:
            columns.append(col)
            continue
        values = pc.unique(pa.concat_arrays(list(distinct.values())))
        remap = {k: pc.index_in(d, value_set=values).cast(col.type.index_type)
                 for k, d in distinct.items()}
        chunks = []
        for ch in col.chunks:
            d = ch.dictionary
            k = (d.buffers()[-1].address if d.buffers()[-1] else 0, d.offset, len(d))
            chunks.append(pa.DictionaryArray.from_arrays(remap[k].take(ch.indices), values))
        columns.append(pa.chunked_array(chunks, col.type))
    return pa.table(columns, names=events.column_names)


def _file_rows(goods: list[pa.Table], dup: np.ndarray, sizes: np.ndarray,
               file_of: np.ndarray) -> list[int]:
    """File row numbers of duplicate rows, read from each file's ``_file_row`` column."""
    out = []
    for pos, f in zip(dup.tolist(), file_of.tolist(), strict=True):
        out.append(int(goods[f]["_file_row"][pos - int(sizes[f])].as_py()))
    return out
