"""likelens.arrays: the shared helpers give exactly what the slow way gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from likelens.arrays import distinct, pylist

chunk = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "ccc", "", "é"])),
                 max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(chunk, max_size=4))
def test_pylist_of_dictionary_columns_is_to_pylist(chunks: list[list[str | None]]) -> None:
    # Nulls are the case to_numpy gets wrong (a null row takes its index slot's value).
    col = pa.chunked_array([pa.array(c, pa.string()).dictionary_encode() for c in chunks],
                           type=pa.dictionary(pa.int32(), pa.string()))
    assert pylist(col) == col.to_pylist()
    if chunks:
        assert pylist(col.chunk(0)) == col.chunk(0).to_pylist()


def test_pylist_of_chunks_whose_dictionaries_hold_nulls_is_to_pylist() -> None:
    # (ingest gives a blank address a null hash in the dictionary; Arrow cannot unify those)
    a = pa.DictionaryArray.from_arrays(pa.array([0, 1, None], pa.int32()), pa.array(["x", None]))
    b = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int32()), pa.array(["y", None]))
    col = pa.chunked_array([a, b])
    assert pylist(col) == col.to_pylist() == ["x", None, None, None, "y"]


def test_pylist_of_a_large_chunk_with_nulls_is_to_pylist() -> None:
    values = [None, "a", "b", "", None, "é"] * 2000  # past the small-chunk path
    col = pa.chunked_array([pa.array(values, pa.string()).dictionary_encode()] * 2)
    assert pylist(col) == col.to_pylist()


def test_pylist_of_plain_columns_is_to_pylist() -> None:
    col = pa.chunked_array([pa.array([1, None, 3]), pa.array([4])])
    assert pylist(col) == [1, None, 3, 4]


def test_distinct_is_numpy_unique() -> None:
    x = np.random.default_rng(3).integers(0, 50, 1000)
    assert np.array_equal(distinct(x), np.unique(x))


def test_unified_dictionary_decodes_to_the_same_values() -> None:
    """Chunks that share a dictionary (a Parquet row group's batches) and chunks with their own
    all index one dictionary afterwards, each value once, and decode as before."""
    import pyarrow.compute as pc

    from likelens.arrays import distinct_dictionaries, unified_dictionary

    shared = pa.array(["a", "b", "c"])
    other = pa.array(["c", "d", None])
    chunks = [pa.DictionaryArray.from_arrays(pa.array([0, 2, None], pa.int32()), shared),
              pa.DictionaryArray.from_arrays(pa.array([1, 1], pa.int32()), shared),
              pa.DictionaryArray.from_arrays(pa.array([0, 1, 2], pa.int32()), other)]
    col = pa.chunked_array(chunks)
    assert len(distinct_dictionaries(col)) == 2
    values, indices = unified_dictionary(col)
    assert values.to_pylist().count("c") == 1
    got = [pc.take(values, idx).to_pylist() for idx in indices]
    assert got == [ch.dictionary.take(ch.indices).to_pylist() for ch in chunks]
    empty, none = unified_dictionary(pa.chunked_array([], pa.dictionary(pa.int32(),
                                                                         pa.string())))
    assert len(empty) == 0 and none == []


def test_unified_dictionary_widens_narrow_indices() -> None:
    """Two int8-indexed chunks of 100 values each unify into 200 values: the indices come back
    as int32 (Arrow's own unify_dictionaries refuses such chunks)."""
    import pyarrow.compute as pc

    from likelens.arrays import unified_dictionary

    chunks = [pa.DictionaryArray.from_arrays(pa.array([0, 99], pa.int8()),
                                             pa.array([f"{side}{i}" for i in range(100)]))
              for side in "ab"]
    values, indices = unified_dictionary(pa.chunked_array(chunks))
    assert len(values) == 200 and all(idx.type == pa.int32() for idx in indices)
    assert [pc.take(values, idx).to_pylist() for idx in indices] == [["a0", "a99"],
                                                                      ["b0", "b99"]]
