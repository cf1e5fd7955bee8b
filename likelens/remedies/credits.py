"""Creator credits: earned by authentic engagement, clawed back when it turns out bought, with
escalating penalties for repeated purchases; a double-entry ledger in the service's database.

Accounts: ``creator:<id>`` (what the platform owes the creator), ``platform:issued`` (where
earned credits come from; its balance is minus everything issued) and ``platform:penalties``.
Every transaction's postings sum to zero, so every balance can be traced to its counterpart.
Amounts are integer micro-credits: sums are exact.

- **Earn.** Each engagement a scan judges authentic earns what it adds to ``likelens rank``'s
  engagement (a like by the watch before it, comments 0.5, shares and follows 0.75, times
  1 - score; flagged engagement earns nothing). Earnings are kept per engagement (event id), so
  an engagement earns once however many scans see it, and one transaction per creator and scan
  carries the sum.
- **Claw back.** When a later scan flags an engagement that earned, exactly what it earned is
  taken back, once.
- **Penalise.** A scan that finds at least ``PURCHASE_MIN_FLAGGED`` flagged likes on a creator's
  videos that no earlier penalty counted is a purchase; the creator's k-th purchase costs
  ``PENALTY_BASE`` × 2^(k-1) credits (at most ``PENALTY_CAP``), each posted as its own
  transaction. Scans of overlapping windows do not penalise the same likes twice.

Transaction ids are derived from the scan's digest and the creator, so posting the same scan
twice changes nothing.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from likelens.errors import InputError
from likelens.ledger.api import file_digest
from likelens.remedies.rank import DEPTH, W0
from likelens.service import tables as T
from likelens.service.store import CHUNK, ServiceStore, insert_rows

MICRO = 1_000_000
ISSUED = "platform:issued"
PENALTIES = "platform:penalties"
PURCHASE_MIN_FLAGGED = 10
PENALTY_BASE = 10 * MICRO
PENALTY_CAP = 10_000 * MICRO
COLUMNS = ("event_id", "creator_id", "action", "score", "flagged")


def creator_account(creator_id: str) -> str:
    return f"creator:{creator_id}"


def earned_micro(action: np.ndarray, score: np.ndarray, flagged: np.ndarray,
                 watch: np.ndarray) -> np.ndarray:
    """What each engagement earns, in micro-credits (0 when flagged)."""
    a = np.where(flagged, 0.0, 1.0 - np.clip(score, 0.0, 1.0))
    w = np.where(np.isnan(watch), 0.5, np.clip(watch, 0.0, 1.0))
    weight = np.zeros(len(action))
    weight[action == "like"] = 1.0
    for k, v in DEPTH.items():
        weight[action == k] = v
    like = action == "like"
    value = a * weight * np.where(like, W0 + (1 - W0) * w, 1.0)
    return np.round(value * MICRO).astype(np.int64)


def read_scan(scan_dir: Path) -> tuple[pa.Table, str]:
    """A scan's engagements (the columns credits need) and the digest that names the scan."""
    path = scan_dir / "engagements.parquet"
    if not path.exists():
        raise InputError("no such file (is this a scan directory?)", file=str(path))
    have = set(pq.read_schema(path).names)
    missing = set(COLUMNS) - have
    if missing:
        raise InputError(f"lacks {', '.join(sorted(missing))}", file=str(path))
    cols = [*COLUMNS, "watch_frac"] if "watch_frac" in have else list(COLUMNS)
    return pq.read_table(path, columns=cols), file_digest([path])[:16]


@dataclass
class Posted:
    earned: int = 0
    clawed: int = 0
    penalties: int = 0
    transactions: int = 0


def post(store: ServiceStore, engagements: pa.Table, scan: str,
         now: float | None = None) -> Posted:
    """Post one scan's credits: earnings, clawbacks and penalties, in one database
    transaction. Idempotent: the same scan again posts nothing."""
    now = time.time() if now is None else now
    e = engagements.filter(pc.is_valid(engagements["creator_id"]))
    ids = np.array([str(x) for x in e["event_id"].to_pylist()], dtype=object)
    creators = np.array([str(x) for x in e["creator_id"].to_pylist()], dtype=object)
    action = np.array(e["action"].to_pylist(), dtype=object)
    score = e["score"].to_numpy(zero_copy_only=False).astype(float)
    flagged = e["flagged"].to_numpy(zero_copy_only=False).astype(bool)
    watch = (e["watch_frac"].to_numpy(zero_copy_only=False).astype(float)
             if "watch_frac" in e.schema.names else np.full(len(ids), np.nan))
    earn = earned_micro(action, score, flagged, watch)
    out = Posted()
    with store.transaction() as con:
        done = con.execute(sa.select(sa.func.count()).select_from(T.credit_transactions).where(
            T.credit_transactions.c.scan == scan)).scalar()
        if done:
            return out
        known = _earnings(con, ids.tolist())
        new_rows: list[dict[str, Any]] = []
        by_creator: dict[str, int] = defaultdict(int)
        claw: dict[str, list[tuple[str, int]]] = defaultdict(list)
        flagged_likes: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        for i, eid in enumerate(ids):
            c = creators[i]
            if eid in seen:
                continue
            seen.add(eid)
            if flagged[i] and action[i] == "like":
                flagged_likes[c].append(eid)
            k = known.get(eid)
            if k is None:
                if earn[i] > 0:
                    new_rows.append({"event_id": eid, "creator_id": c, "amount": int(earn[i]),
                                     "earn_txn": _txn("earn", scan, c)})
                    by_creator[c] += int(earn[i])
            elif flagged[i] and k[1] is None:  # earned before, bought now, not yet clawed
                claw[k[0]].append((eid, k[2]))
        txns: list[dict[str, Any]] = []
        postings: list[dict[str, Any]] = []

        def add(kind: str, creator: str, amount: int, memo: str, debit: str,
                credit: str) -> None:
            tid = _txn(kind, scan, creator)
            txns.append({"txn_id": tid, "kind": kind, "creator_id": creator, "scan": scan,
                         "memo": memo, "created_at": now})
            postings.extend([{"txn_id": tid, "account": debit, "amount": -amount},
                             {"txn_id": tid, "account": credit, "amount": amount}])

        for c, amount in sorted(by_creator.items()):
            n = sum(1 for r in new_rows if r["creator_id"] == c)
            add("earn", c, amount, f"{n} authentic engagements", ISSUED, creator_account(c))
            out.earned += amount
        for c, items in sorted(claw.items()):
            amount = sum(a for _, a in items)
            add("clawback", c, amount, f"{len(items)} engagements found bought",
                creator_account(c), ISSUED)
            out.clawed += amount
        counted = _purchased(con, [e for ids_ in flagged_likes.values() for e in ids_])
        purchases: list[dict[str, Any]] = []
        for c, eids in sorted(flagged_likes.items()):
            fresh = [e for e in eids if e not in counted]
            n = len(fresh)
            if n < PURCHASE_MIN_FLAGGED:
                continue
            purchases += [{"event_id": e, "creator_id": c,
                           "penalty_txn": _txn("penalty", scan, c)} for e in fresh]
            k = 1 + int(con.execute(sa.select(sa.func.count()).select_from(
                T.credit_transactions).where(T.credit_transactions.c.creator_id == c,
                                             T.credit_transactions.c.kind == "penalty"))
                        .scalar() or 0)
            amount = min(PENALTY_BASE * 2 ** (k - 1), PENALTY_CAP)
            add("penalty", c, amount, f"purchase {k}: {n} flagged likes",
                creator_account(c), PENALTIES)
            out.penalties += amount
        insert_rows(con, T.credit_earnings, new_rows)
        insert_rows(con, T.credit_purchases, purchases)
        for c, items in claw.items():
            tid = _txn("clawback", scan, c)
            for s in range(0, len(items), CHUNK):
                con.execute(T.credit_earnings.update().where(
                    T.credit_earnings.c.event_id.in_([eid for eid, _ in items[s:s + CHUNK]]),
                    T.credit_earnings.c.clawback_txn.is_(None)).values(clawback_txn=tid))
        if not txns:  # still mark the scan as posted, so a replay is recognised
            txns.append({"txn_id": _txn("none", scan, "-"), "kind": "none", "creator_id": "-",
                         "scan": scan, "memo": "nothing to post", "created_at": now})
        insert_rows(con, T.credit_transactions, txns)
        insert_rows(con, T.credit_postings, postings)
        out.transactions = len(txns)
    return out


def _txn(kind: str, scan: str, creator: str) -> str:
    return f"{kind}:{scan}:{creator}"


def _purchased(con: sa.Connection, ids: Sequence[str]) -> set[str]:
    """The flagged likes among ``ids`` that an earlier penalty already counted."""
    out: set[str] = set()
    cp = T.credit_purchases
    for s in range(0, len(ids), CHUNK):
        out.update(r[0] for r in con.execute(sa.select(cp.c.event_id).where(
            cp.c.event_id.in_(list(ids[s:s + CHUNK])))))
    return out


def _earnings(con: sa.Connection, ids: Sequence[str]) -> dict[str, tuple[str, str | None, int]]:
    """event id -> (creator, clawback txn or None, amount) for engagements that earned."""
    out: dict[str, tuple[str, str | None, int]] = {}
    ce = T.credit_earnings
    uniq = list(dict.fromkeys(ids))
    for s in range(0, len(uniq), CHUNK):
        for eid, c, tid, amount in con.execute(sa.select(
                ce.c.event_id, ce.c.creator_id, ce.c.clawback_txn, ce.c.amount).where(
                ce.c.event_id.in_(uniq[s:s + CHUNK]))):
            out[eid] = (c, tid, int(amount))
    return out


def balance(store: ServiceStore, creator_id: str) -> int:
    """The creator's balance in micro-credits."""
    p = T.credit_postings
    with store.engine.connect() as con:
        return int(con.execute(sa.select(sa.func.coalesce(sa.func.sum(p.c.amount), 0)).where(
            p.c.account == creator_account(creator_id))).scalar() or 0)


def statement(store: ServiceStore, creator_id: str) -> list[dict[str, Any]]:
    """The creator's transactions in order, with the amount to their account and the running
    balance."""
    t, p = T.credit_transactions, T.credit_postings
    with store.engine.connect() as con:
        rows = con.execute(sa.select(t.c.txn_id, t.c.kind, t.c.scan, t.c.memo, t.c.created_at,
                                     p.c.amount).join(p, p.c.txn_id == t.c.txn_id).where(
            p.c.account == creator_account(creator_id)).order_by(
            t.c.created_at, t.c.txn_id)).mappings().all()
    running, out = 0, []
    for r in rows:
        running += int(r["amount"])
        out.append({**dict(r), "amount": int(r["amount"]), "balance": running})
    return out


def trial_balance(store: ServiceStore) -> dict[str, int]:
    """Every account's balance; they sum to zero."""
    p = T.credit_postings
    with store.engine.connect() as con:
        return {a: int(b) for a, b in con.execute(sa.select(
            p.c.account, sa.func.sum(p.c.amount)).group_by(p.c.account))}


def unbalanced(store: ServiceStore) -> list[str]:
    """Transactions whose postings do not sum to zero (none, unless the tables were edited)."""
    p = T.credit_postings
    with store.engine.connect() as con:
        return [r[0] for r in con.execute(sa.select(p.c.txn_id).group_by(p.c.txn_id).having(
            sa.func.sum(p.c.amount) != 0))]


def as_credits(micro: int) -> str:
    return f"{micro / MICRO:,.2f}"
