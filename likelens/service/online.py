"""Real-time scoring: the batch model's fusion tables on evidence kept up to date event by event.

A batch scan sees the whole day; the service sees only the past. It keeps, per account, device,
address, range, video and target, the counts the batch detectors compute over the log, updated
as each event arrives, and hands them to the fitted fusion model as the same evidence columns
(``fusion.BINS``), so a real-time decision is the batch model's probability of the evidence known
at that moment:

- behaviour: the view before the like (watch share, seconds since), the account's views in the
  ten minutes before (its feed session), and its running shares of isolated, view-less and
  low-watch engagements;
- burst: task-shaped engagements on the target within ``near_s`` before this one, against the
  isolated views of the video in the same span at the model's learned conversion ceiling
  (``burst.conversion_ceiling``); the same binomial surprise and bought share as the batch;
- infra: accounts per device against the model's learned sharing rate, and accounts from one
  address or range on one target against the chance the running counts give;
- groups and blocks the model found: an account in a lockstep group, an engagement on a dense
  block's targets by one of its accounts. A group weighs but flags nothing alone
  (``fusion.NOT_ALONE``), as in the batch, and whether the account met its partners on this
  target (``lockstep_met``) is left silent: the batch scan's revision finds it.

Evidence that needs the future (the day's cadence, co-liking pairs that are not yet a group, a
pile's members explained away by the members around them with evidence of their own, which
needs the pile's whole half hour: ``fusion.explain_away``; a carrier's typical ratio over the
popular videos, ``infra._inflation``) is left silent or unapplied; the
batch scan that follows finds it and the service revises its earlier decisions
(``ServiceStore.revise``). One piece of the future comes within minutes: the batch calls an
engagement isolated when no view of the account falls within a session of it on either side,
the service can only see the side before. Someone opening the app from a push, liking the first
video and scrolling on looks isolated at the like. So a flagged engagement that was isolated is
held for a session; when the account's next view arrives within it, the engagement is scored
again as the batch would see it (not isolated, so not task-shaped and without pile evidence of
its own) and, where the flag falls, the new decision is handed out as a revision
(``take_revisions``), recorded beside the first. State is aged out by event time (``window_s``),
which bounds memory whatever the stream's length.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from likelens.arrays import pylist
from likelens.detect.base import binomial_surprise, poisson_surprise
from likelens.detect.burst import bought_share
from likelens.detect.infra import accounts_surprise
from likelens.features import SESSION_MS
from likelens.fusion import account_context, apply_fusion
from likelens.model import Model
from likelens.service.groups import groups_of_model

NEEDS_VIEW = frozenset(("like", "comment", "share"))
CHAINED = frozenset(("comment", "share"))
RECENT_VIEWS = 8  # views kept per account to find the view before a like
BURST = ("burst_task_surprise", "burst_task_near", "burst_excess")


@dataclass
class Decision:
    """One engagement's real-time decision."""

    event_id: str
    ts: int
    user_id: str
    action: str
    video_id: str | None
    creator_id: str | None
    score: float
    flagged: bool
    reasons: list[str]
    device: str | None = None  # pseudonymised, as in the scan
    net: str | None = None  # the address range, pseudonymised


@dataclass(slots=True)
class _Account:
    """Per account: its latest views (ts, video, watch_ms, video_ms) and running counts. Slots
    and a plain list: a million of these must fit in well under 2 GiB."""

    views: list[tuple[int, Any, int, int]] = field(default_factory=list)
    n_eng: int = 0
    n_need: int = 0
    n_iso: int = 0
    n_noview: int = 0
    n_frac: int = 0
    n_low: int = 0
    n_views: int = 0
    infra: float = 0.0
    # The creator that takes most of the account's engagements (Boyer-Moore majority vote:
    # if one creator takes more than half, it is this one), with its engagements and videos
    # since it became the candidate: a fan's loyalty, in O(1) memory.
    fav: Any = None
    fav_votes: int = 0
    fav_hits: int = 0
    fav_videos: int = 0
    fav_last_video: Any = None
    last: int = 0


@dataclass(slots=True)
class _Held:
    """A flagged engagement that was isolated when decided, held for a session in case the
    account's next view shows it was not: its decision, the evidence it was decided on (before
    the block corroboration) and the account's engagements needing a view at that moment."""

    decision: Decision
    evidence: dict[str, float]  # per evidence column (``fusion.BINS`` names)
    n_need: int


@dataclass(slots=True)
class _Window:
    """Times of one kind of event on one key, within ``near`` of the newest."""

    times: deque[int] = field(default_factory=deque)
    total: int = 0
    last: int = 0

    def add(self, ts: int, near: int) -> int:
        self.times.append(ts)
        self.total += 1
        self.last = ts
        return self.count(ts, near)

    def count(self, ts: int, near: int) -> int:
        while self.times and self.times[0] < ts - near:
            self.times.popleft()
        return len(self.times)


class OnlineScorer:
    """Incremental evidence for each arriving event, scored by a fitted model in micro-batches.

    Not thread-safe: one worker feeds it, in arrival order.
    """

    def __init__(self, model: Model, *, version: str, window_s: int = 24 * 3600,
                 near_s: int | None = None, full_watch: float | None = None,
                 full_watch_min_s: float | None = None) -> None:
        self.model, self.version = model, version
        burst = model.params.get("burst", {})
        self.near = int((near_s or burst.get("near_s", 1800)) * 1000)
        self.full_watch = float(full_watch or burst.get("full_watch", 0.9))
        self.full_watch_ms = float(full_watch_min_s or burst.get("full_watch_min_s", 30.0)) * 1000
        self.loyal_share = float(burst.get("loyal_share", 0.5))
        self.low_watch = float(model.params.get("behaviour", {}).get("low_watch_frac", 0.2))
        self.fast_chain_ms = int(model.params.get("behaviour", {}).get("fast_chain_s", 15) * 1000)
        self.window = int(window_s * 1000)
        self._load_model_facts(model)
        self.accounts: dict[Any, _Account] = {}
        # A device's accounts: the one account's id while it has one (most phones), a set
        # once it has more.
        self.devices: dict[str, str | set[str]] = {}
        # key -> [engagements, last ts, engagements inside a feed session]
        self.key_counts: dict[str, list[int]] = {}
        # (address or range, target) -> [last ts, first account, the others or None]; keyed
        # by the tuple's hash (a collision among millions of 64-bit hashes is negligible and
        # would only merge two counts).
        self.key_target: dict[int, list[Any]] = {}
        # target -> [engagements, last ts, engagements inside a feed session]
        self.target_counts: dict[Any, list[int]] = {}
        self.task_piles: dict[Any, _Window] = {}
        self.iso_views: dict[Any, _Window] = {}
        self.n_engagements = 0
        self.n_feed = 0  # engagements inside a feed session (infra's null, as in the batch)
        self.clock = 0
        self._pruned_at = 0
        # Flagged isolated engagements per account, held for a session (``_revisit``).
        self.held: dict[str, list[_Held]] = {}
        self._viewed: set[str] = set()  # accounts with held engagements that viewed since
        self._revisions: list[Decision] = []
        self._held_at = 0

    # -- the model ---------------------------------------------------------------------------

    def _load_model_facts(self, model: Model) -> None:
        """What the model learned, as lookups: conversion ceiling, sharing rate, group members,
        dense blocks (accounts and targets)."""
        states = model.states
        burst = states["burst"].values if "burst" in states else {}
        self.conversion = float(burst.get("conversion_ceiling", 0.6))
        infra = states["infra"].values if "infra" in states else {}
        # The scan counts one test per engagement of its day; a stream that has just started
        # has seen few, and would call a shared address's small pile on one video more
        # surprising than the scan does. The day the model was fitted on sets the floor.
        fitted = model.info.get("fitted_on", {}) if isinstance(model.info, dict) else {}
        self.min_tests = int(fitted.get("engagements", 0) or 0)
        self.share_decay = float(infra.get("device_share_decay", 0.5))
        self.lockstep: set[str] = set()
        self.dense: dict[str, set[int]] = {}
        self.dense_targets: dict[str, set[int]] = {}
        for g in groups_of_model(model):
            if g.kind == "lockstep":
                self.lockstep.update(g.accounts)
                continue
            for u in g.accounts:
                self.dense.setdefault(u, set()).add(g.block)
            for k in g.targets:
                self.dense_targets.setdefault(k, set()).add(g.block)

    def swap_model(self, model: Model, version: str) -> None:
        """Score with ``model`` from the next batch on; the running evidence is kept."""
        self.model, self.version = model, version
        self._load_model_facts(model)

    # -- scoring -----------------------------------------------------------------------------

    def score(self, events: pa.Table) -> list[Decision]:
        """Update the state with ``events`` (canonical columns, in arrival order) and decide
        every engagement among them."""
        if events.num_rows == 0:
            return []
        cols = {c: pylist(events[c]) for c in (
            "event_id", "ts", "user_id", "action", "video_id", "creator_id", "watch_ms",
            "video_ms", "device_hash", "ip_hash", "ip_sub")}
        raw: dict[str, list[float]] = {k: [] for k in (
            "no_view", "watch_frac", "isolated", "fast_chain", "task", "acct_iso_share",
            "acct_noview_share", "acct_low_share", "acct_views_per_eng", "dev_k", "ip_obs",
            "ip_lam", "net_obs", "net_lam", "k_near", "iso_near", "k_day", "iso_day",
            "lockstep_group", "dense_block", "acct_infra")}
        rows: list[int] = []
        for i in range(events.num_rows):
            if self._event(i, cols, raw):
                rows.append(i)
        out = self._decide(rows, cols, raw) if rows else []
        self._revisit()
        # Only now: a batch whose times span more than the window would otherwise lose its
        # early accounts between folding them in and deciding their engagements.
        self._maybe_prune()
        return out

    def take_revisions(self) -> list[Decision]:
        """The revisions the last ``score`` calls made (flags that a later view of the same
        session cleared), handed out once."""
        out, self._revisions = self._revisions, []
        return out

    def _event(self, i: int, cols: dict[str, list[Any]], raw: dict[str, list[float]]) -> bool:
        """Fold event ``i`` into the state; for an engagement, append its raw evidence."""
        ts = int(cols["ts"][i])
        self.clock = max(self.clock, ts)
        user, action, video = str(cols["user_id"][i]), cols["action"][i], cols["video_id"][i]
        acc = self.accounts.get(user)
        if acc is None:
            acc = self.accounts[user] = _Account()
        acc.last = ts
        if action == "view":
            views = acc.views
            # The newest view is nearly always the last: look at it before the rest.
            session = bool(views) and (ts - views[-1][0] <= SESSION_MS or any(
                ts - v[0] <= SESSION_MS for v in views))
            views.append((ts, video, int(cols["watch_ms"][i] or 0),
                          int(cols["video_ms"][i] or 0)))
            if len(views) > RECENT_VIEWS:
                del views[0]
            acc.n_views += 1
            if user in self.held:
                self._viewed.add(user)
            if not session and video is not None:
                self.iso_views.setdefault(video, _Window()).add(ts, self.near)
            return False
        view = None
        for v in reversed(acc.views):
            if v[1] == video and v[0] <= ts:
                view = v
                break
        needs = action in NEEDS_VIEW
        has_view = view is not None
        since = ts - view[0] if view is not None else None
        video_ms = cols["video_ms"][i] or (view[3] if view is not None else 0)
        watch_ms = view[2] if view is not None else 0
        frac = watch_ms / video_ms if has_view and video_ms else math.nan
        own = 1 if has_view and since is not None and since <= SESSION_MS else 0
        session = sum(1 for v in acc.views if 0 <= ts - v[0] <= SESSION_MS) - own
        isolated = session <= 0
        no_view = needs and not has_view
        task = isolated or no_view
        acc.n_eng += 1
        if needs:
            acc.n_need += 1
            acc.n_iso += isolated
            acc.n_noview += no_view
        if not math.isnan(frac):
            acc.n_frac += 1
            acc.n_low += frac < self.low_watch
        self.n_engagements += 1
        feed = not task
        self.n_feed += feed
        target: Any = ("follow", cols["creator_id"][i]) if action == "follow" else (action, video)
        tc = self.target_counts.get(target)
        if tc is None:
            tc = self.target_counts[target] = [0, ts, 0]
        tc[0] += 1
        tc[1] = ts
        tc[2] += feed
        # Accounts per device, and accounts from one address or range on this target.
        dev = cols["device_hash"][i]
        dev_k = 0
        if dev is not None:
            users = self.devices.get(dev)
            if users is None:
                self.devices[dev] = user
                dev_k = 1
            elif isinstance(users, str):
                if users != user:
                    self.devices[dev] = {users, user}
                dev_k = 1 if users == user else 2
            else:
                users.add(user)
                dev_k = len(users)
        for key_col, name in (("ip_hash", "ip"), ("ip_sub", "net")):
            key = cols[key_col][i]
            if key is None:
                raw[f"{name}_obs"].append(0.0)
                raw[f"{name}_lam"].append(0.0)
                continue
            kk = name + key
            kc = self.key_counts.get(kk)
            if kc is None:
                kc = self.key_counts[kk] = [0, ts, 0]
            kc[0] += 1
            kc[1] = ts
            kc[2] += feed
            n_k = kc[0]
            slot = hash((kk, target))
            entry = self.key_target.get(slot)
            if entry is None:
                entry = self.key_target[slot] = [ts, user, None]
            entry[0] = ts
            if entry[1] != user:
                if entry[2] is None:
                    entry[2] = {user}
                else:
                    entry[2].add(user)
            raw[f"{name}_obs"].append(float(len(entry[2]) if entry[2] else 0))
            # At least the key's share of the feed times the target's engagements, as in the
            # batch (``infra._convergence``): bought volume comes from other keys.
            raw[f"{name}_lam"].append((tc[0] - 1) * max(
                (n_k - 1) / self.n_engagements,
                max(kc[2] - 1, 0) / self.n_feed if self.n_feed else 0.0))
        # The target's pile of task-shaped engagements the account's own watch does not
        # explain, against the video's isolated views in the same span.
        through = (not math.isnan(frac)) and frac >= self.full_watch and \
            watch_ms >= self.full_watch_ms
        creator = cols["creator_id"][i]
        loyal = (creator is not None and acc.fav == creator and acc.fav_videos >= 2
                 and acc.fav_hits >= self.loyal_share * (acc.n_eng - 1))
        _vote(acc, creator, video)
        through = through or loyal
        pile = self.task_piles.setdefault(target, _Window())
        if task and not through:
            k_near = pile.add(ts, self.near)
        else:
            k_near = 0
        iso = self.iso_views.get(video) if video is not None else None
        iso_near = iso.count(ts, self.near) if iso is not None else 0
        raw["k_near"].append(float(k_near))
        raw["iso_near"].append(float(iso_near))
        raw["k_day"].append(float(pile.total if k_near else 0))
        raw["iso_day"].append(float(iso.total if iso is not None else 0))
        raw["no_view"].append(float(no_view))
        raw["watch_frac"].append(frac if needs else math.nan)
        raw["isolated"].append(float(needs and isolated))
        raw["fast_chain"].append(float(action in CHAINED and has_view and since is not None
                                       and since < self.fast_chain_ms))
        raw["task"].append(float(task))
        raw["acct_iso_share"].append(acc.n_iso / acc.n_need if acc.n_need else 0.0)
        raw["acct_noview_share"].append(acc.n_noview / acc.n_need if acc.n_need else 0.0)
        raw["acct_low_share"].append(acc.n_low / acc.n_frac if acc.n_frac else 0.0)
        raw["acct_views_per_eng"].append(acc.n_views / acc.n_eng)
        raw["dev_k"].append(float(dev_k))
        raw["lockstep_group"].append(float(user in self.lockstep))
        blocks = self.dense.get(user)
        in_block = False
        if blocks:
            key = f"{action}\x1f{cols['creator_id'][i] if action == 'follow' else video}"
            in_block = bool(blocks & self.dense_targets.get(key, set()))
        raw["dense_block"].append(float(in_block))
        raw["acct_infra"].append(acc.infra)
        return True

    def _decide(self, rows: list[int], cols: dict[str, list[Any]],
                raw: dict[str, list[float]]) -> list[Decision]:
        """The batch's evidence columns from the raw counts, scored by the model's fusion."""
        a = {k: np.asarray(v, dtype=float) for k, v in raw.items()}
        n_targets = max(len(self.target_counts), 1)
        tests = max(self.n_engagements, self.min_tests, 1)
        conv = self.conversion
        k_near, iso_near = a["k_near"], a["iso_near"]
        piled = k_near > 0
        near_s = binomial_surprise(k_near, np.maximum(k_near, iso_near), conv, tests=n_targets)
        day_s = binomial_surprise(a["k_day"], np.maximum(a["k_day"], a["iso_day"]), conv,
                                  tests=n_targets)
        task_s = np.where(piled, np.maximum(near_s, day_s), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = np.where(task_s > 0, np.maximum(
                bought_share(k_near, iso_near, conv), bought_share(a["k_day"], a["iso_day"], conv)),
                0.0)
        dev_s = accounts_surprise(a["dev_k"], min(max(self.share_decay, 1e-3), 0.9),
                                  len(self.devices))
        ip_s = poisson_surprise(a["ip_obs"], a["ip_lam"], tests=tests)
        net_s = poisson_surprise(a["net_obs"], a["net_lam"], tests=tests)
        infra_now = np.maximum(ip_s, net_s)
        # An account that converges from one key converges as an account from then on.
        acct_infra = np.maximum(a["acct_infra"], infra_now)
        for j, i in enumerate(rows):
            if infra_now[j] > 0:
                acc = self.accounts[str(cols["user_id"][i])]
                acc.infra = max(acc.infra, float(infra_now[j]))
        zeros = np.zeros(len(rows))
        columns = {
            "no_view": a["no_view"], "watch_frac": a["watch_frac"], "isolated": a["isolated"],
            "fast_chain": a["fast_chain"], "acct_iso_share": a["acct_iso_share"],
            "acct_noview_share": a["acct_noview_share"], "acct_low_share": a["acct_low_share"],
            "acct_views_per_eng": a["acct_views_per_eng"], "acct_regular": zeros,
            "dev_surprise": zeros, "ip_surprise": ip_s, "net_surprise": net_s,
            "dev_accounts_surprise": dev_s, "acct_infra_surprise": acct_infra,
            "lockstep_met": zeros, "lockstep_group": a["lockstep_group"],
            "dense_block": a["dense_block"], "burst_task_surprise": task_s,
            "burst_session_surprise": zeros, "burst_task_near": np.where(
                piled, np.log1p(np.maximum(k_near - 1, 0)), 0.0),
            "burst_hour_surprise": zeros, "burst_excess": np.clip(np.nan_to_num(excess), 0, 1),
            "template_accounts": zeros, "dev_farm": zeros,
        }
        actions = [cols["action"][i] for i in rows]
        fused = self._fuse(columns, a["task"] > 0, actions)
        reasons = fused.reasons.to_pylist()
        out = []
        for j, i in enumerate(rows):
            d = Decision(
                str(cols["event_id"][i]), int(cols["ts"][i]), str(cols["user_id"][i]),
                cols["action"][i], _text(cols["video_id"][i]), _text(cols["creator_id"][i]),
                float(fused.probability[j]), bool(fused.flagged[j]), list(reasons[j] or []),
                _text(cols["device_hash"][i]), _text(cols["ip_sub"][i]))
            out.append(d)
            if d.flagged and a["isolated"][j] > 0:
                self.held.setdefault(d.user_id, []).append(_Held(
                    d, {c: float(v[j]) for c, v in columns.items()},
                    self.accounts[d.user_id].n_need))
                # Views later in this same batch count as well.
                self._viewed.add(d.user_id)
        return out

    def _fuse(self, columns: dict[str, np.ndarray], task: np.ndarray,
              actions: list[str]) -> Any:
        """The model's fusion on evidence columns. As in the scan
        (``fusion.corroborate_structures``), a block's engagement or a lockstep group counts
        only for an account with collective evidence outside it, here what the state knows of
        it (its infrastructure, this one's included; the other structure) or this engagement's
        pile or device."""
        outside = ((columns["acct_infra_surprise"] > 0) | (columns["burst_task_surprise"] > 0)
                   | (columns["dev_accounts_surprise"] > 0))
        block, group = columns["dense_block"] > 0, columns["lockstep_group"] > 0
        columns = dict(columns,
                       dense_block=np.where(outside | group, columns["dense_block"], 0.0),
                       lockstep_group=np.where(outside | block, columns["lockstep_group"], 0.0))
        context = account_context(columns, task)
        return apply_fusion(self.model.fusion, columns, pa.array(actions, pa.string()),
                            context=context)

    def _revisit(self) -> None:
        """Score again the held engagements of accounts that viewed since: one followed within
        a session by another view of the account was not isolated, as the batch would see it.
        Its own pile evidence goes (a pile counts task-shaped engagements only; the pile keeps
        its count, which errs towards flagging others), and the account's share of isolated
        engagements loses it. Engagements held longer than a session are let go."""
        if not self._viewed:
            self._expire()
            return
        again: list[_Held] = []
        for user in self._viewed:
            held = self.held.get(user)
            acc = self.accounts.get(user)
            if held is None or acc is None:
                continue
            keep = []
            for h in held:
                t = h.decision.ts
                if any(t < v[0] <= t + SESSION_MS for v in acc.views):
                    again.append(h)
                    acc.n_iso = max(acc.n_iso - 1, 0)
                elif self.clock - t <= SESSION_MS:
                    keep.append(h)
            if keep:
                self.held[user] = keep
            else:
                del self.held[user]
        self._viewed.clear()
        self._expire()
        if not again:
            return
        columns = {c: np.asarray([h.evidence[c] for h in again], dtype=float)
                   for c in again[0].evidence}
        n_need = np.asarray([max(h.n_need, 1) for h in again], dtype=float)
        columns["acct_iso_share"] = np.maximum(columns["acct_iso_share"] - 1.0 / n_need, 0.0)
        columns["isolated"][:] = 0.0
        task = columns["no_view"] > 0
        for c in BURST:
            columns[c] = np.where(task, columns[c], 0.0)
        fused = self._fuse(columns, task, [h.decision.action for h in again])
        reasons = fused.reasons.to_pylist()
        for j, h in enumerate(again):
            if not fused.flagged[j]:
                d = h.decision
                self._revisions.append(Decision(
                    d.event_id, d.ts, d.user_id, d.action, d.video_id, d.creator_id,
                    float(fused.probability[j]), False, list(reasons[j] or []), d.device, d.net))

    def _expire(self) -> None:
        """Let go of held engagements older than a session, once per session of event time."""
        if self.clock - self._held_at < SESSION_MS:
            return
        self._held_at = self.clock
        old = self.clock - SESSION_MS
        self.held = {u: k for u, hs in self.held.items()
                     if (k := [h for h in hs if h.decision.ts >= old])}

    # -- memory ------------------------------------------------------------------------------

    def _maybe_prune(self) -> None:
        """Forget what is older than the window, once per tenth of a window of event time."""
        if self.clock - self._pruned_at < self.window // 10:
            return
        self._pruned_at = self.clock
        old = self.clock - self.window
        self.accounts = {u: a for u, a in self.accounts.items() if a.last >= old}
        self.task_piles = {t: w for t, w in self.task_piles.items() if w.last >= old}
        self.iso_views = {v: w for v, w in self.iso_views.items() if w.last >= old}
        self.key_target = {k: v for k, v in self.key_target.items() if v[0] >= old}
        self.key_counts = {k: v for k, v in self.key_counts.items() if v[1] >= old}
        self.target_counts = {k: v for k, v in self.target_counts.items() if v[1] >= old}
        # The chance of convergence is counts over all engagements: age the totals with them.
        self.n_engagements = max(sum(v[0] for v in self.target_counts.values()), 1)
        self.n_feed = sum(v[2] for v in self.target_counts.values())
        live = self.accounts
        self.devices = {d: s for d, s in self.devices.items()
                        if (s in live if isinstance(s, str) else any(u in live for u in s))}

    def stats(self) -> dict[str, int]:
        """Sizes of the running state (for /metrics and the memory benchmark)."""
        return {"accounts": len(self.accounts), "devices": len(self.devices),
                "targets": len(self.target_counts), "piles": len(self.task_piles),
                "held": sum(len(h) for h in self.held.values()),
                "engagements": self.n_engagements}


def _vote(acc: _Account, creator: Any, video: Any) -> None:
    """Count an engagement on ``creator`` towards the account's majority creator."""
    if creator is None:
        return
    if acc.fav == creator:
        acc.fav_votes += 1
        acc.fav_hits += 1
        if video != acc.fav_last_video:
            acc.fav_videos += 1
            acc.fav_last_video = video
    elif acc.fav_votes == 0:
        acc.fav, acc.fav_votes, acc.fav_hits, acc.fav_videos = creator, 1, 1, 1
        acc.fav_last_video = video
    else:
        acc.fav_votes -= 1


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
