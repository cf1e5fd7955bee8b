"""Speed benchmark: `likelens scan` end to end on the platform-day scenario at several sizes.

Run:  .venv/bin/python bench/perf.py --events 1e6,1e7,2e7,1e8 [--fraudar] [--out bench/perf.md]

For each size it simulates platform-day scaled to about that many events (cached under
bench/work/; days past 25M events as independent shards), reads the input once so that it is
in the page cache, runs `likelens scan --profile` as a child process three times (once above
30M events) and keeps the median run: wall time, events/s, the child's own peak RSS and the
per-stage timings from summary.json. With --fraudar it also times the dense-subgraph core
against the `rgmining-fraudar` package on the same graph; that package is installed only in
bench/.venv-fraudar, never as a LikeLens dependency. Prints every figure and writes a
markdown table."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
EVENTS_PER_USER = 62.1  # platform-day draws about this many events per user (20.25M at 326k)
SHARD_EVENTS = 25_000_000  # larger days are drawn as independent shards of at most this size


def simulate(events: int) -> Path:
    """platform-day scaled to about ``events`` events, cached by size; returns its directory.

    The simulator holds a day in memory, so a day past ``SHARD_EVENTS`` is drawn as independent
    shards (regions of one platform: own users, own seed, event ids continued), one Parquet
    file each under ``events/``. ``scan_input`` says what to scan.
    """
    shards = max(1, math.ceil(events / SHARD_EVENTS))
    users = max(1000, int(events / shards / EVENTS_PER_USER))
    if shards == 1:
        out = WORK / f"platform-day-{users}"
        if not (out / "events.parquet").exists():
            subprocess.run([sys.executable, "-m", "likelens.cli", "simulate", "--scenario",
                            "platform-day", "--users", str(users), "--seed", "7", "--out",
                            str(out)], check=True)
        return out
    out = WORK / f"platform-day-{users}x{shards}"
    if not (out / "done").exists():
        (out / "events").mkdir(parents=True, exist_ok=True)
        offset = 0
        for k in range(shards):
            res = subprocess.run([sys.executable, __file__, "--shard", str(users), str(7 + k),
                                  str(offset), str(out / "events" / f"shard-{k:03d}.parquet")],
                                 check=True, capture_output=True, text=True)
            offset += int(res.stdout.split()[-1])
            print(f"shard {k}: {offset:,} events so far", flush=True)
        (out / "done").write_text(f"{offset}\n")
    return out


def simulate_world(seed: int, users: int) -> Path:
    """Zoo world ``seed`` (likelens/sim/zoo.py draws its platform and market) at ``users``
    users, cached; about 94 events per user, so 200,000 users give ~19M events."""
    out = WORK / f"zoo-{seed}-{users}"
    if not (out / "events.parquet").exists():
        subprocess.run([sys.executable, "-m", "likelens.cli", "simulate", "--scenario", "zoo",
                        "--users", str(users), "--seed", str(seed), "--out", str(out)],
                       check=True)
    return out


def scan_input(sim_dir: Path) -> Path:
    return sim_dir / "events" if (sim_dir / "events").is_dir() else sim_dir / "events.parquet"


def make_shard(users: int, seed: int, offset: int, path: Path) -> None:
    """One shard of a sharded day, its event ids starting at ``offset``; prints its size."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from likelens import sim

    events = sim.simulate(sim.load_scenario("platform-day", users=users), seed).events
    events = events.set_column(0, "event_id", pc.add(events["event_id"], offset))
    pq.write_table(events, path)
    print(events.num_rows)


def _warm(path: Path) -> None:
    """Read the input once so that every size starts with it in the page cache (the scan is
    timed, not the disk)."""
    for f in sorted(path.rglob("*.parquet")) if path.is_dir() else [path]:
        with f.open("rb") as fh:
            while fh.read(1 << 24):
                pass


def scan(sim_dir: Path, threads: int | None) -> dict:
    out = sim_dir / "scan"
    cmd = [sys.executable, "-m", "likelens.cli", "scan", str(scan_input(sim_dir)),
           "--out", str(out), "--no-report", "--profile"]
    if threads:
        cmd += ["--threads", str(threads)]
    _warm(scan_input(sim_dir))
    t0 = time.perf_counter()
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of all
    # children so far, the simulator's included).
    proc = subprocess.Popen(cmd, env={**os.environ, "LIKELENS_KEY": "perf-bench-key-0000"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"scan failed: {' '.join(cmd)}")
    peak_kib = usage.ru_maxrss
    summary = json.loads((out / "summary.json").read_text())
    return {"events": summary["input"]["events"], "wall_s": wall,
            "peak_rss_gib": peak_kib / 2**20, "stages": summary["timings_s"]}


FRAUDAR_SCRIPT = r"""
import sys, time, numpy as np
from fraudar import ReviewGraph
edges = np.load(sys.argv[1])
import fraudar
g = ReviewGraph(blocks=1, algo=getattr(fraudar, "logWeightedAveDegree", fraudar.aveDegree))
reviewers = [g.new_reviewer(f"a{i}") for i in range(int(edges[:, 0].max()) + 1)]
products = [g.new_product(f"t{i}") for i in range(int(edges[:, 1].max()) + 1)]
for a, t in edges:
    g.add_review(reviewers[a], products[t], 1.0)
t0 = time.perf_counter()
g.update()
print("RESULT", time.perf_counter() - t0)
print("RESULT", ",".join(r.name[1:] for r in g.reviewers if r.anomalous_score > 0))
"""


def fraudar(sim_dir: Path) -> dict:
    """Time our peeling core and rgmining-fraudar on the same account-target graph."""
    import numpy as np
    import pyarrow.parquet as pq

    from likelens.detect.dense import bipartite_csr, peel

    eng = pq.read_table(sim_dir / "scan" / "engagements.parquet", columns=["user_id", "video_id"])
    eng = eng.filter(eng["video_id"].is_valid())
    _, a = np.unique(eng["user_id"].to_numpy(), return_inverse=True)
    _, t = np.unique(eng["video_id"].to_numpy(), return_inverse=True)
    edges = np.unique(np.stack([a, t], axis=1), axis=0)
    n_a, n_t = int(edges[:, 0].max()) + 1, int(edges[:, 1].max()) + 1
    deg = np.bincount(edges[:, 1], minlength=n_t)
    w = 1.0 / np.log(deg[edges[:, 1]] + 5.0)
    peel(*bipartite_csr(edges[:2, 0], edges[:2, 1], n_a, n_t, w[:2]))  # JIT warm-up
    t0 = time.perf_counter()
    block = peel(*bipartite_csr(edges[:, 0], edges[:, 1], n_a, n_t, w))
    ours = time.perf_counter() - t0
    ours_accounts = set(block.nodes[block.nodes < n_a].tolist())
    venv = ROOT / "bench" / ".venv-fraudar"
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "rgmining-fraudar",
                        "numpy"], check=True)
    np.save(WORK / "edges.npy", edges)
    res = subprocess.run([str(py), "-c", FRAUDAR_SCRIPT, str(WORK / "edges.npy")],
                         check=True, capture_output=True, text=True)
    lines = [x[len("RESULT "):] for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    theirs = float(lines[0])
    their_accounts = {int(x) for x in lines[1].split(",") if x} if len(lines) > 1 else set()
    overlap = len(ours_accounts & their_accounts) / max(len(ours_accounts | their_accounts), 1)
    return {"edges": len(edges), "ours_s": ours, "fraudar_s": theirs,
            "speedup": theirs / max(ours, 1e-9), "jaccard": overlap,
            "ours_accounts": len(ours_accounts), "their_accounts": len(their_accounts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="1e6,1e7,2e7")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="Runs per size; the median is kept.")
    ap.add_argument("--repeat-up-to", type=float, default=3e7,
                    help="Sizes above this many events run once (a 100M scan takes minutes).")
    ap.add_argument("--worlds", type=int, default=0,
                    help="Also scan this many zoo worlds (logs the detectors were not tuned on) "
                         "and compare each with the platform day nearest 20M events.")
    ap.add_argument("--first-world-seed", type=int, default=1000)
    ap.add_argument("--world-users", type=int, default=200_000)
    ap.add_argument("--fraudar", action="store_true")
    ap.add_argument("--fraudar-events", type=float, default=None,
                    help="Size whose graph FRAUDAR runs on (default: the smallest).")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "perf.md")
    ap.add_argument("--shard", nargs=4, metavar=("USERS", "SEED", "OFFSET", "PATH"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.shard:
        make_shard(int(args.shard[0]), int(args.shard[1]), int(args.shard[2]),
                   Path(args.shard[3]))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    logs = [("platform-day", simulate(int(float(x))), int(float(x)))
            for x in args.events.split(",")]
    logs += [(f"zoo {seed}", simulate_world(seed, args.world_users), int(2e7))
             for seed in range(args.first_world_seed, args.first_world_seed + args.worlds)]
    for name, sim_dir, size in logs:
        runs = [scan(sim_dir, args.threads)
                for _ in range(args.repeat if size <= args.repeat_up_to else 1)]
        r = sorted(runs, key=lambda x: x["wall_s"])[len(runs) // 2]  # the median run
        r["runs"] = [round(x["wall_s"], 1) for x in runs]
        r["eps"] = r["events"] / r["wall_s"]
        r["log"] = name
        rows.append(r)
        print(f"{r['events']:>12,} events  {r['wall_s']:8.1f} s (runs {r['runs']})  "
              f"{r['eps']:>12,.0f} events/s  "
              f"peak RSS {r['peak_rss_gib']:.2f} GiB", flush=True)
        print("   " + "  ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()), flush=True)
    worlds = (f" --worlds {args.worlds} --first-world-seed {args.first_world_seed} "
              f"--world-users {args.world_users}" if args.worlds else "")
    lines = ["# Scan speed", "",
             f"`python bench/perf.py --events {args.events}{worlds}` on {os.cpu_count()} cores, "
             f"Python {platform.python_version()}; platform-day scenario (and zoo worlds), "
             "Parquet input, "
             "`likelens scan --no-report`, input in the page cache. Peak RSS is the scan "
             "process's. Detectors run two at a time, so their own times (detect.*) "
             "overlap; `detect` is the stage's wall time.", "",
             "| log | events | runs (s) | median wall s | events/s | peak RSS GiB | " +
             " | ".join(rows[0]["stages"]) + " |",
             "|---" * (6 + len(rows[0]["stages"])) + "|"]
    for r in rows:
        lines.append(f"| {r['log']} | {r['events']:,} | {', '.join(map(str, r['runs']))} | "
                     f"{r['wall_s']:.1f} | {r['eps']:,.0f} | "
                     f"{r['peak_rss_gib']:.2f} | " +
                     " | ".join(f"{r['stages'].get(k, 0):.1f}" for k in rows[0]["stages"]) + " |")
    days = [r for r in rows if r["log"] == "platform-day"]
    if len(days) >= 2:
        lines += ["", f"Growth: time at {days[-1]['events']:,} / time at {days[0]['events']:,} = "
                  f"{days[-1]['wall_s'] / days[0]['wall_s']:.1f} for "
                  f"{days[-1]['events'] / days[0]['events']:.1f}× the events."]
    zoo = [r for r in rows if r["log"] != "platform-day"]
    if zoo and days:
        ref = min(days, key=lambda r: abs(r["events"] - 2e7))
        lines += ["", f"Against the platform day of {ref['events']:,} events "
                  f"({ref['eps']:,.0f} events/s; target: every world at least 0.8×):", "",
                  "| world | events/s | ratio | peak RSS GiB |", "|---|---|---|---|"]
        lines += [f"| {r['log']} | {r['eps']:,.0f} | {r['eps'] / ref['eps']:.2f} | "
                  f"{r['peak_rss_gib']:.2f} |" for r in zoo]
    if args.fraudar:
        size = args.fraudar_events or float(args.events.split(",")[0])
        f = fraudar(simulate(int(size)))
        print(f"FRAUDAR: {f}", flush=True)
        lines += ["", "## Dense core against rgmining-fraudar", "",
                  f"Same account-video graph ({f['edges']:,} edges), one block: LikeLens "
                  f"`peel` {f['ours_s']:.2f} s, rgmining-fraudar {f['fraudar_s']:.2f} s: "
                  f"**{f['speedup']:.0f}× faster**; block accounts {f['ours_accounts']} against "
                  f"{f['their_accounts']}, Jaccard {f['jaccard']:.2f}."]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
