"""Keyed pseudonymisation of IP addresses and device ids.

IP addresses and device ids are personal data: they are replaced at ingest by a keyed hash
(HMAC-SHA256, truncated to 64 bits, hex) and never written out in clear. Farms show up as network
ranges rather than single addresses, so beside the hash of an address we keep the hash of its
prefix (/24 for IPv4, /48 for IPv6): two addresses in one range share a prefix hash, and nothing
else about them can be read back without the key.

Hashing runs over the distinct values of a column only, so a day of traffic with millions of rows
costs as many HMACs as it has distinct addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import sys
from pathlib import Path

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
    """HMAC-SHA256 of ``value`` under ``key``, as 16 hex digits."""
    return hmac.new(key, value, hashlib.sha256).hexdigest()[:16]


def _per_distinct(column: pa.ChunkedArray) -> tuple[list[str], pa.Array]:
    """Distinct non-null values of a column and, per row, the index of its value among them."""
    uniques = pc.unique(column).drop_null()
    return uniques.to_pylist(), pc.index_in(column, value_set=uniques)


def _spread(values: list, idx: pa.Array, type_: pa.DataType) -> pa.Array:  # type: ignore[type-arg]
    """Per-row array from per-distinct ``values`` (null where the row was null)."""
    return pc.take(pa.array(values, type=type_), idx)


def pseudonymise_ip(column: pa.ChunkedArray, key: bytes) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Return (address hash, prefix hash, is_valid) for a column of IP text.

    An unparseable address still gets a hash of its text (so the quarantine never holds it in
    clear) but no prefix hash, and is_valid is false.
    """

    def one(text: str) -> tuple[str | None, str | None, bool]:
        try:
            addr = ipaddress.ip_address(text.strip())
        except ValueError:
            return keyed_hash(key, b"bad:" + text.encode()), None, False
        bits = 24 if addr.version == 4 else 48
        net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
        return (
            keyed_hash(key, b"ip:" + addr.packed),
            keyed_hash(key, b"net:" + net.network_address.packed + bytes([bits])),
            True,
        )

    uniques, idx = _per_distinct(column)
    results = [one(v) for v in uniques]
    return (
        _spread([r[0] for r in results], idx, pa.string()),
        _spread([r[1] for r in results], idx, pa.string()),
        _spread([r[2] for r in results], idx, pa.bool_()),
    )


def pseudonymise_text(column: pa.ChunkedArray, key: bytes, label: bytes) -> pa.Array:
    """Keyed hash of each value of a text column (device ids), nulls kept."""
    uniques, idx = _per_distinct(column)
    return _spread([keyed_hash(key, label + v.encode()) for v in uniques], idx, pa.string())
