"""Score a scan against the simulator's truth: precision, recall, F1, organic FPR and AUC-PR.

Metrics are computed over engagements of one action (likes by default), and split by supply kind
and by package size, so that "we catch bots" cannot hide "we miss 10-like orders".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from likelens.errors import InputError


@dataclass(frozen=True)
class Row:
    """One line of the quality table."""

    split: str
    n: int
    fake: int
    flagged: int
    precision: float
    recall: float
    f1: float
    organic_fpr: float
    auc_pr: float


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve, step-wise as scikit-learn computes it.

    Precision and recall are taken at each distinct score, so engagements with equal scores
    count together: the result does not depend on the order ties arrive in (detectors that
    score in a few levels tie a lot).
    """
    y = np.asarray(y, dtype=bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    s, y = np.asarray(score, dtype=float)[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # end of each tie group
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _row(split: str, fake: np.ndarray, flagged: np.ndarray, score: np.ndarray) -> Row:
    tp = int((fake & flagged).sum())
    fp = int((~fake & flagged).sum())
    fn = int((fake & ~flagged).sum())
    organic = int((~fake).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = (2 * precision * recall / (precision + recall)
          if tp and precision + recall > 0 else 0.0)
    return Row(split, len(fake), int(fake.sum()), int(flagged.sum()), precision, recall, f1,
               fp / organic if organic else float("nan"), average_precision(fake, score))


def evaluate(truth_path: Path, scan_dir: Path, *, action: str = "like") -> list[Row]:
    """Join a scan's engagements with truth and compute the quality table."""
    eng_path = scan_dir / "engagements.parquet"
    for p in (truth_path, eng_path):
        if not p.exists():
            raise InputError("no such file", file=str(p))
    truth = pq.read_table(truth_path, columns=["event_id", "fake", "kind", "package"])
    eng = pq.read_table(eng_path, columns=["event_id", "action", "score", "flagged"])
    return evaluate_tables(truth, eng, action=action)


def evaluate_tables(truth: pa.Table, eng: pa.Table, *, action: str = "like") -> list[Row]:
    """The quality table from in-memory truth and engagements tables."""
    con = duckdb.connect()
    con.register("truth", truth)
    con.register("eng", eng)
    t = con.sql(f"""
        SELECT t.fake, t.kind, t.package, e.score, e.flagged
        FROM eng e JOIN truth t ON CAST(e.event_id AS VARCHAR) = CAST(t.event_id AS VARCHAR)
        WHERE e.action = '{action}'
    """).to_arrow_table()
    con.close()
    fake = t["fake"].to_numpy(zero_copy_only=False).astype(bool)
    flagged = t["flagged"].to_numpy(zero_copy_only=False).astype(bool)
    score = t["score"].to_numpy(zero_copy_only=False).astype(float)
    kind = np.asarray(t["kind"].to_pylist(), dtype=object)
    package = np.asarray([p if p is not None else 0 for p in t["package"].to_pylist()])
    rows = [_row(f"all {action}s", fake, flagged, score)]
    organic = kind == "organic"
    for k in sorted(set(kind.tolist()) - {"organic"}):
        sel = organic | (kind == k)
        rows.append(_row(f"kind={k}", fake[sel], flagged[sel], score[sel]))
    for size in sorted(set(package[package > 0].tolist())):
        sel = organic | (package == size)
        rows.append(_row(f"package={size}", fake[sel], flagged[sel], score[sel]))
    return rows


def format_table(rows: list[Row]) -> str:
    """A fixed-width text table (the same figures the CLI prints with rich)."""
    head = f"{'split':<16}{'n':>9}{'fake':>8}{'flagged':>9}{'prec':>8}{'recall':>8}{'F1':>7}" \
           f"{'orgFPR':>9}{'AUC-PR':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.split:<16}{r.n:>9}{r.fake:>8}{r.flagged:>9}{r.precision:>8.3f}"
                     f"{r.recall:>8.3f}{r.f1:>7.3f}{r.organic_fpr:>9.5f}{r.auc_pr:>8.3f}")
    return "\n".join(lines)



def cause_table(truth: pa.Table, eng: pa.Table, action: str = "like"
                ) -> dict[str, tuple[int, int]]:
    """Per organic cause (zoo worlds' truth): (flagged, total) organic engagements of
    ``action``, so that every false positive is attributed."""
    con = duckdb.connect()
    con.register("truth", truth)
    con.register("eng", eng)
    rows = con.execute("""
        SELECT t.organic_cause, count(*) FILTER (WHERE e.flagged), count(*)
        FROM eng e JOIN truth t
          ON CAST(e.event_id AS VARCHAR) = CAST(t.event_id AS VARCHAR)
        WHERE e.action = ? AND NOT t.fake
        GROUP BY ALL ORDER BY 1
    """, [action]).fetchall()
    con.close()
    return {str(c): (int(f), int(n)) for c, f, n in rows}


def organic_causes(truth_path: Path, scan_dir: Path, *, action: str = "like"
                   ) -> dict[str, tuple[int, int]]:
    """``cause_table`` from the files; empty when the truth has no organic_cause."""
    if "organic_cause" not in pq.read_schema(truth_path).names:
        return {}
    truth = pq.read_table(truth_path, columns=["event_id", "fake", "organic_cause"])
    eng = pq.read_table(scan_dir / "engagements.parquet",
                        columns=["event_id", "action", "flagged"])
    return cause_table(truth, eng, action)
