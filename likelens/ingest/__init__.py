"""Read an engagement log into one canonical Arrow table, and every bad row into quarantine.

Reading is two steps. First each file is read as it is (Parquet with its own types; CSV as bytes,
so that invalid UTF-8 can be caught per row; JSON Lines with Arrow, or line by line when Arrow
refuses the file). Then one DuckDB query per file coerces the values to the contract and gives
every row the list of reasons it breaks the contract. Rows with no reason are events; the others
go to quarantine with their source file, row number and raw values, never dropped in silence.

IP addresses and device ids are pseudonymised before anything is written (see ``privacy``): the
canonical table and the quarantine hold keyed hashes only.

The package splits the four jobs: ``readers`` (files as they are), ``coerce`` (the SQL that
checks and converts each file), ``fastpath`` (typed Parquet without SQL) and ``dictionaries``
(one dictionary per column across files).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.engine import connect
from likelens.errors import InputError, SchemaError
from likelens.ingest.coerce import coerce_sql, int_like_ids
from likelens.ingest.dictionaries import shared_dictionaries, unify_ids, unify_text
from likelens.ingest.fastpath import action_test, lowered_action, typed_fast_path
from likelens.ingest.readers import (
    READERS,
    SUFFIXES,
    RawFile,
    discover,
    read_parquet_row_groups,
    redact,
    row_group_runs,
)
from likelens.privacy import DEVICE_LABEL, pseudonymise_ip, pseudonymise_text
from likelens.schema import COLUMN_BY_NAME, ID_COLUMNS, REQUIRED
from likelens.schema import quarantine_reason as Q

__all__ = [
    "CANONICAL",
    "QUARANTINE_SCHEMA",
    "SUFFIXES",
    "IngestResult",
    "discover",
    "ingest",
    "ingest_raw",
    "shared_dictionaries",
]

CANONICAL = ("event_id", "ts", "user_id", "action", "video_id", "creator_id", "watch_ms",
             "video_ms", "ip_hash", "ip_net", "ip_sub", "device_hash", "region", "text")


QUARANTINE_SCHEMA = pa.schema([("source", pa.string()), ("row", pa.int64()),
                               ("raw", pa.string()), ("reason", pa.string())])


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


def _coerce(con: duckdb.DuckDBPyConnection, path: Path, raw: RawFile, key: bytes, *,
            key_views: bool = True) -> tuple[pa.Table, pa.Table]:
    """Coerce one raw file; return (rows with their reasons, quarantine rows for malformed).

    Without ``key_views`` a view's address may be left unhashed (null): nothing after ingest
    reads it, and a plain address column's views are most of its distinct addresses
    (``pseudonymise_ip``'s ``keyed``). Every address is still checked, and a quarantined row
    still shows its address hashed: if a view that carries an address is quarantined, the
    file is coerced again with every address hashed."""
    table = raw.table
    table = table.rename_columns([n if n == "_row" else n.strip().lower()
                                  for n in table.column_names])
    contract = [n for n in table.column_names if n in COLUMN_BY_NAME]
    for col in contract:
        if contract.count(col) > 1:  # ("ts" and "TS": which one is the time?)
            raise SchemaError(f"column {col!r} is given more than once (names are read "
                              "without case or surrounding spaces)", file=str(path), column=col)
    for col in REQUIRED:
        if col not in table.column_names:
            raise SchemaError(f"required column {col!r} is missing", file=str(path), column=col)
    table = table.select(contract + (["_row"] if "_row" in table.column_names else []))
    if "_row" not in table.column_names:
        table = table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    # Addresses and devices are hashed side by side: much of each is Arrow work that
    # releases the GIL. A small batch (the service's) is not worth a thread.
    with ThreadPoolExecutor(1) if table.num_rows >= PARALLEL_ROWS else _Inline() as pool:
        device = (pool.submit(pseudonymise_text, table["device_id"], key, DEVICE_LABEL)
                  if "device_id" in contract else None)
        keyed = None if key_views or "ip" not in contract else _not_views(table["action"])
        if "ip" in contract:
            h, n, sub, ok = pseudonymise_ip(table["ip"], key, keyed)
            table = table.append_column("_ip_hash", h).append_column("_ip_net", n)
            table = table.append_column("_ip_sub", sub)
            table = table.append_column("_ip_ok", ok)
        if device is not None:
            table = table.append_column("_device_hash", device.result())
    coerced = typed_fast_path(table) if raw.bad_utf8_rows is None else None
    if coerced is None:
        bad = raw.bad_utf8_rows if raw.bad_utf8_rows is not None else pa.nulls(
            table.num_rows, pa.bool_())
        table = table.append_column("_bad_utf8", bad)
        con.register("raw", table)
        try:
            sql = coerce_sql(table.schema, int_like_ids(con, table.schema))
            coerced = con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise InputError(f"cannot coerce values ({exc})", file=str(path)) from None
        finally:
            con.unregister("raw")
        if keyed is not None and _quarantines_unhashed(coerced, table, keyed):
            return _coerce(con, path, raw, key)
    return coerced, _malformed(raw, str(path), key)


def _not_views(action: pa.ChunkedArray) -> np.ndarray | None:
    """Per row, whether its action is anything but a view as coercion reads it (trimmed,
    lower case; a null or unknown action too); None (every row) for a column that is not
    text."""
    t = action.type
    lowered = (None if pa.types.is_dictionary(t) and not pa.types.is_string(t.value_type)
               else lowered_action(action))
    if lowered is None:
        return None
    view = action_test(lowered, lambda v: pc.equal(v, "view"))
    return ~pc.fill_null(view, False).to_numpy(zero_copy_only=False)


def _quarantines_unhashed(coerced: pa.Table, table: pa.Table, keyed: np.ndarray) -> bool:
    """Whether a quarantined row is one whose address was left unhashed."""
    bad = coerced.filter(pc.is_valid(coerced["_reason"]))["_row"]
    if len(bad) == 0:
        return False
    unhashed = pc.and_(pa.array(~keyed), pc.is_valid(table["ip"]))
    return bool(pc.any(pc.is_in(table["_row"].filter(unhashed), value_set=bad.combine_chunks())
                       ).as_py())


PARALLEL_ROWS = 20_000


class _Inline:
    """A stand-in for a one-thread pool that runs each job at once."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(fn(*args))
        return fut


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
    else:  # the common case: nothing to copy. The empty quarantine is made anew: a
        # zero-length slice would keep every buffer of the table alive (1.25 GiB at 100M).
        bad, good = table.schema.empty_table(), table
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


def _increasing(ids: pa.ChunkedArray) -> bool:
    """Whether integer ids strictly increase, chunk by chunk (no copy of the whole column)."""
    last = None
    for chunk in ids.chunks:
        if len(chunk) == 0:
            continue
        arr = chunk.to_numpy()
        if (last is not None and arr[0] <= last) or bool((arr[1:] <= arr[:-1]).any()):
            return False
        last = arr[-1]
    return True


def _duplicates(con: duckdb.DuckDBPyConnection, events: pa.Table) -> np.ndarray:
    """Positions of rows whose event_id an earlier row already used (usually none).

    Integer ids that strictly increase (most exports) are unique by a single comparison pass;
    otherwise a hash aggregate finds the repeated ids and only their rows are then ordered.
    """
    ids = events["event_id"]
    if pa.types.is_integer(ids.type) and ids.null_count == 0 and _increasing(ids):
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
    quarantined: list[pa.Table] = []
    offset = 0
    for path in files:
        piece = _read_file(con, path, key, offset)
        goods.append(piece.good)
        quarantined.append(piece.quarantine)
        offset += piece.n_rows
    return assemble(con, goods, quarantined, [str(f) for f in files], offset)


PIECE_ROWS = 6_000_000  # a Parquet file with more rows is read in runs of row groups


def _read_file(con: duckdb.DuckDBPyConnection, path: Path, key: bytes, offset: int) -> Piece:
    """One file as one piece. A large Parquet file is read and coerced a run of row groups
    at a time (``PIECE_ROWS``): only one run's raw columns and coercion temporaries exist at
    once, beside the canonical rows kept so far (a 25M-row file's were 1.7 GiB over its
    result). Runs whose id columns came out of different types (text ids that look like
    integers in some runs only) are read again whole: the type is decided over the file."""
    kind = SUFFIXES[path.suffix.lower()]
    runs = row_group_runs(path, PIECE_ROWS) if kind == "parquet" else []
    if len(runs) > 1:
        pieces = [read_piece(con, path, read_parquet_row_groups(path, groups, first), key,
                             offset) for groups, first in runs]
        types = {tuple(str(p.good.schema.field(c).type) if c in p.good.column_names else ""
                       for c in ID_COLUMNS) for p in pieces}
        if len(types) == 1:
            return Piece(pa.concat_tables([p.good for p in pieces],
                                          promote_options="permissive"),
                         pa.concat_tables([p.quarantine for p in pieces]),
                         sum(p.n_rows for p in pieces))
        del pieces
    return read_piece(con, path, READERS[kind](path), key, offset)


@dataclass
class Piece:
    """One file (or a run of a Parquet file's row groups) read and coerced: its canonical
    rows with their file row numbers (``_file_row``), its quarantine, the rows it spans, and
    (when asked for) which rows had no event id of their own and were numbered from
    ``offset``."""

    good: pa.Table
    quarantine: pa.Table
    n_rows: int
    default_ids: pa.Array | None = None


def read_piece(con: duckdb.DuckDBPyConnection, path: Path, raw: RawFile, key: bytes,
               offset: int, *, mark_default_ids: bool = False) -> Piece:
    """Coerce, pseudonymise and split one file as read: the per-file half of ``ingest``,
    which a scale-out engine runs on its workers (and asks which ids it numbered, to number
    them again input-wide). A view's address hashes may be null here (``_coerce``): the
    features stage reads the addresses of engagements only."""
    table, malformed = _coerce(con, path, raw, key, key_views=False)
    n_rows = max([raw.table.num_rows + len(raw.malformed)] +
                 [r + 1 for r, _, _ in raw.malformed])
    del raw
    default_ids = None
    if mark_default_ids:
        no_id = (pc.is_null(table["event_id"]) if "event_id" in table.column_names
                 else pa.repeat(pa.scalar(True), table.num_rows))
        kept = pc.filter(no_id, pc.is_null(table["_reason"]))
        default_ids = kept.combine_chunks() if isinstance(kept, pa.ChunkedArray) else kept
    good, bad = _split(table, path, offset)
    good = _narrow_counts(good)
    # The file row of each good row is kept to name a repeated event id's row: int32 while
    # the file's rows fit, for it is a column as long as the log until ``assemble`` drops it.
    last = pc.max(good["_file_row"]).as_py()
    if last is None or last < 2**31:
        i = good.column_names.index("_file_row")
        good = good.set_column(i, "_file_row", pc.cast(good["_file_row"], pa.int32()))
    return Piece(good, pa.concat_tables([malformed, bad]), n_rows, default_ids)


def _narrow_counts(table: pa.Table) -> pa.Table:
    """Watch time and video length as int32 where the piece's values fit (24 days in ms):
    a row of each for every view, they were 16 of a 100M-event log's 87 bytes a row. Pieces
    that do not fit stay int64, and concatenation promotes the rest to it."""
    for c in ("watch_ms", "video_ms"):
        col = table[c]
        if col.type != pa.int64():
            continue
        bounds = pc.min_max(col)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if high is None or (-2**31 <= low and high < 2**31):
            table = table.set_column(table.column_names.index(c), c, pc.cast(col, pa.int32()))
    return table


def assemble(con: duckdb.DuckDBPyConnection, goods: list[pa.Table],
             quarantined: list[pa.Table], files: list[str], rows_read: int) -> IngestResult:
    """The input-wide half of ``ingest``: one type per id column, one table in input order,
    repeated event ids quarantined (the first row keeps its id), the quarantine sorted.
    ``goods`` holds one table per file of ``files``, in the same order."""
    quarantined = list(quarantined)
    goods = unify_text(unify_ids(goods))
    events = pa.concat_tables(goods, promote_options="permissive")
    dup = _duplicates(con, events)
    con.close()
    if len(dup):
        # Map each duplicate's global position back to its file and row for the quarantine.
        sizes = np.cumsum([0] + [g.num_rows for g in goods])
        rows = events.take(pa.array(dup))
        file_of = np.searchsorted(sizes, dup, side="right") - 1
        quarantined.append(pa.table({
            "source": pa.array([files[f] for f in file_of], pa.string()),
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
    return IngestResult(events, quarantine, files, rows_read)


def ingest_raw(raw: RawFile, *, source: str, key: bytes, require_event_id: bool = False,
               keep_rows: bool = False) -> tuple[pa.Table, pa.Table]:
    """(canonical events, quarantine rows) of one in-memory batch read by a reader (the
    service's request bodies and stream entries): the same coercion, pseudonymisation and
    quarantine reasons as a file. With ``require_event_id`` a row without an event_id is
    quarantined (``missing_value:event_id``) instead of numbered: the service decides each
    event once by its id, which a row number cannot be across requests. With ``keep_rows``
    the events keep their position in the batch as ``_row``."""
    if raw.table.num_rows == 0:
        empty = pa.table({c: pa.array([], pa.string()) for c in CANONICAL})
        return empty, _malformed(raw, source, key)
    table, malformed = _coerce(_local_con(), Path(source), raw, key)
    if require_event_id:
        missing = (pc.is_null(table["event_id"]) if "event_id" in table.column_names
                   else pa.repeat(pa.scalar(True), table.num_rows))
        why = pa.scalar(Q("missing_value", "event_id"))
        reason = pc.if_else(missing, pc.if_else(pc.is_null(table["_reason"]), why,
                                                pc.binary_join_element_wise(
                                                    table["_reason"], why, "; ")),
                            table["_reason"])
        table = table.set_column(table.column_names.index("_reason"), "_reason", reason)
    good, bad = _split(table, Path(source), 0)
    good = (good.rename_columns([*good.column_names[:-1], "_row"]) if keep_rows
            else good.drop_columns(["_file_row"]))
    return good, pa.concat_tables([malformed, bad])


# Per thread id, not in a ``threading.local``: a forked child clears the other threads' states
# and their locals with them, and a DuckDB connection destroyed there (its own threads do not
# exist in the child) crashed the child before its exec (pyspark's launcher forks with Python
# in the child; a service worker thread held a connection). A thread id reused after its thread
# ended reuses the connection, one thread at a time as before.
_CONS: dict[int, duckdb.DuckDBPyConnection] = {}


def _local_con() -> duckdb.DuckDBPyConnection:
    """One DuckDB connection per thread for small batches: opening one costs more than
    coercing a hundred events."""
    ident = threading.get_ident()
    con = _CONS.get(ident)
    if con is None:
        con = _CONS[ident] = connect(1)
    return con


def _malformed(raw: RawFile, source: str, key: bytes) -> pa.Table:
    return pa.table({
        "source": pa.array([source] * len(raw.malformed), pa.string()),
        "row": pa.array([r for r, _, _ in raw.malformed], pa.int64()),
        "raw": pa.array([redact(t, key) for _, t, _ in raw.malformed], pa.string()),
        "reason": pa.array([why for _, _, why in raw.malformed], pa.string()),
    }, schema=QUARANTINE_SCHEMA)


def _file_rows(goods: list[pa.Table], dup: np.ndarray, sizes: np.ndarray,
               file_of: np.ndarray) -> list[int]:
    """File row numbers of duplicate rows, read from each file's ``_file_row`` column."""
    out = []
    for pos, f in zip(dup.tolist(), file_of.tolist(), strict=True):
        out.append(int(goods[f]["_file_row"][pos - int(sizes[f])].as_py()))
    return out
