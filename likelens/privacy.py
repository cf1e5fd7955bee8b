"""Keyed pseudonymisation of IP addresses and device ids.

IP addresses and device ids are personal data: they are replaced at ingest by a keyed hash
(keyed BLAKE2b, 64 bits, hex) and never written out in clear. Farms show up as network
ranges rather than single addresses, so beside the hash of an address we keep the hash of its
prefix (/24 for IPv4, /48 for IPv6): two addresses in one range share a prefix hash, and nothing
else about them can be read back without the key.

Hashing runs over the distinct values of a column only, so a day of traffic with millions of rows
costs as many keyed hashes as it has distinct addresses.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.arrays import distinct_dictionaries, unified_dictionary
from likelens.blake2 import hex_digits, keyed_digests, max_value
from likelens.errors import InputError
from likelens.ipcolumn import NONE, OTHER, V4, V6, distinct_codes, factorize, parse_rows

DEMO_KEY = b"likelens-demo-key-do-not-use-in-production"

# How each hashed message is laid out after its label: the prefix's width in big-endian bytes
# and the bytes that follow it (padding to 16 and the prefix length, as ``ip_network`` packs
# it). Shared by the column kernels and the one-address path, so the two cannot drift.
V4_NET = (4, b"\x18")                 # the /24 of an IPv4 address (also its subnet)
V6_NET = (6, bytes(10) + b"\x30")     # the /48 of an IPv6 address
V6_SUB = (8, bytes(8) + b"\x40")      # the /64 of an IPv6 address
KEY_ENV = "LIKELENS_KEY"
# From this many messages on, the keyed hashes run on two threads: a plain column of mobile
# addresses leaves them on the ingest's longest path while the device thread has finished.
PARALLEL_DIGESTS = 1 << 20
DEVICE_LABEL = b"dev:"


def load_key(key_file: str | os.PathLike[str] | None = None, *, warn: bool = True) -> bytes:
    """Return the pseudonymisation key: ``key_file``, else ``$LIKELENS_KEY``, else the demo key.

    The demo key is public, so hashes made with it can be reversed by brute force over the IPv4
    space: say so loudly on stderr whenever it is used.
    """
    if key_file is not None:
        path = Path(key_file)
        try:
            key = path.read_bytes().strip()
        except OSError as exc:
            raise InputError(f"cannot read key file: {exc.strerror}", file=str(path)) from None
        if len(key) < 16:
            raise InputError("key file holds fewer than 16 bytes", file=str(path))
        return key
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    if warn:
        print(
            "WARNING: pseudonymising with the built-in DEMO key; anyone can reverse these hashes. "
            f"Set {KEY_ENV} or pass --key-file for real data.",
            file=sys.stderr,
        )
    return DEMO_KEY


def keyed_hash(key: bytes, value: bytes) -> str:
    """Keyed BLAKE2b (a MAC by design, RFC 7693) of ``value``, as 16 hex digits."""
    return hashlib.blake2b(value, key=_mac_key(key), digest_size=8).hexdigest()


def _mac_key(key: bytes) -> bytes:
    """BLAKE2b takes keys up to 64 bytes; longer ones are first hashed down."""
    return key if len(key) <= 64 else hashlib.sha256(key).digest()


# Spreads one value per distinct text (a list, or an Arrow array) back to the rows.
Spread = Callable[[list | pa.Array, pa.DataType], pa.ChunkedArray]  # type: ignore[type-arg]


def _as_array(per: list | pa.Array, type_: pa.DataType) -> pa.Array:  # type: ignore[type-arg]
    return per if isinstance(per, pa.Array) else pa.array(per, type=type_)


def _distinct(column: pa.ChunkedArray) -> tuple[pa.Array, Spread]:
    """Distinct values of a text column, trimmed, and a function that spreads one value per
    distinct back to the rows (null for null, blank or empty values).

    A dictionary-encoded column (as Parquet's dictionary pages decode) is handled on its
    dictionary alone: no per-row string is ever materialised.
    """
    if pa.types.is_dictionary(column.type) and _few_distinct(column):
        values, indices = unified_dictionary(column)
        texts = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))

        def spread(per: list | pa.Array,  # type: ignore[type-arg]
                   type_: pa.DataType) -> pa.ChunkedArray:
            table = _as_array(per, type_)
            if pa.types.is_string(type_):  # stay dictionary-encoded: no per-row strings
                return pa.chunked_array([pa.DictionaryArray.from_arrays(idx, table)
                                         for idx in indices],
                                        type=pa.dictionary(pa.int32(), type_))
            return pa.chunked_array([pc.take(table, idx) for idx in indices], type=type_)
        return texts, spread
    if pa.types.is_dictionary(column.type):  # many distinct values: decode, then one pass
        column = pc.cast(column, column.type.value_type)
    texts_col = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    if texts_col.nbytes > (1 << 31) - (1 << 24):  # one chunk of it needs 64-bit offsets
        texts_col = pc.cast(texts_col, pa.large_string())
    # One hash pass (dictionary encoding of the combined column), three times cheaper than
    # unique + index_in on millions of distinct addresses; encoding chunk by chunk would
    # leave dictionaries to unify, which is far slower still.
    flat = texts_col.combine_chunks() if isinstance(texts_col, pa.ChunkedArray) else texts_col
    encoded = pc.dictionary_encode(flat)
    uniques, idx = encoded.dictionary, encoded.indices

    def spread_plain(per: list | pa.Array,  # type: ignore[type-arg]
                     type_: pa.DataType) -> pa.ChunkedArray:
        table = _as_array(per, type_)
        if pa.types.is_string(type_):  # dictionary-encoded: 4 bytes a row, not 20
            return pa.chunked_array([pa.DictionaryArray.from_arrays(idx, table)])
        return pa.chunked_array([pc.take(table, idx)], type=type_)
    return uniques, spread_plain


def _few_distinct(column: pa.ChunkedArray) -> bool:
    """Whether unifying a dictionary column's chunk dictionaries is the cheap way to its
    distinct values. It is while the dictionaries hold fewer entries than the column has rows
    (a platform day's addresses: 7.4M entries for 19.8M rows, 1.6 s); past that (mobile
    traffic whose every row group holds its own millions of addresses: 68M entries for 18.8M
    rows) decoding and encoding the column once is several times cheaper."""
    total = sum(len(d) for d in distinct_dictionaries(column).values())
    return column.num_chunks <= 1 or total <= len(column)


def pseudonymise_ip(column: pa.ChunkedArray, key: bytes, keyed: np.ndarray | None = None
                    ) -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray,
                               pa.ChunkedArray]:
    """Return (address hash, prefix hash, subnet hash, is_valid) for a column of IP text.

    The prefix is the /24 of IPv4 and the /48 of IPv6. The subnet is where one site's devices
    sit: the /24 again for IPv4, the /64 for IPv6, because a carrier's /48 pools thousands of
    phones (each with a /64 of its own) while a farm's accounts share one /64.

    A dictionary column with few distinct values (Parquet's dictionary pages) is handled on its
    dictionary. A plain column (CSV, JSON, Parquet that gave up its dictionary) is parsed row
    by row by compiled kernels (``likelens.ipcolumn``) and its addresses grouped by value, so
    no string is hashed or copied. Either way the keyed hashes are one BLAKE2b call per
    distinct address and per distinct prefix, over messages laid out in one buffer, and their
    hex text is written straight into an Arrow buffer. Only what the kernels cannot parse
    (embedded IPv4, zone ids, junk) goes through ``ipaddress``. An unparseable address still
    gets a hash of its text (so the quarantine never holds it in clear) but no prefix hash,
    and is_valid is false.

    ``keyed`` (a bool per row) names the rows whose hashes are read later; a plain column's
    other rows are parsed (is_valid is still every row's) but neither grouped nor hashed, and
    their hashes are null. Ingest passes the rows that are not views: nothing reads a view's
    address, and a day of mobile traffic's views hold most of its millions of distinct
    addresses (the column of a 22M-event log took 4.6 s with them, 1.2 s without). A
    dictionary column's entries are hashed as before (one hash per distinct entry is cheap)
    and its other rows' hashes then masked, so that both kinds of column give one table.
    """
    if not pa.types.is_dictionary(column.type) or not _few_distinct(column):
        return _pseudonymise_plain(column, key, keyed)
    texts, spread = _distinct(column)
    h, n, sub, valid, blank = _text_digests(texts, key)
    ok_values = pa.array(valid, mask=blank)
    hashes = [spread(_hex(d, present), pa.string())
              for d, present in ((h, ~blank), (n, valid), (sub, valid))]
    if keyed is not None:
        hashes = [_only(c, keyed) for c in hashes]
    return (*hashes, spread(ok_values, pa.bool_()))


def _only(column: pa.ChunkedArray, keyed: np.ndarray) -> pa.ChunkedArray:
    """A dictionary column with its rows outside ``keyed`` set to null."""
    out, at = [], 0
    for ch in column.chunks:
        keep = pa.array(keyed[at:at + len(ch)])
        at += len(ch)
        idx = pc.if_else(keep, ch.indices, pa.scalar(None, ch.indices.type))
        out.append(pa.DictionaryArray.from_arrays(idx, ch.dictionary))
    return pa.chunked_array(out, column.type)


def _pseudonymise_plain(column: pa.ChunkedArray, key: bytes, keyed: np.ndarray | None
                        ) -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray,
                                   pa.ChunkedArray]:
    """``pseudonymise_ip`` of a column without a usable dictionary: each row parsed, equal
    addresses grouped (numbered by first appearance, as a dictionary encoding of the text
    would be), the rest grouped by trimmed text and sent through ``_text_digests``. Rows
    outside ``keyed`` are left out of the groups (code -1)."""
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    kind, high, low = parse_rows(column)
    parsed = np.where(kind == OTHER, np.uint8(NONE), kind)
    if keyed is not None:
        parsed[~keyed] = NONE
    codes, first = factorize(high, low, parsed)
    m = len(first)
    h, n, sub = _address_digests(kind[first], high[first], low[first], _mac_key(key))
    valid = np.ones(m, dtype=bool)
    blank = np.zeros(m, dtype=bool)
    others = np.flatnonzero(kind == OTHER)
    if len(others):
        texts = pc.utf8_trim_whitespace(column.take(pa.array(others)).combine_chunks())
        encoded = pc.dictionary_encode(texts)
        oh, on, osub, ovalid, oblank = _text_digests(encoded.dictionary, key)
        codes[others] = m + encoded.indices.to_numpy(zero_copy_only=False)
        h, n, sub = np.vstack([h, oh]), np.vstack([n, on]), np.vstack([sub, osub])
        valid = np.concatenate([valid, ovalid])
        blank = np.concatenate([blank, oblank])
    if keyed is None:
        idx = pa.array(codes, type=pa.int32(), mask=kind == NONE)
        ok = pa.chunked_array([pc.take(pa.array(valid, mask=blank), idx)])
    else:
        # Every row's validity, hashed or not: a parsed address is valid, a text as its
        # group says, a blank one (or a text that trims to nothing) null.
        idx = pa.array(codes, type=pa.int32(), mask=(kind == NONE) | ~keyed)
        ok_row = np.ones(len(kind), dtype=bool)
        null = kind == NONE
        if len(others):
            ok_row[others] = valid[codes[others]]
            null[others] = blank[codes[others]]
        ok = pa.chunked_array([pa.array(ok_row, mask=null)])

    def spread(values: pa.Array) -> pa.ChunkedArray:
        return pa.chunked_array([pa.DictionaryArray.from_arrays(idx, values)])
    return (spread(_hex(h, ~blank)), spread(_hex(n, valid)), spread(_hex(sub, valid)), ok)


def _text_digests(texts: pa.Array, key: bytes
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(address, prefix and subnet digests, is valid, is blank) of each text (already
    trimmed): dotted quads and plain IPv6 by the row kernel a plain column takes
    (``ipcolumn.parse_rows``), the rest by ``ipaddress``, unparseable text by a keyed hash of
    the text itself."""
    kind, high, low = parse_rows(pa.chunked_array([texts], type=texts.type))
    blank = kind == NONE
    bad_hash: dict[int, bytes] = {}
    others = np.flatnonzero(kind == OTHER)
    for i, text in zip(others.tolist(), texts.take(pa.array(others)).to_pylist(), strict=True):
        try:
            p = ipaddress.ip_address(text).packed
        except ValueError:
            bad_hash[i] = bytes.fromhex(keyed_hash(key, b"bad:" + text.encode()))
            kind[i] = NONE
            continue
        # An IPv6 with an embedded IPv4 or a zone id, or an IPv4 not written as a plain
        # dotted quad (rare).
        kind[i] = V6 if len(p) == 16 else V4
        high[i] = int.from_bytes(p[:8], "big") if len(p) == 16 else 0
        low[i] = int.from_bytes(p[-8:], "big") if len(p) == 16 else int.from_bytes(p, "big")
    h, n, sub = _address_digests(kind, high, low, _mac_key(key))
    for i, digest in bad_hash.items():
        h[i] = np.frombuffer(digest, dtype=np.uint8)
    return h, n, sub, (kind == V4) | (kind == V6), blank


def _address_digests(kind: np.ndarray, high: np.ndarray, low: np.ndarray, mac: bytes
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(address, prefix, subnet) digests ((k, 8) uint8 each, zeros where not an address) of
    parsed addresses: ``kind`` V4 (the 32 bits in ``low``) or V6 (``high``, ``low``)."""
    m = len(kind)
    h = np.zeros((m, 8), dtype=np.uint8)
    n = np.zeros((m, 8), dtype=np.uint8)
    sub = np.zeros((m, 8), dtype=np.uint8)
    at4 = np.flatnonzero(kind == V4)
    if len(at4):  # (each family's steps have a fixed cost the service's batches notice)
        packed4 = low[at4].astype(np.uint32)
        h[at4] = _digests(b"ip:", packed4.astype(">u4").view(np.uint8).reshape(-1, 4), mac)
        n[at4] = sub[at4] = _prefix_digests(packed4 & np.uint32(0xFFFFFF00), *V4_NET, mac)
    at6 = np.flatnonzero(kind == V6)
    if len(at6):
        # The /48 and /64 are the same bytes ``ip_network`` gives, cut from the addresses as
        # integers and hashed once per distinct prefix: the distinct /64s are found by
        # hashing, and the /48s among those.
        top = high[at6]
        body = np.empty((len(at6), 2), dtype=">u8")  # the 16 packed bytes, written once
        body[:, 0] = top
        body[:, 1] = low[at6]
        h[at6] = _digests(b"ip:", body.view(np.uint8), mac)
        site, at_site = distinct_codes(top)
        n[at6] = _prefix_digests(site >> np.uint64(16), *V6_NET, mac)[at_site]
        sub[at6] = _net_digests(site, *V6_SUB, mac)[at_site]
    return h, n, sub


def address_hashes(packed: bytes, key: bytes) -> tuple[str, str, str]:
    """(address hash, prefix hash, subnet hash) of one parsed address (4 or 16 packed bytes):
    what ``pseudonymise_ip`` gives its row, for the service's small batches, where the column
    kernels' fixed costs are most of the work."""
    def net(width: int, tail: bytes, value: int) -> str:
        return keyed_hash(key, b"net:" + value.to_bytes(width, "big") + tail)

    whole = keyed_hash(key, b"ip:" + packed)
    if len(packed) == 4:
        prefix = net(*V4_NET, int.from_bytes(packed, "big") >> 8 << 8)
        return whole, prefix, prefix
    top = int.from_bytes(packed[:8], "big")
    return whole, net(*V6_NET, top >> 16), net(*V6_SUB, top)


def device_hash(text: str, key: bytes) -> str:
    """The hash ``pseudonymise_text`` gives one device id (already trimmed, not empty)."""
    return keyed_hash(key, DEVICE_LABEL + text.encode())


def _digests(label: bytes, body: np.ndarray, mac: bytes) -> np.ndarray:
    """Keyed BLAKE2b (8 bytes) of ``label`` + each row of ``body`` (uint8, one message a row),
    as an (n, 8) uint8 array. The messages are one buffer, so each call is a slice of it."""
    k = len(body)
    if k == 0:
        return np.zeros((0, 8), dtype=np.uint8)
    width = body.shape[1]
    lo = np.arange(k, dtype=np.int64) * width
    return keyed_digests(mac, label, np.ascontiguousarray(body, dtype=np.uint8).ravel(), lo,
                         lo + width, threads=2 if k >= PARALLEL_DIGESTS else 1)


def _prefix_digests(prefix: np.ndarray, width: int, suffix: bytes, mac: bytes) -> np.ndarray:
    """Keyed hash of ``net:`` + each prefix (``width`` big-endian bytes) + ``suffix``, computed
    once per distinct prefix and spread back ((n, 8) uint8, one digest per input)."""
    uniq, inverse = distinct_codes(prefix)
    return _net_digests(uniq, width, suffix, mac)[inverse]


def _net_digests(prefix: np.ndarray, width: int, suffix: bytes, mac: bytes) -> np.ndarray:
    """Keyed hash of ``net:`` + each prefix (``width`` big-endian bytes) + ``suffix``."""
    wide = prefix.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - width:]
    tail = np.broadcast_to(np.frombuffer(suffix, dtype=np.uint8), (len(prefix), len(suffix)))
    return _digests(b"net:", np.hstack([wide, tail]), mac)


def _hex(digests: np.ndarray, present: np.ndarray) -> pa.Array:
    """16-hex-digit text of each 8-byte digest (what ``hexdigest`` gives), null where not
    ``present``, written into one Arrow buffer."""
    k = len(digests)
    chars = hex_digits(digests)
    offsets = np.arange(k + 1, dtype=np.int64) * 16
    if k * 16 < 2**31:
        offsets = offsets.astype(np.int32)
        kind = pa.string()
    else:
        kind = pa.large_string()
    nulls = int(k - np.count_nonzero(present))
    bitmap = pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None
    arr = pa.Array.from_buffers(kind, k, [bitmap, pa.py_buffer(offsets),
                                          pa.py_buffer(chars)], null_count=nulls)
    return arr if kind == pa.string() else arr.cast(pa.string())


def pseudonymise_text(column: pa.ChunkedArray, key: bytes, label: bytes) -> pa.Array:
    """Keyed hash of each value of a text column (device ids), nulls kept."""
    texts, spread = _distinct(column)
    mac = _mac_key(key)
    n = len(texts)
    # The values' bytes straight from the Arrow buffers, hashed by the compiled loop; the rare
    # value too long for one block goes through hashlib.
    size = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    buffers = texts.buffers()
    offsets = np.frombuffer(buffers[1], dtype=size)[texts.offset:texts.offset + n + 1] \
        if n else np.zeros(1, dtype=size)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else \
        np.zeros(0, dtype=np.uint8)
    lo, hi = offsets[:-1].astype(np.int64), offsets[1:].astype(np.int64)
    present = texts.is_valid().to_numpy(zero_copy_only=False) & (hi > lo)
    long = hi - lo > max_value(label)
    digests = keyed_digests(mac, label, data, lo, np.where(long, lo, hi))
    for i in np.flatnonzero(long & present).tolist():
        digests[i] = np.frombuffer(bytes.fromhex(
            keyed_hash(key, label + data[lo[i]:hi[i]].tobytes())), np.uint8)
    return spread(_hex(digests, present), pa.string())
