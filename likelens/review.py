"""A false-positive rate a platform can trust: reviewers' verdicts on a probability sample.

A platform has no labels, only reviewers. ``sample`` draws a stratified random sample of a
scan's likes (strata by score and flag, unflagged likes included, so that the estimates cover
what the scan let through as well as what it flagged); ``estimate`` turns one verdict per
sampled like into precision, organic FPR and recall with 95 % intervals.

Estimator: stratified (Horvitz–Thompson with inclusion probability n_h / N_h inside each
stratum). Strata are recomputed from the scan's own scores, so the verdicts file needs only
event_id and bought; a verdict counts in the stratum its like falls in (post-stratification,
which equals the design weights for the sample ``sample`` drew). The share bought in each
stratum gets a Jeffreys posterior, Beta(b + 1/2, n - b + 1/2); precision, organic FPR and recall
are ratios of stratum totals, so their intervals are the 2.5 and 97.5 percentiles of the ratio
over joint posterior draws (a Bayesian bootstrap of the stratified estimator). Jeffreys
intervals keep close to nominal coverage at the small proportions that matter here (a false-
positive rate near 0.1 %), where the Wald interval collapses to zero width; the draws carry the
uncertainty of every stratum into each ratio, which a single Wilson interval cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from likelens.errors import InputError

# Upper score edges of the unflagged strata; every flagged like is one stratum of its own.
EDGES = (0.001, 0.01, 0.1, 0.5)
FLAGGED = "flagged"
DRAWS = 20_000
FLAGGED_SHARE = 0.7


def strata_names() -> list[str]:
    """Stratum names, flagged first, then unflagged from the highest score band down."""
    lows = (0.0, *EDGES[:-1])
    bands = [f"unflagged score {lo:g}-{hi:g}" for lo, hi in zip(lows, EDGES, strict=True)]
    return [FLAGGED, "unflagged score >=0.5", *reversed(bands)]


def scan_likes(engagements: pa.Table) -> pa.Table:
    """A scan's likes (event_id, score, flagged) from its engagements table."""
    likes = engagements.filter(pc.equal(engagements["action"], "like"))
    return likes.select(["event_id", "score", "flagged"])


def stratum_of(score: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Stratum index (into ``strata_names()``) of each like."""
    names = strata_names()
    band = np.searchsorted(np.asarray(EDGES), score, side="right")  # 0..len(EDGES)
    # band len(EDGES) is ">= 0.5"; lower bands count down in names
    idx = np.where(band >= len(EDGES), 1, len(names) - 1 - band)
    return np.where(flagged, 0, idx).astype(np.int64)


def load_scan_likes(scan_dir: Path) -> pa.Table:
    path = scan_dir / "engagements.parquet"
    if not path.exists():
        raise InputError("no such file (is this a scan directory?)", file=str(path))
    return scan_likes(pq.read_table(path, columns=["event_id", "action", "score", "flagged"]))


def _positions(ids: pa.Array | pa.ChunkedArray, among: pa.Array | pa.ChunkedArray
               ) -> np.ndarray:
    """Row of each id in ``among`` (compared as text, so 42 and "42" match), -1 if absent."""
    found = pc.index_in(pc.cast(ids, pa.string()), value_set=pc.cast(among, pa.string()))
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def allocate(sizes: np.ndarray, total: int, flagged_share: float = FLAGGED_SHARE) -> np.ndarray:
    """Verdicts per stratum (the flagged stratum first).

    The flagged stratum gets ``flagged_share`` of the verdicts: the organic FPR's numerator
    (organic likes among the flagged) is a rare event there, and its interval is only as
    tight as the number of such likes the reviewers see, while its denominator (all organic
    likes) is known well from any sample. The rest goes to the unflagged strata in proportion
    to sqrt(N_h) (between proportional and equal allocation: the rare high-score bands get
    enough verdicts for recall, the large low-score band enough for the denominator), at least
    2 where a stratum allows, never more than a stratum holds.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(min(total, sizes.sum()))
    n = np.zeros(len(sizes), dtype=np.int64)
    n[0] = min(int(sizes[0]), round(total * flagged_share))
    rest = total - int(n[0])
    weight = np.sqrt(sizes[1:].astype(float))
    if weight.sum() > 0:
        n[1:] = np.minimum(sizes[1:], np.floor(weight / weight.sum() * rest).astype(np.int64))
    n = np.maximum(n, np.minimum(sizes, 2))
    while n.sum() < total:  # hand out what rounding and caps left, to strata with room
        room = np.flatnonzero(n < sizes)
        n[room[np.argmax((sizes[room] - n[room]) / np.maximum(n[room], 1))]] += 1
    while n.sum() > total:
        n[np.argmax(n)] -= 1
    return n


def sample(likes: pa.Table, size: int, seed: int) -> pa.Table:
    """A stratified random sample of ``size`` of ``likes`` (event_id, score, flagged; see
    ``scan_likes``): event_id, stratum, inclusion_prob."""
    score = likes["score"].to_numpy(zero_copy_only=False).astype(float)
    flagged = likes["flagged"].to_numpy(zero_copy_only=False).astype(bool)
    st = stratum_of(score, flagged)
    names = strata_names()
    sizes = np.bincount(st, minlength=len(names))
    n = allocate(sizes, size)
    rng = np.random.default_rng(seed)
    # Order by event id text first, so the draw depends on the seed, not on the row order.
    order = pc.sort_indices(pc.cast(likes["event_id"], pa.string())).to_numpy()
    rows, strata, probs = [], [], []
    for h in range(len(names)):
        members = order[st[order] == h]
        if n[h] == 0:
            continue
        pick = rng.choice(members, size=int(n[h]), replace=False)
        rows.append(pick)
        strata += [names[h]] * len(pick)
        probs.append(np.full(len(pick), n[h] / sizes[h]))
    idx = np.concatenate(rows) if rows else np.empty(0, np.int64)
    return pa.table({"event_id": likes["event_id"].take(pa.array(idx)),
                     "stratum": pa.array(strata, pa.string()),
                     "inclusion_prob": pa.array(np.concatenate(probs) if probs else [],
                                                pa.float64())})


def read_table(path: Path) -> pa.Table:
    """A Parquet or CSV file, with a message naming the file when it cannot be read."""
    if not path.exists():
        raise InputError("no such file", file=str(path))
    try:
        if path.suffix.lower() == ".csv":
            return pacsv.read_csv(path)
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read as {'CSV' if path.suffix.lower() == '.csv' else 'Parquet'}"
                         f" ({exc})", file=str(path)) from None


def write_table(table: pa.Table, path: Path) -> None:
    """Write a sample or verdicts as CSV when the name ends in .csv, else as Parquet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)


def _bought_column(table: pa.Table, path: Path) -> np.ndarray:
    """The verdicts as 1.0 bought, 0.0 organic, NaN unsure (null)."""
    col = table["bought"]
    if pa.types.is_boolean(col.type):
        return np.array([np.nan if v is None else float(v) for v in col.to_pylist()])
    words = {"true": 1.0, "1": 1.0, "yes": 1.0, "false": 0.0, "0": 0.0, "no": 0.0}
    out = []
    for row, v in enumerate(col.to_pylist()):
        if v is None or (isinstance(v, str) and v.strip() == ""):
            out.append(np.nan)
            continue
        key = str(v).strip().lower()
        if key not in words:
            raise InputError(f"bought must be true or false, got {v!r}", file=str(path),
                             row=row, column="bought")
        out.append(words[key])
    return np.array(out, dtype=float)


def read_verdicts(path: Path) -> pa.Table:
    """event_id (as text) and bought (1.0 / 0.0 / NaN) from a verdict file; checks columns and
    duplicates."""
    table = read_table(path)
    for column in ("event_id", "bought"):
        if column not in table.column_names:
            raise InputError(f"missing required column (have {', '.join(table.column_names)})",
                             file=str(path), column=column)
    ids = pc.cast(table["event_id"], pa.string())
    if ids.null_count:
        row = int(np.flatnonzero(~pc.is_valid(ids).to_numpy(zero_copy_only=False))[0])
        raise InputError("missing event_id", file=str(path), row=row, column="event_id")
    counts = pc.value_counts(ids)
    dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(dup):
        first = dup.field("values")[0].as_py()
        raise InputError(f"{len(dup)} event_id(s) have more than one verdict (first: {first})",
                         file=str(path), column="event_id")
    return pa.table({"event_id": ids, "bought": pa.array(_bought_column(table, path))})


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def _ratio(num: np.ndarray, den: np.ndarray, point_num: float, point_den: float) -> Interval:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = num / den
        point = point_num / point_den if point_den > 0 else float("nan")
    r = r[np.isfinite(r)]
    if len(r) == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    lo, hi = np.percentile(r, [2.5, 97.5])
    return Interval(float(point), float(lo), float(hi))


def estimate(likes: pa.Table, verdicts: pa.Table, *, seed: int = 0) -> dict[str, Any]:
    """Precision, organic FPR and recall of the scan's flags on likes, each with a 95 %
    interval, from one verdict per reviewed like (see the module docstring for the method)."""
    names = strata_names()
    score = likes["score"].to_numpy(zero_copy_only=False).astype(float)
    flagged = likes["flagged"].to_numpy(zero_copy_only=False).astype(bool)
    st = stratum_of(score, flagged)
    sizes = np.bincount(st, minlength=len(names)).astype(float)
    v_ids = verdicts["event_id"]
    bought = verdicts["bought"].to_numpy(zero_copy_only=False).astype(float)
    pos = _positions(v_ids, likes["event_id"])
    known = pos >= 0
    unsure = np.isnan(bought)
    used = known & ~unsure
    h = st[pos[used]]
    b = bought[used]
    n_h = np.bincount(h, minlength=len(names)).astype(float)
    b_h = np.bincount(h, weights=b, minlength=len(names))
    rng = np.random.default_rng(seed)
    # Jeffreys posterior per stratum; a stratum with no verdicts gets the flat Jeffreys prior
    # (it adds its full uncertainty rather than being assumed clean).
    draws = rng.beta(b_h + 0.5, n_h - b_h + 0.5, size=(DRAWS, len(names)))
    point = np.where(n_h > 0, b_h / np.maximum(n_h, 1), 0.5)
    bought_tot = draws * sizes
    organic_tot = (1 - draws) * sizes
    flag = np.zeros(len(names), dtype=bool)
    flag[0] = True
    p_bought, p_organic = point * sizes, (1 - point) * sizes
    precision = _ratio(draws[:, 0], np.ones(DRAWS), float(point[0]), 1.0)
    fpr = _ratio(organic_tot[:, flag].sum(axis=1), organic_tot.sum(axis=1),
                 float(p_organic[flag].sum()), float(p_organic.sum()))
    recall = _ratio(bought_tot[:, flag].sum(axis=1), bought_tot.sum(axis=1),
                    float(p_bought[flag].sum()), float(p_bought.sum()))
    # Jeffreys at the boundary (Brown, Cai & DasGupta 2001): when the reviewers saw no organic
    # like among the flagged, precision may be 1 and the FPR 0; when they saw no bought like
    # among the unflagged, recall may be 1. The posterior draws never quite reach those ends.
    if n_h[0] > 0 and b_h[0] == n_h[0]:
        precision = Interval(precision.estimate, precision.low, 1.0)
        fpr = Interval(fpr.estimate, 0.0, fpr.high)
    if n_h[1:].sum() > 0 and b_h[1:].sum() == 0:
        recall = Interval(recall.estimate, recall.low, 1.0)
    return {
        "precision": precision.as_dict(), "organic_fpr": fpr.as_dict(),
        "recall": recall.as_dict(),
        "verdicts": {"read": len(v_ids), "used": int(used.sum()),
                     "unsure": int((known & unsure).sum()),
                     "not_in_scan": int((~known).sum())},
        "strata": [{"stratum": names[i], "likes": int(sizes[i]), "verdicts": int(n_h[i]),
                    "bought": int(b_h[i])} for i in range(len(names))],
        "method": "stratified Horvitz-Thompson; Jeffreys Beta posterior per stratum, "
                  f"95 % percentile interval of the ratio over {DRAWS} joint draws",
    }


def simulate_verdicts(truth: pa.Table, sampled: pa.Table, error_rate: float, seed: int
                      ) -> pa.Table:
    """Reviewers stood in for by the simulator's truth, each verdict wrong with probability
    ``error_rate`` (for tests and demos only)."""
    fake = truth["fake"].to_numpy(zero_copy_only=False).astype(bool)
    pos = _positions(sampled["event_id"], truth["event_id"])
    if (pos < 0).any():
        missing = sampled["event_id"][int(np.flatnonzero(pos < 0)[0])]
        raise InputError(f"{int((pos < 0).sum())} sampled event(s) are not in the truth "
                         f"(first: {missing})", column="event_id")
    rng = np.random.default_rng(seed)
    flip = rng.random(len(pos)) < error_rate
    return pa.table({"event_id": sampled["event_id"], "bought": pa.array(fake[pos] ^ flip)})
