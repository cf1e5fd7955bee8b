"""The review queue: cases, claims, verdicts, and the estimates the verdicts feed.

A case is either a group the loaded model found (lockstep group or dense block) or one like of
an audit sample drawn with ``likelens.review.sample`` (strata by score, unflagged likes
included, each with its inclusion probability), so the verdicts on sampled likes give unbiased
precision and organic-FPR estimates with intervals (``likelens.review.estimate``). Group
verdicts are kept and ledgered too, but they are not a probability sample and never enter the
estimates.

Claims never collide: a claim is one conditional UPDATE (``claimed_by`` still empty, or the
claim gone stale), which the database applies to one claimant only, on SQLite and PostgreSQL
alike. A verdict and its evidence-ledger record commit in one transaction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from likelens import review
from likelens.errors import InputError
from likelens.service import tables as T
from likelens.service.groups import Group
from likelens.service.store import ServiceStore

VERDICTS = ("bought", "organic", "unsure")
STALE_S = 2 * 3600  # a claim nobody decided in this long goes back to the queue


def add_groups(store: ServiceStore, groups: Sequence[Group], version: str) -> int:
    """A case for each of the model's groups not queued yet; how many were added."""
    return _add(store, [{"kind": "group", "ref": g.id, "model_version": version}
                        for g in groups])


def add_sample(store: ServiceStore, likes: pa.Table, size: int, seed: int, version: str) -> int:
    """Draw an audit sample of ``size`` likes (event_id, score, flagged) and queue it."""
    if size < 1:
        raise InputError("sample size: at least 1")
    drawn = review.sample(likes, size, seed)
    return _add(store, [{"kind": "sample", "ref": str(e), "model_version": version,
                         "stratum": s, "inclusion_prob": float(p)}
                        for e, s, p in zip(drawn["event_id"].to_pylist(),
                                           drawn["stratum"].to_pylist(),
                                           drawn["inclusion_prob"].to_pylist(), strict=True)])


def _add(store: ServiceStore, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    c = T.cases
    now = time.time()
    with store.engine.begin() as con:
        have = {(k, r) for k, r in con.execute(sa.select(c.c.kind, c.c.ref).where(
            c.c.model_version == rows[0]["model_version"]))}
        fresh = [dict(r, created_at=now) for r in rows if (r["kind"], r["ref"]) not in have]
        if fresh:
            con.execute(c.insert(), fresh)
    return len(fresh)


def claim(store: ServiceStore, user: str, *, kind: str | None = None) -> dict[str, Any] | None:
    """The case ``user`` holds undecided, else the next open one, claimed for them now.

    Two analysts asking at once never get the same case: each claim is an UPDATE that only
    succeeds while the case is unclaimed (or its claim stale), so the loser of a race moves on
    to the next candidate.
    """
    c = T.cases
    mine = held(store, user)
    if mine is not None:
        return mine
    for _ in range(50):
        now = time.time()
        open_ = sa.and_(c.c.verdict.is_(None), sa.or_(c.c.claimed_by.is_(None),
                                                      c.c.claimed_at < now - STALE_S))
        q = sa.select(c.c.id).where(open_)
        if kind:
            q = q.where(c.c.kind == kind)
        with store.engine.begin() as con:
            # Samples first (they feed the estimates), then groups, oldest first.
            cand = con.execute(q.order_by(sa.case((c.c.kind == "sample", 0), else_=1),
                                          c.c.id).limit(1)).scalar()
            if cand is None:
                return None
            won = con.execute(c.update().where(c.c.id == cand, open_).values(
                claimed_by=user, claimed_at=now)).rowcount
        if won:
            return case(store, int(cand))
    return None


def held(store: ServiceStore, user: str) -> dict[str, Any] | None:
    c = T.cases
    with store.engine.connect() as con:
        row = con.execute(sa.select(c.c.id).where(
            c.c.claimed_by == user, c.c.verdict.is_(None),
            c.c.claimed_at >= time.time() - STALE_S).order_by(c.c.id).limit(1)).scalar()
    return None if row is None else case(store, int(row))


def release(store: ServiceStore, case_id: int, user: str) -> bool:
    """Give a claimed, undecided case back to the queue."""
    c = T.cases
    with store.engine.begin() as con:
        return bool(con.execute(c.update().where(
            c.c.id == case_id, c.c.claimed_by == user, c.c.verdict.is_(None)).values(
            claimed_by=None, claimed_at=None)).rowcount)


def case(store: ServiceStore, case_id: int) -> dict[str, Any] | None:
    with store.engine.connect() as con:
        row = con.execute(sa.select(T.cases).where(T.cases.c.id == case_id)).mappings().first()
    return dict(row) if row else None


def decide(store: ServiceStore, case_id: int, user: str, verdict: str, note: str) -> int:
    """Record ``user``'s verdict on the case they hold, with its ledger record; the index."""
    if verdict not in VERDICTS:
        raise InputError(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
    c = T.cases
    note = note.strip()[:2000]
    with store.transaction() as con:
        row = con.execute(sa.select(c).where(c.c.id == case_id)).mappings().first()
        if row is None:
            raise InputError(f"no case {case_id}")
        if row["verdict"] is not None:
            raise InputError(f"case {case_id} has a verdict already")
        if row["claimed_by"] != user:
            raise InputError(f"case {case_id} is not claimed by {user}")
        now = time.time()
        span = store.ledger.append([{
            "kind": "verdict", "case": case_id, "case_kind": row["kind"], "ref": row["ref"],
            "model_version": row["model_version"], "stratum": row["stratum"],
            "verdict": verdict, "note": note, "by": user, "at": round(now, 3)}])
        con.execute(c.update().where(c.c.id == case_id).values(
            verdict=verdict, note=note, decided_by=user, decided_at=now,
            ledger_index=span.start))
    return span.start


def cases(store: ServiceStore, *, state: str = "open", limit: int = 200) -> list[dict[str, Any]]:
    """Cases by state: open (unclaimed), claimed, decided."""
    c = T.cases
    q = sa.select(c)
    if state == "open":
        q = q.where(c.c.verdict.is_(None), c.c.claimed_by.is_(None))
    elif state == "claimed":
        q = q.where(c.c.verdict.is_(None), c.c.claimed_by.is_not(None))
    else:
        q = q.where(c.c.verdict.is_not(None))
    order = c.c.decided_at.desc() if state == "decided" else c.c.id
    with store.engine.connect() as con:
        return [dict(r) for r in con.execute(q.order_by(order).limit(limit)).mappings()]


def counts(store: ServiceStore) -> dict[str, int]:
    c = T.cases
    with store.engine.connect() as con:
        row = con.execute(sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((c.c.verdict.is_not(None), 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case(
                (sa.and_(c.c.verdict.is_(None), c.c.claimed_by.is_not(None)), 1),
                else_=0)), 0))).one()
    total, decided, claimed = (int(x) for x in row)
    return {"total": total, "decided": decided, "claimed": claimed,
            "open": total - decided - claimed}


def sample_verdicts(store: ServiceStore, version: str) -> pa.Table:
    """The audit sample's verdicts for ``version``: event_id, bought (NaN when unsure), as
    ``likelens review estimate`` reads them."""
    c = T.cases
    with store.engine.connect() as con:
        rows = con.execute(sa.select(c.c.ref, c.c.verdict).where(
            c.c.kind == "sample", c.c.model_version == version,
            c.c.verdict.is_not(None))).all()
    bought = [1.0 if v == "bought" else 0.0 if v == "organic" else math.nan for _, v in rows]
    return pa.table({"event_id": pa.array([r for r, _ in rows], pa.string()),
                     "bought": pa.array(np.asarray(bought, dtype=float), pa.float64())})


def estimates(store: ServiceStore, likes: pa.Table | None, version: str) -> dict[str, Any] | None:
    """Precision, organic FPR and recall with 95 % intervals from the sample's verdicts, or
    None before any verdict. ``likes`` has its event ids as text (``LoadedModel.likes``)."""
    if likes is None or likes.num_rows == 0:
        return None
    verdicts = sample_verdicts(store, version)
    if verdicts.num_rows == 0:
        return None
    return review.estimate(likes, verdicts)
