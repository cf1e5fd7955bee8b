"""The detector contract: parameters in the constructor, learned state after ``fit``, one result.

Every detector reads the shared ``Features`` and returns a ``Signal``: per-engagement evidence
columns (aligned with ``Features.engagements``, higher means more suspicious), an optional
per-engagement score in [0, 1] for running the detector alone, and the groups it found with the
evidence a reviewer reads. Detectors never write files and never print.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from likelens.errors import ModelError
from likelens.features import Features


@dataclass(frozen=True)
class Group:
    """A coordinated group: its accounts, targets, time window and the evidence in words."""

    kind: str
    accounts: tuple[Any, ...]
    videos: tuple[Any, ...]
    first_ts: int
    last_ts: int
    evidence: str
    # -log10 of (a bound on) how likely the group is under its detector's organic null: the
    # same unit for every detector, so groups of different kinds sort together.
    strength: float


@dataclass(frozen=True)
class Signal:
    """What one detector says about a log."""

    detector: str
    params: Mapping[str, Any]
    columns: Mapping[str, np.ndarray]          # evidence columns, one value per engagement
    score: np.ndarray                           # standalone suspicion in [0, 1] per engagement
    groups: tuple[Group, ...] = field(default_factory=tuple)
    account_group: Mapping[Any, int] = field(default_factory=dict)  # account -> index in groups
    # Seeds of further bought components, for evidence whose members look unlike the
    # detector's main catch (fusion gives each its own profile): name -> score per engagement.
    components: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass
class State:
    """What a detector learned from the log it was fitted on: JSON-ready values (ceilings,
    rates, thresholds) and Arrow tables (blocks, groups), saved in a model directory."""

    values: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pa.Table] = field(default_factory=dict)

    def value(self, name: str, learn: Callable[[], Any], *, fitting: bool) -> Any:
        """The learned value ``name``: computed by ``learn`` and recorded when fitting, read
        back when applying (so fit and apply run the same code on the same numbers)."""
        if fitting:
            self.values[name] = learn()
        elif name not in self.values:
            raise KeyError(f"the model has no {name!r}")
        return self.values[name]


class Detector:
    """Base class: stores keyword parameters; subclasses implement ``_run``.

    ``fit(feats)`` learns from a log (``state_``) and labels it (``signal_``);
    ``apply(feats, state)`` labels another log with what was learned, without learning
    again. Both run ``_run``: with ``fitting`` true it computes and records what it learns,
    otherwise it reads it from the state. On the log it was fitted on, apply gives the fit's
    signal exactly.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # "views", "device", "ip", "text"
    learns: ClassVar[tuple[str, ...]] = ()  # the values ``_run`` records when fitting
    learns_tables: ClassVar[tuple[str, ...]] = ()  # the tables it records

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def available(self, feats: Features) -> bool:
        """Whether the log carries what this detector needs."""
        have = {"views": feats.has_views, "device": feats.has_device, "ip": feats.has_ip,
                "text": feats.has_text}
        return all(have[n] for n in self.needs)

    def fit(self, feats: Features) -> Detector:
        self.state_ = State()
        if not self.available(feats):
            # Nothing learned: applied to any log, the detector stays silent too.
            self.state_.values["silent"] = True
            self.signal_ = self._silent(feats)
        else:
            self.signal_ = self._run(feats, self.state_, fitting=True)
        return self

    def apply(self, feats: Features, state: State) -> Signal:
        if not self.available(feats) or state.values.get("silent"):
            return self._silent(feats)
        missing = [name for name in self.learns if name not in state.values]
        missing += [name for name in self.learns_tables if name not in state.tables]
        if missing:
            raise ModelError(f"the model's {self.name} state has no {', '.join(missing)} "
                             "(written by another version?); fit again with likelens scan")
        return self._run(feats, state, fitting=False)

    def _silent(self, feats: Features) -> Signal:
        n = feats.engagements.num_rows
        return Signal(self.name, self.get_params(), {}, np.zeros(n))

    def _run(self, feats: Features, state: State, *, fitting: bool
             ) -> Signal:  # pragma: no cover - abstract
        raise NotImplementedError


def poisson_surprise(observed: np.ndarray, expected: np.ndarray, tests: float = 1.0
                     ) -> np.ndarray:
    """-log10 of the Chernoff bound on P(X >= observed) for X ~ Poisson(expected), corrected
    for ``tests`` comparisons (Bonferroni: log10(tests) is subtracted, floored at 0).

    The bound is an upper bound on the tail probability, so the surprise is conservative: a
    count the organic rate explains scores 0, and the score grows with how badly it does not.
    Without the correction, one coincidence among millions of small cells would look damning.
    """
    x = np.asarray(observed, dtype=float)
    lam = np.maximum(np.asarray(expected, dtype=float), 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        nats = np.where(x > lam, x * np.log(x / lam) - x + lam, 0.0)
    raw = np.nan_to_num(nats / math.log(10), nan=0.0)
    return np.maximum(raw - math.log10(max(tests, 1.0)), 0.0)


def binomial_surprise(successes: np.ndarray, trials: np.ndarray, rate: float,
                      tests: float = 1.0) -> np.ndarray:
    """-log10 of the Chernoff bound on P(X >= successes) for X ~ Binomial(trials, rate),
    Bonferroni-corrected for ``tests`` comparisons: trials * KL(successes/trials || rate).

    Unlike the Poisson bound it knows that a share cannot pass 1, so a crowd that converts
    every opening is far more surprising than one converting at a few times the usual rate.
    """
    k = np.asarray(successes, dtype=float)
    n = np.maximum(np.asarray(trials, dtype=float), 1e-9)
    x = np.clip(k / n, 0.0, 1.0)
    p = min(max(rate, 1e-9), 1 - 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = (np.where(x > 0, x * np.log(x / p), 0.0)
              + np.where(x < 1, (1 - x) * np.log((1 - x) / (1 - p)), 0.0))
    nats = np.where(x > p, n * kl, 0.0)
    raw = np.nan_to_num(nats / math.log(10), nan=0.0)
    return np.maximum(raw - math.log10(max(tests, 1.0)), 0.0)


def squash(surprise: np.ndarray, half: float = 3.0) -> np.ndarray:
    """Map a surprise in -log10 units to [0, 1); ``half`` maps to 0.5."""
    s = np.maximum(np.asarray(surprise, dtype=float), 0.0)
    return s / (s + half)
