"""Burst: a target that collects engagements its own audience does not explain.

Two comparisons against the target's own organic curve, each a Poisson tail:

- task-shaped engagements: likes that came with no view or from a view outside any feed session
  happen organically at a low, stable rate (the log's own rate). A target where dozens of them
  pile up was opened from a task list, whatever the supply (bots, farms or paid people); how
  many others arrived within ``near_s`` of each one tells the pile's members from an organic
  straggler on the same target;
- likes against views per hour: in each hour a target's likes should follow its views at the
  target's own like rate; an hour with far more likes than its views predict is a bought spike.
  A fan burst after a publish brings views and likes together and is not a spike.

Only the engagements that fit the burst carry its surprise: an in-session like with a full watch
on a boosted video is a real fan, and stays one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens import viewindex
from likelens.arrays import distinct
from likelens.detect.base import (
    Detector,
    Signal,
    State,
    binomial_surprise,
    poisson_surprise,
    squash,
)
from likelens.features import Features, task_shaped


def bought_share(liked: np.ndarray, opened: np.ndarray, ceiling: float, *,
                 z: float = 0.0) -> np.ndarray:
    """The share of a pile's likes that were bought, if organic openers convert at
    ``ceiling`` and a task list converts every opening: with x = likes / openings (a like
    without a view opened the video too), the bought fraction of openings is
    f = (x - ceiling) / (1 - ceiling), and of the likes f / x.

    With ``z`` > 0, f comes from the Wilson lower bound of x at that normal quantile instead
    of x itself: a cautious share that knows five likes from five openings prove less than
    fifty from fifty (the label-free FPR estimate counts the rest as possibly organic).
    """
    k = np.asarray(liked, dtype=float)
    n = np.maximum(k, np.asarray(opened, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(n > 0, k / n, 0.0)
        low = x
        if z > 0:
            z2 = z * z
            low = ((x + z2 / (2 * n) - z * np.sqrt(x * (1 - x) / n + z2 / (4 * n * n)))
                   / (1 + z2 / n))
        f = np.clip((low - ceiling) / max(1.0 - ceiling, 1e-9), 0.0, 1.0)
        return np.nan_to_num(np.where(x > 0, f / x, 0.0))


# One-sided 95 % normal quantile for the cautious share (``bought_share(..., z=...)``).
CAUTIOUS_Z = 1.645
# The highest organic conversion the cautious share assumes: below 1, where a task list is.
CAUTIOUS_CAP = 0.95


def _creator_pairs(acc: np.ndarray, cre: np.ndarray, vid: np.ndarray, rows: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The (account, creator) pairs of the engagements ``rows`` (valid codes only): each pair's
    account, each row's pair, and per pair its engagements and distinct videos."""
    n_cre = int(cre[rows].max()) + 1
    pairs, inv, per_pair = np.unique(acc[rows] * n_cre + cre[rows], return_inverse=True,
                                     return_counts=True)
    inv = inv.ravel().astype(np.int64)
    n_vid = int(vid[rows].max()) + 1
    videos = np.bincount(distinct(inv * n_vid + vid[rows]) // n_vid, minlength=len(pairs))
    return pairs // n_cre, inv, per_pair, videos


class BurstDetector(Detector):
    """Per-target and per-hour surprise of task-shaped engagements and of likes over views."""

    name = "burst"
    learns = ("conversion_ceiling", "session_conversion_ceiling", "session_cautious_ceiling")
    needs = ("views",)

    def __init__(self, *, bucket_s: int = 3600, near_s: int = 1800,
                 half_surprise: float = 4.0, conversion_quantile: float = 0.9,
                 max_conversion: float = 0.6, min_opened: int = 10, full_watch: float = 0.9,
                 full_watch_min_s: float = 30.0, loyal_share: float = 0.5,
                 cautious_quantile: float = 0.99) -> None:
        self.bucket_s, self.near_s, self.half_surprise = bucket_s, near_s, half_surprise
        self.conversion_quantile, self.max_conversion = conversion_quantile, max_conversion
        self.min_opened, self.full_watch, self.loyal_share = min_opened, full_watch, loyal_share
        self.full_watch_min_s, self.cautious_quantile = full_watch_min_s, cautious_quantile

    def _run(self, feats: Features, state: State, *, fitting: bool) -> Signal:

        def learned(name: str, learn: Callable[[], float]) -> float:
            return float(state.value(name, learn, fitting=fitting))

        b = int(self.bucket_s * 1000)
        # Views of the engagement's video in its own time bucket, from the view index.
        e = feats.engagements
        bucket = e["ts"].to_numpy() // b
        vid = e["vid"].to_numpy().astype(np.int64)
        views = (feats.videos.between(vid, bucket * b, (bucket + 1) * b)
                 if feats.videos is not None else np.zeros(len(vid), dtype=np.int64))
        acted = np.asarray(pc.is_in(e["action"], value_set=pa.array(
            ["like", "comment", "share"])).to_numpy(zero_copy_only=False), dtype=bool)
        like = np.asarray(pc.equal(e["action"], "like").to_numpy(zero_copy_only=False), bool)
        liked_view = like & e["has_view"].to_numpy(zero_copy_only=False).astype(bool)
        # Engaged from a view opened alone, or with no view at all: how a task list engages.
        alone = acted & task_shaped(feats)
        explained = self._explained(feats, acted, alone)
        # Task-shaped, and not explained by who the account is (see ``_explained``).
        t = feats.engine.target_piles(alone & ~explained, views, b)

        def col(name: str) -> np.ndarray:
            return np.nan_to_num(t[name].to_numpy(zero_copy_only=False).astype(float))

        task_mask = t["task"].to_numpy(zero_copy_only=False).astype(bool)
        # Task-shaped engagements of the same target within near_s of each one (itself not
        # counted): the view index's window count over (target, time) blocks.
        near = int(self.near_s * 1000)
        tgt = feats.target_codes
        ts = e["ts"].to_numpy().astype(np.int64)
        task_near = np.where(task_mask, viewindex.count_within(
            np.where(task_mask, tgt, -1), int(tgt.max(initial=-1)) + 1, ts, tgt, ts - near,
            ts + near + 1) - 1, 0)
        n_targets = float(col("n_targets").max(initial=1.0))
        # The organic explanation of a pile: people the platform sent (a push, a link, a hot
        # list) open the video alone too, and only some of them like it. The pile is compared
        # with the views opened alone on the same video, at the conversion warm crowds reach
        # on this log; a task list converts nearly every opening into the engagement it paid
        # for.
        conv, iso_total, iso_near = self._conversion(feats, alone & liked_view, task_mask, vid,
                                                     ts, near, learned)
        k_near = task_near + 1.0
        # A pile spread over the day (a drip) has only the day's count against it; but an
        # engagement that arrived with a crowd of people opening the video, converting no more
        # than warm crowds do, belongs to that crowd, whatever else the video collected.
        in_crowd = (iso_near >= self.min_opened) & (k_near <= conv * iso_near)
        day_s = np.where(in_crowd, 0.0, binomial_surprise(
            col("k"), np.maximum(col("k"), iso_total), conv, tests=n_targets))
        target_s = np.maximum(day_s, binomial_surprise(
            k_near, np.maximum(k_near, iso_near), conv, tests=n_targets))
        hour_s = poisson_surprise(col("hour_likes"), col("hour_expected"),
                                  tests=n_targets * 24)
        target_s = np.where(task_mask, target_s, 0.0)
        watch = feats.engagements["watch_frac"].to_numpy(zero_copy_only=False).astype(float)
        # An in-session like with most of the video watched is a real fan inside a spike.
        fan = ~task_mask & (np.nan_to_num(watch, nan=0.0) >= 0.5)
        # Likes from inside a feed session are not task-shaped, but a paid person who took
        # the task between their own videos still converts every opening the order made.
        session_s, session_excess, session_low = self._session_pile(
            feats, like, liked_view & ~task_mask & ~explained & ~fan, vid, ts, near, n_targets,
            learned)
        hour_s = np.where(fan, 0.0, hour_s)
        surprise = np.maximum(target_s, hour_s)
        # The share of the pile that its organic explanation does not cover: the chance that one
        # engagement in it was bought (fusion caps a pile-only engagement at it).
        def pile_share(z: float) -> np.ndarray:
            return np.where(target_s > 0, np.maximum(
                np.where(in_crowd, 0.0, bought_share(col("k"), iso_total, conv, z=z)),
                bought_share(k_near, iso_near, conv, z=z)), 0.0)

        with np.errstate(divide="ignore", invalid="ignore"):
            task_excess = np.where(task_mask, pile_share(0.0), session_excess)
            task_low = np.where(task_mask, pile_share(CAUTIOUS_Z), session_low)
            hour_excess = np.where(hour_s > 0, 1.0 - col("hour_expected") / col("hour_likes"),
                                   0.0)
        columns = {"burst_task_surprise": target_s,
                   "burst_session_surprise": session_s,
                   "burst_task_near": np.where(task_mask, np.log1p(task_near), 0.0),
                   "burst_hour_surprise": hour_s,
                   "burst_excess": np.clip(np.nan_to_num(np.maximum(task_excess, hour_excess)),
                                           0.0, 1.0),
                   # Not evidence (fusion gives it no bins): the cautious pile share, which
                   # the label-free FPR estimate uses for a pile's members.
                   "burst_excess_low": np.clip(np.nan_to_num(task_low), 0.0, 1.0)}
        return Signal(self.name, self.get_params(), columns,
                      squash(surprise, self.half_surprise),
                      components={"burst_session": squash(session_s, self.half_surprise)})

    def _explained(self, feats: Features, acted: np.ndarray, alone: np.ndarray) -> np.ndarray:
        """Engagements a pile's surprise does not reach, because the account explains them:

        - it watched the video through (``full_watch`` of it or more, and at least
          ``full_watch_min_s`` seconds) before engaging: paid accounts spend the minimum a task
          asks for, people sent by a push or a link who like a video have mostly watched it
          (watching an 8-second clip through is what a 10-second task minimum looks like, so
          short watches explain nothing);
        - it is loyal to the creator: it engaged at least two of the creator's videos, and the
          creator takes ``loyal_share`` or more of all its engagements (fans and fan clubs come
          back to one creator; crowd workers and farm accounts spread over their customers).
        """
        e = feats.engagements
        watch = np.nan_to_num(e["watch_frac"].to_numpy(zero_copy_only=False).astype(float),
                              nan=0.0)
        watch_ms = pc.fill_null(e["watch_ms"], 0).to_numpy(zero_copy_only=False)
        through = (watch >= self.full_watch) & (watch_ms >= self.full_watch_min_s * 1000)
        vid = e["vid"].to_numpy().astype(np.int64)
        acc = feats.account_codes.astype(np.int64)
        cre = feats.key_codes("creator_id").astype(np.int64)
        ok = acted & (vid >= 0) & (cre >= 0)
        loyal = np.zeros(len(acc), dtype=bool)
        n_acc = int(acc.max(initial=-1)) + 1
        per_acc = np.bincount(acc[ok], minlength=n_acc)
        # Only accounts that engaged from a view opened alone (or none) can need explaining,
        # and only with two engagements or more: the pairs are counted for those alone.
        asked = np.bincount(acc[alone], minlength=n_acc) > 0
        rows = np.flatnonzero(ok & asked[acc] & (per_acc[acc] >= 2))
        if len(rows):
            pair_acc, inv, per_pair, videos_of_pair = _creator_pairs(acc, cre, vid, rows)
            share = per_pair / per_acc[pair_acc]
            loyal[rows] = ((videos_of_pair >= 2) & (share >= self.loyal_share))[inv]
        return acted & (through | loyal)

    def _session_pile(self, feats: Features, like: np.ndarray, candidates: np.ndarray,
                      vid: np.ndarray, ts: np.ndarray, near: int, n_targets: float,
                      learned: Callable[[str, Callable[[], float]], float]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Surprise, bought share and cautious bought share (``bought_share``'s ``z``) of
        the likes around each of ``candidates`` (in-session likes after a view, neither
        explained nor a fan's), against the video's views in the same window at the
        conversion ceiling of every opening (the ``conversion_quantile`` of the videos' likes
        per view)."""
        n = len(vid)
        zero = np.zeros(n)
        views = (feats.videos.total(np.arange(int(vid.max(initial=-1)) + 1)).astype(float)
                 if feats.videos is not None else np.zeros(0))
        # Likes per video, counted only when a ceiling is learned (a fitted model reads both).
        liked = functools.cache(lambda: np.bincount(vid[like & (vid >= 0)], minlength=len(views)))
        conv = learned("session_conversion_ceiling", lambda: self._ceiling(liked(), views))
        # The cautious share (the label-free FPR estimate's) assumes the warmest organic
        # crowd: one converting as well as the best-converting videos of this log, their
        # ``cautious_quantile`` rather than the ``conversion_quantile``. Fans sent by a push
        # who go on watching in their feed convert beyond the usual ceiling, and their piles
        # were counted as bought with too much confidence.
        cautious = max(conv, learned("session_cautious_ceiling", lambda: self._ceiling(
            liked(), views, quantile=self.cautious_quantile, cap=CAUTIOUS_CAP)))
        if feats.videos is None or n == 0:
            return zero, zero, zero
        asked = candidates & (vid >= 0) & ~self._repeat_engagers(feats, like, vid)
        if not asked.any():
            return zero, zero, zero
        rows = np.flatnonzero(asked)
        lv = np.where(like, vid, -1)
        k = viewindex.count_within(lv, len(views), ts, vid[rows], ts[rows] - near,
                                   ts[rows] + near + 1).astype(float)
        opened = feats.videos.between(vid[rows], ts[rows] - near, ts[rows] + near + 1)
        surprise, share, low = zero.copy(), zero.copy(), zero.copy()
        surprise[rows] = binomial_surprise(k, np.maximum(k, opened), conv, tests=n_targets)
        share[rows] = np.where(surprise[rows] > 0, bought_share(k, opened, conv), 0.0)
        low[rows] = np.where(surprise[rows] > 0,
                             bought_share(k, opened, cautious, z=CAUTIOUS_Z), 0.0)
        return surprise, share, low

    @staticmethod
    def _repeat_engagers(feats: Features, like: np.ndarray, vid: np.ndarray) -> np.ndarray:
        """Likes by accounts that liked two or more of the creator's videos in the log: a
        creator's fans (a fan club, followers sent by a push) come back video after video and
        convert every opening; a paid person works for whichever customer the task list
        shows."""
        acc = feats.account_codes.astype(np.int64)
        cre = feats.key_codes("creator_id").astype(np.int64)
        out = np.zeros(len(vid), dtype=bool)
        rows = np.flatnonzero(like & (vid >= 0) & (cre >= 0))
        if len(rows):
            _, inv, _, videos_of_pair = _creator_pairs(acc, cre, vid, rows)
            out[rows] = videos_of_pair[inv] >= 2
        return out

    def _ceiling(self, liked: np.ndarray, opened: np.ndarray, *,
                 quantile: float | None = None, cap: float | None = None) -> float:
        """The ``conversion_quantile`` (or ``quantile``) of the videos' likes per opening, over
        videos opened ``min_opened`` times or more, within [0.05, ``max_conversion``] (or
        ``cap``)."""
        top = self.max_conversion if cap is None else cap
        liked = liked[: len(opened)]
        enough = opened >= self.min_opened
        rate = (float(np.quantile(liked[enough].astype(float) / opened[enough],
                                  self.conversion_quantile if quantile is None else quantile))
                if enough.any() else top)
        return float(np.clip(rate, 0.05, top))

    def _conversion(self, feats: Features, shaped_likes: np.ndarray, task: np.ndarray,
                    vid: np.ndarray, ts: np.ndarray, near: int,
                    learned: Callable[[str, Callable[[], float]], float]
                    ) -> tuple[float, np.ndarray, np.ndarray]:
        """The conversion ceiling (the ``conversion_quantile`` of the videos' likes per view
        opened alone, at most ``max_conversion``, over ``shaped_likes``: the task-shaped likes
        after a view), and per unexplained task-shaped engagement the views opened alone on its
        video in all and within ``near`` ms."""
        iso = feats.isolated_views
        if iso is None:  # no views: nothing explains a pile, and nothing measures one
            z = np.zeros(len(vid))
            return learned("conversion_ceiling", lambda: self.max_conversion), z, z
        total = iso.total(vid).astype(float)
        # A high quantile of the videos' own conversions, not the log's pooled rate: warm
        # crowds (fans after a push, friends from a link) convert far more than the feed, and
        # bought engagement converts every opening and would pull a pooled rate towards itself.
        liked = shaped_likes & (vid >= 0)
        opened = iso.per_video().astype(float)
        conv = learned("conversion_ceiling", lambda: self._ceiling(
            np.bincount(vid[liked], minlength=len(opened)), opened))
        within = np.where(task, iso.between(np.where(task, vid, -1), ts - near, ts + near + 1),
                          0).astype(float)
        return conv, total, within
