"""The compiled keyed BLAKE2b is hashlib's, byte for byte, and so are the pseudonyms built on it."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from likelens.blake2 import BLOCK, keyed_digests, max_value
from likelens.privacy import DEVICE_LABEL, _mac_key, pseudonymise_text


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=12),
       st.lists(st.binary(max_size=BLOCK), max_size=8), st.sampled_from([1, 8, 20, 32, 64]))
def test_keyed_digests_are_hashlibs(key: bytes, label: bytes, values: list[bytes],
                                    digest_size: int) -> None:
    values = [v[:max_value(label)] for v in values]  # one block each, up to its last byte
    data = np.frombuffer(b"".join(values), dtype=np.uint8)
    ends = np.cumsum([len(v) for v in values], dtype=np.int64)
    got = keyed_digests(key, label, data, ends - [len(v) for v in values], ends, digest_size)
    want = [hashlib.blake2b(label + v, key=key, digest_size=digest_size).digest()
            for v in values]
    assert [bytes(row) for row in got] == want


def test_a_message_past_one_block_or_an_empty_label_is_refused() -> None:
    data = np.zeros(BLOCK, dtype=np.uint8)
    with pytest.raises(ValueError, match="longer than one block"):
        keyed_digests(b"k", b"ab", data, np.array([0]), np.array([BLOCK - 1]))
    with pytest.raises(ValueError, match="a label"):
        keyed_digests(b"k", b"", data, np.array([0]), np.array([1]))


def test_device_pseudonyms_match_one_hashlib_call_per_value() -> None:
    key = b"device-test-key-0123456789abcdef" * 3  # longer than 64 bytes: hashed down first
    texts = ["d1", " d1 ", "", None, "é" * 70, "x" * 124, "x" * 125, "📱phone", "d1"]
    got = pseudonymise_text(pa.chunked_array([pa.array(texts, pa.string())]), key,
                            DEVICE_LABEL)

    def reference(v: str | None) -> str | None:
        v = v.strip() if v is not None else None
        return hashlib.blake2b(DEVICE_LABEL + v.encode(), key=_mac_key(key),
                               digest_size=8).hexdigest() if v else None

    assert got.to_pylist() == [reference(v) for v in texts]
