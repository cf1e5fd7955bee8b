"""The view index's building blocks against plain-Python references: codes probed a chunk at a
time, completion computed in batches, and the flagged views counted with the video index."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from likelens import viewindex


@pytest.mark.parametrize("text", [False, True])
def test_codes_over_chunks_are_positions_in_the_keys(text: bool) -> None:
    """Each row's position among the keys, -1 for a null or a value not among them, in int32,
    whatever the chunking of the column."""
    keys = [40, 7, 13, 99]
    rows = [[7, None, 13], [], [5, 40, 40, 99], [None, 13]]
    kind = pa.string() if text else pa.int64()

    def typed(values: list[int | None]) -> pa.Array:
        return pa.array([None if v is None else (str(v) if text else v) for v in values], kind)

    column = pa.chunked_array([typed(r) for r in rows], kind)
    got = viewindex.codes(column, typed(keys))
    want = [-1 if v is None or v not in keys else keys.index(v) for r in rows for v in r]
    assert got.dtype == np.int32
    assert got.tolist() == want


def test_completion_in_batches_is_each_rows_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """min(watch / length, 1), NaN where either is missing or the length is 0, the same when
    the rows are cut into batches smaller than a chunk."""
    watch = [100, None, 50, 300, 0, 20, 7]
    length = [200, 100, 0, 100, None, 40, 7]
    table = pa.table({"watch_ms": pa.chunked_array([pa.array(watch[:4], pa.int32()),
                                                    pa.array(watch[4:], pa.int32())]),
                      "video_ms": pa.chunked_array([pa.array(length[:4], pa.int64()),
                                                    pa.array(length[4:], pa.int64())])})
    want = [math.nan if w is None or n is None or n == 0 else min(w / n, 1.0)
            for w, n in zip(watch, length, strict=True)]
    whole = viewindex.completion(table)
    monkeypatch.setattr(viewindex, "_BATCH_ROWS", 2)
    cut = viewindex.completion(table)
    for got in (whole, cut):
        np.testing.assert_array_equal(got, np.array(want))


@pytest.mark.parametrize("span", [1000, 2**33])  # times held as int32 offsets, or not
def test_flagged_views_are_counted_per_video_and_window(span: int) -> None:
    """The flagged subset built with the video index counts, per video and per time window,
    exactly the flagged views a plain loop finds; the first view of each video is its own,
    whether the index holds its times as offsets or as they are."""
    rng = np.random.default_rng(3)
    n = 500
    vid = rng.integers(-1, 6, n)  # -1: a row that is not a view
    start = 1_700_000_000_000  # epoch milliseconds
    ts = start + rng.integers(0, span, n)
    flags = rng.random(n) < 0.3
    events = pa.table({"watch_ms": rng.integers(0, 100, n), "video_ms": np.full(n, 100),
                       "creator_id": vid % 3})
    videos, flagged = viewindex.VideoViews.build(vid, ts, pa.array(np.arange(6)), events,
                                                 flags=flags)
    assert flagged is not None
    for v in range(6):
        assert videos.total(np.array([v]))[0] == np.count_nonzero(vid == v)
        assert flagged.per_video()[v] == np.count_nonzero((vid == v) & flags)
    assert videos.times.dtype == (np.int32 if span < 2**31 else np.int64)
    lo = start + np.array([span // 10, 0, span // 2])
    hi = start + np.array([span // 2, span, span // 2 + 1])
    q = np.array([2, 5, 0])
    want = [np.count_nonzero((vid == c) & flags & (ts >= a) & (ts < b))
            for c, a, b in zip(q, lo, hi, strict=True)]
    assert flagged.between(q, lo, hi).tolist() == want
    assert viewindex.VideoViews.build(vid, ts, pa.array(np.arange(6)), events)[1] is None
    seen, first = videos.first_view(np.array([-1, 0, 5]))
    assert seen.tolist() == [False, True, True]
    assert first.tolist() == [0, ts[vid == 0].min(), ts[vid == 5].min()]
    assert videos.earliest() == ts[vid >= 0].min()
