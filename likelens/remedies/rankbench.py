"""`likelens bench ranking`: does ranking by authentic engagement find the good videos?

Per scenario, one world is simulated twice from the same seed: with its like market and without
one (the same videos and latent quality; the organic day is drawn afresh). Each ranking is
scored against the simulator's latent video quality, which no ranking sees:

- NDCG@100 with the quality as the gain: how good the top of the list is;
- Kendall's tau-b between the ranking's scores and quality over every video.

Rankings: raw likes in the world with the market (what a platform ranks by today), rank_score
in that world (``likelens rank`` on its scan), its shrunk per-view rate alone (a discovery lens
that ignores reach), and raw likes in the world without a market (the ceiling raw counts reach
when nobody buys). Honest small creators (the half of creators with the
fewest views who bought nothing) are followed too: their share of the top 100 and the median
percentile of their best-quality videos under each ranking.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens import sim
from likelens.ingest import ingest
from likelens.remedies.rank import rank
from likelens.scan import scan_events

BENCH_KEY = b"likelens-bench-key-not-secret"
TOP = 100


@dataclass
class Ranking:
    name: str
    ndcg: float
    tau: float
    small_top: float  # share of the top TOP held by honest small creators' videos
    small_pct: float  # median percentile (0 best) of their best-quality videos


@dataclass
class ScenarioResult:
    scenario: str
    seed: int
    videos: int
    rankings: list[Ranking]
    seconds: float


def ndcg_at(scores: np.ndarray, gain: np.ndarray, k: int = TOP) -> float:
    """NDCG@k of ordering by ``scores`` (ties by position) with ``gain`` as relevance."""
    k = min(k, len(gain))
    if k == 0:
        return float("nan")
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(gain)[::-1][:k]
    return float((gain[order] * disc).sum() / max((ideal * disc).sum(), 1e-12))


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b over all pairs (O(n²) in blocks; benchmark sizes only)."""
    n = len(x)
    if n < 2:
        return float("nan")
    conc = disc = tx = ty = 0
    for s in range(0, n, 512):
        dx = np.sign(x[s:s + 512, None] - x[None, :])
        dy = np.sign(y[s:s + 512, None] - y[None, :])
        prod = dx * dy
        conc += int((prod > 0).sum())
        disc += int((prod < 0).sum())
        tx += int(((dx == 0) & (dy != 0)).sum())
        ty += int(((dy == 0) & (dx != 0)).sum())
    den = np.sqrt(float(conc + disc + tx) * float(conc + disc + ty))
    return float((conc - disc) / den) if den > 0 else float("nan")


def _aligned(quality: pa.Table, ids: pa.Array | pa.ChunkedArray, values: np.ndarray
             ) -> np.ndarray:
    """``values`` (per ``ids``) for each video of ``quality``; 0 for a video it lacks."""
    pos = pc.index_in(quality["video_id"], ids).to_numpy(zero_copy_only=False)
    pos = np.where(np.isnan(pos.astype(float)), -1, pos).astype(np.int64)
    return np.where(pos >= 0, values[np.maximum(pos, 0)], 0.0)


def _like_counts(events: pa.Table) -> tuple[pa.Array, np.ndarray]:
    likes = events.filter(pc.equal(events["action"], "like"))
    counts = likes.group_by("video_id").aggregate([("video_id", "count")])
    return counts["video_id"], counts["video_id_count"].to_numpy().astype(float)


def _honest_small(result: sim.SimResult) -> np.ndarray:
    """Per video of ``result.videos``: does it belong to an honest small creator?"""
    ev, truth, q = result.events, result.truth, result.videos
    views = ev.filter(pc.equal(ev["action"], "view")).group_by("creator_id").aggregate(
        [("creator_id", "count")])
    creators = q["creator_id"].unique()
    per = _aligned(pa.table({"video_id": creators}), views["creator_id"],
                   views["creator_id_count"].to_numpy().astype(float))
    small = set(pc.filter(creators, pa.array(per <= np.median(per))).to_pylist())
    fake = ev.filter(truth["fake"])
    bought = set(pc.unique(fake["creator_id"]).to_pylist())
    return np.array([c in small and c not in bought for c in q["creator_id"].to_pylist()])


def _ranking(name: str, scores: np.ndarray, quality: np.ndarray, small: np.ndarray
             ) -> Ranking:
    order = np.lexsort((np.arange(len(scores)), -scores))
    pos = np.empty(len(scores), dtype=np.int64)
    pos[order] = np.arange(len(scores))
    good = small & (quality >= np.quantile(quality, 0.9))
    return Ranking(name, ndcg_at(scores, quality), kendall_tau_b(scores, quality),
                   float(small[order[:TOP]].mean()),
                   float(np.median(pos[good]) / len(scores)) if good.any() else float("nan"))


def run_scenario(name: str, seed: int, users: int, work: Path) -> ScenarioResult:
    t0 = time.perf_counter()
    cfg = sim.load_scenario(name, users=users)
    market = sim.simulate(cfg, seed)
    sim.write(market, work / f"rank-{name}-{seed}")
    events = ingest([work / f"rank-{name}-{seed}" / "events.parquet"], key=BENCH_KEY).events
    scanned = scan_events(events)
    ranked = rank(scanned.engagements, scanned.videos)
    q = market.videos
    quality = q["quality"].to_numpy().astype(float)
    small = _honest_small(market)
    # The scan pseudonymises nothing about video ids: they line up with the simulator's.
    ids, counts = _like_counts(market.events)
    raw = _aligned(q, ids, counts)
    score = _aligned(q, pc.cast(ranked["video_id"], q["video_id"].type),
                     ranked["rank_score"].to_numpy().astype(float))
    rate = _aligned(q, pc.cast(ranked["video_id"], q["video_id"].type),
                    pc.fill_null(ranked["rate_per_1000_views"], 0.0).to_numpy().astype(float))
    rankings = [_ranking("raw likes (market)", raw, quality, small),
                _ranking("rank_score (market)", score, quality, small),
                _ranking("shrunk rate alone (market)", rate, quality, small)]
    if cfg["market"]["enabled"]:
        clean_cfg = {**cfg, "market": {**cfg["market"], "enabled": False}}
        clean = sim.simulate(clean_cfg, seed)
        cq = clean.videos
        ids, counts = _like_counts(clean.events)
        rankings.append(_ranking("raw likes (no market)", _aligned(cq, ids, counts),
                                 cq["quality"].to_numpy().astype(float), _honest_small(clean)))
    return ScenarioResult(name, seed, q.num_rows, rankings, time.perf_counter() - t0)


def run(names: list[str], seed: int, max_users: int, work: Path,
        progress: Callable[[str], None] | None = None) -> list[ScenarioResult]:
    out = []
    for name in names:
        if progress:
            progress(f"ranking: {name}")
        users = min(sim.load_scenario(name)["world"]["users"], max_users)
        out.append(run_scenario(name, seed, users, work))
    return out


def _f(v: float, pct: bool = False) -> str:
    if v != v:
        return "–"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def markdown(results: list[ScenarioResult], header: str) -> str:
    lines = [header, "", "| scenario | videos | ranking | NDCG@100 | Kendall tau | vs no-market "
             "NDCG | honest small creators in top 100 | their best videos' median rank "
             "percentile |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for r in results:
        by = {x.name: x for x in r.rankings}
        ceiling = by.get("raw likes (no market)")
        for x in r.rankings:
            rel = x.ndcg / ceiling.ndcg - 1 if ceiling else float("nan")
            lines.append(f"| {r.scenario} | {r.videos:,} | {x.name} | {_f(x.ndcg)} | "
                         f"{_f(x.tau)} | {'' if rel != rel else f'{rel:+.1%}'} | "
                         f"{_f(x.small_top, True)} | {_f(x.small_pct, True)} |")
        if ceiling:
            gap = by["rank_score (market)"].ndcg / ceiling.ndcg - 1
            loss = by["raw likes (market)"].ndcg / ceiling.ndcg - 1
            verdicts.append((r.scenario, gap, loss))
    if verdicts:
        lines += ["", "## Target: rank_score within 2 % of the no-market NDCG@100", "",
                  "| scenario | rank_score vs no-market | raw likes vs no-market | target met |",
                  "|---|---|---|---|"]
        for name, gap, loss in verdicts:
            lines.append(f"| {name} | {gap:+.1%} | {loss:+.1%} | "
                         f"{'yes' if gap >= -0.02 else 'NO'} |")
        gaps = statistics.median(g for _, g, _ in verdicts)
        losses = statistics.median(x for _, _, x in verdicts)
        lines += ["", f"Median over scenarios: rank_score {gaps:+.1%}, raw likes "
                  f"{losses:+.1%} against raw likes without a market."]
    return "\n".join(lines)
