"""Fusion: one calibrated probability per engagement from every detector's evidence, no labels.

The detectors' evidence columns are cut into a few ordered bins and modelled as a latent mixture
(one organic component, one bought component per detector) fitted by expectation-maximisation,
started from the detectors' own standalone scores. Each component learns, from this log, how often
each bin occurs in it; one minus the organic component's posterior is the engagement's
probability of having been bought.

Evidence columns are correlated (an account that likes in isolation has a high isolated-share as
well), so a naive product would count the same evidence twice and be overconfident. The
log-likelihood ratio is tempered by ``tau``: the variance of the summed per-column log-ratios
within the organic class, divided by the sum of their variances, which is 1 when the columns are
independent and grows with their correlation.

The flag threshold comes from a target organic false-positive rate: the organic class's expected
number of flagged engagements, sum over flagged of (1 - p), divided by the organic class's size,
sum of (1 - p). This is estimated without labels and checked against truth in the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens import viewindex
from likelens.schema import ACTIONS

# Bins of the share of a pile its organic explanation leaves over (also the caps of
# ``_sole_evidence_cap``, and its top edge the share at which the pile's null decides alone).
EXCESS_EDGES = (0.5, 0.8, 0.95)

# column -> (bin edges, reason word when this column pushes towards bought)
BINS: dict[str, tuple[tuple[float, ...], str]] = {
    "no_view": ((0.5,), "no_view_before"),
    "watch_frac": ((0.05, 0.2, 0.5, 0.9), "low_watch"),
    "isolated": ((0.5,), "isolated_view"),
    "fast_chain": ((0.5,), "fast_sequence"),
    "acct_iso_share": ((0.05, 0.3, 0.7, 0.95), "isolated_view"),
    "acct_noview_share": ((0.05, 0.5), "no_view_before"),
    "acct_low_share": ((0.1, 0.4, 0.8), "low_watch"),
    "acct_views_per_eng": ((1.0, 3.0, 10.0, 30.0), "isolated_view"),
    "acct_regular": ((0.3, 0.6), "regular_cadence"),
    "dev_surprise": ((0.5, 3.0, 10.0), "shared_device"),
    "ip_surprise": ((0.5, 3.0, 10.0), "farm_network"),
    "net_surprise": ((0.5, 3.0, 10.0), "farm_network"),
    "dev_accounts_surprise": ((0.5, 3.0, 10.0), "shared_device"),
    "acct_infra_surprise": ((0.5, 3.0, 10.0), "farm_network"),
    "lockstep_met": ((0.1, 1.0, 2.0), "lockstep"),
    "lockstep_group": ((0.5,), "lockstep"),
    "dense_block": ((0.5,), "dense_block"),
    # burst_task_surprise opens the gate (COLLECTIVE) but carries no weight of its own: a
    # pile's members are weighed by burst_excess, and capped by it (``_sole_evidence_cap``).
    "burst_hour_surprise": ((0.5, 3.0, 10.0), "video_burst"),
    "burst_excess": (EXCESS_EDGES, "video_burst"),
    "burst_session_surprise": ((0.5, 3.0, 10.0, 30.0), "video_burst"),
    "burst_task_near": ((0.5, 1.2, 2.0, 3.0), "video_burst"),
    "template_accounts": ((0.5, 1.5, 2.5), "templated_text"),
}


# Evidence that involves more than one account or more than one engagement of a target. The
# market sells packages, so bought engagement is collective by construction; an engagement with
# none of these is one person's behaviour, which organic users show too (quick likers, a video
# opened from a link), and is never flagged on its own.
# An hour's likes against its views is not in the list: fans like more than a video's average
# viewer, so it only weighs in once there is other collective evidence. Neither are repeated
# comment texts: people write the same short praise on their own, so a template adds weight to
# other collective evidence but never flags alone. Accounts per device is,
# because its null is fitted on the log's own shared devices (families) and only fires far
# beyond them.
COLLECTIVE = ("dev_surprise", "ip_surprise", "net_surprise", "dev_accounts_surprise",
              "acct_infra_surprise",
              "lockstep_met", "lockstep_group", "dense_block", "burst_task_surprise",
              "burst_session_surprise")


# Collective evidence that weighs, corroborates a structure and counts as the account's for the
# estimate's floor, but does not open the gate alone: membership of a lockstep group says the
# account coordinates somewhere, not that this engagement is one of its tasks. A crowd worker's
# own likes (the pushes of creators they follow, opened alone: task-shaped) carried it. On 120
# zoo worlds (seeds 1000-1119) 179 organic likes and 11 bought ones had a lockstep group as
# their only collective evidence, and 105 of the organic ones were flagged, 95 of them in one
# world (1119: its organic FPR 0.37 %, against 0.3 % for the worst world).
NOT_ALONE = ("lockstep_group",)


# Evidence about the account rather than the engagement. It applies to an engagement only when
# the engagement itself fits what the account is suspected of (see ``account_context``): a
# rented account's owner liking from their own phone inside a feed session is organic, however
# the account behaves when the farm runs it.
ACCOUNT_LEVEL = ("acct_iso_share", "acct_noview_share", "acct_low_share", "acct_views_per_eng",
                 "acct_regular", "acct_infra_surprise", "lockstep_group", "lockstep_partners",
                 "dense_account")


INFRA_EVENT = ("dev_surprise", "ip_surprise", "net_surprise", "dev_accounts_surprise")


def _fires(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """Where an evidence column says something: positive. A missing value (NaN) compares
    false, so no NaN-replacing copy of the column is needed."""
    return np.asarray(values, dtype=float) > 0


def infra_context(columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Engagements made from infrastructure that itself converges or is shared far beyond
    families (device, address or subnet surprise); None when no such column exists."""
    present = [c for c in INFRA_EVENT if c in columns]
    if not present:
        return None
    ctx = np.zeros(len(columns[present[0]]), dtype=bool)
    for c in present:
        ctx |= _fires(columns[c])
    return ctx


def account_context(columns: Mapping[str, np.ndarray], task_shaped: np.ndarray) -> np.ndarray:
    """Engagements to which account-level evidence applies: task-shaped ones, or ones made from
    infrastructure that itself converges (device, address or subnet surprise)."""
    ctx = np.asarray(task_shaped, dtype=bool).copy()
    infra = infra_context(columns)
    # A farm's phone (two or more converging accounts use it): account-level evidence applies
    # there, whatever session the account's other views make.
    if "dev_farm" in columns:
        ctx |= _fires(columns["dev_farm"])
    return ctx | infra if infra is not None else ctx


def _any_fires(fires: Mapping[str, np.ndarray], names: Sequence[str], n: int, *,
          outside: bool = False) -> np.ndarray:
    """Rows where any of the ``fires`` columns in ``names`` fires (with ``outside``, any
    column not in ``names``); ``n`` rows."""
    out = np.zeros(n, dtype=bool)
    for c, f in fires.items():
        if (c not in names) == outside:
            out |= f
    return out


def collective_fires(columns: Mapping[str, np.ndarray], context: np.ndarray | None
                     ) -> dict[str, np.ndarray]:
    """Per collective column, where it fires as the model sees it (account-level columns only
    in ``context``): what ``corroborate_structures`` and ``organic_floor`` both read."""
    view = _View(columns, context)
    return {c: _fires(view(c)) for c in COLLECTIVE if c in columns}


# Evidence that an account belongs to a structure (a dense block, a lockstep group), each with
# the columns that carry it.
STRUCTURES = {"dense_block": ("dense_block",),
              "lockstep": ("lockstep_met", "lockstep_group")}


def corroborate_structures(columns: Mapping[str, np.ndarray], accounts: np.ndarray,
                       fires: Mapping[str, np.ndarray]
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``columns`` and ``fires`` (``collective_fires``) with a structure's evidence (a dense
    block, a lockstep group) kept only for accounts that show collective evidence outside
    that structure somewhere in the log.

    Peeling keeps any account whose edges lift the block's density, and a thin block (a
    seller's customers, one order each) keeps accounts joined to it by a single engagement:
    an organic follower who opened the pushed video of a creator who also bought likes is
    such an account. On 30 zoo worlds these fringe members were most of the flagged likes
    whose only collective evidence was a block, and they made the label-free FPR estimate
    optimistic. Lockstep has an organic explanation of the same kind: heavy likers meet on
    the hour's hot videos again and again, and a time-shifted null, which moves them off the
    hour, does not reproduce it. On 34 zoo worlds (four with no views, where nothing else
    tells them apart) every one of the 1,425 flagged likes whose only collective evidence was
    lockstep was organic. A seller's account leaves other traces (converging
    infrastructure, a task pile, a block or lockstep partners with either); an account with
    nothing but one structure is not flagged on it.
    """
    cols, out = dict(columns), dict(fires)
    if len(accounts) == 0:
        return cols, out
    codes = np.asarray(accounts)
    n_acc = int(codes.max()) + 1
    for names in STRUCTURES.values():
        present = [c for c in names if c in columns]
        if not present:
            continue
        other = _any_fires(fires, names, len(codes), outside=True)
        seen = np.bincount(codes[other], minlength=n_acc) > 0
        for c in present:
            rows = np.flatnonzero(fires[c]) if c in fires else np.zeros(0, dtype=np.int64)
            dropped = rows[~seen[codes[rows]]]
            if len(dropped):
                col = np.array(columns[c], dtype=float)
                col[dropped] = 0.0
                cols[c] = col
                fired = fires[c].copy()
                fired[dropped] = False
                out[c] = fired
    return cols, out


# Collective evidence that says the account is a seller's, not that this engagement is one of
# its tasks (see ``organic_floor``): its infrastructure, its lockstep group, its dense block. A
# block's engagement is one that hits a block target or was made on a shared phone, and the
# owner of a rented account, opening videos alone on their own (family) phone, hits the hot
# videos a farm's block holds too: in zoo world 1058 they were 330 flagged organic likes, the
# block their only evidence besides the account's infrastructure, and the estimate was half
# the truth without a floor for them.
ACCOUNT_ONLY = ("acct_infra_surprise", "lockstep_group", "dense_block")
PILES = ("burst_task_surprise", "burst_session_surprise")


def explain_away(columns: Mapping[str, np.ndarray], fires: Mapping[str, np.ndarray],
                 accounts: np.ndarray, target: np.ndarray, ts: np.ndarray, near_ms: int
                 ) -> dict[str, np.ndarray]:
    """``columns`` with the pile share (``burst_excess``, ``burst_excess_low``) set to zero
    for a task pile's members whose accounts show no other collective evidence anywhere,
    where the members with evidence of their own (converging infrastructure, a block,
    lockstep) cover the pile's whole bought share: within ``near_ms`` of the member on its
    target, at least the pile's share times its members. ``fires`` as
    ``corroborate_structures`` left them; ``accounts`` the account code per row.

    A pile's share says how much of it its organic explanation leaves over, not which members
    are the rest. When a bot network delivers an order onto a video that a group chat or a
    push is also sending people to, the bots are the bought share, and the few people who
    opened it alone in the same half hour are the organic rest; capped by the pile's share
    alone they were flagged (held-out zoo world 1062: 37 organic likes across 23 videos, the
    pile their only evidence, its share 0.83 and bots around them; this took the world's
    organic FPR from 0.14 % to 0.08 %). Only a fully covered share
    is explained away: a share the others cover in part leaves the rest of the pile as it
    was, since the pile's share is cautious (a warm crowd's conversion) and charging its
    organic rest to fewer members cut crowd recall by up to 0.05 in a world (1058, 1119).
    A member whose account shows other evidence elsewhere (a farm account whose evidence
    does not reach this engagement) is not among the organic rest either.
    """
    member = fires.get("burst_task_surprise")
    if member is None or "burst_excess" not in columns:
        return dict(columns)
    other = _any_fires(fires, PILES, len(member), outside=True)
    accounts = np.asarray(accounts, dtype=np.int64)
    seen = np.bincount(accounts[other], minlength=int(accounts.max(initial=-1)) + 1) > 0
    other &= member
    rows = np.flatnonzero(member & ~other & ~seen[accounts])
    if len(rows) == 0 or not other.any():
        return dict(columns)
    target = np.asarray(target, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    n_targets = int(target.max()) + 1
    lo, hi = ts[rows] - near_ms, ts[rows] + near_ms + 1
    piled = viewindex.count_within(np.where(member, target, -1), n_targets, ts, target[rows],
                                   lo, hi)
    vouched = viewindex.count_within(np.where(other, target, -1), n_targets, ts,
                                     target[rows], lo, hi)
    share = np.nan_to_num(np.asarray(columns["burst_excess"], dtype=float)[rows])
    covered = rows[vouched >= share * piled]
    out = dict(columns)
    for c in ("burst_excess", "burst_excess_low"):
        if c in columns and len(covered):
            x = np.array(columns[c], dtype=float)
            x[covered] = 0.0
            out[c] = x
    return out


def organic_floor(columns: Mapping[str, np.ndarray], fires: Mapping[str, np.ndarray],
                  accounts: np.ndarray, task: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A floor under the chance that an engagement is organic (``fires`` as
    ``corroborate_structures`` left them), for the label-free FPR estimate (and so the threshold)
    only: the mixture is sure of the members of the structures below, and the estimate was
    optimistic in a third of the zoo worlds because of them. Returns the rows that have a
    floor (ascending) and their floors; every other row's is zero.

    - A member of a target's pile and nothing else: at least the pile's organic share at its
      cautious bought share (``burst_excess_low``: the Wilson lower bound of the pile's
      conversion), so a small pile of warm fans converting every opening counts as possibly
      organic, a task list's pile of fifty hardly.
    - A task-shaped engagement whose only collective evidence is its account's (converging
      infrastructure, a lockstep group, a dense block): a bought or rented account's owner
      opens pushes and links alone too. At least the share of the account's task-shaped
      engagements its owner would make: its engagements inside feed sessions times the log's
      ratio of task-shaped to in-session engagements among accounts with no collective
      evidence at all.
    """
    n = len(accounts)
    piles, accts = _any_fires(fires, PILES, n), _any_fires(fires, ACCOUNT_ONLY, n)
    rest = _any_fires(fires, (*PILES, *ACCOUNT_ONLY), n, outside=True)
    alone = np.flatnonzero(piles & ~(accts | rest)) if "burst_excess_low" in columns else \
        np.zeros(0, dtype=np.int64)
    low = np.asarray(columns.get("burst_excess_low", np.zeros(n)), dtype=float)[alone]
    pile_floor = 1.0 - np.clip(np.nan_to_num(low), 0.0, 1.0)
    task = np.asarray(task, dtype=bool)
    owner = np.flatnonzero(task & accts & ~(piles | rest))  # disjoint from ``alone``
    owner_floor = np.zeros(0)
    if len(owner):
        codes = np.asarray(accounts)
        n_acc = int(codes.max()) + 1
        engaged = np.bincount(codes, minlength=n_acc)
        shaped = np.bincount(codes[task], minlength=n_acc)
        quiet = np.bincount(codes[piles | accts | rest], minlength=n_acc) == 0
        in_session = engaged - shaped
        ratio = float(shaped[quiet].sum()) / max(float(in_session[quiet].sum()), 1.0)
        a = codes[owner]
        owner_floor = np.minimum(1.0, in_session[a] * ratio / np.maximum(shaped[a], 1))
    rows = np.concatenate([alone, owner])
    order = np.argsort(rows, kind="stable")
    return rows[order], np.concatenate([pile_floor, owner_floor])[order]


@dataclass(frozen=True)
class Fusion:
    """Per-engagement probability, flags, reasons, and how the threshold was chosen."""

    probability: np.ndarray
    flagged: np.ndarray
    reasons: pa.Array  # list<string> per engagement
    threshold: float
    estimated_fpr: float
    tau: float
    prior: float


SMALL_ROWS = 4096


def _codes(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index per value (how many edges it reaches, as ``np.digitize``); missing values get
    their own last bin. A handful of comparisons beat digitize's binary search per value."""
    v = np.asarray(values, dtype=float)
    codes = np.zeros(len(v), dtype=np.int64)
    for edge in edges:
        codes += v >= edge
    codes[np.isnan(v)] = len(edges) + 1
    return codes


@dataclass(frozen=True)
class FusionModel:
    """What fusion learned from a log, enough to score another one without refitting.

    ``logt[c, b]`` is the log-probability of bin ``b`` in component ``c`` (0 is organic), with
    the bins of every column of ``names`` (cut at ``edges``) and then the actions laid end to
    end; ``prior`` and ``taus`` are the components' weights and temperings; ``threshold`` is the
    score at or above which an engagement is flagged.
    """

    names: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]
    actions: tuple[str, ...]
    components: tuple[str, ...]
    logt: np.ndarray
    prior: np.ndarray
    taus: np.ndarray
    threshold: float
    estimated_fpr: float
    target_fpr: float
    iterations: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready; floats survive the round trip exactly (``repr`` is shortest-exact)."""
        return {"names": list(self.names), "edges": [list(e) for e in self.edges],
                "actions": list(self.actions), "components": list(self.components),
                "logt": self.logt.tolist(), "prior": self.prior.tolist(),
                "taus": self.taus.tolist(), "threshold": self.threshold,
                "estimated_fpr": self.estimated_fpr, "target_fpr": self.target_fpr,
                "iterations": self.iterations}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FusionModel:
        return cls(tuple(d["names"]), tuple(tuple(float(x) for x in e) for e in d["edges"]),
                   tuple(d["actions"]), tuple(d["components"]),
                   np.asarray(d["logt"], dtype=float), np.asarray(d["prior"], dtype=float),
                   np.asarray(d["taus"], dtype=float), float(d["threshold"]),
                   float(d["estimated_fpr"]), float(d["target_fpr"]), int(d["iterations"]))


@dataclass(frozen=True)
class _Patterns:
    """The distinct evidence patterns of a log: per pattern its first row, row count, bin codes
    (offset into the model's bins), whether it has collective evidence and which of its codes
    say nothing (a silent collective column, an action the model never saw); per row its
    pattern."""

    first: np.ndarray
    inverse: np.ndarray
    weight: np.ndarray
    flat: np.ndarray
    collective: np.ndarray
    silent: np.ndarray


class _View:
    """The evidence columns as the model sees them: account-level ones neutral outside
    ``context``, an account's infrastructure evidence only on converging or shared
    infrastructure."""

    def __init__(self, columns: Mapping[str, np.ndarray], context: np.ndarray | None) -> None:
        self.columns, self.context = columns, context
        # The owner of a rented account, liking from their own phone, is not on the farm's
        # device or subnet, even when they open a video alone: an account's infrastructure
        # evidence applies where this engagement's own device or network converges, or where it
        # was made on a phone that several engaging accounts share.
        infra_ctx = infra_context(columns) if context is not None else None
        if infra_ctx is not None and "dev_shared" in columns:
            infra_ctx = infra_ctx | _fires(columns["dev_shared"])
        self.infra_ctx = infra_ctx

    def __call__(self, c: str) -> np.ndarray:
        v = self.columns[c]
        if c == "acct_infra_surprise" and self.infra_ctx is not None:
            return np.where(self.infra_ctx, v, 0.0)
        if self.context is not None and c in ACCOUNT_LEVEL:
            return np.where(self.context, v, 0.0)
        return v

    def collective(self, n: int) -> np.ndarray:
        """The gate: collective evidence that may flag an engagement (``NOT_ALONE`` aside)."""
        out = np.zeros(n, dtype=bool)
        for c in COLLECTIVE:
            if c in self.columns and c not in NOT_ALONE:
                out |= _fires(self(c))
        return out


def _action_codes(action: np.ndarray | pa.Array | pa.ChunkedArray,
                  known: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Action codes by Arrow's hash encoding (np.unique would sort millions of strings): the
    log's actions in the contract's order when fitting, the model's (unknown actions: -1)
    when applying.

    The order must not come from the log's dictionary: a Parquet file's dictionary order and
    a CSV's order of first appearance differ, and a Parquet dictionary lists actions no
    engagement holds (``view``): the fit (its bins, its pattern order, so the sums of EM)
    would then depend on the file format the same log came in."""
    encoded = pc.dictionary_encode(pa.array(action) if isinstance(action, np.ndarray)
                                   else action)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    words = tuple(encoded.dictionary.to_pylist())
    if known is None:  # the actions the rows hold (a dictionary may list unused ones)
        used = np.bincount(codes[codes >= 0], minlength=len(words)) > 0
        known = sorted((w for w, u in zip(words, used, strict=True) if u),
                       key=lambda w: (ACTIONS.index(w) if w in ACTIONS else len(ACTIONS),
                                      str(w)))
    lookup = np.array([known.index(w) if w in known else -1 for w in words] or [0],
                      dtype=np.int64)
    return lookup[codes], tuple(known)


def _patterns(view: _View, names: Sequence[str], edges: Sequence[Sequence[float]],
              act_codes: np.ndarray, n_actions: int) -> _Patterns:
    """Group rows by their evidence pattern: engagements with the same bins are the same to the
    model, so EM and scoring run over thousands of patterns instead of millions of rows."""
    n = len(act_codes)
    # The key keeps an action the model does not know apart (its own code, n_actions); its
    # bin is the first action's, silenced.
    sizes = np.array([len(e) + 2 for e in edges] + [n_actions + 1])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    act = np.where(act_codes >= 0, act_codes, n_actions)
    collective = view.collective(n)
    # One mixed-radix integer per row (bins of every column, then the collective flag), so the
    # distinct patterns come from a 1-D unique instead of a row-wise one. It is built one
    # column at a time: no column's bins are kept for every row, only for one row per pattern.
    # A small batch (the service's) keeps each column's bins: recomputing them per pattern
    # below would be half its fusion's fixed cost. A log's rows would take gigabytes.
    kept: list[np.ndarray] | None = [] if n <= SMALL_ROWS else None
    if float(np.prod(sizes.astype(float))) * 2 < 2.0**62:
        key = collective.astype(np.int64)
        for j, c in enumerate(names):
            key *= int(sizes[j])
            codes = _codes(view(c), edges[j])
            key += codes
            if kept is not None:
                kept.append(codes)
        key *= int(sizes[-1])
        key += act
        _, first, inverse, weight = np.unique(key, return_index=True, return_inverse=True,
                                              return_counts=True)
        del key
    else:  # too many columns for one integer: the slower row-wise unique
        rows = np.vstack([*(_codes(view(c), edges[j]) for j, c in enumerate(names)), act,
                          collective]).T
        _, first, inverse, weight = np.unique(rows, axis=0, return_index=True,
                                              return_inverse=True, return_counts=True)
        del rows
    unknown = act[first] == n_actions
    flat = np.vstack([(kept[j][first] if kept else _codes(view(c)[first], edges[j]))
                      + offsets[j] for j, c in enumerate(names)]
                     + [np.where(unknown, 0, act[first]) + offsets[-1]])
    # Collective evidence is one-sided: each supply trips some detectors and not others, so a
    # detector that stays silent says nothing either way (its zero bin carries no weight).
    one_sided = np.array([c in COLLECTIVE for c in names] + [False])
    silent = one_sided[:, None] & (flat == offsets[:, None])
    silent[-1] |= unknown
    return _Patterns(first, inverse.ravel(), weight, flat, collective[first], silent)


@numba.njit(cache=True, nogil=True)
def _bin_masses(flat: np.ndarray, mass: np.ndarray, n_bins: int) -> np.ndarray:
    """Per component and bin, the mass of the patterns in that bin (EM's M-step counts).

    One pass with no temporaries: ``np.bincount`` per component over a tiled copy of the
    masses allocated columns x patterns floats per component per iteration, most of an
    iteration's time once a log has tens of thousands of patterns. The additions run in
    bincount's order (column by column, pattern by pattern), so the sums are the same bits."""
    n_comp, n_pat = mass.shape
    out = np.zeros((n_comp, n_bins))
    for j in range(flat.shape[0]):
        for p in range(n_pat):
            b = flat[j, p]
            for c in range(n_comp):
                out[c, b] += mass[c, p]
    return out


def _terms(logt: np.ndarray, pats: _Patterns) -> np.ndarray:
    """Per component, column and pattern: the log-ratio of the pattern's bin against organic."""
    n_comp = logt.shape[0]
    terms = np.zeros((n_comp, pats.flat.shape[0], pats.flat.shape[1]))
    organic = logt[0][pats.flat]
    for c in range(1, n_comp):
        terms[c] = np.where(pats.silent, 0.0, logt[c][pats.flat] - organic)
    return terms


def _posterior(terms: np.ndarray, prior: np.ndarray, taus: np.ndarray,
               collective: np.ndarray) -> np.ndarray:
    """Responsibilities per component and pattern; bought components only where there is
    collective evidence."""
    n_comp, _, n_pat = terms.shape
    logit = np.zeros((n_comp, n_pat))
    for c in range(1, n_comp):
        logit[c] = np.log(prior[c] / prior[0]) + terms[c].sum(axis=0) / taus[c]
    logit -= logit.max(axis=0)
    r = np.exp(logit)
    r[1:, ~collective] = 0.0
    r /= r.sum(axis=0)
    return r


def fit_fusion(columns: Mapping[str, np.ndarray], starts: Mapping[str, np.ndarray],
               action: np.ndarray | pa.Array | pa.ChunkedArray, *,
               context: np.ndarray | None = None, target_fpr: float = 0.001,
               iterations: int = 100, alpha: float = 1.0,
               floor: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[FusionModel, Fusion]:
    """Fit the mixture (organic + one bought component per detector) and flag at the target.

    Bought engagement is not one thing: bots, farms and paid people leave different traces, so
    one bought class would average them and lose the rarest. Each detector seeds its own bought
    component with its standalone scores; EM then lets each component learn the profile of what
    it caught. P(bought) is one minus the organic component's responsibility.

    ``context`` marks the engagements to which account-level columns apply; elsewhere those
    columns are neutral (see ``ACCOUNT_LEVEL``). Without it they apply everywhere.

    ``floor`` (rows and their floors, ``organic_floor``) raises the organic share the
    label-free FPR estimate counts for those engagements above the mixture's own; the
    threshold follows it.

    Returns the model and the log's own decisions, which are ``apply_fusion(model, ...)`` on
    the same columns: the fitted labelling is the applied one by construction.
    """
    n = len(action)
    if n == 0:
        empty = FusionModel((), (), (), ("organic",), np.zeros((1, 0)), np.ones(1), np.ones(1),
                            1.0, 0.0, target_fpr, 0)
        return empty, _empty(1.0, 0.0)
    view = _View(columns, context)
    names = [c for c in BINS if c in columns and np.nanmax(np.abs(view(c)), initial=0) > 0]
    edges = [BINS[c][0] for c in names]
    act_codes, actions = _action_codes(action, None)
    pats = _patterns(view, names, edges, act_codes, len(actions))
    n_pat = len(pats.weight)
    seeds = [np.clip(np.asarray(s, dtype=float), 0.0, 1.0) for s in starts.values()] or \
        [np.zeros(n)]
    top = np.maximum.reduce(seeds)
    row_r = np.vstack([np.clip(1.0 - top, 0.02, 1.0)] + [np.clip(s, 0.01, 1.0) for s in seeds])
    r = np.vstack([np.bincount(pats.inverse, weights=x, minlength=n_pat)
                   for x in row_r]) / pats.weight
    r[1:, ~pats.collective] = 0.0
    r /= r.sum(axis=0)
    n_comp = r.shape[0]
    n_bins = sum(len(e) + 2 for e in edges) + len(actions)
    seg = np.repeat(np.arange(len(edges) + 1), [len(e) + 2 for e in edges] + [len(actions)])
    taus = np.ones(n_comp)
    logt = np.zeros((n_comp, n_bins))
    prior = np.ones(n_comp)
    it = 0
    while it < iterations:
        it += 1
        mass = r * pats.weight
        prior = np.clip(mass.sum(axis=1) / n, 1e-9, None)
        logt = np.empty((n_comp, n_bins))
        masses = _bin_masses(pats.flat, mass, n_bins)
        for c in range(n_comp):
            counts = masses[c] + alpha
            logt[c] = np.log(counts / np.bincount(seg, weights=counts)[seg])
        terms = _terms(logt, pats)
        for c in range(1, n_comp):
            taus[c] = _tau(terms[c], mass[0])
        new_r = _posterior(terms, prior, taus, pats.collective)
        done = np.max(np.abs(new_r - r)) < 1e-6
        r = new_r
        if done:
            break
    components = ("organic", *starts) if starts else ("organic", "none")
    model = FusionModel(tuple(names), tuple(tuple(e) for e in edges), actions, components,
                        logt, prior, taus.copy(), 1.0, 0.0, target_fpr, it)
    p_pat, _ = _sole_evidence_cap(1.0 - r[0], columns, view, pats.first)
    organic = (1.0 - p_pat) * pats.weight
    if floor is not None:  # the rows whose floor lifts their pattern's organic share
        rows, at_least = floor
        inv = pats.inverse[rows]
        organic += np.bincount(inv, minlength=n_pat,
                               weights=np.maximum(at_least - (1.0 - p_pat[inv]), 0.0))
    threshold, est = _threshold(p_pat, pats.weight, target_fpr, organic)
    if threshold <= 1.0:  # something is flagged: report the count's upper bound, not its mean
        denominator = max(float(((1 - p_pat) * pats.weight).sum()), 1e-12)
        est = poisson_upper(est * denominator) / denominator
    model = replace(model, threshold=threshold, estimated_fpr=est)
    return model, _decide(model, pats, _terms(logt, pats), columns, view)


def apply_fusion(model: FusionModel, columns: Mapping[str, np.ndarray],
                 action: np.ndarray | pa.Array | pa.ChunkedArray, *,
                 context: np.ndarray | None = None) -> Fusion:
    """Score a log with a fitted model: its bin tables, weights and threshold, no EM.

    A column the model knows but this log lacks is silent; one it does not know is ignored.
    """
    n = len(action)
    if n == 0:
        return _empty(model.threshold, model.estimated_fpr)
    # A collective column the log lacks is silent; any other is missing (its own bin).
    present = {c: columns[c] if c in columns else np.full(n, 0.0 if c in COLLECTIVE else np.nan)
               for c in model.names}
    present |= {c: v for c, v in columns.items() if c not in present}
    view = _View(present, context)
    act_codes, _ = _action_codes(action, model.actions)
    pats = _patterns(view, model.names, model.edges, act_codes, len(model.actions))
    return _decide(model, pats, _terms(model.logt, pats), present, view)


def _decide(model: FusionModel, pats: _Patterns, terms: np.ndarray,
            columns: Mapping[str, np.ndarray], view: _View) -> Fusion:
    """Probabilities, flags and reasons per pattern from the model, spread to the rows."""
    r = _posterior(terms, model.prior, model.taus, pats.collective)
    p_pat, pile_decided = _sole_evidence_cap(1.0 - r[0], columns, view, pats.first)
    flagged_pat = p_pat >= model.threshold
    n_comp, n_pat = r.shape
    if n_comp > 1:
        best = 1 + np.argmax(r[1:], axis=0)
        chosen = terms[best, :, np.arange(n_pat)].T
    else:
        chosen = np.zeros((pats.flat.shape[0], n_pat))
    names = list(model.names)
    reasons_pat = pa.array(_reasons(names, chosen[: len(names)], flagged_pat, pile_decided),
                           pa.list_(pa.string()))
    p = p_pat[pats.inverse]
    return Fusion(p, flagged_pat[pats.inverse], reasons_pat.take(pa.array(pats.inverse)),
                  model.threshold, model.estimated_fpr,
                  float(model.taus[1:].max(initial=1.0)), float(p.mean()))


def _empty(threshold: float, estimated_fpr: float) -> Fusion:
    """A log with views only: nothing to decide."""
    return Fusion(np.zeros(0), np.zeros(0, dtype=bool), pa.array([], pa.list_(pa.string())),
                  threshold, estimated_fpr, 1.0, 0.0)


# Collective evidence whose own null says how much of it chance explains: the gate column, and
# the column with the share of the unit (a target's pile) that the organic explanation leaves
# over. A dense block's density against the shuffled graph's densest block was tried as such a
# share (1 - null / density) and rejected: sellers' blocks are barely denser than that null
# too (1.01-1.17 times on small-orders, 69-100 % bought), so it capped them away.
SOLE_CAPS = {"burst_task_surprise": "burst_excess", "burst_session_surprise": "burst_excess"}
CAP_EDGES = (0.0, *EXCESS_EDGES)


def _sole_evidence_cap(p: np.ndarray, columns: Mapping[str, np.ndarray],
                       column: Callable[[str], np.ndarray], first: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The probability of patterns whose only collective evidence is a target's pile, from
    the pile's own null; returns the probabilities and the patterns the null decided.

    A pile's organic explanation (the people who opened the video, at the highest conversion
    this log's videos show) leaves a share of its members unexplained, the pile's excess
    (``burst_excess``); an engagement known only as a member is bought with at most that
    probability, however typical its other columns look for the bought class. The mixture
    alone is sure of such members (it has seen few organic ones in piles), which made the
    label-free FPR estimate optimistic. The cap is the lower edge of the excess column's bin,
    so every row of a pattern shares it.

    In the top bin (``EXCESS_EDGES[-1]``: the organic explanation leaves at most one member
    in twenty) the null decides alone: the member's probability is that edge, whatever the
    mixture says. The mixture weighs a pile's members by the bought component that holds
    them, and when one component grew to hold most bought engagement (the bots' and farms'
    infrastructure, in zoo world 1009) it weighed a pile of paid people's in-session likes
    by the farm's profile and gave them 0.1 whatever their pile said. On 56 zoo worlds with
    views, pile-only likes in the top bin were 99.3 % bought (task-shaped piles) and 95.6 %
    (piles of in-session likes); in the bin below, 73 % and 49 %, where the mixture still
    has its say under the cap.
    """
    decided = np.zeros(len(p), dtype=bool)
    present = {c: x for c, x in SOLE_CAPS.items() if c in columns and x in columns}
    if not present:
        return p, decided
    fires = {c: _fires(np.asarray(column(c))[first]) for c in COLLECTIVE
             if c in columns}
    edges = np.array(CAP_EDGES)
    out = p
    for gate, excess_col in present.items():
        alone = fires[gate].copy()
        for c, f in fires.items():
            if c != gate:
                alone &= ~f
        excess = np.clip(np.nan_to_num(np.asarray(columns[excess_col], dtype=float)[first]),
                         0.0, 1.0)
        floor = edges[np.searchsorted(edges, excess, side="right") - 1]
        top = alone & (floor >= EXCESS_EDGES[-1])
        out = np.where(top, floor, np.where(alone, np.minimum(out, floor), out))
        decided |= top
    return out, decided


def _tau(terms: np.ndarray, w0: np.ndarray) -> float:
    """How much the per-column log-ratios double-count: var(sum) / sum(var), within organic."""
    total = w0.sum()
    if terms.shape[0] < 2 or total <= 0:
        return 1.0

    def var(x: np.ndarray) -> np.ndarray:
        mean = (x * w0).sum(axis=-1, keepdims=True) / total
        return ((x - mean) ** 2 * w0).sum(axis=-1) / total

    return float(max(1.0, var(terms.sum(axis=0)) / max(float(var(terms).sum()), 1e-12)))


# A probability at which an engagement is flagged whatever the FPR target: the pile's null
# decides its top bin at exactly this (``_sole_evidence_cap``). Where bought engagement
# outweighs the organic day, the organic mass the floors put under the surest patterns (rented
# accounts' owners) used up the whole target, and the threshold climbed past every pattern
# below 0.9999997: in zoo worlds with 40 % of likes bought, crowd recall fell to 0.00-0.14 in
# five of eight and one farm's to 0.35.
SURE = EXCESS_EDGES[-1]


def _threshold(p: np.ndarray, weight: np.ndarray, target_fpr: float,
               organic: np.ndarray | None = None) -> tuple[float, float]:
    """Lowest threshold whose estimated organic false-positive rate stays within the target,
    and at most ``SURE``; with the rate at that threshold.

    ``p`` and ``weight`` are per pattern, so engagements with the same evidence are flagged
    together or not at all. ``organic`` is the organic mass each pattern would add to the
    flagged side (its rows' floored organic shares; by default its weight times 1 - p); the
    rate's denominator is the mixture's organic mass of the whole log. The rate counts every
    pattern the threshold flags, those tied with it included (it used to stop at the last tied
    pattern within the target, and the rest of the tie, flagged too, went uncounted).
    """
    if len(p) == 0:
        return 1.0, 0.0
    order = np.argsort(-p, kind="stable")
    mass = (1 - p) * weight if organic is None else organic
    organic_mass = np.cumsum(mass[order])
    fpr = organic_mass / max(float(((1 - p) * weight).sum()), 1e-12)
    ps = p[order]
    # Within the target and more likely bought than not, or sure.
    ok = ((fpr <= target_fpr) & (ps > 0.5)) | (ps >= SURE)
    at = np.flatnonzero(ok)
    if len(at) == 0:
        return 1.0 + 1e-9, 0.0
    threshold = float(ps[at[-1]])
    k = int(np.searchsorted(-ps, -threshold, side="right")) - 1  # the tie's last pattern
    return threshold, float(fpr[k])


def poisson_upper(mean: float, z: float = 1.645) -> float:
    """The one-sided 95 % upper bound of a Poisson count whose estimate is ``mean``.

    The label-free FPR estimate is the mixture's expected number of organic engagements among
    the flagged. When that number is a handful, the truth is a handful too, and the mixture's
    own counting cannot tell 1 from 5: the estimate was below half the truth in the zoo worlds
    with 1-10 organic likes flagged (estimated 0 and 2). Reporting the bound a reviewer would
    put on an observed count, chi2(0.95; 2m + 2) / 2 (Garwood's exact upper limit, 3.0 for
    nothing seen: the rule of three), keeps small counts honest and adds little to large ones
    (about 1.645 sqrt(m)). Wilson and Hilferty's cube-root approximation of the chi-square
    quantile is within 1 % of the exact value from two degrees of freedom up, and needs no
    scipy.
    """
    k = 2.0 * max(mean, 0.0) + 2.0
    c = 2.0 / (9.0 * k)
    return 0.5 * k * (1.0 - c + z * math.sqrt(c)) ** 3


def _reasons(names: list[str], terms: np.ndarray, flagged: np.ndarray,
             pile: np.ndarray | None = None) -> list[list[str]]:
    """For each flagged engagement, the vocabulary words of the columns that pushed it up;
    ``video_burst`` first where the pile's null decided (``_sole_evidence_cap``)."""
    out: list[list[str]] = [[] for _ in range(len(flagged))]
    idx = np.flatnonzero(flagged)
    if len(idx) == 0 or not names:
        return out
    if pile is not None:
        for i in np.flatnonzero(flagged & pile):
            out[i].append(BINS["burst_excess"][1])
    sub = terms[:, idx]
    for col_i, pos in zip(*np.nonzero(sub > 1.0), strict=True):
        word = BINS[names[col_i]][1]
        bucket = out[idx[pos]]
        if word not in bucket:
            bucket.append(word)
    for i in idx:
        if not out[i]:
            out[i].append("flagged_account")
    return out
