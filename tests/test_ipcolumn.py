"""The plain-column address kernels: parsing that agrees with ``ipaddress``, grouping that agrees
with sorting, and the two-thread paths that agree with the one-thread ones."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import likelens.ipcolumn as ipc
from likelens.blake2 import hex_digits, keyed_digests


def _addresses() -> st.SearchStrategy[str | None]:
    pad = st.sampled_from(["", " ", "\t", "\n ", "\x1c", "\u3000"])
    v4 = st.ip_addresses(v=4).map(str)
    v6 = st.one_of(st.ip_addresses(v=6).map(str), st.ip_addresses(v=6).map(
        lambda a: a.exploded.upper()))
    junk = st.text(alphabet="0123456789abcdefABCDEF:.% ", max_size=20)
    body = st.one_of(v4, v6, junk, st.just("::ffff:1.2.3.4"), st.just("01.2.3.4"))
    return st.one_of(st.builds(lambda a, b, c: a + b + c, pad, body, pad), st.none())


def _expected(text: str | None) -> tuple[int, int | None]:
    """What parse_rows must say of one row: its kind and 128-bit value."""
    if text is None or not text.strip(" \t\n\v\f\r\x1c\x1d\x1e\x1f"):
        return ipc.NONE, None
    t = text.strip(" \t\n\v\f\r\x1c\x1d\x1e\x1f")
    parts = t.split(".")
    if (len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3 for p in parts)
            and all(int(p) <= 255 for p in parts)):
        return ipc.V4, int.from_bytes(bytes(int(p) for p in parts), "big")
    if "." not in t and "%" not in t:
        try:
            return ipc.V6, int(ipaddress.IPv6Address(t))
        except ValueError:
            pass
    return ipc.OTHER, None


@settings(max_examples=80, deadline=None)
@given(st.lists(_addresses(), max_size=50), st.integers(0, 50))
def test_parse_rows_reads_what_ipaddress_reads(texts: list[str | None], cut: int) -> None:
    column = pa.chunked_array([pa.array(texts[:cut], pa.string()),
                               pa.array(texts[cut:], pa.large_string()).cast(pa.string())])
    kind, high, low = ipc.parse_rows(column)
    for text, k, h, lo in zip(texts, kind.tolist(), high.tolist(), low.tolist(), strict=True):
        want_kind, want_value = _expected(text)
        assert k == want_kind, text
        if want_value is not None:
            assert (h << 64 | lo) == want_value, text


def test_two_threads_parse_what_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    texts = [str(ipaddress.ip_address(int(v))) for v in rng.integers(0, 2**32, 3000)]
    texts += [str(ipaddress.IPv6Address(int(v) << 64)) for v in rng.integers(0, 2**62, 3000)]
    column = pa.chunked_array([pa.array(texts[i:i + 700]) for i in range(0, len(texts), 700)])
    one = ipc.parse_rows(column)
    monkeypatch.setattr(ipc, "PARALLEL_ROWS", 10)
    monkeypatch.setattr(ipc, "PIECE_ROWS", 300)  # chunks of 700 cut into pieces
    two = ipc.parse_rows(column)
    for a, b in zip(one, two, strict=True):
        assert np.array_equal(a, b)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 4)),
                max_size=300))
def test_factorize_groups_equal_keys_in_order_of_first_appearance(rows) -> None:
    kind = np.array([r[0] for r in rows], dtype=np.uint8)
    high = np.array([r[1] for r in rows], dtype=np.uint64)
    low = np.array([r[2] for r in rows], dtype=np.uint64)
    codes, first = ipc.factorize(high, low, kind)
    seen: dict[tuple[int, int, int], int] = {}
    want = [-1 if k == 0 else seen.setdefault((k, h, lo), len(seen)) for k, h, lo in rows]
    assert codes.tolist() == want
    assert first.tolist() == [want.index(g) for g in range(len(seen))]


def test_factorize_is_exact_when_its_table_must_grow() -> None:
    """A table sized far too small (a low estimate) is rehashed as it fills, never wrong."""
    rng = np.random.default_rng(1)
    high = rng.integers(0, 2**63, 50_000, dtype=np.uint64)[rng.integers(0, 50_000, 200_000)]
    low = high ^ np.uint64(7)
    kind = np.full(len(high), ipc.V6, dtype=np.uint8)
    codes, first = ipc._factorize_all(high, low, kind, 1 << 12)
    _, inverse = np.unique(high, return_inverse=True)
    assert len(first) == len(np.unique(high))
    # the same partition of the rows: each group's rows share one key, each key one group
    assert np.array_equal(high[first][codes], high)
    assert len(np.unique(np.stack([codes, inverse]), axis=1).T) == len(first)


def test_the_group_estimate_is_close_enough_to_size_the_table() -> None:
    rng = np.random.default_rng(2)
    for distinct in (70_000, 900_000):
        keys = rng.integers(0, 2**64 - 1, distinct, dtype=np.uint64)
        high = keys[rng.integers(0, distinct, 3 * distinct)]
        truth = len(np.unique(high))
        est = ipc._estimate_groups(high, np.zeros_like(high), np.ones(len(high), np.uint8))
        assert 0.8 * truth < est < 1.25 * truth, (truth, est)


def test_hash_threads_and_hex_text_agree_with_the_plain_loop() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 16 * 5001, dtype=np.uint8)
    lo = np.arange(5001, dtype=np.int64) * 16
    one = keyed_digests(b"key", b"ip:", data, lo, lo + 16)
    assert np.array_equal(keyed_digests(b"key", b"ip:", data, lo, lo + 16, threads=2), one)
    assert [bytes(r).decode() for r in hex_digits(one)] == [bytes(r).hex() for r in one]


def test_narrow_dictionary_columns_hash_as_their_text_does() -> None:
    """An int8-indexed column whose chunks hold different dictionaries (an in-memory table
    handed to the API) gives the same pseudonyms as the same text unencoded."""
    from likelens.privacy import pseudonymise_ip

    chunks = [pa.DictionaryArray.from_arrays(pa.array(np.arange(150) % 100, pa.int8()),
                                             pa.array([f"10.{s}.0.{i}" for i in range(100)]))
              for s in (1, 2)]
    encoded = pseudonymise_ip(pa.chunked_array(chunks), b"k" * 20)
    plain = pseudonymise_ip(pa.chunked_array([c.cast(pa.string()) for c in chunks]), b"k" * 20)
    assert [c.to_pylist() for c in encoded] == [c.to_pylist() for c in plain]
