"""The Arrow fast path: well-typed Parquet with no bad rows goes straight to the canonical
table with a few vectorised checks, no SQL and no copy."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from likelens.schema import ACTIONS, ID_COLUMNS

# Built once: pyarrow's conversion of an untyped Python list probes for an optional module on
# every call (~60 µs), which a service parsing a few events at a time notices.
_ACTIONS = pa.array(ACTIONS, pa.string())


# What the SQL path casts a text id column to BIGINT for (``coerce.int_like_ids``).
_INT_LIKE = r"^-?(0|[1-9][0-9]{0,17})$"


def _id_column(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """An id column as the SQL path coerces it: integers as int64; text trimmed, empty as
    null, and int64 when every value left is a plain integer (else text). None for types the
    SQL path alone handles."""
    t = col.type
    if pa.types.is_integer(t):
        return pc.cast(col, pa.int64())
    if pa.types.is_dictionary(t) and pa.types.is_string(t.value_type):
        col = pc.cast(col, pa.string())
    elif not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None
    text = col
    # DuckDB's trim (spaces only), where some value needs it: looking costs a quarter of
    # trimming, which copies the column (0.6 s for 18M ids).
    if pc.any(pc.starts_with(col, " ")).as_py() or pc.any(pc.ends_with(col, " ")).as_py():
        text = pc.utf8_trim(col, characters=" ")
    empty = pc.equal(text, "")
    if pc.any(empty).as_py():  # (a copy of the column only where there is a blank id)
        text = pc.if_else(empty, pa.scalar(None, text.type), text)
    if _int_like(text.slice(0, 1024)) and _int_like(text):
        return pc.cast(text, pa.int64())
    return pc.cast(text, pa.string())


def _int_like(text: pa.ChunkedArray) -> bool:
    """Whether every value is a plain integer. Opaque ids ("u_8f3a") fail in the first rows,
    so the caller asks of a head first and only scans the whole column when that passes."""
    return bool(pc.all(pc.fill_null(pc.match_substring_regex(text, _INT_LIKE), True)).as_py())


def lowered_action(action: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """The action column as coercion reads it (trimmed, lower case), a dictionary column on
    its dictionaries only; None for a type the SQL path alone handles."""
    if pa.types.is_dictionary(action.type):
        action = action.unify_dictionaries()
        lowered = [pa.DictionaryArray.from_arrays(
            ch.indices, pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(ch.dictionary,
                                                                      pa.string()))))
            for ch in action.chunks]
        return pa.chunked_array(lowered) if lowered else pc.cast(action, pa.string())
    if pa.types.is_string(action.type) or pa.types.is_large_string(action.type):
        return pc.utf8_lower(pc.utf8_trim_whitespace(action))
    return None


def action_test(action: pa.ChunkedArray, fn: Callable[[pa.Array], pa.Array]
                ) -> pa.ChunkedArray:
    """``fn`` on the (lowered) action values: on a dictionary's values only, then spread by
    index."""
    if pa.types.is_dictionary(action.type):
        return pa.chunked_array([pc.take(fn(ch.dictionary), ch.indices)
                                 for ch in action.chunks], pa.bool_())
    return fn(action)


def typed_fast_path(table: pa.Table) -> pa.Table | None:
    """The canonical table straight from well-typed columns when every row is valid.

    Platform exports are typed Parquet with no bad rows; checking that takes a few vectorised
    comparisons, where the general path (one DuckDB query that gives each row its reasons) costs
    a full copy (36 s of a 19M-event log with text ids). Text ids are coerced here as the SQL
    does (trimmed, empty as null, integers when every value is one). Any doubt (a bad value,
    an unusual type) returns None and the general path runs, so both paths give the same
    table.
    """
    names = table.column_names
    ints = [c for c in ("ts", "watch_ms", "video_ms") if c in names]
    if not all(pa.types.is_integer(table.schema.field(c).type) for c in ints):
        return None
    ids: dict[str, pa.ChunkedArray] = {}
    for c in ID_COLUMNS:
        if c in names:
            col = _id_column(table[c])
            if col is None:
                return None
            ids[c] = col
    action = lowered_action(table["action"])
    if action is None:
        return None

    def per_row(fn: Callable[[pa.Array], pa.Array]) -> pa.ChunkedArray:
        return action_test(action, fn)

    ok = pc.and_kleene(pc.is_valid(table["ts"]), pc.is_valid(ids["user_id"]))
    ok = pc.and_kleene(ok, per_row(lambda v: pc.is_in(v, value_set=_ACTIONS)))
    follow = per_row(lambda v: pc.equal(v, "follow"))
    ok = pc.and_kleene(ok, pc.or_kleene(pc.is_valid(ids["video_id"]), follow))
    creator = ids.get("creator_id")
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
        "ts": pc.cast(table["ts"], pa.int64()), "action": action, "user_id": ids["user_id"]}
    for c in ("event_id", "video_id", "creator_id"):
        if c in ids:
            cols[c] = ids[c]
    for c in ("watch_ms", "video_ms"):
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
