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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.arrays import action_mask
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
    "VIEW_COLUMNS",
    "IngestResult",
    "discover",
    "ingest",
    "ingest_raw",
    "shared_dictionaries",
]

CANONICAL = ("event_id", "ts", "user_id", "action", "video_id", "creator_id", "watch_ms",
             "video_ms", "ip_hash", "ip_net", "ip_sub", "device_hash", "region", "text")

# What the features stage reads of a view (``features.build_features``): views are most of a
# log's rows, and these six of the fourteen columns are about half a row's bytes.
VIEW_COLUMNS = ("ts", "user_id", "video_id", "watch_ms", "video_ms", "creator_id")


QUARANTINE_SCHEMA = pa.schema([("source", pa.string()), ("row", pa.int64()),
                               ("raw", pa.string()), ("reason", pa.string())])


@dataclass
class IngestResult:
    """The canonical events, the quarantined rows and what was read.

    With ``views`` (``ingest(..., views_apart=True)``) the log comes in two tables:
    ``events`` holds the engagements with every column and their row in the whole log
    (``_log_row``), ``views`` the views' ``VIEW_COLUMNS`` in input order (``split_views``).
    ``scan_paths`` hands both to the scan and leaves empty tables here (the log is freed once
    the features are built); ``Features.has_views`` says whether the log had views.
    """

    events: pa.Table
    quarantine: pa.Table
    files: list[str]
    rows_read: int
    views: pa.Table | None = None

    @property
    def n_events(self) -> int:
        """Events in the log, views included."""
        return self.events.num_rows + (0 if self.views is None else self.views.num_rows)


def split_views(log: pa.Table, keep: Sequence[str] = ()) -> tuple[pa.Table, pa.Table]:
    """(the engagements with every column and their row in ``log`` as ``_log_row``, the
    views' ``VIEW_COLUMNS`` and ``keep``), each in ``log``'s order.

    Nothing later reads a view's id, address, device, region or text: ingest splits each run
    of a file as it is read, so that a 100M-event log never exists at full width."""
    is_view = action_mask(log["action"], "view")
    rows = np.flatnonzero(~is_view)
    engagements = log.filter(pa.array(~is_view)).append_column("_log_row", pa.array(rows))
    views = log.select([*VIEW_COLUMNS, *keep]).filter(pa.array(is_view))
    return engagements, views


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


def ingest(paths: Iterable[str | Path], *, key: bytes, threads: int | None = None,
           views_apart: bool = False) -> IngestResult:
    """Read every input file into one canonical table and one quarantine table.

    Files are coerced one at a time and kept in input order, so no global sort is needed;
    event ids default to the row number over the whole input. With ``views_apart`` each run
    of a file is split as it is read (``split_views``) and the result holds the views apart.
    """
    files = discover(paths)
    con = connect(threads)
    goods: list[pa.Table] = []
    views: list[pa.Table] = []
    spans: list[_Span] = []
    quarantined: list[pa.Table] = []
    offset = 0
    for path in files:
        piece = _read_file(con, path, key, offset, views_apart)
        goods.append(piece.good)
        quarantined.append(piece.quarantine)
        if piece.views is not None:
            views.append(piece.views)
            spans.append(piece.span)
        offset += piece.n_rows
    return assemble(con, goods, quarantined, [str(f) for f in files], offset,
                    views=views if views_apart else None, spans=spans)


PIECE_ROWS = 6_000_000  # a Parquet file with more rows is read in runs of row groups


def _read_file(con: duckdb.DuckDBPyConnection, path: Path, key: bytes, offset: int,
               views_apart: bool = False) -> Piece:
    """One file as one piece. A large Parquet file is read and coerced a run of row groups
    at a time (``PIECE_ROWS``): only one run's raw columns and coercion temporaries exist at
    once, beside the canonical rows kept so far (a 25M-row file's were 1.7 GiB over its
    result). Runs whose id columns came out of different types (text ids that look like
    integers in some runs only) are read again whole: the type is decided over the file."""
    kind = SUFFIXES[path.suffix.lower()]
    runs = row_group_runs(path, PIECE_ROWS) if kind == "parquet" else []
    if len(runs) > 1:
        pieces = [read_piece(con, path, read_parquet_row_groups(path, groups, first), key,
                             offset, views_apart=views_apart) for groups, first in runs]
        types = {tuple(str(p.good.schema.field(c).type) if c in p.good.column_names else ""
                       for c in ID_COLUMNS) for p in pieces}
        if len(types) == 1:
            return Piece.joined(pieces)
        del pieces
    return read_piece(con, path, READERS[kind](path), key, offset, views_apart=views_apart)


# The event ids of a piece: (first, last) when they are integers that strictly increase,
# EMPTY for a piece without rows, None otherwise. With views apart no table holds the log's
# ids in order; the spans tell whether they are unique without rebuilding it (``_chained``).
_Span = tuple[int, int] | None
EMPTY: _Span = (2**63 - 1, -(2**63))


def _span(ids: pa.ChunkedArray) -> _Span:
    if len(ids) == 0:
        return EMPTY
    if not pa.types.is_integer(ids.type) or ids.null_count or not _increasing(ids):
        return None
    return int(pc.min(ids).as_py()), int(pc.max(ids).as_py())


def _chained(spans: Sequence[_Span]) -> _Span:
    """The span of pieces read one after the other: None unless each starts after the last."""
    out = EMPTY
    for span in spans:
        if span is None:
            return None
        if span == EMPTY:
            continue
        if out != EMPTY and span[0] <= out[1]:
            return None
        out = (span[0] if out == EMPTY else out[0], span[1])
    return out


@dataclass
class Piece:
    """One file (or a run of a Parquet file's row groups) read and coerced: its canonical
    rows with their file row numbers (``_file_row``), its quarantine, the rows it spans, and
    (when asked for) which rows had no event id of their own and were numbered from
    ``offset``. With views apart, ``good`` holds the engagements (``split_views``), ``views``
    the views with their event ids and file rows, and ``span`` what ``_duplicates`` needs to
    know of the event ids."""

    good: pa.Table
    quarantine: pa.Table
    n_rows: int
    default_ids: pa.Array | None = None
    views: pa.Table | None = None
    span: _Span = None

    @property
    def n_good(self) -> int:
        return self.good.num_rows + (0 if self.views is None else self.views.num_rows)

    @classmethod
    def joined(cls, pieces: Sequence[Piece]) -> Piece:
        """Runs of one file read one after the other, as one piece."""
        goods, at = [], 0
        for p in pieces:
            goods.append(p.good if p.views is None else _shifted(p.good, at))
            at += p.n_good
        views = [p.views for p in pieces if p.views is not None]
        return cls(pa.concat_tables(goods, promote_options="permissive"),
                   pa.concat_tables([p.quarantine for p in pieces]),
                   sum(p.n_rows for p in pieces),
                   views=pa.concat_tables(views, promote_options="permissive") if views else None,
                   span=_chained([p.span for p in pieces]))


def _shifted(engagements: pa.Table, rows: int) -> pa.Table:
    """Engagements whose ``_log_row`` counts from ``rows`` rows later."""
    i = engagements.column_names.index("_log_row")
    return engagements.set_column(i, "_log_row", pc.add(engagements["_log_row"], rows))


def read_piece(con: duckdb.DuckDBPyConnection, path: Path, raw: RawFile, key: bytes,
               offset: int, *, mark_default_ids: bool = False, views_apart: bool = False
               ) -> Piece:
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
    quarantine = pa.concat_tables([malformed, bad])
    if not views_apart:
        return Piece(good, quarantine, n_rows, default_ids)
    span = _span(good["event_id"])
    good, views = split_views(good, keep=("event_id", "_file_row"))
    return Piece(good, quarantine, n_rows, default_ids, views, span)


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
             quarantined: list[pa.Table], files: list[str], rows_read: int, *,
             views: list[pa.Table] | None = None, spans: Sequence[_Span] = ()
             ) -> IngestResult:
    """The input-wide half of ``ingest``: one type per id column, one table in input order,
    repeated event ids quarantined (the first row keeps its id), the quarantine sorted.
    ``goods`` holds one table per file of ``files``, in the same order; with ``views`` (one
    per file) the goods are the engagements, each file's ``_log_row`` counting from its
    first row, and ``spans`` each file's event-id span (``Piece.span``)."""
    quarantined = list(quarantined)
    n_files = len(goods)
    if views is None:
        goods = unify_text(unify_ids(goods))
        sizes = np.cumsum([0] + [g.num_rows for g in goods])
    else:
        both = unify_text(unify_ids([*goods, *views]))
        goods, views = both[:n_files], both[n_files:]
        sizes = np.cumsum([0] + [g.num_rows + v.num_rows for g, v in zip(goods, views,
                                                                         strict=True)])
        goods = [_shifted(g, int(at)) for g, at in zip(goods, sizes[:-1], strict=True)]
    events = pa.concat_tables(goods, promote_options="permissive")
    view_rows = None if views is None else pa.concat_tables(views, promote_options="permissive")
    del goods, views
    if view_rows is None:
        dup = _duplicates(con, events)
    elif _chained(spans) is not None:  # increasing integer ids: unique without a look
        dup = np.empty(0, dtype=np.int64)
    else:
        dup = _duplicates(con, pa.table({"event_id": _log_column(events, view_rows,
                                                                 "event_id")}))
    con.close()
    if len(dup):
        # Map each duplicate's global position back to its file and row for the quarantine.
        rows = (events.take(pa.array(dup)) if view_rows is None
                else _log_rows(events, view_rows, dup))
        file_of = np.searchsorted(sizes, dup, side="right") - 1
        quarantined.append(pa.table({
            "source": pa.array([files[f] for f in file_of], pa.string()),
            "row": pc.cast(rows["_file_row"], pa.int64()),
            "raw": pa.array([json.dumps({k: r[k] for k in ("event_id", "ts", "user_id",
                                                            "action", "video_id")},
                                        default=str) for r in rows.to_pylist()]),
            "reason": pa.array([Q("duplicate_event_id")] * len(dup))}, schema=QUARANTINE_SCHEMA))
        if view_rows is None:
            keep = np.ones(events.num_rows, dtype=bool)
            keep[dup] = False
            events = events.filter(pa.array(keep))
        else:
            events, view_rows = _without(events, view_rows, dup)
    events = events.drop_columns(["_file_row"])
    if view_rows is not None:
        view_rows = view_rows.drop_columns(["event_id", "_file_row"])
    quarantine = pa.concat_tables(quarantined).sort_by([("source", "ascending"),
                                                        ("row", "ascending")])
    return IngestResult(events, quarantine, files, rows_read, view_rows)


def _engagement_at(engagements: pa.Table, positions: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For log positions (sorted): whether each is an engagement, and the engagements
    before it (its engagement row if it is one; its view row is the position less that)."""
    at = engagements["_log_row"].to_numpy()
    k = np.searchsorted(at, positions)
    hit = (k < len(at)) & (at[np.minimum(k, max(len(at) - 1, 0))] == positions) if len(at) \
        else np.zeros(len(positions), dtype=bool)
    return hit, k


def _log_column(engagements: pa.Table, views: pa.Table, name: str) -> pa.ChunkedArray:
    """A column of the whole log in input order, rebuilt from the engagements and views."""
    n_eng = engagements.num_rows
    is_eng = np.zeros(n_eng + views.num_rows, dtype=bool)
    is_eng[engagements["_log_row"].to_numpy()] = True
    idx = np.empty(len(is_eng), dtype=np.int64)
    idx[is_eng] = np.arange(n_eng)
    idx[~is_eng] = np.arange(n_eng, len(is_eng))
    both = pa.chunked_array(engagements[name].chunks + views[name].chunks,
                            engagements.schema.field(name).type)
    return both.take(pa.array(idx))


def _log_rows(engagements: pa.Table, views: pa.Table, positions: np.ndarray) -> pa.Table:
    """What the quarantine says of the log's rows at ``positions`` (sorted): a view's action
    is ``view``."""
    hit, k = _engagement_at(engagements, positions)
    names = ["event_id", "ts", "user_id", "video_id", "_file_row"]
    eng = engagements.select([*names, "action"]).take(pa.array(k[hit]))
    vws = views.select(names).take(pa.array((positions - k)[~hit]))
    out: dict[str, list[Any]] = {}
    for name in [*names, "action"]:
        values = iter(eng[name].to_pylist())
        others = iter(vws[name].to_pylist() if name != "action" else ["view"] * len(vws))
        out[name] = [next(values) if h else next(others) for h in hit.tolist()]
    return pa.table({n: pa.array(v) for n, v in out.items()})


def _without(engagements: pa.Table, views: pa.Table, positions: np.ndarray
             ) -> tuple[pa.Table, pa.Table]:
    """Both tables less the log's rows at ``positions`` (sorted), ``_log_row`` renumbered."""
    hit, k = _engagement_at(engagements, positions)
    keep = np.ones(engagements.num_rows, dtype=bool)
    keep[k[hit]] = False
    engagements = engagements.filter(pa.array(keep))
    at = engagements["_log_row"].to_numpy()
    engagements = engagements.set_column(engagements.column_names.index("_log_row"),
                                         "_log_row", pa.array(at - np.searchsorted(
                                             positions, at)))
    keep = np.ones(views.num_rows, dtype=bool)
    keep[(positions - k)[~hit]] = False
    return engagements, views.filter(pa.array(keep))


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
