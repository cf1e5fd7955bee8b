"""Keyed BLAKE2b (RFC 7693) of many short messages, compiled: the pseudonymisation's hashes.

A day of mobile traffic has millions of distinct addresses and prefixes, each hashed once; one
``hashlib`` call per message costs ~1.5 µs of Python around ~0.2 µs of hashing, and was the
largest single cost of ingesting IPv6-heavy logs. Every message here fits one 128-byte block
after the key's own block, so a hash is one compression from the keyed state, in a loop that
holds no GIL. Only what RFC 7693 specifies is implemented (sequential mode, digest of at most
64 bytes, key of at most 64 bytes); a property test holds it to ``hashlib.blake2b`` byte for
byte, and longer messages are left to the caller (``max_value``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

BLOCK = 128
_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B,
                0xA54FF53A5F1D36F1, 0x510E527FADE682D1, 0x9B05688C2B3E6C1F,
                0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179], dtype=np.uint64)
_SIGMA = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]], dtype=np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def _rotr(x: np.uint64, n: np.uint64) -> np.uint64:
    return (x >> n) | (x << (np.uint64(64) - n))


@numba.njit(cache=True, nogil=True, inline="always")
def _g(a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, x: np.uint64, y: np.uint64
       ) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    a = a + b + x
    d = _rotr(d ^ a, np.uint64(32))
    c = c + d
    b = _rotr(b ^ c, np.uint64(24))
    a = a + b + y
    d = _rotr(d ^ a, np.uint64(16))
    c = c + d
    b = _rotr(b ^ c, np.uint64(63))
    return a, b, c, d


@numba.njit(cache=True, nogil=True)
def _compress(h: np.ndarray, m: np.ndarray, t: int, last: bool) -> None:
    """RFC 7693's F: fold one block (its 16 little-endian words ``m``) into the state ``h``,
    in place. The working vector is sixteen locals, not an array: the compiler keeps them in
    registers (an array passed in made it 1.6x slower)."""
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11 = _IV[0], _IV[1], _IV[2], _IV[3]
    v12 = _IV[4] ^ np.uint64(t)  # messages here are far below 2**64 bytes: high word 0
    v13 = _IV[5]
    v14 = ~_IV[6] if last else _IV[6]
    v15 = _IV[7]
    for r in range(12):
        s = _SIGMA[r % 10]
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[s[0]], m[s[1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[s[2]], m[s[3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[s[4]], m[s[5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[s[6]], m[s[7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[s[8]], m[s[9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[s[10]], m[s[11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[s[12]], m[s[13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[s[14]], m[s[15]])
    h[0] ^= v0 ^ v8
    h[1] ^= v1 ^ v9
    h[2] ^= v2 ^ v10
    h[3] ^= v3 ^ v11
    h[4] ^= v4 ^ v12
    h[5] ^= v5 ^ v13
    h[6] ^= v6 ^ v14
    h[7] ^= v7 ^ v15


@numba.njit(cache=True, nogil=True)
def _words(block: np.ndarray, m: np.ndarray) -> None:
    """The block's 16 little-endian 64-bit words (whatever the machine's byte order)."""
    for w in range(16):
        word = np.uint64(0)
        for j in range(8):
            word |= np.uint64(block[8 * w + j]) << np.uint64(8 * j)
        m[w] = word


@numba.njit(cache=True, nogil=True)
def _keyed_state(key: np.ndarray, digest_size: int) -> np.ndarray:
    """The state after the parameter block and, for a key, the key's own block."""
    h = _IV.copy()
    h[0] ^= np.uint64(0x01010000 | (len(key) << 8) | digest_size)
    if len(key):
        block = np.zeros(BLOCK, dtype=np.uint8)
        block[:len(key)] = key
        m = np.empty(16, dtype=np.uint64)
        _words(block, m)
        _compress(h, m, BLOCK, False)
    return h


@numba.njit(cache=True, nogil=True)
def _hash_all(start: np.ndarray, label: np.ndarray, data: np.ndarray, lo: np.ndarray,
              hi: np.ndarray, digest_size: int) -> np.ndarray:
    """Each message (``label`` + ``data[lo[i]:hi[i]]``) as the one block after the key's."""
    n = len(lo)
    out = np.zeros((n, digest_size), dtype=np.uint8)
    block = np.zeros(BLOCK, dtype=np.uint8)
    h = np.empty(8, dtype=np.uint64)
    m = np.empty(16, dtype=np.uint64)
    nl = len(label)
    block[:nl] = label
    used = BLOCK
    for i in range(n):
        size = nl + hi[i] - lo[i]
        block[size:used] = 0  # only what the last message wrote past this one's end
        block[nl:size] = data[lo[i]:hi[i]]
        used = size
        _words(block, m)
        h[:] = start
        _compress(h, m, BLOCK + size, True)
        for j in range(digest_size):
            out[i, j] = np.uint8((h[j // 8] >> np.uint64(8 * (j % 8))) & np.uint64(0xFF))
    return out


def keyed_digests(key: bytes, label: bytes, data: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  digest_size: int = 8, threads: int = 1) -> np.ndarray:
    """Keyed BLAKE2b of ``label + data[lo[i]:hi[i]]`` for every i, as an (n, digest_size)
    uint8 array: what ``hashlib.blake2b(label + value, key=key,
    digest_size=digest_size).digest()`` gives each. Every message must fit one block
    (``max_value``), the label must not be empty (a keyed hash of nothing ends on the key's
    own block, which this loop does not do), and the key must be 1 to 64 bytes. With
    ``threads`` above 1 the messages are cut into that many runs hashed side by side (the loop
    holds no GIL)."""
    if not 0 < len(key) <= 64 or not 0 < digest_size <= 64 or not label:
        raise ValueError("keyed BLAKE2b here: a key of 1-64 bytes, a digest of 1-64 bytes, "
                         "a label")
    lo = np.ascontiguousarray(lo, dtype=np.int64)
    hi = np.ascontiguousarray(hi, dtype=np.int64)
    if len(lo) and int(np.max(hi - lo)) > max_value(label):
        raise ValueError("a message is longer than one block; hash it with hashlib")
    start = _keyed_state(np.frombuffer(key, dtype=np.uint8), digest_size)
    label_bytes = np.frombuffer(label, dtype=np.uint8)
    data = np.ascontiguousarray(data, dtype=np.uint8)
    if threads <= 1 or len(lo) < 2 * threads:
        return _hash_all(start, label_bytes, data, lo, hi, digest_size)
    cuts = np.linspace(0, len(lo), threads + 1).astype(np.int64)
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(lambda a, b: _hash_all(start, label_bytes, data, lo[a:b], hi[a:b],
                                                digest_size), cuts[:-1], cuts[1:])
        return np.concatenate(list(parts))


@numba.njit(cache=True, nogil=True)
def _hex_rows(digests: np.ndarray, digits: np.ndarray, out: np.ndarray) -> None:
    for i in range(digests.shape[0]):
        for j in range(digests.shape[1]):
            b = digests[i, j]
            out[i, 2 * j] = digits[b >> 4]
            out[i, 2 * j + 1] = digits[b & 15]


_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_digits(digests: np.ndarray) -> np.ndarray:
    """The lower-case hex text of each row of an (n, k) uint8 array, as (n, 2k) uint8 bytes
    (what ``hexdigest`` writes), in one pass: NumPy's shifts, table lookups and strided
    stores made five temporaries of it."""
    out = np.empty((digests.shape[0], 2 * digests.shape[1]), dtype=np.uint8)
    _hex_rows(np.ascontiguousarray(digests, dtype=np.uint8), _DIGITS, out)
    return out


def max_value(label: bytes) -> int:
    """The longest value that, after ``label``, still fits one block."""
    return BLOCK - len(label)


__all__ = ["BLOCK", "hex_digits", "keyed_digests", "max_value"]
