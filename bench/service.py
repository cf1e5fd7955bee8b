"""Service benchmark: Redis Streams intake, HTTP latency, state memory, and real-time quality.

Run:  .venv/bin/python bench/service.py [--only replay,redis,http,memory] [--out bench/service.md]

- replay: a simulated day replayed in time order through the online scorer (the code the
  service's worker runs), with a model fitted on another day of the same scenario; against the
  batch scan of the day: coverage of its flagged likes, organic FPR (truth) of both (the
  online one at decision and after the session revisions the scorer hands out), and for
  orders delivered within ten minutes the event time from an order's first like to its first
  real-time flag.
- redis: `likelens serve --database postgresql://... --redis ...` as a child process; a producer
  XADDs a day's events (pipelined, as fast as Redis takes them) for --seconds; committed
  events per second over the window (the service's own counter), and from the latency
  histogram, the p50 and p99 from XADD (the entry id's time) to committed decision.
- http: an embedded service as a child process; one engagement per request at --rps for 20 s
  from 32 keep-alive connections of a raw-asyncio client; per-request latency p50 and p99;
  three times on fresh services, the median run reported.
- memory: the online state after events of --accounts accounts (a view and a like each, on
  random videos, devices and addresses); the process's RSS growth.

Not a timed test: it prints its figures and writes a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "service"
LIKELENS = str(ROOT / ".venv" / "bin" / "likelens")
PG = os.environ.get("LIKELENS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("LIKELENS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
KEY = b"bench-service-key-0123456789"


def day(scenario: str, users: int, seed: int) -> Path:
    """A simulated day and its scan (cached)."""
    from likelens import api, sim

    out = WORK / f"{scenario}-{users}-{seed}"
    if not (out / "scan" / "model" / "manifest.json").exists():
        result = sim.simulate(sim.load_scenario(scenario, users=users), seed)
        sim.write(result, out / "sim")
        api.scan([out / "sim" / "events.parquet"], key=KEY, out=out / "scan", report=False)
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- replay quality ---------------------------------------------------------------------------

def bench_replay(scenario: str, users: int) -> dict:
    from likelens import model as model_dir
    from likelens.ingest import ingest
    from likelens.service.online import OnlineScorer

    target, other = day(scenario, users, 501), day(scenario, users, 502)
    events = ingest([target / "sim" / "events.parquet"], key=KEY).events
    events = events.take(pc.sort_indices(events, [("ts", "ascending")]))
    scorer = OnlineScorer(model_dir.load(other / "scan" / "model"), version="other-day")
    flags: dict[str, bool] = {}
    revised: dict[str, bool] = {}  # flags cleared by the account's next view (session revisions)
    t0 = time.perf_counter()
    for s in range(0, events.num_rows, 2000):
        flags.update((d.event_id, d.flagged) for d in scorer.score(events.slice(s, 2000)))
        revised.update((d.event_id, d.flagged) for d in scorer.take_revisions())
    seconds = time.perf_counter() - t0
    scan = pq.read_table(target / "scan" / "engagements.parquet",
                         columns=["event_id", "action", "flagged", "ts"])
    truth = pq.read_table(target / "sim" / "truth.parquet")
    tmap = dict(zip([str(x) for x in truth["event_id"].to_pylist()],
                    zip(truth["fake"].to_pylist(), truth["order_id"].to_pylist(), strict=True),
                    strict=True))
    likes = scan.filter(pc.equal(scan["action"], "like"))
    ids = [str(x) for x in likes["event_id"].to_pylist()]
    batch = np.asarray(likes["flagged"].to_pylist())
    online = np.asarray([flags.get(i, False) for i in ids])
    now = np.asarray([revised.get(i, flags.get(i, False)) for i in ids])
    fake = np.asarray([bool(tmap[i][0]) for i in ids])
    organic = ~fake
    # Orders delivered within ten minutes: first like to first real-time flag, event time.
    ts = likes["ts"].to_numpy()
    orders: dict[int, list[tuple[int, bool]]] = {}
    for i, eid in enumerate(ids):
        o = tmap[eid][1]
        if o is not None:
            orders.setdefault(int(o), []).append((int(ts[i]), bool(online[i])))
    delays = []
    n10 = 0
    for rows in orders.values():
        t = [r[0] for r in rows]
        if max(t) - min(t) > 10 * 60_000:
            continue
        n10 += 1
        flagged = [r[0] for r in rows if r[1]]
        if flagged:
            delays.append((min(flagged) - min(t)) / 60_000)
    return {
        "events": events.num_rows, "seconds": seconds,
        "events_per_s": events.num_rows / seconds,
        "coverage": float((online & batch).sum() / max(batch.sum(), 1)),
        "fpr_batch": float((batch & organic).sum() / organic.sum()),
        "fpr_online": float((online & organic).sum() / organic.sum()),
        "fpr_revised": float((now & organic).sum() / organic.sum()),
        "fp_batch": int((batch & organic).sum()), "fp_online": int((online & organic).sum()),
        "fp_revised": int((now & organic).sum()), "session_revisions": len(revised),
        "coverage_revised": float((now & batch).sum() / max(batch.sum(), 1)),
        "recall_revised": float((now & fake).sum() / max(fake.sum(), 1)),
        "recall_batch": float((batch & fake).sum() / max(fake.sum(), 1)),
        "recall_online": float((online & fake).sum() / max(fake.sum(), 1)),
        "orders_10min": n10, "orders_10min_flagged": len(delays),
        "median_first_flag_min": statistics.median(delays) if delays else float("nan"),
    }


# -- servers --------------------------------------------------------------------------------

def _admin_key(args: list[str]) -> str:
    out = subprocess.run([LIKELENS, "keys", "create", "--role", "admin", *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _serve(args: list[str], port: int) -> subprocess.Popen:
    env = dict(os.environ, LIKELENS_KEY=KEY.decode())
    proc = subprocess.Popen([LIKELENS, "serve", "--port", str(port), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("service did not become ready")


def _metric(port: int, name: str) -> float:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _histogram(port: int, name: str) -> list[tuple[float, float]]:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le),
                        float(line.rsplit(" ", 1)[1])))
    return out


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` (Prometheus-style)."""
    total = buckets[-1][1] if buckets else 0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


def _lines(path: Path) -> list[bytes]:
    t = pq.read_table(path)
    t = t.take(pc.sort_indices(t, [("ts", "ascending")]))
    return [json.dumps(r, default=str, separators=(",", ":")).encode() for r in t.to_pylist()]


def bench_redis(scenario: str, users: int, seconds: float, port: int = 8731,
                per_entry: int = 100, target: float = 50_000.0) -> dict:
    """Phase 1: a producer keeps a backlog, so the service runs flat out: committed events per
    second over ``seconds``. Phase 2: the producer paces at ``target`` events/s (or 80 % of
    phase 1's rate if that is lower) for 30 s: the latency histogram's p50 and p99 from XADD
    to committed decision."""
    import psycopg
    import redis

    from likelens.service.stream import publish

    d = day(scenario, users, 501)
    name = f"likelens_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    url = PG.rsplit("/", 1)[0] + "/" + name
    stream = f"likelens:bench:{name}"
    r = redis.Redis.from_url(REDIS)
    proc = None
    try:
        proc = _serve(["--database", url, "--redis", REDIS, "--stream", stream,
                       "--data", str(WORK / name), "--model", str(d / "scan" / "model")],
                      port)
        lines = _lines(d / "sim" / "events.parquet")
        stop = threading.Event()
        rate: list[float | None] = [None]  # None: keep a backlog; else events per second
        produced = [0]

        where = {"i": 0, "round": 0}  # the producer's place, kept across phases

        def produce() -> None:
            i, round_, t0, sent = where["i"], where["round"], time.monotonic(), 0
            while not stop.is_set():
                chunk = lines[i:i + 2000]
                if round_:  # later rounds: the same day again under fresh event ids
                    chunk = [_renumber(line, round_) for line in chunk]
                publish(r, chunk, stream=stream, per_entry=per_entry)
                produced[0] += len(chunk)
                sent += len(chunk)
                i += 2000
                if i >= len(lines):
                    i, round_ = 0, round_ + 1
                where["i"], where["round"] = i, round_
                if rate[0] is None:
                    while not stop.is_set() and _backlog(r, stream) > 100_000 / per_entry:
                        time.sleep(0.005)
                else:
                    ahead = sent / rate[0] - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        time.sleep(5)  # warm up
        c0, t0 = _metric(port, "likelens_events_committed_total"), time.monotonic()
        time.sleep(seconds)
        c1, t1 = _metric(port, "likelens_events_committed_total"), time.monotonic()
        flat_out = (c1 - c0) / (t1 - t0)
        stop.set()
        thread.join()
        # Drain, then pace.
        while _backlog(r, stream) > 0:
            time.sleep(0.2)
        paced = min(target, 0.8 * flat_out)
        stop.clear()
        rate[0] = paced
        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        time.sleep(3)
        h0 = _histogram(port, "likelens_decision_latency_seconds")
        p0, q0 = _metric(port, "likelens_events_committed_total"), time.monotonic()
        time.sleep(30)
        h1 = _histogram(port, "likelens_decision_latency_seconds")
        p1, q1 = _metric(port, "likelens_events_committed_total"), time.monotonic()
        stop.set()
        thread.join()
        window = [(le, b - a[1]) for (le, b), a in zip(h1, h0, strict=True)]
        return {"events_per_s": flat_out, "seconds": t1 - t0, "per_entry": per_entry,
                "paced_offered": paced, "paced_committed": (p1 - p0) / (q1 - q0),
                "p50_ms": _quantile(window, 0.5) * 1000, "p99_ms": _quantile(window, 0.99) * 1000,
                "produced": produced[0]}
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        r.delete(stream)
        with psycopg.connect(PG, autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _renumber(line: bytes, round_: int) -> bytes:
    obj = json.loads(line)
    obj["event_id"] = f"{round_}-{obj['event_id']}"
    return json.dumps(obj, separators=(",", ":")).encode()


def _backlog(r: object, stream: str) -> int:
    """Entries not yet acknowledged by the group (pending plus unread)."""
    try:
        g = r.xinfo_groups(stream)[0]  # type: ignore[attr-defined]
        return int(g.get("pending") or 0) + int(g.get("lag") or 0)
    except Exception:
        return 0


LOAD = r"""
import asyncio, json, sys, time

# A light open-loop HTTP/1.1 client on raw asyncio streams: httpx costs a few ms of CPU per
# request, which on a 2-core box the client would take from the service it measures.
async def conn(host, port, key, jobs, rate, start, lat, errors):
    reader, writer = await asyncio.open_connection(host, port)
    for j, body in jobs:
        wait = start + j / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        t0 = time.perf_counter()
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + key.encode() + b"\r\nContent-Type: application/x-ndjson\r\n"
                     + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        if status == 200:
            lat.append(time.perf_counter() - t0)
        else:
            errors.append(status)
    writer.close()

async def main(url, key, rate, bodies_path, out_path, n_conn=32):
    host, port = url.split("//", 1)[1].split(":")
    bodies = open(bodies_path, "rb").read().split(b"\n")
    lat, errors = [], []
    start = time.perf_counter() + 0.3
    jobs = [[] for _ in range(n_conn)]
    for j, body in enumerate(bodies):
        jobs[j % n_conn].append((j, body))
    await asyncio.gather(*(conn(host, int(port), key, js, rate, start, lat, errors)
                           for js in jobs))
    open(out_path, "w").write(json.dumps({"lat": lat, "errors": errors}))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]))
"""


def bench_http(scenario: str, users: int, rps: float, seconds: float = 20.0,
               port: int = 8732, runs: int = 3) -> dict:
    """One engagement per request at ``rps`` from 32 keep-alive connections, each sending on
    schedule (a connection waits for its previous answer, so a slow service shows as latency
    rather than as a queue in the client), from a raw-asyncio client in its own process.

    ``runs`` times, each on a fresh service with its own likes: a 20-s run's p99 is its 100
    slowest requests, and on this shared two-core machine it moved by a third from one run to
    the next (13-24 ms); the median run is the figure, every run's is printed beside it."""
    d = day(scenario, users, 501)
    t = pq.read_table(d / "sim" / "events.parquet")
    t = t.take(pc.sort_indices(t, [("ts", "ascending")]))
    likes = t.filter(pc.equal(t["action"], "like"))
    n = int(rps * seconds)
    got = [_http_run(d, likes.slice(k * n, n), rps, port) for k in range(runs)]
    mid = sorted(got, key=lambda r: r["p99_ms"])[len(got) // 2]
    return {**mid, "runs": len(got), "p99_runs_ms": [r["p99_ms"] for r in got],
            "errors": sum(r["errors"] for r in got)}


def _http_run(d: Path, likes: pa.Table, rps: float, port: int) -> dict:
    data = WORK / f"http-{uuid.uuid4().hex[:8]}"
    key = _admin_key(["--data", str(data)])
    proc = _serve(["--data", str(data), "--model", str(d / "scan" / "model"), "--rate", "0"],
                  port)
    try:
        bodies = data / "bodies.ndjson"
        bodies.write_bytes(b"\n".join(json.dumps(r, default=str).encode()
                                       for r in likes.to_pylist()))
        out = data / "latencies.json"
        subprocess.run([sys.executable, "-c", LOAD, f"http://127.0.0.1:{port}", key, str(rps),
                        str(bodies), str(out)], check=True)
        got = json.loads(out.read_text())
        lat = np.asarray(got["lat"]) * 1000
        return {"requests": len(lat), "errors": len(got["errors"]),
                "error_kinds": sorted({str(e) for e in got["errors"]})[:5], "rps": rps,
                "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def bench_memory(accounts: int) -> dict:
    from likelens import model as model_dir
    from likelens.service.online import OnlineScorer

    d = day("demo", 6000, 501)
    scorer = OnlineScorer(model_dir.load(d / "scan" / "model"), version="m")
    rng = np.random.default_rng(5)
    before = rss_mb()
    step = 100_000
    t0 = time.perf_counter()
    for s in range(0, accounts, step):
        n = min(step, accounts - s)
        acc = np.arange(s, s + n)
        vid = rng.integers(0, 200_000, n)
        ts = np.sort(rng.integers(0, 3_600_000, n)) + s  # within the hour: nothing ages out
        ev = {
            "event_id": np.concatenate([acc * 2, acc * 2 + 1]).astype(str),
            "ts": np.concatenate([ts, ts + 5000]),
            "user_id": np.concatenate([acc, acc]).astype(str),
            "action": ["view"] * n + ["like"] * n,
            "video_id": np.concatenate([vid, vid]), "creator_id": np.concatenate([vid, vid]) % 5000,
            "watch_ms": np.full(2 * n, 8000), "video_ms": np.full(2 * n, 15000),
            "device_hash": np.concatenate([acc, acc]).astype(str),
            "ip_hash": (np.concatenate([acc, acc]) % 300_000).astype(str),
            "ip_sub": (np.concatenate([acc, acc]) % 50_000).astype(str),
        }
        table = pa.table(ev)
        order = np.argsort(table["ts"].to_numpy(), kind="stable")
        scorer.score(table.take(pa.array(order)))
    return {"accounts": len(scorer.accounts), "rss_growth_mb": rss_mb() - before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="replay,redis,http,memory")
    p.add_argument("--scenario", default="platform-day")
    p.add_argument("--users", type=int, default=30000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rps", type=float, default=500.0)
    p.add_argument("--accounts", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "service.md")
    a = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    only = set(a.only.split(","))
    res: dict[str, dict] = {}
    # HTTP first: the Redis phase leaves PostgreSQL checkpointing and vacuuming millions of
    # rows for a while, on the same two cores the HTTP phase's latencies are measured on.
    for name, fn in (("http", lambda: bench_http(a.scenario, a.users, a.rps)),
                     ("replay", lambda: bench_replay(a.scenario, a.users)),
                     ("redis", lambda: bench_redis(a.scenario, a.users, a.seconds)),
                     ("memory", lambda: bench_memory(a.accounts))):
        if name in only:
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            res[name] = fn()
            print(f"[{name}] {json.dumps(res[name])}", flush=True)
    write_markdown(res, a)


def write_markdown(res: dict[str, dict], a: argparse.Namespace) -> None:
    lines = [
        "# Service benchmark", "",
        f"`python bench/service.py --only {a.only} --scenario {a.scenario} --users {a.users}` "
        f"on {platform.node() or 'this machine'} ({os.cpu_count()} cores), "
        f"{time.strftime('%Y-%m-%d')}. Redis and PostgreSQL on the same machine.", "",
        "| figure | target | measured |", "|---|---|---|"]
    if "redis" in res:
        x = res["redis"]
        lines += [f"| Redis Streams intake flat out, sustained over {x['seconds']:.0f} s "
                  f"({x['per_entry']} events per entry) | ≥ 50,000 events/s | "
                  f"{x['events_per_s']:,.0f} events/s |",
                  f"| XADD to committed decision at {x['paced_offered']:,.0f} events/s offered "
                  f"({x['paced_committed']:,.0f} committed), p50 / p99 (histogram bucket "
                  f"bound) | p99 ≤ 500 ms at 50,000/s | {x['p50_ms']:.0f} / "
                  f"{x['p99_ms']:.0f} ms |"]
    if "http" in res:
        x = res["http"]
        each = ", ".join(f"{v:.1f}" for v in x["p99_runs_ms"])
        lines += [f"| HTTP, one engagement per request at {x['rps']:.0f} req/s, p50 / p99 of "
                  f"the median of {x['runs']} runs (each run's p99) | p99 ≤ 20 ms | "
                  f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f} ms ({each}; {x['requests']:,} "
                  f"requests a run, {x['errors']} errors) |"]
    if "memory" in res:
        x = res["memory"]
        lines += [f"| online state for {x['accounts']:,} accounts (RSS growth) | ≤ 2 GiB | "
                  f"{x['rss_growth_mb']:,.0f} MiB (peak RSS {x['peak_rss_mb']:,.0f} MiB) |"]
    if "replay" in res:
        x = res["replay"]
        lines += [
            f"| real-time flags covering the batch's flagged likes ({x['events']:,} events) | "
            f"≥ 90 % | {x['coverage']:.1%} at decision, {x['coverage_revised']:.1%} after "
            f"session revisions |",
            f"| organic FPR, real time at decision / after session revisions / batch | "
            f"≤ 1.5× | {x['fpr_online']:.4%} / {x['fpr_revised']:.4%} / {x['fpr_batch']:.4%} "
            f"({x['fp_online']} / {x['fp_revised']} / {x['fp_batch']} organic likes; "
            f"{x['session_revisions']} revisions) |",
            f"| recall of bought likes, real time at decision / after revisions / batch | — | "
            f"{x['recall_online']:.1%} / {x['recall_revised']:.1%} / {x['recall_batch']:.1%} |",
            f"| orders delivered within 10 min: first like to first flag, median | ≤ 5 min | "
            f"{x['median_first_flag_min']:.1f} min ({x['orders_10min_flagged']} of "
            f"{x['orders_10min']} orders flagged) |",
            f"| online scoring alone (one thread) | — | {x['events_per_s']:,.0f} events/s |"]
    lines += ["", "Anchors: MIDAS-R scores an edge in ~0.1 µs (C++); Spade updates a dense "
              "subgraph in 6–14 µs per edge (VLDB 2023). The online scorer here is Python per "
              "event plus vectorised fusion per micro-batch; see the last row.", ""]
    lines += ["The replay rows use a model fitted on another day of the same scenario (seed "
              "502) to score day 501, so nothing the model knows is that day's; the batch "
              "figures are the scan of day 501 itself.", ""]
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
