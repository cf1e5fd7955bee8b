"""Behaviour per engagement: watch before the like, isolated views, no view, quick chains, cadence.

Organic likes come out of feed sessions: a run of views, a like after watching a good part of the
video. Bought likes come from a task list: the video opened alone, watched for a few seconds or
the seller's required minimum, liked, and left. Quick likers exist organically too, but inside
sessions, so no single column here decides; fusion weighs them together.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.detect.base import Detector, Signal, State
from likelens.features import Features

NEEDS_VIEW = ("like", "comment", "share")


class BehaviourDetector(Detector):
    """Per-engagement behaviour evidence, with the account's own habits beside it."""

    name = "behaviour"
    needs = ("views",)

    def __init__(self, *, low_watch_frac: float = 0.2, min_cadence_events: int = 5,
                 fast_chain_s: int = 15) -> None:
        self.low_watch_frac = low_watch_frac
        self.min_cadence_events = min_cadence_events
        self.fast_chain_s = fast_chain_s

    def _run(self, feats: Features, state: State, *, fitting: bool) -> Signal:
        """A transform of the log: nothing here is learned."""
        e = feats.engagements
        needs_view = pc.is_in(e["action"], value_set=pa.array(NEEDS_VIEW)).to_numpy(
            zero_copy_only=False)
        has_view = e["has_view"].to_numpy(zero_copy_only=False)
        watch = e["watch_frac"].to_numpy(zero_copy_only=False).astype(float)
        watch = np.where(np.isnan(watch), np.nan, np.clip(watch, 0.0, 3.0))
        session = e["session_views"].to_numpy(zero_copy_only=False).astype(float)
        no_view = needs_view & ~has_view
        # view → like → comment/share chained within seconds of opening the video
        since = e["since_view_ms"].to_numpy(zero_copy_only=False).astype(float)
        chained = pc.is_in(e["action"], value_set=pa.array(["comment", "share"])).to_numpy(
            zero_copy_only=False)
        fast_chain = chained & has_view & (np.nan_to_num(since, nan=np.inf)
                                           < self.fast_chain_s * 1000)
        isolated = needs_view & (session == 0)
        low = needs_view & has_view & (watch < self.low_watch_frac)
        acct = feats.engine.account_habits(self.low_watch_frac, self.min_cadence_events)
        col = {k: acct[k].to_numpy(zero_copy_only=False).astype(float)
               for k in ("iso_share", "noview_share", "low_share", "n_eng", "n_views")}
        cadence = acct["cadence_cv"].to_numpy(zero_copy_only=False).astype(float)
        regular = np.where(np.isnan(cadence), 0.0, np.clip(1.0 - cadence, 0.0, 1.0))
        watch_deficit = np.where(has_view & needs_view,
                                 np.clip(1.0 - np.nan_to_num(watch) / self.low_watch_frac, 0, 1),
                                 0.0)
        score = np.clip(np.maximum.reduce([
            no_view * 0.9, (isolated & (low | no_view)) * 0.85, low * 0.5 * watch_deficit,
            isolated * 0.4]), 0, 1)
        columns = {
            "no_view": no_view.astype(float), "isolated": isolated.astype(float),
            "fast_chain": fast_chain.astype(float),
            "watch_frac": np.where(needs_view, watch, np.nan),
            "acct_iso_share": col["iso_share"], "acct_noview_share": col["noview_share"],
            "acct_low_share": col["low_share"], "acct_views_per_eng":
                col["n_views"] / np.maximum(col["n_eng"], 1.0),
            "acct_regular": regular,
        }
        return Signal(self.name, self.get_params(), columns, score)
