"""Dense: camouflage-resistant densest-subgraph peeling (FRAUDAR, KDD 2016) on accounts × targets.

A seller's accounts serve order after order, so together with the targets they were paid to hit
they form a block far denser than organic traffic, whatever the timing (drip deliveries escape
lockstep windows, not this). Edges to popular targets weigh less (1 / log(degree + 5)), so
camouflage likes on popular videos cannot dilute a block. Peeling runs on the task-shaped
subgraph (engagements outside any feed session): on the full graph the densest block is the
organic core of heavy users and hit videos, which is what made plain FRAUDAR weak here.

``peel`` is a pure function over CSR arrays, compiled with numba and a lazy binary heap, so the
core can be benchmarked or replaced without touching the detector. The detector peels block
after block while a block is denser than the densest block of a degree-preserving shuffle of
the same graph (the null), so "dense" is measured against this log, not a constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.arrays import distinct
from likelens.detect.base import Detector, Group, Signal, State, poisson_surprise
from likelens.features import Features, footprint, pushed, task_shaped


@dataclass(frozen=True)
class Block:
    """The densest block found: its node ids (accounts first, then targets) and its density."""

    nodes: np.ndarray
    density: float


@numba.njit(cache=True, nogil=True)
def _heap_push(keys: np.ndarray, vals: np.ndarray, size: int, key: float, val: int) -> int:
    i = size
    keys[i] = key
    vals[i] = val
    while i > 0:
        parent = (i - 1) // 2
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        i = parent
    return size + 1


@numba.njit(cache=True, nogil=True)
def _heap_pop(keys: np.ndarray, vals: np.ndarray, size: int) -> tuple[float, int, int]:
    key, val = keys[0], vals[0]
    size -= 1
    keys[0], vals[0] = keys[size], vals[size]
    i = 0
    while True:
        left, right, small = 2 * i + 1, 2 * i + 2, i
        if left < size and keys[left] < keys[small]:
            small = left
        if right < size and keys[right] < keys[small]:
            small = right
        if small == i:
            break
        keys[small], keys[i] = keys[i], keys[small]
        vals[small], vals[i] = vals[i], vals[small]
        i = small
    return key, val, size


@numba.njit(cache=True, nogil=True)
def _peel(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray
          ) -> tuple[np.ndarray, int, float]:
    n = len(indptr) - 1
    deg = np.zeros(n)
    for u in range(n):
        for k in range(indptr[u], indptr[u + 1]):
            deg[u] += weights[k]
    total = deg.sum() / 2.0
    alive = np.ones(n, dtype=np.bool_)
    cap = n + len(indices) + 1
    keys = np.empty(cap)
    vals = np.empty(cap, dtype=np.int64)
    size = 0
    for u in range(n):
        size = _heap_push(keys, vals, size, deg[u], u)
    order = np.empty(n, dtype=np.int64)
    best_g = total / max(n, 1)
    best_k = 0
    remaining = n
    step = 0
    while size > 0 and remaining > 0:
        key, u, size = _heap_pop(keys, vals, size)
        if not alive[u] or key != deg[u]:
            continue
        alive[u] = False
        total -= deg[u]
        for k in range(indptr[u], indptr[u + 1]):
            v = indices[k]
            if alive[v]:
                deg[v] -= weights[k]
                size = _heap_push(keys, vals, size, deg[v], v)
        remaining -= 1
        order[step] = u
        step += 1
        if remaining > 0:
            g = total / remaining
            if g > best_g:
                best_g = g
                best_k = step
    return order[:step], best_k, best_g


def peel(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray) -> Block:
    """Greedy peeling of a symmetric weighted graph in CSR form; returns the densest block."""
    n = len(indptr) - 1
    if n == 0 or len(indices) == 0:
        return Block(np.empty(0, dtype=np.int64), 0.0)
    order, best_k, best_g = _peel(indptr.astype(np.int64), indices.astype(np.int64),
                                  weights.astype(np.float64))
    removed = np.zeros(n, dtype=bool)
    removed[order[:best_k]] = True
    return Block(np.flatnonzero(~removed), float(best_g))


def bipartite_csr(left: np.ndarray, right: np.ndarray, n_left: int, n_right: int,
                  weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric CSR of a bipartite graph: nodes 0..n_left-1, then n_left.. for the right side."""
    src = np.concatenate([left, right + n_left])
    dst = np.concatenate([right + n_left, left])
    w = np.concatenate([weights, weights])
    order = np.argsort(src, kind="stable")
    indptr = np.zeros(n_left + n_right + 1, dtype=np.int64)
    np.add.at(indptr, src + 1, 1)
    return np.cumsum(indptr), dst[order], w[order]


@dataclass(frozen=True)
class Graph:
    """Distinct account-target edges with FRAUDAR's column weights 1 / log(degree + 5)."""

    a: np.ndarray         # account code per edge
    t: np.ndarray         # target code per edge
    w: np.ndarray         # edge weight
    n_acc: int
    n_tgt: int
    deg_t: np.ndarray     # target degree
    acc: np.ndarray       # account code per engagement
    tgt: np.ndarray       # target code per engagement


def account_target_graph(feats: Features, mask: np.ndarray | None = None) -> Graph:
    """The bipartite graph of the engagements selected by ``mask`` (all when None)."""
    acc = feats.account_codes.astype(np.int64)
    tgt = feats.target_codes
    n_tgt = int(tgt.max()) + 1 if len(tgt) else 0
    keep = np.ones(len(acc), dtype=bool) if mask is None else mask
    edges = distinct(acc[keep] * n_tgt + tgt[keep])
    a, t = edges // n_tgt, edges % n_tgt
    deg_t = np.bincount(t, minlength=n_tgt)
    return Graph(a, t, 1.0 / np.log(deg_t[t] + 5.0), feats.n_accounts, n_tgt, deg_t, acc, tgt)


def _activity_rank(feats: Features) -> np.ndarray:
    """Each account's rank by what it did (first time, engagements, time sum, targets).

    A label-free order of accounts: renaming accounts leaves it unchanged, so anything drawn in
    this order (the shuffled null) is too.
    """
    first, count, ts_sum = feats.account_activity()
    n = feats.n_accounts
    tgt_sum = np.bincount(feats.account_codes.astype(np.int64),
                          weights=(feats.engagements["target"].to_numpy() % 1_000_003)
                          .astype(float), minlength=n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((tgt_sum, ts_sum, count, first))] = np.arange(n)
    return rank


# A block: its accounts and targets (codes), its density and the null's.
Block4 = tuple[np.ndarray, np.ndarray, float, float]


class DenseDetector(Detector):
    """Blocks of accounts and targets denser than the same graph shuffled can produce."""

    name = "dense"
    learns_tables = ("members", "targets", "blocks")

    def __init__(self, *, max_blocks: int = 50, min_accounts: int = 5, seed: int = 0,
                 max_creator_share: float = 0.8, push_window_s: int = 1800,
                 null_draws: int = 2) -> None:
        self.max_blocks, self.min_accounts, self.seed = max_blocks, min_accounts, seed
        self.max_creator_share, self.push_window_s = max_creator_share, push_window_s
        self.null_draws = null_draws

    def _run(self, feats: Features, state: State, *, fitting: bool) -> Signal:
        """Fitting peels the blocks; applying reads them (accounts by user id, targets by
        action and video) and finds their members' engagements in the log."""
        e = feats.engagements
        task = task_shaped(feats)
        g = account_target_graph(feats, task & ~pushed(feats, self.push_window_s * 1000))
        acc = g.acc
        if fitting:
            blocks = self._learn_blocks(feats, g, task)
            self._record(feats, blocks, state)
        else:
            blocks = self._recall(feats, state)
        in_block_acc = np.full(g.n_acc, -1)
        in_block_tgt = np.zeros(g.n_tgt, dtype=bool)
        groups: list[Group] = []
        for gid, (accs, tgts, density, null) in enumerate(blocks):
            in_block_acc[accs] = gid
            in_block_tgt[tgts] = True
            groups.append(self._describe(feats, g, accs, tgts, density, null))
        acct_in = in_block_acc[acc] >= 0
        # Per event: a block account's task-shaped engagement is block work when it hits one of
        # the blocks' targets or was made on a phone several engaging accounts share (a farm's);
        # the same account's engagement inside a feed session, or alone on its own phone (a
        # rented account's owner, a crowd worker's own push opens), is not.
        event_in = acct_in & task & (in_block_tgt[g.tgt] | feats.shared_device())
        users = e["user_id"].to_numpy(zero_copy_only=False)
        account_group = {users[i]: int(in_block_acc[acc[i]])
                         for i in np.flatnonzero(acct_in)}
        score = np.where(event_in, 0.8, np.where(acct_in, 0.3, 0.0))
        columns = {"dense_block": event_in.astype(float)}
        return Signal(self.name, self.get_params(), columns, score, tuple(groups),
                      account_group)

    def _learn_blocks(self, feats: Features, g: Graph, task: np.ndarray) -> list[Block4]:
        """Peel blocks until one is no denser than the densest of ``null_draws`` shuffles:
        (accounts, targets, density, null density) per block kept."""
        a, t, w, n_acc, n_tgt, deg_t, acc = g.a, g.t, g.w, g.n_acc, g.n_tgt, g.deg_t, g.acc
        # Rows weigh by how much of the account's engagement is task-shaped: a seller's
        # account engages almost only from a task list, while a heavy user who opens many
        # pushes and links alone engages mostly from the feed.
        shaped = np.bincount(acc, weights=task.astype(float), minlength=n_acc)
        row_w = shaped / np.maximum(np.bincount(acc, minlength=n_acc), 1)
        w = w * row_w[a]
        rng = np.random.default_rng(self.seed)
        blocks: list[Block4] = []
        keep = np.ones(len(a), dtype=bool)
        # The shuffle deals targets to edges in an order that does not depend on account
        # names: by what each account did, then by target.
        canon = np.lexsort((t, _activity_rank(feats)[a]))
        creator_of = self._creator_of_target(feats, g)
        for _ in range(self.max_blocks):
            if not keep.any():
                break
            block = peel(*bipartite_csr(a[keep], t[keep], n_acc, n_tgt, w[keep]))
            # Null: the remaining graph with targets shuffled across its edges (degrees kept).
            # Drawn again for every block: a stale null (from more edges) was tried and
            # missed blocks (dense alone, crowd-heavy recall 0.40 -> 0.06).
            # The densest of ``null_draws`` shuffles: one draw's densest block varies by a few
            # per cent, as much as an organic crowd's block exceeds it.
            slots = canon[keep[canon]]
            null = Block(np.empty(0, dtype=np.int64), -np.inf)
            for _ in range(self.null_draws):
                shuffled = rng.permutation(t[slots])
                draw = peel(*bipartite_csr(a[slots], shuffled, n_acc, n_tgt,
                                           row_w[a[slots]] / np.log(deg_t[shuffled] + 5.0)))
                null = draw if draw.density > null.density else null
            accs = block.nodes[block.nodes < n_acc]
            tgts = block.nodes[block.nodes >= n_acc] - n_acc
            if block.density <= null.density or len(accs) < self.min_accounts:
                break
            keep &= ~np.isin(a, accs)
            # A seller's block spans its customers, one order (one target) each, a few
            # twice; a block whose engagements go to creators it holds several videos of is a
            # fan base (fan clubs opening every new video, superfans of a few creators).
            if self._fan_share(g, creator_of, accs, tgts) >= self.max_creator_share:
                continue
            blocks.append((accs, tgts, float(block.density), float(null.density)))
        return blocks

    @staticmethod
    def _record(feats: Features, blocks: list[Block4], state: State) -> None:
        """Blocks as tables: accounts by user id, targets by action and video."""
        acc_of = [np.asarray(b[0], dtype=np.int64) for b in blocks]
        tgt_of = [np.asarray(b[1], dtype=np.int64) for b in blocks]
        gid = np.arange(len(blocks), dtype=np.int64)
        state.tables["members"] = pa.table({
            "user_id": feats.account_ids(np.concatenate([np.zeros(0, np.int64), *acc_of])),
            "block": np.repeat(gid, [len(x) for x in acc_of])})
        state.tables["targets"] = pa.table({
            "target": feats.target_keys(np.concatenate([np.zeros(0, np.int64), *tgt_of])),
            "block": np.repeat(gid, [len(x) for x in tgt_of])})
        state.tables["blocks"] = pa.table({
            "block": gid, "density": pa.array([b[2] for b in blocks], pa.float64()),
            "null_density": pa.array([b[3] for b in blocks], pa.float64())})

    @staticmethod
    def _recall(feats: Features, state: State) -> list[Block4]:
        """The recorded blocks, in this log's codes; blocks none of whose accounts is here
        are left out."""
        members, targets, info = (state.tables["members"], state.tables["targets"],
                                  state.tables["blocks"])
        at = feats.codes_of_accounts(members["user_id"])
        m_block = members["block"].to_numpy()
        keys = feats.target_keys()
        t_at = pc.fill_null(pc.index_in(targets["target"], value_set=keys), -1).to_numpy(
            zero_copy_only=False).astype(np.int64)
        t_block = targets["block"].to_numpy()
        out: list[Block4] = []
        for b, density, null in zip(info["block"].to_numpy(), info["density"].to_numpy(),
                                    info["null_density"].to_numpy(), strict=True):
            accs = np.sort(at[(m_block == b) & (at >= 0)])
            if len(accs):
                tgts = np.sort(t_at[(t_block == b) & (t_at >= 0)])
                out.append((accs, tgts, float(density), float(null)))
        return out

    @staticmethod
    def _fan_share(g: Graph, creator_of: np.ndarray, accs: np.ndarray, tgts: np.ndarray
                   ) -> float:
        """Share of a block's edges that go to creators with two or more targets in it."""
        on_block = np.isin(g.t, tgts) & np.isin(g.a, accs)
        if not on_block.any():
            return 0.0
        targets_of = np.bincount(creator_of[tgts])
        return float(np.mean(targets_of[creator_of[g.t[on_block]]] >= 2))

    @staticmethod
    def _creator_of_target(feats: Features, g: Graph) -> np.ndarray:
        """Creator code of each target (its first engagement's creator; -1 mapped to 0)."""
        enc = pc.dictionary_encode(feats.engagements["creator_id"]).combine_chunks()
        cre = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        out = np.zeros(g.n_tgt, dtype=np.int64)
        out[g.tgt[::-1]] = cre[::-1]
        return out

    def _describe(self, feats: Features, g: Graph, accs: np.ndarray, tgts: np.ndarray,
                  density: float, null_density: float) -> Group:
        acc_in = np.zeros(g.n_acc, dtype=bool)
        acc_in[accs] = True
        tgt_in = np.zeros(g.n_tgt, dtype=bool)
        tgt_in[tgts] = True
        fp = footprint(feats.engagements, np.flatnonzero(acc_in[g.acc] & tgt_in[g.tgt]))
        fill = fp.engagements / max(len(accs) * len(tgts), 1)
        evidence = (f"{len(accs)} accounts and {len(tgts)} targets form a block "
                    f"{fill:.0%} filled ({fp.engagements} engagements); density {density:.1f} "
                    f"against {null_density:.1f} for the shuffled graph; {fp.devices} "
                    f"devices, {fp.networks} /24 ranges")
        # Strength: -log10 of the Poisson bound on the block's engagements if it were only as
        # dense as the shuffled graph's densest block (its engagements scaled by the ratio).
        ratio = max(null_density, 1e-9) / max(density, 1e-9)
        strength = poisson_surprise(np.array([float(fp.engagements)]),
                                    np.array([fp.engagements * ratio]))[0]
        return Group("dense", fp.users, fp.videos, fp.first_ts, fp.last_ts, evidence,
                     float(strength))
