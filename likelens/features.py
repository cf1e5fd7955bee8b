"""Per-engagement and per-account features, computed once in DuckDB and shared by the detectors.

Every feature is a plain column on one table: detectors read columns, never raw events, so a new
detector costs no extra pass over the log. Joins on time are ASOF joins or window frames over
sorted partitions (never range self-joins, see DESIGN.md "Measured facts").
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens import runtime, viewindex
from likelens.arrays import action_mask, distinct_dictionaries, distinct_per_key
from likelens.engine import DuckDBEngine, Engine, connect
from likelens.ingest import shared_dictionaries, split_views
from likelens.schema import ACTIONS

SESSION_MS = 10 * 60_000  # views this close (in whole minutes) count as the feed session
REFERRAL_MS = 30 * 60_000  # an engagement this soon after someone else shared the video


def _a_row(code: np.ndarray, n_codes: int, wanted: np.ndarray | None) -> np.ndarray:
    """A row of each code in ``wanted`` (default: every code 0..n_codes-1), for values that
    are the same on every row of a code (an account's user id, a target's video)."""
    row = np.zeros(n_codes, dtype=np.int64)
    row[code] = np.arange(len(code), dtype=np.int64)
    return row if wanted is None else row[np.asarray(wanted, dtype=np.int64)]


@dataclass
class Features:
    """The engagement table with its features, and the connection that holds the log."""

    con: duckdb.DuckDBPyConnection
    engagements: pa.Table  # one row per non-view event, in input order
    has_views: bool
    has_device: bool
    has_ip: bool
    has_text: bool
    videos: viewindex.VideoViews | None = None  # the views grouped by video
    isolated_views: viewindex.FlaggedViews | None = None  # views opened alone, by video
    _target_codes: np.ndarray | None = field(default=None, repr=False)
    scale_out: Engine | None = field(default=None, repr=False)  # e.g. the Spark engine

    @property
    def engine(self) -> Engine:
        """The aggregates and joins detectors ask for (``engine.Engine``): the scale-out
        engine's when the scan runs on one, else DuckDB's on this connection."""
        if self.scale_out is not None:
            return self.scale_out
        return DuckDBEngine(self.con, self.engagements)

    @property
    def account_codes(self) -> np.ndarray:
        """Dense 0-based account code per engagement (same order as ``engagements``)."""
        return self.engagements["acc"].to_numpy(zero_copy_only=False)

    @property
    def n_accounts(self) -> int:
        codes = self.account_codes
        return int(codes.max()) + 1 if len(codes) else 0

    @property
    def target_codes(self) -> np.ndarray:
        """Dense 0-based target code per engagement, in target order (so node ids, and the
        peeling's tie-breaks, do not depend on row order); computed once, shared by the
        detectors."""
        if self._target_codes is None:
            _, inv = np.unique(self.engagements["target"].to_numpy(), return_inverse=True)
            self._target_codes = inv.astype(np.int64)
        return self._target_codes

    def account_ids(self, codes: np.ndarray | None = None) -> pa.Array:
        """The account (user id, as text) of each account code in ``codes`` (default: every
        code, in code order). One pass over the log, no sort."""
        return pc.cast(self.engagements["user_id"].take(pa.array(
            _a_row(self.account_codes, self.n_accounts, codes))), pa.string()
                       ).combine_chunks()

    def codes_of_accounts(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """This log's account code of each user id (text or integer); -1 when absent."""
        found = pc.index_in(pc.cast(ids, pa.string()), value_set=self.account_ids())
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)

    def target_keys(self, codes: np.ndarray | None = None) -> pa.Array:
        """The target of each target code in ``codes`` (default: every code, in code order) as
        text that holds across logs: the action and the video, or for a follow the creator
        (``target_codes`` are this log's own)."""
        tgt = self.target_codes
        e = self.engagements.select(["action", "video_id", "creator_id"]).take(pa.array(
            _a_row(tgt, int(tgt.max(initial=-1)) + 1, codes)))
        follow = pc.equal(e["action"], "follow")
        what = pc.if_else(follow, pc.cast(e["creator_id"], pa.string()),
                          pc.cast(e["video_id"], pa.string()))
        return pc.binary_join_element_wise(pc.cast(e["action"], pa.string()),
                                           pc.fill_null(what, ""), "\x1f"
                                           ).combine_chunks()

    def key_codes(self, column: str) -> np.ndarray:
        """Dense code per engagement of a text key column (device, address, range); -1 null."""
        col = self.engagements[column].combine_chunks()
        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col)
        # A dictionary may hold one value several times (ingest spreads one hash per distinct
        # address, and many addresses share a /24): code the values, not the entries.
        # A null entry (a blank address) codes as -1, like a null row.
        entry_code = pc.fill_null(pc.dictionary_encode(col.dictionary).indices, -1).to_numpy(
            zero_copy_only=False).astype(np.int64)
        idx = pc.fill_null(col.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if len(entry_code) == 0:
            return idx
        return np.where(idx >= 0, entry_code[np.maximum(idx, 0)], -1)

    def account_activity(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per account code: first engagement time, engagements, and the sum of their times
        (mod a prime, as float). What an account did, not what it is called: detectors that
        need a label-free order or seed for accounts draw it from these."""
        acc = self.account_codes.astype(np.int64)
        ts = self.engagements["ts"].to_numpy()
        n = self.n_accounts
        first = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first, acc, ts)
        count = np.bincount(acc, minlength=n)
        ts_sum = np.bincount(acc, weights=(ts % 1_000_003).astype(float), minlength=n)
        return first, count, ts_sum

    def shared_device(self) -> np.ndarray:
        """Per engagement: made on a device that two or more engaging accounts use (a
        family's phone, or a farm's). Not evidence by itself; it tells an engagement made on
        a phone of the account's own from one made on a shared one."""
        if not self.has_device:
            return np.zeros(self.engagements.num_rows, dtype=bool)
        dev = self.key_codes("device_hash")
        has = dev >= 0
        if not has.any():
            return has
        acc = self.account_codes.astype(np.int64)
        per_dev = distinct_per_key(dev[has], acc[has])
        return has & (per_dev[np.maximum(dev, 0)] >= 2)

    def per_account_max(self, values: np.ndarray) -> np.ndarray:
        """Each engagement gets the maximum of ``values`` over its account's engagements."""
        codes = self.account_codes
        best = np.full(self.n_accounts, -np.inf)
        np.maximum.at(best, codes, values)
        return best[codes]


def task_shaped(feats: Features) -> np.ndarray:
    """Engagements outside any feed session (or with no view before them where one is needed):
    how a task list engages. The one definition dense, burst and fusion's context use.

    Organic engagement comes out of sessions; engagement delivered from a task list does not.
    Peeling this subgraph finds the market's blocks instead of the organic heavy-user core,
    which is denser in the full graph but explained by its degrees. Without views in the log,
    every engagement is kept.
    """
    e = feats.engagements
    if not feats.has_views:
        return np.ones(e.num_rows, dtype=bool)
    sessions = e["session_views"].to_numpy(zero_copy_only=False)
    has_view = e["has_view"].to_numpy(zero_copy_only=False).astype(bool)
    needs = pc.is_in(e["action"], value_set=pa.array(["like", "comment", "share"])).to_numpy(
        zero_copy_only=False)
    return (sessions == 0) | (needs & ~has_view)


def pushed(feats: Features, window_ms: int) -> np.ndarray:
    """Engagements in the first ``window_ms`` of a video that came out during the log (its
    first view more than that after the log's start): the platform pushes a new video to its
    creator's followers, and heavy users who follow many creators open those pushes alone,
    video after video, meeting each other on every creator they share. Dense and lockstep
    leave them out; without views nothing is known of a video's debut and nothing is."""
    e = feats.engagements
    v = feats.videos
    if v is None or (earliest := v.earliest()) is None:
        return np.zeros(e.num_rows, dtype=bool)
    vid = e["vid"].to_numpy().astype(np.int64)
    ts = e["ts"].to_numpy()
    seen, first = v.first_view(vid)
    fresh = seen & (first - earliest > window_ms)
    return fresh & (ts - first <= window_ms)


@dataclass(frozen=True)
class Footprint:
    """What a set of engagements covers: the words a group's evidence is written from."""

    users: tuple[Any, ...]
    videos: tuple[Any, ...]
    first_ts: int
    last_ts: int
    devices: int
    networks: int
    engagements: int


def footprint(eng: pa.Table, rows: np.ndarray) -> Footprint:
    """The footprint of the engagements at ``rows`` (positions in ``eng``), ids sorted."""
    sub = eng.take(pa.array(rows, pa.int64()))
    if sub.num_rows == 0:
        return Footprint((), (), 0, 0, 0, 0, 0)
    ts = sub["ts"].to_numpy()
    return Footprint(
        tuple(sorted(pc.unique(sub["user_id"]).to_pylist())),
        tuple(sorted(pc.unique(sub["video_id"]).drop_null().to_pylist())),
        int(ts.min()), int(ts.max()),
        _distinct_count(sub["device_hash"]), _distinct_count(sub["ip_net"]), sub.num_rows)


def _distinct_count(column: pa.ChunkedArray) -> int:
    return len(pc.unique(pc.cast(column, pa.string())).drop_null())


def _numpy(column: pa.ChunkedArray, fill: int = 0) -> np.ndarray:
    """An integer column as one contiguous int64 numpy array, nulls as ``fill``."""
    return np.ascontiguousarray(pc.fill_null(column, fill).to_numpy(), dtype=np.int64)


def _take_or_null(column: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``column`` at ``rows``, null where a row is -1."""
    idx = pa.array(np.maximum(rows, 0), mask=rows < 0)
    return column.take(idx).combine_chunks() if len(rows) else pa.nulls(0, column.type)


def _present(table: pa.Table, name: str) -> bool:
    return table[name].null_count < table.num_rows


def _ranks(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Each row's rank among the column's distinct values (-1 for null), and those values.

    Ranks follow the values, not the order rows arrive in, so that nothing downstream (tie
    breaks, group order) depends on row order. The distinct values are sorted, then each row
    finds its position among them by hash probes a chunk at a time: encoding a column as long
    as the log and combining its chunks held 13 bytes a row of temporaries (the features
    stage's peak at 100M events).
    """
    values = pc.unique(column).drop_null()
    values = values.take(pc.array_sort_indices(values))
    return viewindex.codes(column, values).astype(np.int32, copy=False), values


def _contiguous(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array, as ``Table.combine_chunks`` gives it, one column at a time."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _plain_if_sparse(table: pa.Table) -> pa.Table:
    """Decode dictionary columns whose dictionaries hold more entries than the table has rows.

    Ingest keeps mobile traffic's address hashes as dictionaries over millions of distinct
    addresses (4 bytes a row over the whole log); the engagements are a small share of those
    rows, and every later encoding of such a column would hash the whole dictionary again,
    so plain text of the engagement rows is cheaper (this doubled the features and infra
    stages of a 19M-event IPv6 log before)."""
    for i, name in enumerate(table.column_names):
        col = table[name]
        if pa.types.is_dictionary(col.type):
            if sum(len(d) for d in distinct_dictionaries(col).values()) > table.num_rows:
                table = table.set_column(i, name, pc.cast(col, col.type.value_type))
    return table


def _valid(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.is_valid(column).to_numpy(zero_copy_only=False)


# The views' columns the view index reads once the accounts, videos and times are coded: the
# views' watch time and length, and a video's creator (``viewindex.VideoViews``).
_VIEW_COLUMNS = ("watch_ms", "video_ms", "creator_id")


def build_features(events: pa.Table, *, views: pa.Table | None = None,
                   threads: int | None = None) -> Features:
    """Give each engagement its context from the views, and index the views.

    ``events`` is the canonical log, or with ``views`` its engagements as ingest splits them
    (``ingest.split_views``: every column and ``_log_row``) and the views' ``VIEW_COLUMNS``.
    Views are never joined in SQL: ``viewindex`` groups them once by account and by video and
    answers each engagement's questions (session views, the view before, the video's views,
    the share before) by binary search. What the detectors need from the views afterwards
    (views per account, per video and per video-hour, accounts per device) is computed here, so
    that the log can be released as soon as this returns. The engagement table is built
    in Arrow and registered with DuckDB as ``eng``: no copy into the database.
    """
    con = connect(threads)
    if views is None:
        events, views = split_views(events)
    eng_rows = events["_log_row"].to_numpy()
    e = shared_dictionaries(_plain_if_sparse(events.drop_columns(["_log_row"])))
    del events
    has_views = views.num_rows > 0
    # What the engagements carry: a log whose views alone have devices or addresses has no
    # device or address evidence about its engagements.
    has_device = _present(e, "device_hash")
    has_ip = _present(e, "ip_net")
    has_text = _present(e, "text")

    # Accounts: codes among the accounts that engage, in id order (= dense_rank by user_id).
    eng_acc, users = _ranks(e["user_id"])
    # Account codes and video codes (compiled hash probes, a chunk at a time) release the GIL:
    # side by side. Videos are ranked over engagements and views together, in id order.
    with ThreadPoolExecutor(1) as pool:
        acc_job = pool.submit(viewindex.codes, views["user_id"], users)
        vid, video_values = _ranks(pa.chunked_array(
            e["video_id"].chunks + views["video_id"].chunks, e.schema.field("video_id").type))
        view_acc = acc_job.result().astype(np.int32, copy=False)
    # The engagements' codes are copied out: a slice would keep the views' alive to the end.
    eng_vid = vid[:e.num_rows].copy()
    view_vid = vid[e.num_rows:]
    del vid
    # Viewers who never engage get codes after the engaging accounts (for view isolation).
    watch_only = np.flatnonzero(view_acc < 0)
    if len(watch_only):
        enc = pc.dictionary_encode(views["user_id"].take(pa.array(watch_only))
                                   ).combine_chunks()
        view_acc[watch_only] = len(users) + pc.fill_null(
            enc.indices, -1 - len(users)).to_numpy(zero_copy_only=False)
    views = views.select(["ts", *_VIEW_COLUMNS])
    runtime.release_freed()  # the ids' holes cannot hold the arrays made next
    ts = _numpy(views["ts"])
    views = views.select(list(_VIEW_COLUMNS))
    eng_ts = _numpy(e["ts"])
    # The two indexes (by account, by video) one after the other: side by side, their
    # temporaries (each a few bytes per view) were the peak of a 100M-event scan.
    ctx = viewindex.view_context(
        eng_acc=eng_acc, eng_vid=eng_vid, eng_ts=eng_ts, n_accounts=len(users),
        view_acc=view_acc, view_vid=view_vid, ts=ts, bucket_ms=60_000,
        reach=SESSION_MS // 60_000)
    del view_acc
    runtime.release_freed()
    # Views opened alone, grouped by video: how many people a push, a link or a hot list
    # brought to a video around a time, whether or not they then engaged.
    videos, isolated_views = viewindex.VideoViews.build(view_vid, ts, video_values, views,
                                                        flags=ctx.isolated)
    del view_vid
    n = len(eng_rows)
    action = e["action"]
    action_idx = np.full(n, -1, dtype=np.int64)
    for k, name in enumerate(ACTIONS):
        action_idx[action_mask(action, name)] = k
    follow = action_idx == ACTIONS.index("follow")
    share = action_idx == ACTIONS.index("share")

    # Targets as integers: (video, action) pairs, then the creators that follows go to.
    creator_code, _ = _ranks(e["creator_id"])
    n_vid = max(len(video_values), 1)
    target = np.where(follow, n_vid * len(ACTIONS) + creator_code,
                      np.maximum(eng_vid, 0) * len(ACTIONS) + action_idx)
    # Arrays a row per engagement go as soon as they are used: on a 100M-event log each is
    # 0.16 GiB, and the table built at the end of this stage is its peak.
    del action_idx, creator_code

    # The latest share of the same video strictly before each engagement (a referral).
    share_row = viewindex.last_before(np.where(share, eng_vid, -1), n_vid, eng_ts, eng_vid,
                                      eng_ts, strict=True)
    has_share = share_row >= 0
    sr = np.maximum(share_row, 0)
    after_share = (has_share & (eng_acc[sr] != eng_acc)
                   & (eng_ts - eng_ts[sr] <= REFERRAL_MS))
    del share_row, has_share, sr

    view_row = ctx.view_row
    has_view = view_row >= 0
    view_ts = np.zeros(n, dtype=np.int64)  # (a log without views has no view times at all)
    view_ts[has_view] = ts[view_row[has_view]]
    del ts
    view_watch = _take_or_null(views["watch_ms"], view_row)
    video_ms = pc.coalesce(e["video_ms"], _take_or_null(views["video_ms"], view_row))
    del views
    since_view = np.where(has_view, eng_ts - view_ts, 0)
    del view_ts
    watch = pc.fill_null(view_watch, 0).to_numpy().astype(np.float64)
    length = pc.fill_null(video_ms, 0).to_numpy().astype(np.float64)
    frac_ok = _valid(view_watch) & (length > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        watch_frac = np.where(frac_ok, watch / length, 0.0)
    del watch, length
    in_session = (has_view & (since_view <= SESSION_MS)).astype(np.int64)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "pos": pa.array(np.arange(n, dtype=np.int32)),
        "rid": pa.array(eng_rows.astype(np.int64)),
        "acc": pa.array(eng_acc.astype(np.int32)),
        "vid": pa.array(eng_vid.astype(np.int32)),
    }
    for c in ("event_id", "ts", "user_id", "action", "video_id", "creator_id"):
        columns[c] = e[c]
    columns["target"] = pa.array(target)
    for c in ("device_hash", "ip_hash", "ip_net", "region", "text"):
        columns[c] = e[c]
    # The site subnet (/24, or /64 for IPv6); logs canonicalised before it existed use the
    # prefix.
    columns["ip_sub"] = e["ip_sub"] if "ip_sub" in e.column_names else e["ip_net"]
    columns |= {
        "has_view": pa.array(has_view),
        "watch_ms": view_watch,
        "video_ms": video_ms,
        "watch_frac": pa.array(watch_frac, mask=~frac_ok),
        "since_view_ms": pa.array(since_view, mask=~has_view),
        "after_share": pa.array(after_share),
        "session_views": pa.array(np.maximum(ctx.near_views - in_session, 0)),
        "acct_views": pa.array(ctx.views_per_account[eng_acc] if n else np.zeros(0, np.int64)),
        "video_views": pa.array(videos.total(eng_vid)),
    }
    del e
    # Each column is made contiguous as the last reference to its chunks goes: combining the
    # whole table at once held the engagements twice (the features stage's peak at 100M).
    eng = pa.table({name: _contiguous(columns.pop(name)) for name in list(columns)})
    con.register("eng", eng)
    con.register("video_views", videos.stats)
    return Features(con, eng, has_views, has_device, has_ip, has_text, videos,
                    isolated_views=isolated_views)
