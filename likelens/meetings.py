"""Lockstep's window kernels, run by both engines: the embedded engine over the whole log, the
Spark engine per bucket of targets (a target's rows never span buckets, so the buckets'
answers are the whole log's).

- ``pair_rows``: each distinct (account pair, target) whose accounts engaged the target within
  a window of each other; ``shared_pairs`` counts a pair's targets and keeps the pairs meeting
  on enough targets of two creators or more (``pair_meetings`` is both, on one machine; the
  Spark engine runs ``pair_rows`` per bucket and does that count as a group-by).
- ``meetings``: a group's meetings on a target: for each engagement of an account in a
  lockstep group, how many other accounts of its group engaged the same target within a
  window of it.

For ``meetings``, a sliding window over each (target, group) block sorted by time keeps a
count per account, so the cost is linear in the rows, where a range self-join is quadratic in
a block's size. ``pair_rows`` walks each row's later rows of its target within the window:
linear in the rows times the pairs per window, never quadratic in time.
"""

from __future__ import annotations

import numba
import numpy as np

from likelens import viewindex


@numba.njit(cache=True, nogil=True)
def _met_sorted(target: np.ndarray, group: np.ndarray, ts: np.ndarray, acc: np.ndarray,
                n_acc: int, window: int) -> np.ndarray:
    n = len(ts)
    out = np.zeros(n, dtype=np.int64)
    count = np.zeros(n_acc, dtype=np.int64)
    start = 0
    while start < n:
        end = start
        while end < n and target[end] == target[start] and group[end] == group[start]:
            end += 1
        lo = start
        hi = start
        distinct = 0
        for i in range(start, end):
            while hi < end and ts[hi] <= ts[i] + window:
                if count[acc[hi]] == 0:
                    distinct += 1
                count[acc[hi]] += 1
                hi += 1
            while ts[lo] < ts[i] - window:
                count[acc[lo]] -= 1
                if count[acc[lo]] == 0:
                    distinct -= 1
                lo += 1
            out[i] = distinct - 1  # the window always holds the row's own account
        for j in range(lo, hi):  # leave the counts at zero for the next block
            count[acc[j]] -= 1
        start = end
    return out


def meetings(target: np.ndarray, group: np.ndarray, ts: np.ndarray, acc: np.ndarray,
             window_ms: int) -> np.ndarray:
    """Per row: the distinct other accounts of its group (``group`` >= 0; rows of no group
    get 0) with a row on its target within ``window_ms`` of it, either side."""
    out = np.zeros(len(ts), dtype=np.int64)
    rows = np.flatnonzero(group >= 0)
    if len(rows) == 0:
        return out
    order = rows[np.lexsort((ts[rows], group[rows], target[rows]))]
    _, local = np.unique(acc[order], return_inverse=True)
    out[order] = _met_sorted(target[order].astype(np.int64), group[order].astype(np.int64),
                             ts[order].astype(np.int64), local.astype(np.int64),
                             int(local.max()) + 1, int(window_ms))
    return out


@numba.njit(cache=True, nogil=True)
def _pair_rows(acc: np.ndarray, tgt: np.ndarray, ts: np.ndarray, creator: np.ndarray, w: int,
               n_acc: int, fill: bool, key: np.ndarray, cre: np.ndarray) -> int:
    """Walk rows sorted by (target, time); for each row, the later rows of its target within
    ``w``. With ``fill``, writes each distinct (account pair, target) once into ``key``
    (a * n_acc + b, a < b) and ``cre``; returns how many there are (an upper bound without)."""
    n = len(acc)
    out = 0
    i = 0
    while i < n:
        end = i
        while end < n and tgt[end] == tgt[i]:
            end += 1
        first = out
        for x in range(i, end):
            y = x + 1
            while y < end and ts[y] - ts[x] <= w:
                if acc[x] != acc[y]:
                    if fill:
                        lo, hi = min(acc[x], acc[y]), max(acc[x], acc[y])
                        key[out] = lo * n_acc + hi
                        cre[out] = creator[x]
                    out += 1
                y += 1
        if fill and out - first > 1:  # one row per pair and target
            seg = np.sort(key[first:out])
            k = first
            for j in range(len(seg)):
                if j == 0 or seg[j] != seg[j - 1]:
                    key[k] = seg[j]
                    k += 1
            cre[first:k] = cre[first]
            out = k
        i = end
    return out


def pair_rows(acc: np.ndarray, tgt: np.ndarray, ts: np.ndarray, creator: np.ndarray, w: int,
              n_acc: int) -> tuple[np.ndarray, np.ndarray]:
    """One row per distinct (account pair, target) meeting within ``w`` ms, from rows sorted
    by (target, time): the pair's key (a * n_acc + b, a < b) and the target's creator."""
    empty = np.zeros(0, dtype=np.int64)
    if len(acc) < 2:
        return empty, empty
    bound = _pair_rows(acc, tgt, ts, creator, w, n_acc, False, empty, empty)
    key = np.empty(bound, dtype=np.int64)
    cre = np.empty(bound, dtype=np.int64)
    m = _pair_rows(acc, tgt, ts, creator, w, n_acc, True, key, cre)
    return key[:m], cre[:m]


def shared_pairs(key: np.ndarray, cre: np.ndarray, n_acc: int, min_shared: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, shared targets), ascending by pair, for the pairs of ``pair_rows`` meeting on
    ``min_shared`` targets or more of two creators or more."""
    empty = np.zeros(0, dtype=np.int64)
    ranked = np.sort(key)
    starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
    counts = np.diff(np.append(starts, len(ranked)))
    candidates = ranked[starts[counts >= min_shared]]
    if len(candidates) == 0:
        return empty, empty, empty
    # Only the candidates' rows are ordered to check that they span two creators.
    hit = viewindex.lookup(candidates, key) >= 0
    k, c = key[hit], cre[hit]
    order = np.lexsort((c, k))
    k, c = k[order], c[order]
    first = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    lo = np.minimum.reduceat(np.where(c < 0, np.iinfo(np.int64).max, c), first)
    hi = np.maximum.reduceat(c, first)
    shared = np.diff(np.append(first, len(k)))
    ok = (hi >= 0) & (lo != hi)
    pair = k[first][ok]
    return pair // n_acc, pair % n_acc, shared[ok]


def pair_meetings(acc: np.ndarray, tgt: np.ndarray, ts: np.ndarray, creator: np.ndarray,
                  w: int, n_acc: int, min_shared: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, shared targets) for pairs meeting on >= min_shared targets of >= 2 creators,
    from rows sorted by (target, time)."""
    key, cre = pair_rows(acc, tgt, ts, creator, w, n_acc)
    return shared_pairs(key, cre, n_acc, min_shared)
