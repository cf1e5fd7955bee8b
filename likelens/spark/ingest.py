"""Ingest on Spark: each input file, or each run of a large Parquet file's row groups, is one
task that reads, validates, pseudonymises and quarantines it on an executor with the embedded
ingest's own code (``ingest.read_piece``); the driver then assembles the pieces with the
embedded ingest's other half (``ingest.assemble``: one id type per column, repeated event ids),
so both engines give one table by construction.

A file is the unit because the contract is judged per file: whether a text id column holds
only integers (and becomes int64) is decided over the whole file. A large Parquet file is cut
into runs of row groups (its footer gives each run's first row number); a file whose runs
disagree on an id type is read again whole. A large CSV or JSON Lines file is one task.

Executors write their pieces as Arrow IPC files into a staging directory and hand Spark one
line each; the driver memory-maps the files. Sending millions of rows back through Spark's
rows and its collect path cost 10 s per 1.8M events on this machine, several times the
reading itself. The staging directory must be one that the executors and the driver share
(``spark.likelens.staging``; a local master uses the system's temporary directory).

The pseudonymisation key travels to the executors inside the task (as it must, to hash there):
on a cluster, turn on Spark's RPC encryption (docs/spark.md).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from likelens.engine import connect
from likelens.errors import EngineError, InputError, LikeLensError, SchemaError
from likelens.ingest import (
    IngestResult,
    _local_con,
    assemble,
    discover,
    read_piece,
)
from likelens.ingest.readers import (
    READERS,
    SUFFIXES,
    read_parquet_row_groups,
    runs_of,
)
from likelens.schema import ID_COLUMNS

# What a task tells the driver about its piece: where it staged it, how many file rows it
# spans and its id types, or the input error that stopped it.
_META_SCHEMA = pa.schema([("file_idx", pa.int32()), ("first_row", pa.int64()),
                          ("n_rows", pa.int64()), ("types", pa.string()),
                          ("staged", pa.string()), ("error_kind", pa.string()),
                          ("error", pa.string())])
_SPARK_TYPES = {pa.int32(): "int", pa.int64(): "bigint", pa.string(): "string"}
META_DDL = ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in _META_SCHEMA)
TASK_ROWS = 2_000_000  # a large Parquet file is cut into tasks of about this many rows


def read_files(batches: Iterable[pa.RecordBatch], *, key: bytes, staging: str
               ) -> Iterator[pa.RecordBatch]:
    """The executor's side: each input row names a file, or some row groups of a Parquet
    file; read and coerce them as the embedded ingest does, stage the piece, say where."""
    for batch in batches:
        for task in batch.to_pylist():
            yield _one_task(task, key, Path(staging))


def _one_task(task: dict[str, Any], key: bytes, staging: Path) -> pa.RecordBatch:
    idx, path, first = int(task["file_idx"]), Path(task["path"]), int(task["first_row"])
    line: dict[str, Any] = {"file_idx": idx, "first_row": first, "n_rows": 0, "types": None,
                            "staged": None, "error_kind": None, "error": None}
    try:
        if task["groups"] is None:
            raw = READERS[SUFFIXES[path.suffix.lower()]](path)
        else:
            raw = read_parquet_row_groups(path, json.loads(task["groups"]), first)
        piece = read_piece(_local_con(), path, raw, key, 0, mark_default_ids=True)
    except LikeLensError as exc:
        line |= {"error_kind": type(exc).__name__, "error": str(exc)}
        return pa.RecordBatch.from_pylist([line], schema=_META_SCHEMA)
    staging.mkdir(parents=True, exist_ok=True)
    stem = staging / f"{idx:07d}-{first:013d}-{uuid.uuid4().hex[:8]}"
    good = piece.good.append_column("_default_id", piece.default_ids).combine_chunks()
    _write(good, stem.with_suffix(".events.arrow"))
    _write(piece.quarantine.combine_chunks(), stem.with_suffix(".quarantine.arrow"))
    line |= {"n_rows": piece.n_rows, "staged": str(stem),
             "types": json.dumps({c: str(piece.good.schema.field(c).type)
                                  for c in ID_COLUMNS})}
    return pa.RecordBatch.from_pylist([line], schema=_META_SCHEMA)


def _write(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_staged(path: Path) -> pa.Table:
    """A staged piece, memory-mapped (its pages stay readable after the file is removed)."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _tasks(files: Sequence[Path], slots: int, *, ids: Sequence[int] | None = None,
           cut: bool = True) -> pa.Table:
    """One task per file; a Parquet file of several row groups is cut into runs of row
    groups of about ``TASK_ROWS`` rows (fewer when that leaves slots idle), each knowing the
    file row number it starts at, from the file's footer."""
    rows: list[dict[str, Any]] = []
    total = 0
    metas = {}
    ids = list(ids) if ids is not None else list(range(len(files)))
    for i, f in zip(ids, files, strict=True):
        if cut and SUFFIXES[f.suffix.lower()] == "parquet":
            try:
                metas[i] = pq.ParquetFile(f).metadata
                total += metas[i].num_rows
            except (OSError, pa.ArrowException):
                pass  # unreadable: the task says so, with the embedded ingest's words
    target = max(1, min(TASK_ROWS, total // max(1, slots)))
    for i, f in zip(ids, files, strict=True):
        md = metas.get(i)
        runs = runs_of(md, target) if md is not None and md.num_row_groups > 1 else []
        if len(runs) < 2:
            rows.append({"file_idx": i, "path": str(f), "groups": None, "first_row": 0})
            continue
        rows.extend({"file_idx": i, "path": str(f), "groups": json.dumps(groups),
                     "first_row": first} for groups, first in runs)
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("file_idx", pa.int32()), ("path", pa.string()), ("groups", pa.string()),
        ("first_row", pa.int64())]))


def _read(spark: Any, tasks: pa.Table, key: bytes, slots: int, staging: Path) -> pa.Table:
    """Run the tasks; their lines (``META_DDL``), ordered by file and first row."""
    n = max(1, min(tasks.num_rows, slots))
    lines = (spark.createDataFrame(tasks).repartition(n)
             .mapInArrow(partial(read_files, key=key, staging=str(staging)), META_DDL)
             .toArrow())
    return lines.sort_by([("file_idx", "ascending"), ("first_row", "ascending")])


def _split_disagreeing(lines: pa.Table) -> list[int]:
    """Files whose pieces came back with different id types."""
    seen: dict[int, set[str]] = {}
    for idx, types in zip(lines["file_idx"].to_pylist(), lines["types"].to_pylist(),
                          strict=True):
        if types is not None:
            seen.setdefault(idx, set()).add(types)
    return sorted(i for i, t in seen.items() if len(t) > 1)


def staging_dir(spark: Any) -> Path:
    """Where executors stage pieces for the driver: ``spark.likelens.staging``, or with a
    local master the system's temporary directory; one fresh directory per scan."""
    base = spark.conf.get("spark.likelens.staging", None)
    if base is None:
        if not str(spark.sparkContext.master).startswith("local"):
            raise EngineError("set --spark-conf spark.likelens.staging=DIR to a directory "
                              "that every executor and this machine share (docs/spark.md)")
        base = tempfile.gettempdir()
    return Path(base) / f"likelens-ingest-{uuid.uuid4().hex}"


def ingest_spark(spark: Any, paths: Iterable[str | Path], *, key: bytes,
                 partitions: int | None = None) -> IngestResult:
    """The embedded ``ingest``'s result (same events in the same order, same quarantine),
    with the reading, coercion and hashing done by tasks on ``spark``."""
    files = discover(paths)
    slots = partitions or spark.sparkContext.defaultParallelism
    staging = staging_dir(spark)
    try:
        lines = _read(spark, _tasks(files, slots), key, slots, staging)
        _raise_first_error(lines)
        split = _split_disagreeing(lines)
        if split:
            # Runs of row groups that disagree on an id type (text ids that are integers in
            # some row groups only): the file is read again whole, because the embedded
            # ingest decides the type over the whole file.
            again = _read(spark, _tasks([files[i] for i in split], slots, ids=split,
                                        cut=False), key, slots, staging)
            keep = pc.invert(pc.is_in(lines["file_idx"], value_set=pa.array(split, pa.int32())))
            lines = pa.concat_tables([lines.filter(keep), again]).sort_by(
                [("file_idx", "ascending"), ("first_row", "ascending")])
        return _assembled(lines, files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _assembled(lines: pa.Table, files: Sequence[Path]) -> IngestResult:
    """The staged pieces, file by file in input order, through the embedded ``assemble``:
    default event ids move from the file's own row number to the input-wide one first."""
    goods: list[pa.Table] = []
    quarantined: list[pa.Table] = []
    offset = 0
    by_file: dict[int, list[dict[str, Any]]] = {}
    for r in lines.to_pylist():  # in file, then first-row order
        by_file.setdefault(r["file_idx"], []).append(r)
    for idx in range(len(files)):
        pieces = by_file.get(idx, [])
        parts = []
        for r in pieces:
            stem = Path(r["staged"])
            good = _read_staged(stem.with_suffix(".events.arrow"))
            parts.append(_numbered(good, offset))
            quarantined.append(_read_staged(stem.with_suffix(".quarantine.arrow")))
        goods.append(pa.concat_tables(parts, promote_options="permissive"))
        offset += sum(r["n_rows"] for r in pieces)
    return assemble(connect(1), goods, quarantined, [str(f) for f in files], offset)


def _numbered(good: pa.Table, offset: int) -> pa.Table:
    """A piece's rows without an event id of their own get the input-wide row number (the
    piece numbered them from its file's first row)."""
    default = good["_default_id"]
    good = good.drop_columns(["_default_id"])
    if offset == 0 or not pc.any(default).as_py():
        return good
    i = good.column_names.index("event_id")
    eid = good["event_id"]
    numbered = pc.cast(pc.add(pc.cast(good["_file_row"], pa.int64()), offset), eid.type)
    return good.set_column(i, "event_id", pc.if_else(default, numbered, eid))


def _raise_first_error(lines: pa.Table) -> None:
    """An input error on an executor stops the scan with the message the embedded ingest
    gives: the first failing file's, in input order."""
    errors = lines.filter(pc.is_valid(lines["error"]))
    if errors.num_rows:
        kind = SchemaError if errors["error_kind"][0].as_py() == "SchemaError" else InputError
        raise kind(errors["error"][0].as_py())
