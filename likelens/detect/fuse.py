"""Fusion: one calibrated probability per engagement from every detector's evidence, no labels.

The detectors' evidence columns are cut into a few ordered bins and modelled as a two-class latent
mixture (organic, bought) fitted by expectation-maximisation, started from the detectors' own
standalone scores. Each class learns, from this log, how often each bin occurs in it; the
posterior of the bought class is the engagement's probability.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# column -> (bin edges, reason word when this column pushes towards bought)
BINS: dict[str, tuple[tuple[float, ...], str]] = {
    "no_view": ((0.5,), "no_view_before"),
    "watch_frac": ((0.05, 0.2, 0.5, 0.9), "low_watch"),
    "isolated": ((0.5,), "isolated_view"),
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
    "burst_surprise": ((0.5, 3.0, 10.0), "video_burst"),
    "template_accounts": ((0.5, 1.5, 2.5), "templated_text"),
}


@dataclass(frozen=True)
class Fusion:
    """Per-engagement probability, flags, reasons, and how the threshold was chosen."""

    probability: np.ndarray
    flagged: np.ndarray
    reasons: list[list[str]]
    threshold: float
    estimated_fpr: float
    tau: float
    prior: float
    iterations: int


def _codes(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin index per value; missing values get their own last bin."""
    v = np.asarray(values, dtype=float)
    codes = np.digitize(np.nan_to_num(v, nan=0.0), edges)
    return np.where(np.isnan(v), len(edges) + 1, codes)


def fuse(columns: Mapping[str, np.ndarray], start: np.ndarray, action: np.ndarray, *,
         target_fpr: float = 0.001, iterations: int = 60, alpha: float = 1.0) -> Fusion:
    """Fit the two-class mixture and flag at the target false-positive rate."""
    names = [c for c in BINS if c in columns and np.nanmax(np.abs(columns[c]), initial=0) > 0]
    n = len(start)
    actions, act_codes = np.unique(action, return_inverse=True)
    feats = [_codes(columns[c], BINS[c][0]) for c in names] + [act_codes]
    sizes = [len(BINS[c][0]) + 2 for c in names] + [len(actions)]
    r = np.clip(np.asarray(start, dtype=float), 0.02, 0.98)
    llr_terms = np.zeros((len(feats), n))
    tau, prior = 1.0, float(r.mean())
    it = 0
    while it < iterations:
        it += 1
        prior = float(np.clip(r.mean(), 1e-4, 0.5))
        for j, (codes, size) in enumerate(zip(feats, sizes, strict=True)):
            bought = np.bincount(codes, weights=r, minlength=size) + alpha
            organic = np.bincount(codes, weights=1 - r, minlength=size) + alpha
            ratio = np.log(bought / bought.sum()) - np.log(organic / organic.sum())
            llr_terms[j] = ratio[codes]
        w0 = 1 - r
        total = llr_terms.sum(axis=0)
        var_sum = np.cov(total, aweights=w0) if n > 1 else 1.0
        sum_var = sum(float(np.cov(t, aweights=w0)) for t in llr_terms) if n > 1 else 1.0
        tau = float(max(1.0, var_sum / max(sum_var, 1e-12)))
        logit = np.log(prior / (1 - prior)) + total / tau
        new_r = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        if np.max(np.abs(new_r - r)) < 1e-5:
            r = new_r
            break
        r = new_r
    p = r
    threshold, est = _threshold(p, target_fpr)
    flagged = p >= threshold
    reasons = _reasons(names, llr_terms[: len(names)], flagged, columns)
    return Fusion(p, flagged, reasons, threshold, est, tau, prior, it)


def _threshold(p: np.ndarray, target_fpr: float) -> tuple[float, float]:
    """Lowest threshold whose estimated organic false-positive rate stays within the target."""
    if len(p) == 0:
        return 1.0, 0.0
    order = np.argsort(-p)
    organic_mass = np.cumsum(1 - p[order])
    fpr = organic_mass / max(float((1 - p).sum()), 1e-12)
    ok = np.flatnonzero(fpr <= target_fpr)
    if len(ok) == 0:
        return 1.0 + 1e-9, 0.0
    k = ok[-1]
    return float(max(p[order][k], 0.5)), float(fpr[k])


def _reasons(names: list[str], terms: np.ndarray, flagged: np.ndarray,
             columns: Mapping[str, np.ndarray]) -> list[list[str]]:
    """For each flagged engagement, the vocabulary words of the columns that pushed it up."""
    out: list[list[str]] = [[] for _ in range(len(flagged))]
    idx = np.flatnonzero(flagged)
    if len(idx) == 0 or not names:
        return out
    sub = terms[:, idx]
    for col_i, pos in zip(*np.nonzero(sub > 1.0), strict=True):
        word = BINS[names[col_i]][1]
        bucket = out[idx[pos]]
        if word not in bucket:
            bucket.append(word)
    for i in idx:
        if not out[i]:
            out[i].append("flagged_account")
    del columns
    return out
