"""`likelens bench robustness`: quality across randomised zoo worlds, false positives by cause.

Each world is drawn by ``likelens simulate --scenario zoo --seed N`` (likelens/sim/zoo.py), so
no world is the one the detectors were tuned on. Per world: F1, organic FPR, recall per supply
kind and for 10-like orders, the scan's own label-free FPR estimate against the truth, and for
each organic cause the share of its likes flagged. The report gives the median and the worst
world; the worlds' seeds and drawn knobs are in each world's world.json.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from likelens import sim
from likelens.evaluate import cause_table, evaluate_tables
from likelens.ingest import ingest
from likelens.scan import scan_events
from likelens.sim import zoo

BENCH_KEY = b"likelens-bench-key-not-secret"


@dataclass
class WorldResult:
    """One zoo world's figures."""

    seed: int
    events: int
    likes: int
    shape: str
    f1: float
    precision: float
    recall: float
    organic_fpr: float
    estimated_fpr: float
    recall_kind: dict[str, float] = field(default_factory=dict)
    recall_10: float = float("nan")
    cause_flagged: dict[str, tuple[int, int]] = field(default_factory=dict)  # cause -> (flagged, n)
    seconds: float = 0.0


def _shape(cfg: dict) -> str:
    p = cfg["platform"]
    bits = [p["ids"] + " ids"]
    if p["ipv6_frac"] > 0:
        bits.append(f"IPv6 {p['ipv6_frac']:.0%}")
    if p["engagement_only"]:
        bits.append("no views")
    elif p["watch_report_prob"] < 1:
        bits.append(f"watch {p['watch_report_prob']:.0%}")
    return ", ".join(bits)


def run_world(seed: int, users: int, work: Path, fake_like_share: float | None = None
              ) -> WorldResult:
    """Draw zoo world ``seed``, scan it with default settings and score it against truth.

    With ``fake_like_share``, every knob is drawn as usual and then the market's share of the
    likes is set to it: a heavier (or lighter) market than the zoo's own range, in worlds
    otherwise the same."""
    t0 = time.perf_counter()
    cfg = sim.load_scenario("zoo", users=users)
    name = f"zoo-{seed}"
    if fake_like_share is not None:
        cfg = zoo.draw(cfg, seed)
        cfg["market"]["fake_like_share"] = float(fake_like_share)
        cfg["randomise"] = False
        name = f"zoo-{seed}-fake{fake_like_share:g}"
    result = sim.simulate(cfg, seed)
    paths = sim.write(result, work / name)
    events = ingest([paths["events"]], key=BENCH_KEY).events
    scan = scan_events(events)
    eng = scan.engagements
    rows = {r.split: r for r in evaluate_tables(result.truth, eng)}
    allr = rows["all likes"]
    return WorldResult(
        seed=seed, events=events.num_rows, likes=allr.n, shape=_shape(result.config or cfg),
        f1=allr.f1, precision=allr.precision, recall=allr.recall,
        organic_fpr=allr.organic_fpr,
        estimated_fpr=float(scan.summary["thresholds"]["estimated_organic_fpr"]),
        recall_kind={k: rows[f"kind={k}"].recall for k in ("bot", "pool", "crowd")
                     if f"kind={k}" in rows},
        recall_10=rows["package=10"].recall if "package=10" in rows else float("nan"),
        cause_flagged=cause_table(result.truth, eng),
        seconds=time.perf_counter() - t0)


def run(seeds: list[int], users: int, work: Path,
        progress: Callable[[str], None] | None = None,
        fake_like_share: float | None = None) -> list[WorldResult]:
    out = []
    for i, seed in enumerate(seeds):
        if progress:
            progress(f"world {i + 1}/{len(seeds)} (seed {seed})")
        out.append(run_world(seed, users, work, fake_like_share))
    return out


def _f(v: float, pct: bool = False) -> str:
    if v != v:
        return "–"
    return f"{v:.3%}" if pct else f"{v:.3f}"


def _median(values: list[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


def _optimistic(r: WorldResult) -> bool:
    """The scan's label-free FPR estimate is below half the true FPR."""
    return r.estimated_fpr < 0.5 * r.organic_fpr


def markdown(results: list[WorldResult], header: str) -> str:
    """bench/robustness.md: per world, then median and worst, then false positives by cause."""
    lines = [header, "", "## Per world", "",
             "| seed | shape | likes | precision | recall | F1 | organic FPR | est. FPR |"
             " recall bot | recall pool | recall crowd | recall 10-like |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.seed} | {r.shape} | {r.likes:,} | {_f(r.precision)} | {_f(r.recall)} | "
            f"{_f(r.f1)} | {_f(r.organic_fpr, True)} | {_f(r.estimated_fpr, True)} | "
            f"{_f(r.recall_kind.get('bot', float('nan')))} | "
            f"{_f(r.recall_kind.get('pool', float('nan')))} | "
            f"{_f(r.recall_kind.get('crowd', float('nan')))} | {_f(r.recall_10)} |")
    if not results:
        return "\n".join(lines)

    def col(fn: Callable[[WorldResult], float]) -> list[float]:
        return [fn(r) for r in results]

    f1s, fprs = col(lambda r: r.f1), col(lambda r: r.organic_fpr)
    under = sum(map(_optimistic, results))
    lines += ["", "## Median and worst world", "",
              "| figure | median | worst |", "|---|---|---|",
              f"| F1 | {_f(_median(f1s))} | {_f(min(f1s))} |",
              f"| organic FPR | {_f(_median(fprs), True)} | {_f(max(fprs), True)} |"]
    for k in ("bot", "pool", "crowd"):
        v = [x for x in col(lambda r, k=k: r.recall_kind.get(k, float("nan"))) if x == x]
        if v:
            lines.append(f"| recall {k} | {_f(_median(v))} | {_f(min(v))} |")
    v10 = [x for x in col(lambda r: r.recall_10) if x == x]
    if v10:
        lines.append(f"| recall 10-like orders | {_f(_median(v10))} | {_f(min(v10))} |")
    lines += ["", f"Label-free FPR estimate below half the true FPR (optimistic) in {under} of "
              f"{len(results)} worlds.", "", "## By platform shape", "",
              "Exports without views leave out what tells a session from a task list, so they "
              "are worth their own line.", "",
              "| shape | worlds | median F1 | worst F1 | median organic FPR | worst organic FPR |"
              " est. FPR below half the truth |", "|---|---|---|---|---|---|---|"]
    for label, group in (("with views", [r for r in results if "no views" not in r.shape]),
                         ("no views", [r for r in results if "no views" in r.shape])):
        if group:
            gf1, gfpr = [r.f1 for r in group], [r.organic_fpr for r in group]
            low = sum(map(_optimistic, group))
            lines.append(f"| {label} | {len(group)} | {_f(_median(gf1))} | {_f(min(gf1))} | "
                         f"{_f(_median(gfpr), True)} | {_f(max(gfpr), True)} | {low} |")
    lines += ["",
              "## Organic likes flagged, by cause", "",
              "| cause | median world | worst world | all worlds pooled | likes pooled |",
              "|---|---|---|---|---|"]
    causes = sorted({c for r in results for c in r.cause_flagged})
    for c in causes:
        shares = [f / n for r in results if (fn := r.cause_flagged.get(c)) and (f := fn[0],
                                                                                 n := fn[1])
                  and n > 0]
        flagged = sum(r.cause_flagged.get(c, (0, 0))[0] for r in results)
        total = sum(r.cause_flagged.get(c, (0, 0))[1] for r in results)
        lines.append(f"| {c} | {_f(_median(shares), True)} | {_f(max(shares), True)} | "
                     f"{_f(flagged / total if total else float('nan'), True)} | {total:,} |")
    return "\n".join(lines)
