"""Spark engine benchmark: `likelens scan --engine spark` on local[N] against the embedded engine.

Run:  .venv/bin/python bench/spark.py [--events 2e6,2e7] [--partitions 2,4,8] [--master local[2]]
                                      [--repeat 3] [--out bench/spark.md]

Each size is the platform-day scenario scaled to about that many events (bench/perf.py's
cache under bench/work/). Every scan is a child process (`likelens scan --no-report
--profile`); a sampler reads /proc every 0.2 s and keeps the peak resident memory of the scan's
process tree, split into the driver (the Python process), the JVM (driver and, in local mode,
the executors' threads) and the Python workers Spark starts. The embedded engine runs
``--repeat`` times and its median run is kept; each Spark setting runs ``--repeat`` times below
``--repeat-up-to`` events and once above. Per-stage times come from summary.json. Prints every
figure and writes a markdown table (the projection to a cluster is written by hand in
docs/spark.md from these figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # bench/perf.py: the cached platform days

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(root: int) -> dict[int, tuple[str, int]]:
    """The process tree under ``root``: pid -> (kind, resident bytes)."""
    parent: dict[int, int] = {}
    info: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry)
        parent[pid] = int(fields[1])
        rss = int(fields[21]) * PAGE
        kind = ("jvm" if "java" in cmd.split(" ")[0] else
                "worker" if "pyspark" in cmd or "daemon" in cmd else "driver")
        info[pid] = (kind, rss)
    out = {}
    for pid in info:
        p = pid
        while p in parent and p != root and p > 1:
            p = parent[p]
        if p == root:
            out[pid] = info[pid]
    return out


class Sampler(threading.Thread):
    """Peak resident memory of a process tree by kind (driver, jvm, workers summed)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.stop, self.peak = pid, threading.Event(), {
            "driver": 0, "jvm": 0, "worker": 0, "total": 0}

    def run(self) -> None:
        while not self.stop.is_set():
            by_kind = {"driver": 0, "jvm": 0, "worker": 0}
            for kind, rss in _tree(self.pid).values():
                by_kind[kind] += rss
            by_kind["total"] = sum(by_kind.values())
            for k, v in by_kind.items():
                self.peak[k] = max(self.peak[k], v)
            time.sleep(0.2)


def scan(sim_dir: Path, extra: list[str]) -> dict:
    out = sim_dir / ("scan-spark" if extra else "scan")
    cmd = [sys.executable, "-m", "likelens.cli", "scan", str(perf.scan_input(sim_dir)),
           "--out", str(out), "--no-report", "--profile", *extra]
    perf._warm(perf.scan_input(sim_dir))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "LIKELENS_KEY": "perf-bench-key-0000"},
                            stdout=subprocess.DEVNULL)
    sampler = Sampler(proc.pid)
    sampler.start()
    proc.wait()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"scan failed: {' '.join(cmd)}")
    summary = json.loads((out / "summary.json").read_text())
    gib = {k: v / 2**30 for k, v in sampler.peak.items()}
    return {"events": summary["input"]["events"], "wall_s": wall, "peak_gib": gib,
            "stages": summary["timings_s"], "engagements": summary["counts"]["engagements"]}


def median_run(runs: list[dict]) -> dict:
    walls = [r["wall_s"] for r in runs]
    return runs[walls.index(statistics.median_low(walls))]


STAGES = ("spark start", "ingest", "features", "detect", "fusion", "scores")


def _duration(seconds: float) -> str:
    """Seconds under two minutes, minutes after."""
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="2e6,2e7")
    ap.add_argument("--partitions", default="2,4,8")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repeat-up-to", type=float, default=5e6)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "spark.md")
    args = ap.parse_args()
    perf.WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [float(x) for x in args.events.split(",")]:
        sim_dir = perf.simulate(int(size))
        times = args.repeat if size <= args.repeat_up_to else 1
        settings = [("embedded", [])] + [
            (f"spark {args.master} ×{p}", ["--engine", "spark", "--master", args.master,
                                          "--partitions", p])
            for p in args.partitions.split(",")]
        base = None
        for name, extra in settings:
            r = median_run([scan(sim_dir, extra) for _ in range(times)])
            base = base or r
            r |= {"setting": name, "runs": times, "ratio": r["wall_s"] / base["wall_s"]}
            rows.append(r)
            stages = ", ".join(f"{s} {r['stages'].get(s, 0):.1f}" for s in STAGES)
            print(f"{r['events']:>12,} {name:<24} {r['wall_s']:7.1f} s  "
                  f"{r['events'] / r['wall_s']:>10,.0f} ev/s  ×{r['ratio']:.2f}  "
                  f"peak {r['peak_gib']['total']:.2f} GiB (jvm {r['peak_gib']['jvm']:.2f}, "
                  f"workers {r['peak_gib']['worker']:.2f})  [{stages}]", flush=True)
    (perf.WORK / "spark-results.json").write_text(json.dumps(rows, indent=1))
    write(args.out, rows, args.master)
    print(f"wrote {args.out}")


def write(path: Path, rows: list[dict], master: str) -> None:
    lines = [
        "# Spark engine against the embedded engine",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}; Spark master {master}. Produced by `bench/spark.py` "
        "(platform-day scenario; embedded runs: median of the repeats). One box favours the "
        "embedded engine: Spark pays a JVM, Python workers and Arrow transfers between them "
        "for parallelism this machine does not have. See docs/spark.md for what runs where "
        "and the projection to a cluster.",
        "",
        "| events | engine | runs | wall s | events/s | × embedded | "
        + " | ".join(f"{s} s" for s in STAGES)
        + " | peak GiB (total) | driver | JVM | workers | JVM GiB per M events |",
        "|" + "---|" * (12 + len(STAGES)),
    ]
    for r in rows:
        g = r["peak_gib"]
        lines.append(
            f"| {r['events']:,} | {r['setting']} | {r['runs']} | {r['wall_s']:.1f} | "
            f"{r['events'] / r['wall_s']:,.0f} | {r['ratio']:.2f} | "
            + " | ".join(f"{r['stages'].get(s, 0):.1f}" for s in STAGES)
            + f" | {g['total']:.2f} | {g['driver']:.2f} | {g['jvm']:.2f} | {g['worker']:.2f}"
            f" | {g['jvm'] / (r['events'] / 1e6):.3f} |")
    path.write_text("\n".join(lines + projection(rows)) + "\n")


def projection(rows: list[dict], day: float = 1e10, cores: int = 400) -> list[str]:
    """A platform day of ``day`` events on a cluster of ``cores`` cores, on paper, from the
    largest size measured here (its fastest Spark setting)."""
    largest = max(r["events"] for r in rows)
    spark_rows = [r for r in rows if r["events"] == largest and r["setting"] != "embedded"]
    if not spark_rows:
        return []
    best = min(spark_rows, key=lambda r: r["wall_s"])
    emb = next(r for r in rows if r["events"] == largest and r["setting"] == "embedded")
    n_cores = os.cpu_count() or 1
    per_core = best["events"] / (best["stages"]["ingest"] * n_cores)
    ingest_s = day / per_core / cores
    share = best["engagements"] / best["events"]
    eng_day = day * share
    # The narrow tables the aggregates ship: habits 7 columns, piles 8, about 8 bytes each.
    shipped_gb = eng_day * (7 + 8) * 8 / 1e9
    driver_b = best["peak_gib"]["driver"] * 2**30 / best["events"]
    driver_tb = driver_b * day / 1e12
    fits = 1024 * 2**30 / driver_b
    partitions = int(day / 2e6)
    serial = sum(best["stages"].get(k, 0) for k in ("features", "detect", "fusion", "scores"))
    serial_h = serial * day / best["events"] / 3600
    return [
        "",
        f"## {day:,.0f} events on {cores} cores, on paper",
        "",
        f"From the {largest:,}-event run above ({best['setting']}, the fastest Spark "
        "setting), stage by stage:",
        "",
        f"- **Ingest** ran at {per_core:,.0f} events/s per core (reading, coercion, keyed "
        f"hashing and quarantine in the tasks, with Spark's overhead). A day of {day:,.0f} "
        f"events is about {partitions:,} tasks of 2M rows (no shuffle: pieces are staged as "
        f"files); on {cores} cores, **{_duration(ingest_s)}**. It scales with cores: "
        "tasks are independent.",
        f"- **Aggregates**: engagements are {share:.1%} of events here, so about "
        f"{eng_day / 1e9:,.2f}B engagements a day; the narrow tables the detectors' "
        f"aggregates ship are about {shipped_gb:,.0f} GB, and the group-bys and the "
        "cadence window shuffle at most that much (partial aggregation shrinks the group-bys "
        "to one row per account, target and video-hour per task).",
        f"- **The driver** peaked at {best['peak_gib']['driver']:.2f} GiB here "
        f"({driver_b:,.0f} bytes per event; the embedded engine's whole process: "
        f"{emb['peak_gib']['total']:.2f} GiB), because the canonical log, the features, "
        "dense peeling, lockstep's groups and fusion run there (after ingest, the driver "
        "also assembles the pieces: one pass over the log). A day of "
        f"{day:,.0f} events would need about **{driver_tb:,.1f} TB** on one driver, and "
        f"the driver's stages (features, detect, fusion, scores: {serial:.0f} s here; "
        "detect includes lockstep's pair walks on the executors, counted here as if serial) "
        f"would take about {serial_h:,.0f} h: **this is the stage that limits it**, in "
        "memory and in time. A 1 TiB driver holds about "
        f"{fits / 1e9:,.1f}B events. Until features and the graph kernels move to the "
        "executors (docs/spark.md, \"What this does not do yet\"), a platform day of that "
        "size is scanned as regional shards of a few billion events each.",
        "- **Partitions** hardly matter on two cores (the table above): they set how many "
        "tasks a large Parquet file is cut into and how the aggregates shuffle. On a "
        "cluster, two to three tasks per core for ingest and the shuffle partitions near "
        "(engagements / 1M) are the usual starting points.",
    ]


if __name__ == "__main__":
    main()
