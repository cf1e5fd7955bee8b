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
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.errors import InputError

DEMO_KEY = b"likelens-demo-key-do-not-use-in-production"
KEY_ENV = "LIKELENS_KEY"


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


Spread = Callable[[list, pa.DataType], pa.ChunkedArray]  # type: ignore[type-arg]


def _distinct(column: pa.ChunkedArray) -> tuple[pa.Array, Spread]:
    """Distinct values of a text column, trimmed, and a function that spreads one value per
    distinct back to the rows (null for null, blank or empty values).

    A dictionary-encoded column (as Parquet's dictionary pages decode) is handled on its
    dictionary alone: no per-row string is ever materialised.
    """
    if pa.types.is_dictionary(column.type) and _few_distinct(column):
        col = column.unify_dictionaries()
        values = (col.chunk(0).dictionary if col.num_chunks
                  else pa.array([], column.type.value_type))
        texts = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))

        def spread(per: list, type_: pa.DataType) -> pa.ChunkedArray:  # type: ignore[type-arg]
            table = pa.array(per, type=type_)
            if pa.types.is_string(type_):  # stay dictionary-encoded: no per-row strings
                return pa.chunked_array([pa.DictionaryArray.from_arrays(ch.indices, table)
                                         for ch in col.chunks])
            return pa.chunked_array([pc.take(table, ch.indices) for ch in col.chunks],
                                    type=type_)
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

    def spread_plain(per: list, type_: pa.DataType) -> pa.ChunkedArray:  # type: ignore[type-arg]
        return pa.chunked_array([pc.take(pa.array(per, type=type_), idx)], type=type_)
    return uniques, spread_plain


def _few_distinct(column: pa.ChunkedArray) -> bool:
    """Whether unifying a dictionary column's chunk dictionaries is the cheap way to its
    distinct values. It is while the dictionaries hold fewer entries than the column has rows
    (a platform day's addresses: 7.4M entries for 19.8M rows, 1.6 s); past that (mobile
    traffic whose every row group holds its own millions of addresses: 68M entries for 18.8M
    rows) decoding and encoding the column once is several times cheaper."""
    total = sum(len(ch.dictionary) for ch in column.chunks)
    return column.num_chunks <= 1 or total <= len(column)


_V4 = r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$"


def _parse_v4(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised dotted-quad parsing: (is valid IPv4, packed uint32) per text."""
    shaped = pc.match_substring_regex(texts, _V4).to_numpy(zero_copy_only=False)
    packed = np.zeros(len(texts), dtype=np.uint32)
    ok = np.zeros(len(texts), dtype=bool)
    pos = np.flatnonzero(shaped)
    if len(pos):
        parts = pc.split_pattern(texts.take(pa.array(pos)), ".").flatten()
        octets = pc.cast(parts, pa.int64()).to_numpy().reshape(-1, 4)
        fits = (octets <= 255).all(axis=1)
        packed[pos] = (octets[:, 0] << 24 | octets[:, 1] << 16 | octets[:, 2] << 8
                       | octets[:, 3]).astype(np.uint32)
        ok[pos] = fits
    return ok, packed


def pseudonymise_ip(column: pa.ChunkedArray, key: bytes
                    ) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """Return (address hash, prefix hash, subnet hash, is_valid) for a column of IP text.

    The prefix is the /24 of IPv4 and the /48 of IPv6. The subnet is where one site's devices
    sit: the /24 again for IPv4, the /64 for IPv6, because a carrier's /48 pools thousands of
    phones (each with a /64 of its own) while a farm's accounts share one /64.

    IPv4 addresses are parsed and packed with vectorised Arrow kernels; only the rest (IPv6,
    junk) goes through ``ipaddress``. An unparseable address still gets a hash of its text (so
    the quarantine never holds it in clear) but no prefix hash, and is_valid is false.
    """
    texts, spread = _distinct(column)
    ok, packed = _parse_v4(texts)
    mac = _mac_key(key)
    blake = hashlib.blake2b
    m = len(texts)
    h = np.full(m, None, dtype=object)
    n = np.full(m, None, dtype=object)
    sub = np.full(m, None, dtype=object)
    v4 = np.flatnonzero(ok)
    raw = packed[v4].astype(">u4").tobytes()
    h[v4] = [blake(b"ip:" + raw[4 * j:4 * j + 4], key=mac, digest_size=8).hexdigest()
             for j in range(len(v4))]
    n[v4] = sub[v4] = _prefix_hashes(packed[v4] & np.uint32(0xFFFFFF00), 4, b"\x18", mac)
    others = np.flatnonzero(~ok)
    valid = ok.copy()
    blank = np.zeros(m, dtype=bool)
    if len(others):
        other_texts = texts.take(pa.array(others))
        # Plain hex-and-colon IPv6 (nearly all of it) is parsed by inet_pton, twenty times
        # faster than ``ipaddress`` and in agreement with it on such text (fuzzed: 500,000
        # strings, no disagreement); anything else (embedded IPv4, zone ids) takes ipaddress.
        plain6 = pc.match_substring_regex(other_texts, r"^[0-9A-Fa-f:]*:[0-9A-Fa-f:]*$")
        plain6 = plain6.to_numpy(zero_copy_only=False)
        at6: list[int] = []
        packed6: list[bytes] = []
        net_cache: dict[bytes, str] = {}
        for i, text, fast in zip(others.tolist(), other_texts.to_pylist(), plain6.tolist(),
                                 strict=True):
            if not text:  # blank: no address at all
                blank[i] = True
                continue
            p = None
            if fast:
                try:
                    p = socket.inet_pton(socket.AF_INET6, text)
                except OSError:
                    p = None
            if p is None:
                try:
                    p = ipaddress.ip_address(text).packed
                except ValueError:
                    h[i] = keyed_hash(key, b"bad:" + text.encode())
                    continue
            valid[i] = True
            if len(p) == 16:
                at6.append(i)
                packed6.append(p)
            else:  # an IPv4 that was not a plain dotted quad (rare)
                h[i] = blake(b"ip:" + p, key=mac, digest_size=8).hexdigest()
                n[i] = sub[i] = _cached(net_cache, b"net:" + p[:3] + b"\x00\x18", mac)
        if at6:
            # Carrier pools give millions of distinct IPv6 addresses: only the address hash
            # is per address; the /48 and /64 (the same bytes ``ip_network`` gives) are cut
            # from the packed addresses as integers and hashed once per distinct prefix.
            idx = np.array(at6, dtype=np.int64)
            h[idx] = [blake(b"ip:" + p, key=mac, digest_size=8).hexdigest() for p in packed6]
            top = np.frombuffer(b"".join(p[:8] for p in packed6), dtype=">u8")
            n[idx] = _prefix_hashes(top >> np.uint64(16), 6, bytes(10) + b"\x30", mac)
            sub[idx] = _prefix_hashes(top, 8, bytes(8) + b"\x40", mac)
    ok_values = np.where(blank, None, valid).tolist()
    return (spread(h.tolist(), pa.string()), spread(n.tolist(), pa.string()),
            spread(sub.tolist(), pa.string()), spread(ok_values, pa.bool_()))


def _prefix_hashes(prefix: np.ndarray, width: int, suffix: bytes, mac: bytes) -> np.ndarray:
    """Keyed hash of ``net:`` + each prefix (``width`` big-endian bytes) + ``suffix``, computed
    once per distinct prefix and spread back (an object array, one hash per input)."""
    if len(prefix) == 0:
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(prefix, return_inverse=True)
    hashes = np.array([hashlib.blake2b(b"net:" + int(u).to_bytes(width, "big") + suffix,
                                       key=mac, digest_size=8).hexdigest() for u in uniq],
                      dtype=object)
    return hashes[inverse.ravel()]


def _cached(cache: dict[bytes, str], data: bytes, mac: bytes) -> str:
    """Keyed hash of ``data``, computed once per distinct value."""
    out = cache.get(data)
    if out is None:
        out = cache[data] = hashlib.blake2b(data, key=mac, digest_size=8).hexdigest()
    return out


def pseudonymise_text(column: pa.ChunkedArray, key: bytes, label: bytes) -> pa.Array:
    """Keyed hash of each value of a text column (device ids), nulls kept."""
    texts, spread = _distinct(column)
    mac = _mac_key(key)
    values = [hashlib.blake2b(label + v.encode(), key=mac, digest_size=8).hexdigest() if v
              else None for v in texts.to_pylist()]
    return spread(values, pa.string())
