"""Ingest on Spark: each input file is one task that reads, validates, pseudonymises and
quarantines it on an executor with the embedded ingest's own code; what spans files (one id
type per column, event ids numbered over the whole input, repeated event ids) is Spark SQL.

A file is the unit because the contract is judged per file: whether a text id column holds
only integers (and becomes int64) is decided over the whole file, exactly as the embedded
ingest does. Platforms export a day as many part files, so a file per task spreads well. A
large Parquet file is cut into runs of row groups (its footer gives each run's first row
number); a file whose runs disagree on an id type is read again whole. A large CSV or JSON
Lines file is one task.

The pseudonymisation key travels to the executors inside the task (as it must, to hash there):
on a cluster, turn on Spark's RPC encryption (docs/spark.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from likelens.errors import InputError, LikeLensError, SchemaError
from likelens.ingest import (
    CANONICAL,
    QUARANTINE_SCHEMA,
    IngestResult,
    _coerce,
    _local_con,
    _split,
    discover,
)
from likelens.ingest.readers import READERS, SUFFIXES, read_parquet_row_groups
from likelens.schema import ID_COLUMNS
from likelens.schema import quarantine_reason as Q

_LONG = ("ts", "watch_ms", "video_ms")
# One row schema for the three things a file task emits: events ("e"), quarantined rows
# ("q") and one line about the file ("m": its row count and id types, or "x": the error that
# stopped it). Id columns travel as text; each file says which type they had.
ROW_SCHEMA = pa.schema(
    [("kind", pa.string()), ("file_idx", pa.int32()), ("file_row", pa.int64()),
     ("eid_default", pa.bool_())]
    + [(c, pa.int64() if c in _LONG else pa.string()) for c in CANONICAL]
    + [("q_source", pa.string()), ("q_row", pa.int64()), ("q_raw", pa.string()),
       ("q_reason", pa.string()), ("m_rows", pa.int64()), ("m_types", pa.string())])
BATCH_ROWS = 65_536
TASK_ROWS = 2_000_000  # a large Parquet file is cut into tasks of about this many rows


def _tasks(files: Sequence[Path], slots: int, *, ids: Sequence[int] | None = None,
           cut: bool = True) -> pa.Table:
    """One task per file; a Parquet file of several row groups is cut into runs of row
    groups of about ``TASK_ROWS`` rows (fewer when that leaves slots idle), each knowing the
    file row number it starts at, from the file's footer."""
    rows: list[dict[str, Any]] = []
    total = 0
    metas = {}
    for i, f in zip(ids if ids is not None else range(len(files)), files, strict=True):
        if cut and SUFFIXES[f.suffix.lower()] == "parquet":
            try:
                metas[i] = pq.ParquetFile(f).metadata
                total += metas[i].num_rows
            except (OSError, pa.ArrowException):
                pass  # unreadable: the task says so, with the embedded ingest's words
    target = max(1, min(TASK_ROWS, total // max(1, slots)))
    for i, f in zip(ids if ids is not None else range(len(files)), files, strict=True):
        md = metas.get(i)
        if md is None or md.num_row_groups < 2:
            rows.append({"file_idx": i, "path": str(f), "groups": None, "first_row": 0})
            continue
        group: list[int] = []
        first = size = 0
        for g in range(md.num_row_groups):
            group.append(g)
            size += md.row_group(g).num_rows
            if size >= target or g == md.num_row_groups - 1:
                rows.append({"file_idx": i, "path": str(f), "groups": json.dumps(group),
                             "first_row": first})
                first += size
                group, size = [], 0
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("file_idx", pa.int32()), ("path", pa.string()), ("groups", pa.string()),
        ("first_row", pa.int64())]))


def _read(spark: Any, tasks: pa.Table, key: bytes, slots: int) -> Any:
    """The tasks' output rows (``ROW_SCHEMA``), kept by Spark for the steps that read them."""
    from pyspark import StorageLevel

    n = max(1, min(tasks.num_rows, slots))
    return (spark.createDataFrame(tasks).repartition(n)
            .mapInArrow(partial(read_files, key=key), _ddl(ROW_SCHEMA))
            .persist(StorageLevel.MEMORY_AND_DISK))


def _split_disagreeing(meta: pa.Table) -> list[int]:
    """Files whose pieces came back with different id types."""
    seen: dict[int, set[str]] = {}
    for idx, types in zip(meta["file_idx"].to_pylist(), meta["m_types"].to_pylist(),
                          strict=True):
        if types is not None:
            seen.setdefault(idx, set()).add(types)
    return sorted(i for i, t in seen.items() if len(t) > 1)


def read_files(batches: Iterable[pa.RecordBatch], *, key: bytes) -> Iterator[pa.RecordBatch]:
    """The executor's side: each input row names a file, or some row groups of a Parquet
    file; read and coerce them as the embedded ingest does, and emit their events,
    quarantine and summary line."""
    for batch in batches:
        for task in batch.to_pylist():
            yield from _one_task(task, key)


def _one_task(task: dict[str, Any], key: bytes) -> Iterator[pa.RecordBatch]:
    idx, path = int(task["file_idx"]), Path(task["path"])
    try:
        if task["groups"] is None:
            raw = READERS[SUFFIXES[path.suffix.lower()]](path)
        else:
            raw = read_parquet_row_groups(path, json.loads(task["groups"]), task["first_row"])
        table, malformed = _coerce(_local_con(), path, raw, key)
        n_rows = max([raw.table.num_rows + len(raw.malformed)]
                     + [r + 1 for r, _, _ in raw.malformed])
        del raw
        good_mask = pc.invert(pc.is_valid(table["_reason"]))
        eid_null = (pc.is_null(table["event_id"]) if "event_id" in table.column_names
                    else pa.repeat(pa.scalar(True), table.num_rows))
        eid_default = pc.filter(eid_null, good_mask)
        good, bad = _split(table, path, 0)
    except LikeLensError as exc:
        yield _rows(1, kind="x", file_idx=idx, q_source=type(exc).__name__, q_reason=str(exc))
        return
    types = {c: str(good.schema.field(c).type) for c in ID_COLUMNS}
    for start in range(0, good.num_rows, BATCH_ROWS):
        part = good.slice(start, BATCH_ROWS)
        cols: dict[str, Any] = {c: _plain(part[c]) for c in CANONICAL}
        yield _rows(part.num_rows, kind="e", file_idx=idx, file_row=part["_file_row"],
                    eid_default=eid_default.slice(start, BATCH_ROWS), **cols)
    q = pa.concat_tables([malformed, bad])
    for start in range(0, q.num_rows, BATCH_ROWS):
        part = q.slice(start, BATCH_ROWS)
        yield _rows(part.num_rows, kind="q", file_idx=idx, q_source=part["source"],
                    q_row=part["row"], q_raw=part["raw"], q_reason=part["reason"])
    yield _rows(1, kind="m", file_idx=idx, m_rows=n_rows, m_types=json.dumps(types))


def _plain(col: pa.ChunkedArray) -> pa.Array:
    """A column as Spark takes it: dictionaries decoded, ids as text, times as int64."""
    col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_integer(col.type) or pa.types.is_null(col.type):
        return col
    return pc.cast(col, pa.string())


def _rows(n: int, **values: Any) -> pa.RecordBatch:
    """A batch of ``n`` rows in ``ROW_SCHEMA``: given columns (a scalar is repeated), the
    rest null."""
    arrays = []
    for f in ROW_SCHEMA:
        v = values.get(f.name)
        if v is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(v, pa.Array | pa.ChunkedArray):
            v = v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v
            arrays.append(pc.cast(v, f.type) if v.type != f.type else v)
        else:
            arrays.append(pa.array([v] * n, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=ROW_SCHEMA)


def _ddl(schema: pa.Schema) -> str:
    names = {pa.string(): "string", pa.int64(): "bigint", pa.int32(): "int",
             pa.bool_(): "boolean"}
    return ", ".join(f"`{f.name}` {names[f.type]}" for f in schema)


def ingest_spark(spark: Any, paths: Iterable[str | Path], *, key: bytes,
                 partitions: int | None = None) -> IngestResult:
    """The embedded ``ingest``'s result (same events in the same order, same quarantine),
    computed on ``spark``: a task per file (per run of row groups of a large Parquet file),
    then Spark SQL across files."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    files = discover(paths)
    slots = partitions or spark.sparkContext.defaultParallelism
    rows = _read(spark, _tasks(files, slots), key, slots)
    try:
        meta = rows.where(F.col("kind").isin("m", "x")).select(
            "kind", "file_idx", "m_rows", "m_types", "q_source", "q_reason").toArrow()
        _raise_first_error(meta)
        split = _split_disagreeing(meta)
        if split:
            # A file cut into row groups whose pieces disagree on an id type (text ids that
            # are integers in some row groups only) is read again whole: the embedded
            # ingest decides the type over the whole file.
            whole = _read(spark, _tasks([files[i] for i in split], slots, ids=split,
                                        cut=False), key, slots)
            pieces = rows
            rows = (pieces.where(~F.col("file_idx").isin(split)).unionByName(whole)
                    .persist(StorageLevel.MEMORY_AND_DISK))
            rows.count()  # kept before the pieces it is made of are let go
            pieces.unpersist()
            whole.unpersist()
            meta = rows.where(F.col("kind") == "m").select(
                "kind", "file_idx", "m_rows", "m_types").toArrow()
        meta = meta.filter(pc.equal(meta["kind"], "m"))
        per_file = meta.group_by("file_idx").aggregate([("m_rows", "sum")]).sort_by("file_idx")
        sizes = per_file["m_rows_sum"].to_numpy()
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        id_types = _unified_types([json.loads(t) for t in meta["m_types"].to_pylist()])
        offset_df = spark.createDataFrame(pa.table({
            "file_idx": pa.array(range(len(files)), pa.int32()), "offset": offsets}))
        events = (rows.where(F.col("kind") == "e")
                  .join(F.broadcast(offset_df), "file_idx")
                  .withColumn("event_id", F.when(
                      F.col("eid_default"),
                      (F.col("file_row") + F.col("offset")).cast("string"))
                      .otherwise(F.col("event_id"))))
        # A repeated event id keeps its first row in input order; the later ones are
        # quarantined (the embedded ingest's rule).
        first = Window.partitionBy("event_id").orderBy("file_idx", "file_row")
        events = events.withColumn("_nth", F.row_number().over(first))
        dups = (events.where(F.col("_nth") > 1)
                .select("file_idx", "file_row", "event_id", "ts", "user_id", "action",
                        "video_id").toArrow())
        table = (events.where(F.col("_nth") == 1).orderBy("file_idx", "file_row")
                 .select(*CANONICAL).toArrow())
        quarantine = (rows.where(F.col("kind") == "q")
                      .select("q_source", "q_row", "q_raw", "q_reason").toArrow())
    finally:
        rows.unpersist()
    table = _typed(table, id_types)
    quarantine = pa.table(quarantine.columns, schema=QUARANTINE_SCHEMA)
    if dups.num_rows:
        quarantine = pa.concat_tables([quarantine, _duplicate_rows(dups, files, id_types)])
    quarantine = quarantine.sort_by([("source", "ascending"), ("row", "ascending")])
    return IngestResult(table, quarantine, [str(f) for f in files], int(sizes.sum()))


def _raise_first_error(meta: pa.Table) -> None:
    """An input error on an executor stops the scan with the message the embedded ingest
    gives: the first failing file's, in input order."""
    errors = meta.filter(pc.equal(meta["kind"], "x")).sort_by("file_idx")
    if errors.num_rows:
        kind = SchemaError if errors["q_source"][0].as_py() == "SchemaError" else InputError
        raise kind(errors["q_reason"][0].as_py())


def _unified_types(per_file: Sequence[dict[str, str]]) -> dict[str, str]:
    """Each id column's type across files: the files' type where they agree, else text."""
    out = {}
    for c in ID_COLUMNS:
        kinds = {t[c] for t in per_file}
        out[c] = kinds.pop() if len(kinds) == 1 else "string"
    return out


def _typed(table: pa.Table, id_types: dict[str, str]) -> pa.Table:
    """Id columns back to int64 where every file had integers."""
    for c in ID_COLUMNS:
        if c in table.column_names and id_types[c] == "int64":
            i = table.column_names.index(c)
            table = table.set_column(i, c, pc.cast(table[c], pa.int64()))
    return table


def _duplicate_rows(dups: pa.Table, files: Sequence[Path], id_types: dict[str, str]
                    ) -> pa.Table:
    """Quarantine rows for repeated event ids, worded as the embedded ingest words them."""
    typed = _typed(dups, id_types)
    keys = ("event_id", "ts", "user_id", "action", "video_id")
    rows = typed.select(list(keys)).to_pylist()
    return pa.table({
        "source": pa.array([str(files[i]) for i in dups["file_idx"].to_pylist()], pa.string()),
        "row": dups["file_row"],
        "raw": pa.array([json.dumps({k: r[k] for k in keys}, default=str) for r in rows]),
        "reason": pa.array([Q("duplicate_event_id")] * dups.num_rows, pa.string()),
    }, schema=QUARANTINE_SCHEMA)
