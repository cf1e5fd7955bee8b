"""`likelens bench quality`: every scenario against fusion, each detector alone, and baselines.

Baselines:
- watch rule: flag a like watched under 20 % of the video before it (or with no view);
- IsolationForest (PyOD) on per-account features, flagging the accounts' likes at the
  contamination the fusion estimated; skipped with a note when PyOD is not installed
  (``pip install -e .[bench]``);
- FRAUDAR alone: plain greedy peeling on the whole account-target graph, five blocks.

"Each detector alone" is the detector's own standalone score, flagged at 0.5.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from likelens import api, sim
from likelens.detect.dense import account_target_graph, bipartite_csr, peel
from likelens.evaluate import Row, evaluate_tables
from likelens.features import Features

BENCH_KEY = b"likelens-bench-key-not-secret"


@dataclass(frozen=True)
class MethodResult:
    """One method on one scenario: the quality rows plus the fusion's own FPR estimate."""

    scenario: str
    method: str
    rows: list[Row]
    estimated_fpr: float | None
    seconds: float


def _table(feats: Features, score: np.ndarray, flagged: np.ndarray) -> pa.Table:
    e = feats.engagements
    return pa.table({"event_id": e["event_id"], "action": e["action"],
                     "score": pa.array(score, pa.float64()), "flagged": pa.array(flagged)})


def watch_rule(feats: Features) -> tuple[np.ndarray, np.ndarray]:
    """The plain rule peers run: watched under 20 % before the like, or no view at all."""
    e = feats.engagements
    watch = e["watch_frac"].to_numpy(zero_copy_only=False).astype(float)
    has_view = e["has_view"].to_numpy(zero_copy_only=False).astype(bool)
    flagged = ~has_view | (np.nan_to_num(watch, nan=1.0) < 0.2)
    score = np.where(has_view, 1.0 - np.clip(np.nan_to_num(watch, nan=1.0), 0, 1), 1.0)
    return score, flagged


def fraudar_alone(feats: Features, blocks: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Plain FRAUDAR: peel the whole graph; engagements inside a block are flagged."""
    g = account_target_graph(feats)
    in_acc = np.zeros(g.n_acc, dtype=bool)
    in_tgt = np.zeros(g.n_tgt, dtype=bool)
    keep = np.ones(len(g.a), dtype=bool)
    for _ in range(blocks):
        if not keep.any():
            break
        block = peel(*bipartite_csr(g.a[keep], g.t[keep], g.n_acc, g.n_tgt, g.w[keep]))
        accs = block.nodes[block.nodes < g.n_acc]
        in_acc[accs] = True
        in_tgt[block.nodes[block.nodes >= g.n_acc] - g.n_acc] = True
        keep &= ~np.isin(g.a, accs)
    flagged = in_acc[g.acc] & in_tgt[g.tgt]
    return flagged.astype(float), flagged


def isolation_forest(feats: Features, columns: dict[str, np.ndarray], contamination: float
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """PyOD IsolationForest on per-account features; None when PyOD is not installed."""
    if importlib.util.find_spec("pyod") is None:
        return None
    from pyod.models.iforest import IForest

    acc = feats.account_codes
    n_acc = feats.n_accounts
    names = ["acct_iso_share", "acct_noview_share", "acct_low_share", "acct_views_per_eng",
             "acct_regular", "acct_infra_surprise"]
    x = np.zeros((n_acc, len(names)))
    for j, name in enumerate(names):
        if name in columns:
            np.maximum.at(x[:, j], acc, np.nan_to_num(columns[name]))
    model = IForest(contamination=float(np.clip(contamination, 0.001, 0.5)), random_state=0)
    model.fit(x)
    labels = model.labels_.astype(bool)
    scores = model.decision_scores_
    s = (scores - scores.min()) / max(float(np.ptp(scores)), 1e-12)
    return s[acc], labels[acc]


def run_scenario(name: str, seed: int, users: int | None, work: Path,
                 progress: Callable[[str], None] | None = None) -> list[MethodResult]:
    """Simulate one scenario, then score it with every method."""
    cfg = sim.load_scenario(name, users=users)
    result = sim.simulate(cfg, seed)
    paths = sim.write(result, work / f"{name}-{seed}")
    # The same pipeline as `likelens scan`, through the API; the detectors' own signals and
    # the features come back with it for the baselines.
    scanned = api.scan([paths["events"]], key=BENCH_KEY).result
    feats, signals = scanned.features, scanned.signals
    assert feats is not None
    columns: dict[str, np.ndarray] = {}
    for s in signals.values():
        columns.update(s.columns)
    out: list[MethodResult] = []

    def record(method: str, fn: Callable[[], tuple[np.ndarray, np.ndarray, float | None]]
               ) -> float | None:
        if progress:
            progress(f"{name}: {method}")
        t0 = time.perf_counter()
        score, flagged, est = fn()
        rows = evaluate_tables(result.truth, _table(feats, score, flagged))
        out.append(MethodResult(name, method, rows, est, time.perf_counter() - t0))
        return est

    score = scanned.engagements["score"].to_numpy(zero_copy_only=False)
    flagged = scanned.engagements["flagged"].to_numpy(zero_copy_only=False)
    estimate = float(scanned.summary["thresholds"]["estimated_organic_fpr"])
    record("fusion", lambda: (score, flagged, estimate))
    for n, sig in signals.items():
        record(f"{n} alone", lambda sig=sig: (sig.score, sig.score >= 0.5, None))
    record("baseline: watch < 20 %", lambda: (*watch_rule(feats), None))
    record("baseline: FRAUDAR", lambda: (*fraudar_alone(feats), None))
    iso = isolation_forest(feats, columns, float(flagged.mean()))
    if iso is not None:
        record("baseline: IsolationForest", lambda: (*iso, None))
    return out


def _cell(v: float) -> str:
    return "–" if v != v else f"{v:.3f}"  # NaN shows as a dash


def markdown(results: list[MethodResult], header: str) -> str:
    """bench/quality.md."""
    lines = [header, ""]
    for scenario in dict.fromkeys(r.scenario for r in results):
        lines += [f"## {scenario}", "",
                  "| method | precision | recall | F1 | organic FPR | est. FPR | recall bot |"
                  " recall pool | recall crowd | recall 10-like | AUC-PR |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (x for x in results if x.scenario == scenario):
            by = {row.split: row for row in r.rows}
            allr = r.rows[0]

            def rec(key: str, by: dict[str, Row] = by) -> str:
                return _cell(by[key].recall) if key in by else "–"

            est = f"{r.estimated_fpr:.5f}" if r.estimated_fpr is not None else "–"
            lines.append(
                f"| {r.method} | {_cell(allr.precision)} | {_cell(allr.recall)} | "
                f"{_cell(allr.f1)} | {allr.organic_fpr:.5f} | {est} | {rec('kind=bot')} | "
                f"{rec('kind=pool')} | {rec('kind=crowd')} | {rec('package=10')} | "
                f"{_cell(allr.auc_pr)} |")
        lines.append("")
    return "\n".join(lines)
