"""Shared dictionaries: one dictionary per text column across files and chunks, and ids of one
type across files."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from likelens.arrays import distinct_dictionaries, unified_dictionary
from likelens.schema import ID_COLUMNS


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
        if len(distinct_dictionaries(col)) == 1:
            columns.append(col)
            continue
        values, indices = unified_dictionary(col)
        chunks = [pa.DictionaryArray.from_arrays(idx, values) for idx in indices]
        columns.append(pa.chunked_array(chunks, pa.dictionary(pa.int32(), values.type)))
    return pa.table(columns, names=events.column_names)


def unify_ids(tables: list[pa.Table]) -> list[pa.Table]:
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


def unify_text(tables: list[pa.Table]) -> list[pa.Table]:
    """Make every text column one type across files: a Parquet file's dictionary columns and
    a CSV's plain text (a directory that mixes formats) become dictionaries throughout."""
    out = list(tables)
    if not out:
        return out
    for c in out[0].column_names:
        types = {t.schema.field(c).type for t in out if c in t.column_names}
        if len(types) <= 1 or not any(pa.types.is_dictionary(t) for t in types):
            continue
        for i, t in enumerate(out):
            if c in t.column_names and not pa.types.is_dictionary(t.schema.field(c).type):
                encoded = pc.dictionary_encode(pc.cast(t[c], pa.string()))
                out[i] = t.set_column(t.column_names.index(c), c, encoded)
    return out
