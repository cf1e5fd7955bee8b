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
