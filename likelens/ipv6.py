"""Compiled parsing of plain IPv6 text (hex groups and one ``::``) into 128 bits.

Mobile traffic gives millions of distinct IPv6 addresses a day; parsing them one Python call
at a time (``socket.inet_pton``, a loop and the byte slicing around it) was most of a 19M-event
log's ingest. ``parse6`` reads one text from the Arrow string buffers inside a compiled row
loop (``ipcolumn.parse_rows``). It is deliberately narrow: it accepts only what ``inet_pton``
accepts, with the same bytes (a property test holds it to that), and answers "not mine" for
anything else (embedded IPv4, zone ids, junk), which the caller hands to ``ipaddress``. A
wrong "not mine" costs speed, never a different hash.
"""

from __future__ import annotations

import numba
import numpy as np

HEX_VALUE = np.full(256, -1, dtype=np.int8)  # each byte's value as a hex digit, -1 for none
for _i, _c in enumerate(b"0123456789abcdef"):
    HEX_VALUE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    HEX_VALUE[_c] = 10 + _i
_ZERO = np.uint64(0)


@numba.njit(cache=True, nogil=True, inline="always")
def parse6(data: np.ndarray, start: int, end: int, hexval: np.ndarray, groups: np.ndarray
           ) -> tuple[bool, np.uint64, np.uint64]:
    """Parse data[start:end] as plain IPv6 text: (parsed, high 64 bits, low 64 bits).
    ``hexval`` is the value of each byte as a hex digit (-1 for none); ``groups`` is scratch
    space for eight groups (allocating it per call doubled the time)."""
    n = 0          # groups written
    gap = -1       # group index where "::" stands
    i = start
    if end - start < 2:
        return False, _ZERO, _ZERO
    if data[i] == 58:  # a leading colon must be "::"
        if data[i + 1] != 58:
            return False, _ZERO, _ZERO
        gap = 0
        i += 2
        if i == end:
            return True, _ZERO, _ZERO
    while True:
        value = 0
        digits = 0
        while i < end and digits <= 4:
            h = hexval[data[i]]
            if h < 0:
                break
            value = value * 16 + h
            digits += 1
            i += 1
        if digits == 0 or digits > 4 or n == 8:
            return False, _ZERO, _ZERO
        groups[n] = value
        n += 1
        if i == end:
            break
        if data[i] != 58:
            return False, _ZERO, _ZERO
        i += 1
        if i == end:  # a trailing single colon
            return False, _ZERO, _ZERO
        if data[i] == 58:
            if gap >= 0:
                return False, _ZERO, _ZERO
            gap = n
            i += 1
            if i == end:
                break
    if gap < 0:
        if n != 8:
            return False, _ZERO, _ZERO
    elif n > 7:  # "::" must stand for at least one group
        return False, _ZERO, _ZERO
    tail = n - gap if gap >= 0 else 0
    high = _ZERO
    low = _ZERO
    for g in range(8):
        if gap < 0 or g < gap:
            v = groups[g]
        elif g >= 8 - tail:
            v = groups[gap + g - (8 - tail)]
        else:
            v = 0
        if g < 4:
            high = (high << np.uint64(16)) | np.uint64(v)
        else:
            low = (low << np.uint64(16)) | np.uint64(v)
    return True, high, low
