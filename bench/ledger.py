"""Evidence-ledger benchmark: batched append throughput and proof time as the log grows.

Run: .venv/bin/python bench/ledger.py [--leaves 10000000] [--out bench/ledger.md]
Prints the figures and writes them as a markdown table. Medians over repeated proofs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from likelens.ledger.checkpoint import load_or_create_key
from likelens.ledger.hashing import leaf_hash, verify_inclusion
from likelens.ledger.log import EvidenceLog
from likelens.ledger.store import SqliteStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--leaves", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--proofs", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("bench/ledger.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = EvidenceLog(SqliteStore(Path(tmp) / "ledger.db"))
        key = load_or_create_key(Path(tmp) / "k.key")
        marks = [m for m in (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
                 if m <= args.leaves]
        rates: list[float] = []
        rows = []
        n = 0
        for mark in marks:
            while n < mark:
                size = min(args.batch, mark - n)
                t0 = time.perf_counter()
                log.append({"type": "decision", "event_id": str(n + i), "score_ppm": 912345,
                            "reasons": ["isolated_view", "video_burst"]} for i in range(size))
                rates.append(size / (time.perf_counter() - t0))
                n += size
            cp = log.checkpoint(key)
            times, sizes = [], []
            for j in range(args.proofs):
                index = (j * 7919 * 104729) % n
                t0 = time.perf_counter()
                proof = log.inclusion_proof(index, n)
                times.append(time.perf_counter() - t0)
                sizes.append(len(proof))
                if j < 5:
                    verify_inclusion(index, n, leaf_hash(log.record(index)), proof, cp.root)
            ct = []
            for j in range(20):
                old = max(1, (j * 104729) % n)
                t0 = time.perf_counter()
                log.consistency_proof(old, n)
                ct.append(time.perf_counter() - t0)
            rows.append((mark, statistics.median(times) * 1e3, max(sizes),
                         statistics.median(ct) * 1e3))
            print(f"{mark:>11,} leaves: inclusion proof {rows[-1][1]:.3f} ms median "
                  f"({rows[-1][2]} hashes), consistency {rows[-1][3]:.3f} ms; append rate so far "
                  f"{statistics.median(rates):,.0f}/s", flush=True)
    lines = [
        "# Evidence ledger benchmark", "",
        f"`python bench/ledger.py --leaves {args.leaves} --batch {args.batch}` on "
        f"{platform.machine()}, Python {platform.python_version()}, SQLite WAL on local disk.",
        "", f"Batched append (batches of {args.batch:,}, records of ~100 bytes, leaf and every "
        f"completed subtree written in one transaction): median **{statistics.median(rates):,.0f}"
        f" appends/s** over {len(rates)} batches (min {min(rates):,.0f}, max {max(rates):,.0f}).",
        "", "| leaves | inclusion proof, median ms | proof length | consistency proof, median ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m:,} | {t:.3f} | {s} | {c:.3f} |" for m, t, s, c in rows]
    lines += ["", "Proof length grows as log2 n and so does the work (one stored subtree lookup "
              "per hash): O(log n). The step at the largest size is page-cache misses once the "
              "database outgrows SQLite's 256 MiB cache, not extra hashing."]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
