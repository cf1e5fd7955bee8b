"""Lockstep: accounts that engage the same targets within the same short windows, again and again.

CopyCatch's observation: a seller's accounts deliver order after order together, so pairs of
them meet on many targets within minutes of each other. Pairs are found with a bucketed
equi-join (same target, same or adjacent time bucket, then the exact window filter), which is
linear in the engagements rather than quadratic in time. Fans who like one creator's new videos
right after each publish meet on several targets too, but all of one creator: a pair counts only
when its shared targets span at least two creators. Friends who open a link one of them shared
arrive together as well, but from inside their feed sessions: an engagement that follows someone
else's share of the video and sits in a session is a referral and does not count as lockstep.

A window in which one target collects more than ``max_cell`` engagements (a viral moment, or
a large order delivered at once) says little about any one pair in it and would cost a
quadratic number of pairs; such cells are left to the burst and dense detectors.

Groups are the connected components of the pairs that meet on enough targets, where "enough" is
learned from the log: the smallest count at which a time-shifted copy of the log (coordination
removed, habits kept) yields few pairs.
"""

from __future__ import annotations

import duckdb
import numba
import numpy as np
import pyarrow as pa

from likelens.arrays import distinct
from likelens.detect.base import Detector, Group, Signal
from likelens.features import Features, footprint


@numba.njit(cache=True)
def _find(parent: np.ndarray, x: int) -> int:
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@numba.njit(cache=True)
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


class LockstepDetector(Detector):
    """Pairs of accounts meeting on several targets of several creators within a window."""

    name = "lockstep"
    reason = "lockstep"

    def __init__(self, *, window_s: int = 600, min_shared: int = 3, min_group: int = 5,
                 shift_s: int = 7200, max_null_share: float = 0.1, max_cell: int = 200,
                 seed: int = 0) -> None:
        self.window_s, self.min_shared, self.min_group = window_s, min_shared, min_group
        self.max_cell = max_cell
        self.shift_s, self.max_null_share, self.seed = shift_s, max_null_share, seed

    def _fit(self, feats: Features) -> Signal:
        con = feats.con
        w = int(self.window_s * 1000)
        counts = {}
        for name, shift in (("ls_null", True), ("ls_pairs", False)):
            self._pairs(con, name, w, shift)
            counts[name] = dict(con.execute(
                f"SELECT shared, count(*) FROM {name} GROUP BY 1").fetchall())
        self.min_shared_ = self._choose_min_shared(counts["ls_pairs"], counts["ls_null"])
        pairs = con.sql(f"SELECT a, b, shared FROM ls_pairs WHERE shared >= {self.min_shared_}"
                        ).to_arrow_table()
        n_acc = feats.n_accounts
        a = pairs["a"].to_numpy().astype(np.int64)
        b = pairs["b"].to_numpy().astype(np.int64)
        partners = np.bincount(np.concatenate([a, b]), minlength=n_acc).astype(float)
        codes = feats.account_codes
        n = feats.engagements.num_rows
        group_of = np.full(n_acc, -1)
        groups: list[Group] = []
        account_group: dict[object, int] = {}
        if len(a):
            involved = distinct(np.concatenate([a, b]))
            local = np.searchsorted(involved, np.concatenate([a, b]))
            half = len(a)
            comp = components(len(involved), local[:half], local[half:])
            labels, sizes = np.unique(comp, return_counts=True)
            for gi, lab in enumerate(labels[sizes >= self.min_group]):
                group_of[involved[comp == lab]] = gi
            # Each group's engagements, found in one pass over the log.
            row_group = group_of[codes]
            rows = np.flatnonzero(row_group >= 0)
            rows = rows[np.argsort(row_group[rows], kind="stable")]
            bounds = np.searchsorted(row_group[rows], np.arange(group_of.max() + 2))
            groups = [self._describe(feats, rows[bounds[i]:bounds[i + 1]])
                      for i in range(len(bounds) - 1)]
        for gi, g in enumerate(groups):
            for acc in g.accounts:
                account_group[acc] = gi
        in_group = group_of[codes] >= 0
        # Per engagement: how many of the account's lockstep partners met it on this target.
        con.register("ls_acc_group", pa.table({"acc": np.arange(n_acc, dtype=np.int32),
                                               "g": group_of}))
        met = con.sql(f"""
            WITH l AS (SELECT e.pos, e.acc, e.target, e.ts, g.g FROM eng e
                       JOIN ls_acc_group g USING (acc) WHERE g.g >= 0)
            SELECT x.pos, count(DISTINCT y.acc) AS met FROM l x JOIN l y
              ON x.target = y.target AND x.g = y.g AND x.acc <> y.acc
             AND abs(x.ts - y.ts) <= {w}
            GROUP BY x.pos
        """).to_arrow_table()
        con.unregister("ls_acc_group")
        met_col = np.zeros(n)
        met_col[met["pos"].to_numpy()] = met["met"].to_numpy()
        score = np.where(in_group & (met_col > 0), np.minimum(1.0, 0.5 + 0.1 * met_col),
                         np.where(in_group, 0.25, 0.0))
        columns = {"lockstep_partners": np.log1p(partners[codes]),
                   "lockstep_met": np.log1p(met_col), "lockstep_group": in_group.astype(float)}
        return Signal(self.name, self.get_params(), columns, score, self.reason, tuple(groups),
                      account_group)


    def _choose_min_shared(self, real: dict[int, int], null: dict[int, int]) -> int:
        """Smallest shared-target count at which chance explains few of the pairs found.

        ``null`` counts the pairs found after shifting each account's whole timeline by its own
        random offset of up to ``shift_s``: individual habits stay, coordination is gone. The
        threshold is the smallest k whose null pairs are at most ``max_null_share`` of the real
        pairs at k or more, and never below ``min_shared``.
        """
        top = max([*real, *null, self.min_shared])
        for k in range(self.min_shared, top + 1):
            n_real = sum(v for s, v in real.items() if s >= k)
            n_null = sum(v for s, v in null.items() if s >= k)
            if n_null <= self.max_null_share * n_real:
                return k
        return top + 1

    def _pairs(self, con: duckdb.DuckDBPyConnection, name: str, w: int, shift: bool) -> None:
        """Account pairs meeting on two or more targets of two or more creators within ``w``."""
        s = int(self.shift_s * 1000)
        # The offset is drawn from what the account did, not from its name, so that renaming
        # accounts cannot change the result.
        ts = f"ts + (o.h % {2 * s + 1})::BIGINT - {s}" if shift else "ts"
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {name} AS
            WITH o AS (
                SELECT acc, hash(min(ts), count(*), sum(ts), {self.seed}) AS h FROM eng
                GROUP BY acc
            ), l0 AS (
                SELECT acc, target, creator_id, {ts} AS ts FROM eng JOIN o USING (acc)
                WHERE NOT (after_share AND session_views > 0)
            ), l1 AS (SELECT *, ts // {w} AS b FROM l0),
            cell AS (SELECT target, b FROM l1 GROUP BY ALL HAVING count(*) <= {self.max_cell}),
            l AS (SELECT l1.* FROM l1 SEMI JOIN cell USING (target, b)), m AS (
                SELECT x.acc AS a, y.acc AS b, x.target, x.creator_id
                FROM l x JOIN l y ON x.target = y.target AND y.b = x.b
                WHERE x.acc < y.acc AND abs(x.ts - y.ts) <= {w}
                UNION ALL
                SELECT least(x.acc, y.acc), greatest(x.acc, y.acc), x.target, x.creator_id
                FROM l x JOIN l y ON x.target = y.target AND y.b = x.b + 1
                WHERE x.acc <> y.acc AND abs(x.ts - y.ts) <= {w}
            )
            -- distinct rows first, then a plain count: half the cost of count(DISTINCT)
            SELECT a, b, count(*) AS shared
            FROM (SELECT DISTINCT a, b, target, creator_id FROM m) GROUP BY a, b
            HAVING count(*) >= 2 AND min(creator_id) <> max(creator_id)
        """)

    def _describe(self, feats: Features, rows: np.ndarray) -> Group:
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
        return Group("lockstep", fp.users, videos, fp.first_ts, fp.last_ts, evidence,
                     float(len(fp.users)))
