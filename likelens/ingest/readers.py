"""Input readers: each file as it is (Parquet typed; CSV as bytes, so invalid UTF-8 is caught per
row; JSON Lines with Arrow, or line by line when Arrow refuses it), with its malformed rows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from likelens.errors import InputError
from likelens.privacy import keyed_hash
from likelens.schema import quarantine_reason as Q

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
            ".ndjson": "jsonl", ".json": "jsonl"}


_IP_LIKE = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b")


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
class RawFile:
    """One file as read, before coercion: its columns, and rows that never parsed."""

    table: pa.Table
    malformed: list[tuple[int, str, str]]  # (row, raw, reason)
    bad_utf8_rows: pa.Array | None = None  # bool per row


def redact(text: str, key: bytes) -> str:
    """Replace anything that looks like an IP address in free text by its keyed hash."""
    return _IP_LIKE.sub(lambda m: "ip:" + keyed_hash(key, b"raw:" + m.group(0).encode()), text)


_PARQUET_DICTIONARIES = ("ip", "device_id", "region", "action")


def _dictionary_columns(path: Path) -> list[str]:
    """The text columns to decode straight from Parquet's dictionary pages: pseudonymising
    and validating then touch each distinct value once, never each row.

    Addresses are the exception when the writer gave up their dictionary (past its page-size
    limit, with millions of distinct mobile addresses): Arrow would then build a dictionary
    per batch while reading (2.2 s for 22M rows), only for the ingest to decode it again,
    whereas the plain column goes straight to the compiled row parser
    (``likelens.ipcolumn``)."""
    meta = pq.read_metadata(path)
    names = set(meta.schema.to_arrow_schema().names)
    return [c for c in _PARQUET_DICTIONARIES
            if c in names and (c != "ip" or _dictionary_encoded(meta, c))]


def _dictionary_encoded(meta: pq.FileMetaData, name: str) -> bool:
    """Whether most of a column's values sit in dictionary-encoded pages. Parquet's metadata
    does not say which pages fell back to plain encoding, but sizes do: dictionary indices
    take at most 4-5 bytes a value, so data pages much larger than that per value are plain
    (an estimate that only chooses the faster read, never changes a value)."""
    plain = total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema != name:
                continue
            total += chunk.num_values
            dict_page = (chunk.data_page_offset - chunk.dictionary_page_offset
                         if chunk.has_dictionary_page and chunk.dictionary_page_offset
                         is not None else 0)
            data_bytes = chunk.total_uncompressed_size - dict_page
            if not chunk.has_dictionary_page or data_bytes > 8 * max(chunk.num_values, 1):
                plain += chunk.num_values
    return 2 * plain <= total


def _read_parquet(path: Path) -> RawFile:
    try:
        table = pq.read_table(path, read_dictionary=_dictionary_columns(path))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"unreadable Parquet file ({exc})", file=str(path)) from None
    return RawFile(table, [])


def read_parquet_row_groups(path: Path, groups: Sequence[int], first_row: int) -> RawFile:
    """Some row groups of a Parquet file, read as ``_read_parquet`` reads the whole file, with
    their rows numbered from ``first_row`` (the file's row number of the first one): how a
    scale-out engine cuts one large file into tasks."""
    try:
        pf = pq.ParquetFile(path, read_dictionary=_dictionary_columns(path))
        table = pf.read_row_groups(list(groups))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"unreadable Parquet file ({exc})", file=str(path)) from None
    rows = pa.array(np.arange(first_row, first_row + table.num_rows, dtype=np.int64))
    return RawFile(table.append_column("_row", rows), [])


def row_group_runs(path: Path, target_rows: int) -> list[tuple[list[int], int]]:
    """A Parquet file cut into runs of consecutive row groups of about ``target_rows`` rows
    each: (row groups, file row number of the first), from the footer. Empty when the footer
    cannot be read (reading the file whole then reports why)."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException):
        return []
    return runs_of(meta, target_rows)


def runs_of(meta: pq.FileMetaData, target_rows: int) -> list[tuple[list[int], int]]:
    """``row_group_runs`` from a footer already read."""
    runs: list[tuple[list[int], int]] = []
    group: list[int] = []
    first = size = 0
    for g in range(meta.num_row_groups):
        group.append(g)
        size += meta.row_group(g).num_rows
        if size >= target_rows or g == meta.num_row_groups - 1:
            runs.append((group, first))
            first += size
            group, size = [], 0
    return runs


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise InputError("file is empty (no header row)", file=str(path))
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    import csv

    return [c.strip() for c in next(csv.reader([text]))]


def _read_csv(path: Path) -> RawFile:
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
    return RawFile(out, malformed, bad_utf8)


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


def _read_jsonl(path: Path) -> RawFile:
    if path.stat().st_size == 0:
        raise InputError("file is empty", file=str(path))
    table = _arrow_json(path, threads=True)
    if table is not None:
        return RawFile(table, [])
    with path.open("rb") as fh:  # read line by line, quarantining what fails
        return lines_to_raw(fh)


def _arrow_json(source: Path | pa.BufferReader, *, threads: bool) -> pa.Table | None:
    """Arrow's typed JSON reader, or None where it cannot give one type per column (mixed
    types, broken lines) or gives a table that does not validate: a column of lists of nulls
    comes back with inconsistent offsets (found by Schemathesis), and must be read line by
    line like any other doubtful input."""
    try:
        table = pajson.read_json(source, read_options=pajson.ReadOptions(use_threads=threads))
        table.validate()
    except (pa.ArrowException, OSError):
        return None
    return table


def ndjson_to_raw(body: bytes) -> RawFile:
    """NDJSON bytes in memory (a request body, stream entries joined by newlines): Arrow's
    typed reader when every line parses with one type per column, so well-formed batches take
    the vectorised fast path; else line by line as ``lines_to_raw``. A column that is null in
    every line gets the contract's type instead of Arrow's null type."""
    table = _arrow_json(pa.BufferReader(body), threads=len(body) > (1 << 20))
    if table is None:
        return lines_to_raw([line for line in body.splitlines() if line.strip()])
    cols = []
    for name in table.column_names:
        col = table[name]
        if pa.types.is_null(col.type):
            col = pc.cast(col, pa.int64() if name in _INT_COLUMNS else pa.string())
        cols.append(col)
    return RawFile(pa.table(cols, names=table.column_names), [])


_INT_COLUMNS = ("ts", "event_id", "watch_ms", "video_ms", "user_id", "video_id", "creator_id")


def lines_to_raw(lines: Iterable[bytes]) -> RawFile:
    """JSON objects one per line (NDJSON), each value kept as text for coercion; a line that is
    not a JSON object is kept as malformed with its line number. The service reads request
    bodies with it, so a posted event is judged exactly as a line of a file."""
    rows: list[dict[str, object]] = []
    numbers: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    bad_utf8: list[bool] = []
    for number, line in enumerate(lines):
        text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):  # (nested past Python's stack)
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
    return RawFile(table, malformed, pa.array(bad_utf8) if any(bad_utf8) else None)


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
