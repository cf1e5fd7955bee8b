"""Compiled kernels for a plain column of IP text: parse every row, then group equal addresses.

A day of mobile traffic can hold millions of distinct IPv6 addresses, and Parquet writers give
up the dictionary for such a column past their page-size limit, so the column arrives as plain
strings. Finding its distinct values by hashing the strings (Arrow's ``dictionary_encode``, after
trimming and combining every chunk) was most of such a log's ingest: 6.4 s of hashing alone for
22M rows with 8.2M distinct addresses. Parsing each row to its 128-bit value straight from the
Arrow buffers and grouping the values with a fixed-width hash table costs a fraction of that and
never copies a string.

``parse_rows`` answers "not mine" (``OTHER``) for anything but a trimmed dotted quad or plain
IPv6 text (embedded IPv4, zone ids, non-ASCII spaces, junk): the caller gives those rows to the
text path, so a wrong "not mine" costs speed, never a different hash.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pyarrow as pa

from likelens.ipv6 import HEX_VALUE, parse6

NONE, V4, V6, OTHER = 0, 1, 2, 3  # what parse_rows says of a row (NONE: null or blank)
PARALLEL_ROWS = 1 << 20  # a column this long is parsed on two threads,
PIECE_ROWS = 1 << 18     # in pieces of this many rows


@numba.njit(cache=True, nogil=True, inline="always")
def _space(c: int) -> bool:
    """The ASCII bytes Arrow's ``utf8_trim_whitespace`` trims (tab to carriage return, the
    four separators, space)."""
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31


@numba.njit(cache=True, nogil=True)
def _parse_rows(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, hexval: np.ndarray,
                kind: np.ndarray, high: np.ndarray, low: np.ndarray) -> None:
    groups = np.zeros(8, dtype=np.int64)
    for r in range(len(kind)):
        if not valid[r]:
            kind[r] = NONE
            continue
        s = offsets[r]
        e = offsets[r + 1]
        while s < e and _space(data[s]):
            s += 1
        while e > s and _space(data[e - 1]):
            e -= 1
        if s == e:
            kind[r] = NONE
            continue
        # A dotted quad as the ingest's regex has it: four runs of 1-3 digits, each <= 255.
        packed = 0
        octet = 0
        digits = 0
        dots = 0
        quad = True
        for i in range(s, e):
            c = data[i]
            if 48 <= c <= 57:
                octet = octet * 10 + (c - 48)
                digits += 1
                if digits > 3:
                    quad = False
                    break
            elif c == 46 and digits > 0 and dots < 3 and octet <= 255:
                packed = (packed << 8) | octet
                dots += 1
                octet = 0
                digits = 0
            else:
                quad = False
                break
        if quad and dots == 3 and digits > 0 and octet <= 255:
            kind[r] = V4
            high[r] = 0
            low[r] = (packed << 8) | octet
            continue
        ok, hi, lo = parse6(data, s, e, hexval, groups)
        if ok:
            kind[r] = V6
            high[r] = hi
            low[r] = lo
        else:
            kind[r] = OTHER


def parse_rows(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(kind, high 64 bits, low 64 bits) of every row of a plain string column (an IPv4
    address is its 32 bits in ``low``). ``high`` and ``low`` are undefined where the kind is
    not ``V4`` or ``V6``."""
    n = len(column)
    kind = np.empty(n, dtype=np.uint8)
    high = np.empty(n, dtype=np.uint64)
    low = np.empty(n, dtype=np.uint64)
    # Pieces of at most PIECE_ROWS rows (a CSV may come as one chunk), each with its first row.
    pieces: list[tuple[pa.Array, int]] = []
    at = 0
    for chunk in column.chunks:
        for start in range(0, len(chunk), PIECE_ROWS):
            pieces.append((chunk.slice(start, PIECE_ROWS), at + start))
        at += len(chunk)

    def parse(piece: tuple[pa.Array, int]) -> None:
        chunk, at = piece
        k = len(chunk)
        width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        _, offsets_buf, data_buf = chunk.buffers()[:3]
        offsets = np.frombuffer(offsets_buf, dtype=width)[chunk.offset:chunk.offset + k + 1]
        data = (np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None
                else np.zeros(0, dtype=np.uint8))
        valid = (np.ones(k, dtype=bool) if chunk.null_count == 0
                 else chunk.is_valid().to_numpy(zero_copy_only=False))
        _parse_rows(data, offsets.astype(np.int64), valid, HEX_VALUE, kind[at:at + k],
                    high[at:at + k], low[at:at + k])

    if n < PARALLEL_ROWS:
        for piece in pieces:
            parse(piece)
    else:  # pieces side by side: the kernel holds no GIL
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(parse, pieces))
    return kind, high, low


@numba.njit(cache=True, nogil=True, inline="always")
def _mix(high: np.uint64, low: np.uint64, kind: np.uint8) -> np.uint64:
    """A 64-bit mix of a key (splitmix64's finaliser over the three parts)."""
    x = high * np.uint64(0x9E3779B97F4A7C15) ^ (low + np.uint64(kind))
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(29)
    x *= np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(32))


@numba.njit(cache=True, nogil=True)
def _place(table: np.ndarray, high: np.uint64, low: np.uint64, tag: np.uint64) -> None:
    """Put a key known to be absent into ``table`` (rows of high, low, tag; tag 0 = free)."""
    mask = np.uint64(len(table) - 1)
    j = _mix(high, low, tag & np.uint64(0xFF)) & mask
    while table[j, 2] != 0:
        j = (j + np.uint64(1)) & mask
    table[j, 0] = high
    table[j, 1] = low
    table[j, 2] = tag


@numba.njit(cache=True, nogil=True)
def _rehash(old: np.ndarray, table: np.ndarray) -> None:
    for j in range(len(old)):
        if old[j, 2] != 0:
            _place(table, old[j, 0], old[j, 1], old[j, 2])


@numba.njit(cache=True, nogil=True)
def _factorize(high: np.ndarray, low: np.ndarray, kind: np.ndarray, codes: np.ndarray,
               table: np.ndarray, start: int, m: int) -> tuple[int, int]:
    """Open addressing over (kind, high, low) from row ``start`` on, linear probing, until
    the table is half full: returns (the row reached, the groups so far). Each slot holds its
    key and its group (tag: group + 1 above the kind's byte), so a probe touches one cache
    line, not the key's first row."""
    size = len(table)
    mask = np.uint64(size - 1)
    for r in range(start, len(kind)):
        k = kind[r]
        if k == 0:
            codes[r] = -1
            continue
        if 2 * (m + 1) > size:
            return r, m
        hi = high[r]
        lo = low[r]
        j = _mix(hi, lo, k) & mask
        while True:
            tag = table[j, 2]
            if tag == 0:
                table[j, 0] = hi
                table[j, 1] = lo
                table[j, 2] = (np.uint64(m + 1) << np.uint64(8)) | np.uint64(k)
                codes[r] = m
                m += 1
                break
            if (table[j, 0] == hi and table[j, 1] == lo
                    and (tag & np.uint64(0xFF)) == np.uint64(k)):
                codes[r] = np.int32((tag >> np.uint64(8)) - np.uint64(1))
                break
            j = (j + np.uint64(1)) & mask
    return len(kind), m


@numba.njit(cache=True, nogil=True)
def _first_rows_of(codes: np.ndarray, first: np.ndarray) -> None:
    seen = 0
    for r in range(len(codes)):
        if codes[r] == seen:  # groups are numbered in order of first appearance
            first[seen] = r
            seen += 1


def _first_rows(codes: np.ndarray, m: int) -> np.ndarray:
    first = np.empty(m, dtype=np.int64)
    _first_rows_of(codes, first)
    return first


def factorize(high: np.ndarray, low: np.ndarray, kind: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Group equal (kind, high, low) keys, skipping rows of kind 0: (the group of each row,
    int32, -1 where skipped; the first row of each group). Groups are numbered in the order
    their first rows come, as Arrow's ``dictionary_encode`` numbers distinct values."""
    high = np.ascontiguousarray(high, dtype=np.uint64)
    low = np.ascontiguousarray(low, dtype=np.uint64)
    kind = np.ascontiguousarray(kind, dtype=np.uint8)
    return _factorize_all(high, low, kind, _slots_for(_estimate_groups(high, low, kind)))


def _factorize_all(high: np.ndarray, low: np.ndarray, kind: np.ndarray, slots: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    n = len(kind)
    codes = np.empty(n, dtype=np.int32)
    # The table grows here, not in the kernel: allocated by NumPy (which asks the kernel for
    # huge pages for large arrays) the probes of 22M rows took 1.6 s, against 2.7 s in a
    # table the kernel allocated itself.
    table = np.zeros((slots, 3), dtype=np.uint64)
    row, m = _factorize(high, low, kind, codes, table, 0, 0)
    while row < n:
        bigger = np.zeros((2 * len(table), 3), dtype=np.uint64)
        _rehash(table, bigger)
        table = bigger
        row, m = _factorize(high, low, kind, codes, table, row, m)
    return codes, _first_rows(codes, m)


SAMPLE_BITS = 6  # groups are estimated from the keys hashing into 1/64 of the hash space


@numba.njit(cache=True, nogil=True)
def _in_sample(high: np.ndarray, low: np.ndarray, kind: np.ndarray, bits: int) -> np.ndarray:
    keep = np.zeros(len(kind), dtype=np.bool_)
    for r in range(len(kind)):
        if kind[r] != 0:
            keep[r] = (_mix(high[r], low[r], kind[r]) >> np.uint64(64 - bits)) == 0
    return keep


def _estimate_groups(high: np.ndarray, low: np.ndarray, kind: np.ndarray) -> int:
    """About how many groups the keys make, from the distinct keys in a fixed slice of the
    hash space (each key is in or out whole, so the count scales without bias): sizing the
    table once spares the rehashing of a table grown step by step (1 s of 2.6 s at 8.2M
    groups). A low estimate costs a rehash, never a wrong group."""
    if len(kind) < 1 << 16:
        return 1 << 10
    at = np.flatnonzero(_in_sample(high, low, kind, SAMPLE_BITS))
    _, first = _factorize_all(high[at], low[at], kind[at], 1 << 12)
    return len(first) << SAMPLE_BITS


def _slots_for(groups: int) -> int:
    """A power of two that holds ``groups`` (with a margin for the estimate's error) at most
    half full."""
    return 1 << max(12, int(np.ceil(np.log2(2.5 * groups + 1))))


def distinct_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values in first-seen order, the index of each value among them) of a uint64
    array: ``np.unique`` with ``return_inverse`` by hashing instead of sorting."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    codes, first = factorize(values, np.zeros_like(values), np.ones(len(values), np.uint8))
    return values[first], codes


def warm() -> None:
    """Run every kernel once on a few rows (``likelens.warm``), the growing table and the
    sample included, so that no scan compiles them."""
    column = pa.chunked_array([pa.array(["1.2.3.4", " 2001:db8::1", None, "x"])])
    kind, high, low = parse_rows(column)
    factorize(high, low, kind)
    keys = np.arange(5000, dtype=np.uint64)
    _factorize_all(keys, keys, np.ones(len(keys), np.uint8), 1 << 12)
    _in_sample(keys, keys, np.ones(len(keys), np.uint8), SAMPLE_BITS)
