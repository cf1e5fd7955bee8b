"""A few clean NDJSON events (the service's one-event requests) read in plain Python.

``ingest_raw`` costs 1.5-3 ms a call whatever the batch's size: Arrow's JSON reader, the
column kernels of the typed fast path and the keyed hashes each have a fixed price, and a
service answering one engagement per request pays it per micro-batch, on the thread that also
answers the requests. Here a small batch is one ``json.loads`` per line, checks per value and
one hash per address and device (~0.1 ms for one event).

It is deliberately narrow. It accepts only a batch whose every line is a clean event: contract
column names as written, JSON integers and strings of the kinds the contract expects, a known
action, counts in range, an address in plain IPv4 or IPv6 text. For such a batch it returns the
table ``ingest_raw`` returns (types included; a property test compares the two). Anything else
(a row that would be quarantined, a float, a duplicate key, whitespace two readers could trim
differently) returns None, and the caller runs ``ingest_raw``: a wrong None costs speed, never
a different table.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from likelens.ingest import CANONICAL
from likelens.privacy import address_hashes, device_hash
from likelens.schema import ACTIONS, COLUMN_BY_NAME, REQUIRED

MAX_LINES = 64
_I64 = (-(2**63), 2**63 - 1)
# What the SQL and typed paths cast a text id to BIGINT for (``fastpath._INT_LIKE``); a full
# match, since Python's ``$`` also matches before a final newline and RE2's does not.
_INT_LIKE = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_V4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_KIND = {name: c.kind for name, c in COLUMN_BY_NAME.items()}


class _Doubt(Exception):
    """The batch is not one this reader vouches for: the caller takes the general path."""


def parse_small(lines: Sequence[bytes], key: bytes) -> pa.Table | None:
    """The canonical events (with ``_row``) of clean NDJSON ``lines``, as
    ``ingest_raw(ndjson_to_raw(...), require_event_id=True, keep_rows=True)`` gives them, or
    None when the batch is large or anything in it is less than clean."""
    if not 0 < len(lines) <= MAX_LINES:
        return None
    try:
        rows = [_row(line) for line in lines]
        return _table(rows, key)
    except (_Doubt, UnicodeError):  # (text with a lone surrogate cannot be UTF-8)
        return None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # a repeated key: readers differ on which value wins
        raise _Doubt
    return out


def _row(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line.decode("utf-8"), object_pairs_hook=_pairs)
    except (ValueError, RecursionError):  # (UnicodeDecodeError, JSONDecodeError; nesting)
        raise _Doubt from None
    if not isinstance(obj, dict):
        raise _Doubt
    for name, value in obj.items():
        kind = _KIND.get(name)
        if kind is None:
            raise _Doubt  # unknown, or a name only a case-folding reader would recognise
        if value is None:
            continue
        if kind in ("time", "count"):
            _int64(value)
        elif kind == "id":
            if type(value) is int:
                _int64(value)
            elif type(value) is not str:
                raise _Doubt
        elif type(value) is not str:
            raise _Doubt
    return obj


def _int64(value: Any) -> None:
    if type(value) is not int or not _I64[0] <= value <= _I64[1]:  # (bool is not int here)
        raise _Doubt


def _ids(values: list[Any]) -> tuple[list[Any], pa.DataType]:
    """An id column as the typed path coerces it: JSON integers as int64; text trimmed of
    spaces, empty as null, int64 when every value left is a plain integer, else text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds == {str}:
        text = [None if v is None or not v.strip(" ") else v.strip(" ") for v in values]
        if all(_INT_LIKE.fullmatch(t) for t in text if t is not None):
            return [None if t is None else int(t) for t in text], pa.int64()
        return text, pa.string()
    if len(kinds) > 1:
        raise _Doubt  # mixed integers and text: Arrow's reader refuses the batch
    return values, pa.int64()


def _edges_plain(text: str) -> bool:
    """Whether ``text`` starts and ends with a visible ASCII character, so that no reader's
    idea of whitespace can trim it."""
    return "!" <= text[0] <= "~" and "!" <= text[-1] <= "~"


def _address(text: str) -> bytes:
    """Packed bytes of a plain IPv4 dotted quad (as ``ipcolumn.parse_rows`` reads it, leading
    zeros and all) or plain IPv6 text; anything else is a doubt."""
    if _V4.fullmatch(text):
        octets = [int(p) for p in text.split(".")]
        if max(octets) > 255:
            raise _Doubt
        return bytes(octets)
    if ":" in text and "." not in text and "%" not in text:
        try:
            return ipaddress.IPv6Address(text).packed
        except ValueError:
            raise _Doubt from None
    raise _Doubt


def _encoded(values: list[str | None]) -> pa.DictionaryArray:
    """Dictionary-encoded text in order of first appearance, as the general path encodes
    it (built by hand: Arrow's ``dictionary_encode`` costs 0.15 ms a call here)."""
    seen: dict[str, int] = {}
    index = [None if v is None else seen.setdefault(v, len(seen)) for v in values]
    return pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()),
                                          pa.array(list(seen), pa.string()))


def _table(rows: list[dict[str, Any]], key: bytes) -> pa.Table:
    present = {name for r in rows for name in r}
    if not all(c in present for c in REQUIRED) or "event_id" not in present:
        raise _Doubt  # the general path raises or quarantines
    n = len(rows)
    col = {name: [r.get(name) for r in rows] for name in present}
    out: dict[str, pa.Array] = {}
    for name in ("event_id", "user_id", "video_id", "creator_id"):
        if name in col:
            values, type_ = _ids(col[name])
            out[name] = pa.array(values, type_)
    actions = []
    for a in col["action"]:
        word = a.strip(" \t\r\n").lower() if a is not None else None
        if word not in ACTIONS:
            raise _Doubt
        actions.append(word)
    if any(t is None for t in col["ts"]) or out["user_id"].null_count or \
            out["event_id"].null_count:
        raise _Doubt
    video, creator = out["video_id"], out.get("creator_id")
    for i, a in enumerate(actions):
        if a == "follow":
            if creator is None or not creator[i].is_valid:
                raise _Doubt
        elif not video[i].is_valid:
            raise _Doubt
    for name, low in (("watch_ms", 0), ("video_ms", 1)):
        if any(v is not None and v < low for v in col.get(name, ())):
            raise _Doubt
    out["ts"] = pa.array(col["ts"], pa.int64())
    out["action"] = pa.array(actions, pa.string())
    for name in ("watch_ms", "video_ms"):
        if name in col:
            out[name] = pa.array(col[name], pa.int64())
    if "ip" in col:
        hashes: list[tuple[str | None, ...]] = []
        for text in col["ip"]:
            if text is None or text == "":
                hashes.append((None, None, None))
            elif not _edges_plain(text):
                raise _Doubt
            else:
                hashes.append(address_hashes(_address(text), key))
        for k, name in enumerate(("ip_hash", "ip_net", "ip_sub")):
            out[name] = _encoded([h[k] for h in hashes])
    if "device_id" in col:
        devices = []
        for text in col["device_id"]:
            if text is None or text == "":
                devices.append(None)
            elif not _edges_plain(text):
                raise _Doubt
            else:
                devices.append(device_hash(text, key))
        out["device_hash"] = _encoded(devices)
    for name in ("region", "text"):
        if name in col:
            out[name] = pa.array(col[name], pa.string())
    absent = {"watch_ms": pa.int64(), "video_ms": pa.int64(), "video_id": pa.int64(),
              "creator_id": pa.int64()}
    arrays = [out[c] if c in out else pa.nulls(n, absent.get(c, pa.string()))
              for c in CANONICAL]
    arrays.append(pa.array(range(n), pa.int64()))
    return pa.table(arrays, names=[*CANONICAL, "_row"])


__all__ = ["MAX_LINES", "parse_small"]
