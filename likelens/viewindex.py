"""The view stream's context around each engagement, with compiled kernels instead of SQL joins.

Views are nine events in ten, and each engagement needs facts from them: how many views its
account made in the feed session around it (``near``), the account's last view of the same
video before it (the ASOF "view before"), and how many views its video had in a time window.
In SQL these are joins of the engagements against every view; here the views are indexed once
(an account's, or a video's, views in one contiguous, time-sorted block) and each engagement
answers with binary searches. Cost: one pass over the views to group them, then O(log) per
engagement, with no sort of the whole log. The same kernels serve other per-key time windows
(a video's shares, a target's task-shaped engagements).

Accounts and videos arrive as dense codes (see ``features``); a row with code -1 is not indexed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True)
def _table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Open-addressing hash table over ``keys``: (slot keys, slot positions, -1 empty)."""
    bits = 4
    while (1 << bits) < 2 * len(keys):
        bits += 1
    size = 1 << bits
    shift = np.uint64(64 - bits)
    slot_key = np.zeros(size, dtype=np.int64)
    slot_pos = np.full(size, -1, dtype=np.int64)
    for i in range(len(keys)):
        h = np.int64((np.uint64(keys[i]) * _GOLDEN) >> shift)
        while slot_pos[h] >= 0 and slot_key[h] != keys[i]:
            h = (h + 1) & (size - 1)
        slot_key[h] = keys[i]
        slot_pos[h] = i
    return slot_key, slot_pos


@numba.njit(cache=True, nogil=True)
def _probe(slot_key: np.ndarray, slot_pos: np.ndarray, queries: np.ndarray,
           valid: np.ndarray, out: np.ndarray) -> None:
    """Each valid query's position in the table's keys, or -1, written into ``out``."""
    size = len(slot_key)
    bits = 0
    while (1 << bits) < size:
        bits += 1
    shift = np.uint64(64 - bits)
    for i in range(len(queries)):
        out[i] = -1
        if not valid[i]:
            continue
        k = queries[i]
        h = np.int64((np.uint64(k) * _GOLDEN) >> shift)
        while slot_pos[h] >= 0:
            if slot_key[h] == k:
                out[i] = slot_pos[h]
                break
            h = (h + 1) & (size - 1)


def _lookup(keys: np.ndarray, queries: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each query's position in ``keys`` (distinct int64), or -1 (invalid or absent)."""
    out = np.empty(len(queries), dtype=np.int64)
    _probe(*_table(keys), queries, valid, out)
    return out


def lookup(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position of each query in ``keys`` (distinct int64), -1 where absent."""
    queries = np.ascontiguousarray(queries, dtype=np.int64)
    return _lookup(np.ascontiguousarray(keys, dtype=np.int64), queries,
                   np.ones(len(queries), dtype=np.bool_))


def codes(column: pa.ChunkedArray, keys: pa.Array) -> np.ndarray:
    """Position of each value of ``column`` in ``keys`` (distinct values), -1 if absent or null;
    int32 while the keys fit.

    Integer ids go through a compiled hash table (one probe per row, no sort); text ids
    through Arrow's own hash lookup. Either runs a chunk at a time into the result: whole-column
    copies of the values and their validity were 9 bytes a row beside it (1.5 GiB on the views
    of a 100M-event log, the features stage's peak).
    """
    out = np.empty(len(column), dtype=np.int32 if len(keys) < 2**31 else np.int64)
    at = 0
    if pa.types.is_integer(column.type) and pa.types.is_integer(keys.type):
        table = _table(np.ascontiguousarray(keys.to_numpy(), dtype=np.int64))
        for chunk in column.chunks:
            valid = np.ascontiguousarray(pc.is_valid(chunk).to_numpy(zero_copy_only=False))
            values = np.ascontiguousarray(pc.fill_null(chunk, 0).to_numpy(), dtype=np.int64)
            _probe(*table, values, valid, out[at:at + len(chunk)])
            at += len(chunk)
        return out
    # One lookup over the column (Arrow builds the key set once), copied out a chunk at a time.
    for chunk in pc.index_in(column, value_set=keys).chunks:
        out[at:at + len(chunk)] = pc.fill_null(chunk, -1).to_numpy(zero_copy_only=False)
        at += len(chunk)
    return out


@numba.njit(cache=True, nogil=True)
def _group_into(code: np.ndarray, n_groups: int, ts: np.ndarray, order: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Stable counting sort of rows with code >= 0 by code, into ``order``; each block then
    sorted by time. Returns (block starts, sorted times)."""
    start = np.zeros(n_groups + 1, dtype=np.int64)
    for c in code:
        if c >= 0:
            start[c + 1] += 1
    for g in range(n_groups):
        start[g + 1] += start[g]
    fill = start[:-1].copy()
    times = np.empty(start[n_groups], dtype=np.int64)
    for i in range(len(code)):
        c = code[i]
        if c >= 0:
            order[fill[c]] = i
            times[fill[c]] = ts[i]
            fill[c] += 1
    for g in range(n_groups):
        lo, hi = start[g], start[g + 1]
        for j in range(lo + 1, hi):
            if times[j] < times[j - 1]:
                local = np.argsort(times[lo:hi], kind="mergesort")
                order[lo:hi] = order[lo:hi][local]
                times[lo:hi] = times[lo:hi][local]
                break
    return start, times


def _group(code: np.ndarray, n_groups: int, ts: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group rows by ``code`` (-1: left out): (block starts, row order, sorted times).

    A log in time order needs no sorting inside blocks at all; one that is not pays for
    sorting its blocks, never the whole log. Row numbers are int32 while they fit: half the
    memory of the largest array here.
    """
    code = np.ascontiguousarray(code)
    n_rows = int(np.count_nonzero(code >= 0))
    order = np.empty(n_rows, dtype=np.int32 if len(code) < 2**31 else np.int64)
    start, times = _group_into(code, n_groups, np.ascontiguousarray(ts, dtype=np.int64), order)
    return start, order, times


@numba.njit(cache=True, nogil=True)
def _count_in_window(start: np.ndarray, times: np.ndarray, code: np.ndarray, lo: np.ndarray,
                     hi: np.ndarray) -> np.ndarray:
    """Per query: rows of its block with lo <= time < hi."""
    out = np.zeros(len(code), dtype=np.int64)
    for i in range(len(code)):
        c = code[i]
        if c < 0:
            continue
        block = times[start[c]:start[c + 1]]
        out[i] = (np.searchsorted(block, hi[i], side="left")
                  - np.searchsorted(block, lo[i], side="left"))
    return out


@numba.njit(cache=True, nogil=True)
def _alone_in_blocks(start: np.ndarray, times: np.ndarray, bucket_ms: int, reach: int
                     ) -> np.ndarray:
    """Per sorted row: no other row of its block lies within ``reach`` buckets of its own.
    Blocks are time-sorted, so the nearest neighbours on either side decide: one pass."""
    out = np.zeros(len(times), dtype=np.bool_)
    for g in range(len(start) - 1):
        for i in range(start[g], start[g + 1]):
            b = times[i] // bucket_ms
            if i > start[g] and times[i - 1] // bucket_ms >= b - reach:
                continue
            if i + 1 < start[g + 1] and times[i + 1] // bucket_ms <= b + reach:
                continue
            out[i] = True
    return out


@numba.njit(cache=True, nogil=True)
def _last_view_of(start: np.ndarray, order: np.ndarray, times: np.ndarray, vid: np.ndarray,
                  eng_acc: np.ndarray, eng_vid: np.ndarray, eng_ts: np.ndarray) -> np.ndarray:
    """Per engagement: the account's latest view of the same video at or before it (-1: none).

    The search walks back from the engagement's time through the account's own views, which
    ends at once for the common case (the view just before the like) and at the start of a
    short block for accounts that like without viewing.
    """
    out = np.full(len(eng_acc), -1, dtype=np.int64)
    for i in range(len(eng_acc)):
        a, v = eng_acc[i], eng_vid[i]
        if a < 0 or v < 0:
            continue
        lo = start[a]
        j = lo + np.searchsorted(times[lo:start[a + 1]], eng_ts[i], side="right") - 1
        while j >= lo:
            if vid[j] == v:
                out[i] = order[j]
                break
            j -= 1
    return out


@numba.njit(cache=True, nogil=True)
def _completion(watch: np.ndarray, watch_ok: np.ndarray, length: np.ndarray,
                length_ok: np.ndarray, out: np.ndarray) -> None:
    """min(watch / length, 1) per row into ``out``, NaN where either is unknown or the length
    is 0."""
    for i in range(len(watch)):
        if watch_ok[i] and length_ok[i] and length[i] > 0:
            out[i] = min(watch[i] / length[i], 1.0)
        else:
            out[i] = np.nan


_BATCH_ROWS = 1 << 20


def completion(events: pa.Table) -> np.ndarray:
    """min(watch_ms / video_ms, 1) of every log row, NaN where either is unknown.

    Computed a million rows at a time into the result: the two columns as whole-log int64
    arrays with their validity were 18 bytes a row beside the log, and batches as long as a
    file's run of row groups (millions of rows) left their temporaries' pages touched all over
    the heap's free memory (2 GiB of RSS over what was in use, on the views of 100M events).
    """
    out = np.empty(events.num_rows, dtype=np.float64)
    at = 0
    for batch in events.select(["watch_ms", "video_ms"]).to_batches(_BATCH_ROWS):
        parts = []
        for col in batch.columns:
            parts.append(np.ascontiguousarray(pc.fill_null(col, 0).to_numpy(), dtype=np.int64))
            parts.append(np.ascontiguousarray(pc.is_valid(col).to_numpy(zero_copy_only=False)))
        _completion(*parts, out[at:at + batch.num_rows])
        at += batch.num_rows
    return out


@numba.njit(cache=True, nogil=True)
def _block_medians(start: np.ndarray, order: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per block: median of its rows' non-NaN ``values`` (NaN if none)."""
    n = len(start) - 1
    out = np.full(n, np.nan)
    buf = np.empty(64)
    for g in range(n):
        lo, hi = start[g], start[g + 1]
        if hi - lo > len(buf):
            buf = np.empty(hi - lo)
        k = 0
        for j in range(lo, hi):
            v = values[order[j]]
            if not np.isnan(v):
                buf[k] = v
                k += 1
        if k:
            out[g] = np.median(buf[:k])
    return out


@numba.njit(cache=True, nogil=True)
def _last_in_block(start: np.ndarray, order: np.ndarray, times: np.ndarray, code: np.ndarray,
                   at: np.ndarray, strict: bool) -> np.ndarray:
    """Per query: the row of its block with the latest time before ``at`` (-1 if none).

    "Before" is ``<`` when ``strict``, else ``<=``.
    """
    out = np.full(len(code), -1, dtype=np.int64)
    for i in range(len(code)):
        c = code[i]
        if c < 0:
            continue
        lo = start[c]
        block = times[lo:start[c + 1]]
        k = (np.searchsorted(block, at[i], side="left") if strict
             else np.searchsorted(block, at[i], side="right"))
        if k > 0:
            out[i] = order[lo + k - 1]
    return out


def last_before(row_code: np.ndarray, n_codes: int, row_ts: np.ndarray, code: np.ndarray,
                at: np.ndarray, *, strict: bool) -> np.ndarray:
    """For each query (code, at): the latest row with that code before ``at`` (-1: none)."""
    start, order, times = _group(np.ascontiguousarray(row_code, dtype=np.int64), n_codes,
                                 np.ascontiguousarray(row_ts, dtype=np.int64))
    return _last_in_block(start, order, times, np.ascontiguousarray(code, dtype=np.int64),
                          np.ascontiguousarray(at, dtype=np.int64), strict)


def count_within(row_code: np.ndarray, n_codes: int, row_ts: np.ndarray, code: np.ndarray,
                 lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each query (code, lo, hi): rows with that code and lo <= time < hi."""
    start, _, times = _group(row_code, n_codes, row_ts)
    return _count_in_window(start, times, np.ascontiguousarray(code, dtype=np.int64),
                            np.ascontiguousarray(lo, dtype=np.int64),
                            np.ascontiguousarray(hi, dtype=np.int64))


@dataclass
class ViewContext:
    """Per engagement: views in the feed session around it and the last view of its video."""

    near_views: np.ndarray   # the account's views in the buckets around the engagement
    view_row: np.ndarray     # log row of the account's last view of the video, or -1
    views_per_account: np.ndarray  # views per account code
    isolated: np.ndarray     # per log row: a view with no other view of its account around it


def view_context(*, eng_acc: np.ndarray, eng_vid: np.ndarray, eng_ts: np.ndarray,
                 n_accounts: int, view_acc: np.ndarray, view_vid: np.ndarray, ts: np.ndarray,
                 bucket_ms: int, reach: int) -> ViewContext:
    """Index the views by account (rows with ``view_acc`` -1 are not views), then answer.

    ``near_views`` keeps the bucket definition of a feed session: the account's views whose
    time bucket lies within ``reach`` buckets of the engagement's bucket.
    """
    # Accounts that only watch have codes from ``n_accounts`` on: their views count for
    # ``isolated`` but are never asked about by an engagement.
    n_groups = max(n_accounts, int(np.max(view_acc, initial=-1)) + 1)
    start, order, times = _group(view_acc, n_groups, ts)
    eng_acc = np.ascontiguousarray(eng_acc, dtype=np.int64)
    eng_ts = np.ascontiguousarray(eng_ts, dtype=np.int64)
    bucket = eng_ts // bucket_ms
    near = _count_in_window(start, times, eng_acc, (bucket - reach) * bucket_ms,
                            (bucket + reach + 1) * bucket_ms)
    vid_sorted = np.asarray(view_vid)[order]
    row = _last_view_of(start, order, times, vid_sorted, eng_acc,
                        np.ascontiguousarray(eng_vid, dtype=np.int64), eng_ts)
    # The same session test for every view: one opened alone (from a push, a link, a hot list
    # or a task list) has no other view of its account in the buckets around it.
    isolated = np.zeros(len(view_acc), dtype=bool)
    isolated[order[_alone_in_blocks(start, times, bucket_ms, reach)]] = True
    return ViewContext(near, row, np.diff(start)[:n_accounts], isolated)


def _narrowed(times: np.ndarray) -> tuple[np.ndarray, int]:
    """(times, base): int32 offsets from the earliest where the span fits (24 days in ms),
    else the times as they are and base 0. The video index's times stay alive through the
    detectors: 4 bytes a view instead of 8 (0.35 GiB at 100M events). ``times`` (int64, owned
    by the caller) is shifted in place."""
    if len(times) == 0:
        return times, 0
    base = int(times.min())
    if int(times.max()) - base >= 2**31:
        return times, 0
    times -= base
    return times.astype(np.int32), base


class _Blocks:
    """Rows grouped by video code (``start``), each block's times sorted, held as offsets
    from ``base``: counts per video and per time window."""

    def __init__(self, start: np.ndarray, times: np.ndarray, base: int) -> None:
        self.start, self.times, self.base = start, times, base

    def per_video(self) -> np.ndarray:
        """Rows of every video code."""
        return np.diff(self.start)

    def total(self, vid: np.ndarray) -> np.ndarray:
        """Rows of each video code (0 for -1)."""
        counts = self.per_video()
        return np.where(vid >= 0, counts[np.maximum(vid, 0)], 0) if len(counts) else (
            np.zeros(len(vid), dtype=np.int64))

    def between(self, vid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Rows of each video code with lo <= time < hi (0 for -1)."""
        return _count_in_window(self.start, self.times,
                                np.ascontiguousarray(vid, dtype=np.int64),
                                np.asarray(lo, dtype=np.int64) - self.base,
                                np.asarray(hi, dtype=np.int64) - self.base)


class VideoViews(_Blocks):
    """Views grouped by video: counts, counts within a time window, and completion medians."""

    def __init__(self, start: np.ndarray, times: np.ndarray, stats: pa.Table,
                 base: int = 0) -> None:
        super().__init__(start, times, base)
        self.stats = stats

    @classmethod
    def build(cls, view_vid: np.ndarray, ts: np.ndarray, dictionary: pa.Array,
              events: pa.Table, flags: np.ndarray | None = None
              ) -> tuple[VideoViews, FlaggedViews | None]:
        """``view_vid``: code of each log row's video in ``dictionary`` (-1: not a view).
        With ``flags`` (one bool per row) also the flagged views, counted the same ways.

        The rows' order by video is used here and let go: kept, it was 4 bytes a view through
        the detectors, for one subset taken right after the build."""
        start, order, times = _group(view_vid,
                                     len(dictionary), np.ascontiguousarray(ts, dtype=np.int64))
        medians = _block_medians(start, order, completion(events))
        counts = np.diff(start)
        seen = np.flatnonzero(counts > 0)
        first = order[start[seen]]
        creator = events["creator_id"].take(pa.array(first))
        stats = pa.table({
            "video_id": dictionary.take(pa.array(seen)),
            "creator_id": creator.combine_chunks() if isinstance(creator, pa.ChunkedArray)
            else creator,
            "views": pa.array(counts[seen]),
            "completion": pa.array(medians[seen], mask=np.isnan(medians[seen])),
        })
        times, base = _narrowed(times)
        videos = cls(start, times, stats, base)
        if flags is None:
            return videos, None
        return videos, FlaggedViews.of(videos, np.asarray(flags, dtype=bool)[order])

    def first_view(self, vid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whether each video code has a view, the time of its first view, 0 where none)."""
        if len(self.times) == 0:
            return np.zeros(len(vid), dtype=bool), np.zeros(len(vid), dtype=np.int64)
        counts = self.per_video()
        seen = (vid >= 0) & (counts[np.maximum(vid, 0)] > 0)
        at = np.minimum(self.start[np.maximum(vid, 0)], len(self.times) - 1)
        return seen, np.where(seen, self.times[at].astype(np.int64) + self.base, 0)

    def earliest(self) -> int | None:
        """The time of the first view of all, None without views."""
        return int(self.times.min()) + self.base if len(self.times) else None


class FlaggedViews(_Blocks):
    """A subset of the views (say, those opened alone), grouped by video like the index it
    was taken from: only the flagged views' times are kept, no second grouping of the log."""

    @classmethod
    def of(cls, videos: VideoViews, flags_sorted: np.ndarray) -> FlaggedViews:
        """The views of ``videos`` whose flag (in the index's row order) is set."""
        hits = np.flatnonzero(flags_sorted)
        block = np.searchsorted(videos.start, hits, side="right") - 1
        start = np.zeros(len(videos.start), dtype=np.int64)
        np.cumsum(np.bincount(block, minlength=len(videos.start) - 1), out=start[1:])
        return cls(start, videos.times[hits], videos.base)
