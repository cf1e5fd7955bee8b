"""A group's meetings on a target: for each engagement of an account in a lockstep group, how
many other accounts of its group engaged the same target within a window of it.

One numba kernel, run by both engines: the embedded engine over the whole log, the Spark
engine per bucket of targets (a target's rows never span buckets, so the buckets' answers are
the whole log's). A sliding window over each (target, group) block sorted by time keeps a
count per account, so the cost is linear in the rows, where a range self-join is quadratic in
a block's size.
"""

from __future__ import annotations

import numba
import numpy as np


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
