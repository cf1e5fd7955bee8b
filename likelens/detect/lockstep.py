"""Lockstep: accounts that engage the same targets within the same short windows, again and again.

CopyCatch's observation: a seller's accounts deliver order after order together, so pairs of
them meet on many targets within minutes of each other. Pairs are found by one compiled walk
over the engagements sorted by (target, time) (``meetings.pair_rows``, run by the engine: per
bucket of targets on Spark): each row meets the later rows of its target within the window,
which is linear in the engagements times the pairs per window, never quadratic in time.

Fans who like one creator's new videos right after each publish meet on several targets too,
but all of one creator: a pair counts only when its shared targets span at least two creators.
Followers of several creators meet on each of their pushes, so engagements in a new video's
push window (``features.pushed``) do not count either. Friends who open a link one of them
shared arrive together as well, but from inside their feed sessions: an engagement that follows
someone else's share of the video and sits in a session is a referral and does not count as
lockstep.

A window in which one target collects more than ``max_cell`` engagements (a viral moment, or
a large order delivered at once) says little about any one pair in it and would cost a
quadratic number of pairs; such cells are left to the burst and dense detectors.

Groups are the connected components of the pairs that meet on enough targets, where "enough" is
learned from the log: the smallest count at which a time-shifted copy of the log (coordination
removed, habits kept) yields few pairs.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

from likelens.arrays import distinct
from likelens.detect.base import Detector, Group, Signal, State
from likelens.features import Features, footprint, pushed


@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@numba.njit(cache=True, nogil=True)
def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    parent = np.arange(n)
    for i in range(len(a)):
        rx, ry = _find(parent, a[i]), _find(parent, b[i])
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = _find(parent, i)
    return out


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label (its smallest node) per node of an undirected edge list."""
    return _components(n, np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of each value."""
    z = np.asarray(x).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _histogram(shared: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(shared, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


class LockstepDetector(Detector):
    """Pairs of accounts meeting on several targets of several creators within a window."""

    name = "lockstep"
    learns = ("min_shared", "chance_share")
    learns_tables = ("members", "groups")

    def __init__(self, *, window_s: int = 600, min_shared: int = 3, min_group: int = 5,
                 shift_s: int = 7200, max_null_share: float = 0.1, max_cell: int = 200,
                 seed: int = 0, push_window_s: int = 1800) -> None:
        self.window_s, self.min_shared, self.min_group = window_s, min_shared, min_group
        self.max_cell, self.push_window_s = max_cell, push_window_s
        self.shift_s, self.max_null_share, self.seed = shift_s, max_null_share, seed

    def _run(self, feats: Features, state: State, *, fitting: bool) -> Signal:
        """Fitting learns the shared-target threshold (against the shifted null) and the groups
        (connected pairs); applying reads both and finds the groups' members in the log."""
        w = int(self.window_s * 1000)
        n_acc = feats.n_accounts
        codes = feats.account_codes
        if fitting:
            group_of, pairs_of = self._learn_groups(feats, w)
            members = np.flatnonzero(group_of >= 0)
            state.tables["members"] = pa.table({
                "user_id": feats.account_ids(members),
                "group": pa.array(group_of[members], pa.int64())})
            state.tables["groups"] = pa.table({
                "group": pa.array(np.arange(len(pairs_of)), pa.int64()),
                "pairs": pa.array(pairs_of, pa.int64())})
            state.values["min_shared"] = self.min_shared_
            state.values["chance_share"] = self.chance_share_
            pairs_by_group = pairs_of
        else:
            self.min_shared_ = int(state.values["min_shared"])
            self.chance_share_ = float(state.values["chance_share"])
            members = state.tables["members"]
            at = feats.codes_of_accounts(members["user_id"])
            group_of = np.full(n_acc, -1)
            found = at >= 0
            # Groups keep their order; those with no member in this log are left out.
            kept, compact = np.unique(members["group"].to_numpy()[found], return_inverse=True)
            group_of[at[found]] = compact.ravel()
            pairs_by_group = state.tables["groups"]["pairs"].to_numpy()[kept]
        groups: list[Group] = []
        account_group: dict[object, int] = {}
        if (group_of >= 0).any():
            # Each group's engagements, found in one pass over the log.
            row_group = group_of[codes]
            rows = np.flatnonzero(row_group >= 0)
            rows = rows[np.argsort(row_group[rows], kind="stable")]
            bounds = np.searchsorted(row_group[rows], np.arange(group_of.max() + 2))
            groups = [self._describe(feats, rows[bounds[i]:bounds[i + 1]],
                                     int(pairs_by_group[i]))
                      for i in range(len(bounds) - 1)]
        for gi, g in enumerate(groups):
            for acc in g.accounts:
                account_group[acc] = gi
        in_group = group_of[codes] >= 0
        # Per engagement: how many of the account's lockstep partners met it on this target.
        met_col = feats.engine.group_meetings(group_of, w)
        score = np.where(in_group & (met_col > 0), np.minimum(1.0, 0.5 + 0.1 * met_col),
                         np.where(in_group, 0.25, 0.0))
        columns = {"lockstep_met": np.log1p(met_col), "lockstep_group": in_group.astype(float)}
        return Signal(self.name, self.get_params(), columns, score, tuple(groups),
                      account_group)


    def _learn_groups(self, feats: Features, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Group per account code (-1: none): accounts joined by pairs that met on
        ``min_shared_`` targets or more, in components of ``min_group`` accounts or more; and
        each group's number of such pairs. Also learns ``chance_share_``: the shifted null's
        pairs at the threshold over the real ones (how many of the pairs chance explains)."""
        counted = self._counted(feats)
        real = self._pairs(feats, w, counted, shift=False)
        null = self._pairs(feats, w, counted, shift=True)
        self.min_shared_, self.chance_share_ = self._choose_min_shared(
            _histogram(real[2]), _histogram(null[2]))
        keep = real[2] >= self.min_shared_
        a, b = real[0][keep], real[1][keep]
        group_of = np.full(feats.n_accounts, -1)
        pairs_of: list[int] = []
        if len(a):
            involved = distinct(np.concatenate([a, b]))
            local = np.searchsorted(involved, np.concatenate([a, b]))
            half = len(a)
            comp = components(len(involved), local[:half], local[half:])
            labels, sizes = np.unique(comp, return_counts=True)
            pair_comp = comp[local[:half]]
            for gi, lab in enumerate(labels[sizes >= self.min_group]):
                group_of[involved[comp == lab]] = gi
                pairs_of.append(int(np.count_nonzero(pair_comp == lab)))
        return group_of, np.array(pairs_of, dtype=np.int64)

    def _choose_min_shared(self, real: dict[int, int], null: dict[int, int]
                           ) -> tuple[int, float]:
        """Smallest shared-target count at which chance explains few of the pairs found, and
        the share of the pairs at or above it that chance explains.

        ``null`` counts the pairs found after shifting each account's whole timeline by its own
        random offset of up to ``shift_s``: individual habits stay, coordination is gone. The
        threshold is the smallest k whose null pairs are at most ``max_null_share`` of the real
        pairs at k or more, and never below ``min_shared``. The share counts at least one null
        pair: a null that found none says "rare", not "impossible".
        """
        top = max([*real, *null, self.min_shared])
        for k in range(self.min_shared, top + 2):
            n_real = sum(v for s, v in real.items() if s >= k)
            n_null = sum(v for s, v in null.items() if s >= k)
            if n_null <= self.max_null_share * n_real:  # always true past ``top``
                return k, min(max(n_null, 1) / max(n_real, 1), 1.0)
        return top + 1, 1.0

    def _counted(self, feats: Features) -> np.ndarray:
        """The engagements that can make pairs (rows, ascending): neither a referral nor in a
        new video's push window (module docstring). The same for the log and its null."""
        e = feats.engagements
        referral = (e["after_share"].to_numpy(zero_copy_only=False).astype(bool)
                    & (e["session_views"].to_numpy(zero_copy_only=False) > 0))
        # Followers opening a new video's push meet every other follower of the creators they
        # share, right after each publish (``features.pushed``); the shifted null moves them
        # off the publish and cannot explain it. On zoo worlds 1075 and 1119 such push crowds
        # formed lockstep groups: 0.5 % of the organic likes flagged.
        return np.flatnonzero(~referral & ~pushed(feats, self.push_window_s * 1000))

    def _pairs(self, feats: Features, w: int, rows: np.ndarray, *, shift: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Account pairs (a < b) meeting on ``min_shared`` or more targets of two or more
        creators within ``w`` ms, among the engagements ``rows`` (``_counted``): (a, b,
        shared targets).

        With ``shift`` each account's whole timeline first moves by its own offset of up to
        ``shift_s``, drawn from what the account did (not its name), so that renaming accounts
        cannot change the result.
        """
        e = feats.engagements
        acc = feats.account_codes.astype(np.int64)
        ts = e["ts"].to_numpy().astype(np.int64)
        if shift:
            s = int(self.shift_s * 1000)
            first, count, ts_sum = feats.account_activity()
            key = (_mix(first) ^ _mix(count) ^ _mix(ts_sum.astype(np.uint64))).astype(np.int64)
            h = _mix(key + self.seed)
            ts = ts + (h % np.uint64(2 * s + 1)).astype(np.int64)[acc] - s
        if len(rows) < 2:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        tgt = feats.target_codes[rows]
        t = ts[rows]
        # Cells (target, window bucket) crowded past max_cell are left out (module docstring).
        bucket = t // w
        _, cell, size = np.unique(tgt * (int(bucket.max() - bucket.min()) + 1)
                                  + (bucket - bucket.min()), return_inverse=True,
                                  return_counts=True)
        small = size[cell] <= self.max_cell
        rows, tgt, t = rows[small], tgt[small], t[small]
        order = np.lexsort((t, tgt))
        creator = feats.key_codes("creator_id")[rows][order]
        return feats.engine.pair_meetings(acc[rows][order], tgt[order], t[order], creator, w,
                                          feats.n_accounts, self.min_shared)

    def _describe(self, feats: Features, rows: np.ndarray, n_pairs: int) -> Group:
        """A group's evidence from its engagements (``rows``): the targets that at least
        ``min_group`` of its accounts engaged are the ones it worked together."""
        e = feats.engagements
        fp = footprint(e, rows)
        acc = e["acc"].to_numpy()[rows].astype(np.int64)
        tgt = e["target"].to_numpy()[rows]
        pairs = np.unique(np.stack([tgt, acc], axis=1), axis=0)
        targets, per_target = np.unique(pairs[:, 0], return_counts=True)
        worked = targets[per_target >= self.min_group]
        videos = footprint(e, rows[np.isin(tgt, worked)]).videos
        evidence = (f"{len(fp.users)} accounts engaged {len(worked)} shared targets within "
                    f"{self.window_s // 60} min of each other, across "
                    f"{len(videos)} videos; they used {fp.devices} devices and {fp.networks} "
                    "/24 ranges")
        # Strength: each of the group's pairs is chance with probability at most the null's
        # share at the threshold, so the group is, at most, that to the power of its pairs.
        return Group("lockstep", fp.users, videos, fp.first_ts, fp.last_ts, evidence,
                     float(n_pairs * -np.log10(self.chance_share_)))
