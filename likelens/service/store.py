"""The service's state on a database: SQLite in the data directory, or PostgreSQL.

One writer (the service's worker) commits each batch's decisions and their ledger records in one
transaction, so a decision is never in the database without its evidence, nor the other way
round, and an event replayed after a crash is recognised by its ``event_id`` and not decided
again. Readers (the HTTP API) use their own connections.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from likelens.errors import ServiceError
from likelens.ledger.log import EvidenceLog
from likelens.service import tables as T
from likelens.service.online import Decision

log = logging.getLogger("likelens.service")
MIGRATIONS = Path(__file__).with_name("migrations")
CHUNK = 5000  # rows per IN (...) lookup
WAL_BACKSTOP_PAGES = 10_000


def database_url(data: str | Path | None, database: str | None) -> str:
    """The SQLAlchemy URL: ``database`` as given (a ``postgresql://`` URL is driven by
    psycopg 3), else SQLite in ``data``."""
    if database:
        if database.startswith("postgresql://") or database.startswith("postgres://"):
            return "postgresql+psycopg://" + database.split("://", 1)[1]
        return database
    if data is None:
        raise ServiceError("give --data DIR (embedded SQLite) or --database URL")
    Path(data).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(data).resolve() / 'service.db'}"


def _sqlite_pragmas(dbapi_con: Any, _record: Any) -> None:
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    # The service checkpoints from a thread of its own (``start_checkpoints``); SQLite's own,
    # inside a commit, only past ten times its default log size (40 MB) as a backstop.
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


class ServiceStore:
    """Decisions, revisions, quarantine, keys, models and the ledger, on one database."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("postgresql"):
            kwargs = {"pool_pre_ping": True, "pool_size": 8,
                      "connect_args": {"connect_timeout": 3}}
        self.engine: Engine = sa.create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        # The open transaction is the worker's own: thread-local, so a reader on another
        # thread (an HTTP request for a proof) never runs inside it.
        self._local = threading.local()
        # The ledger's frontier is cached for its one writer: the worker's batches and the
        # console's verdicts append from different threads, so their transactions take turns.
        self._write = threading.RLock()
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None
        self._ledger_store = _LedgerStore(self)
        self.ledger = EvidenceLog(self._ledger_store)
        if migrate:
            self.migrate()

    @property
    def kind(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as con:
                cfg.attributes["connection"] = con
                command.upgrade(cfg, "head")
        except sa.exc.OperationalError as exc:
            raise ServiceError(f"cannot reach the database ({_short(exc)})") from None

    def ping(self) -> bool:
        """Whether the database answers (for /readyz)."""
        try:
            with self.engine.connect() as con:
                con.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    def close(self) -> None:
        self.stop_checkpoints()
        self.engine.dispose()

    def start_checkpoints(self, every_s: float = 0.2) -> None:
        """On SQLite, copy the write-ahead log into the database from a thread of its own
        every ``every_s``. Left to itself SQLite does it inside the commit that fills the
        log past 1000 pages (every 50 or so micro-batches of the service, each page of a
        decision's rows and indexes is a frame), with an fsync: 4-5 ms added to that batch,
        the service's slowest percent of latencies. A passive checkpoint waits for no reader
        or writer and runs without the GIL; should this thread stop, SQLite's own
        checkpoints still run, past ``WAL_BACKSTOP_PAGES``. (PostgreSQL: nothing to do.)"""
        if self.kind != "sqlite" or self._checkpointer is not None:
            return
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(every_s):
                try:
                    with self.engine.connect() as con:
                        con.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                except sa.exc.SQLAlchemyError:
                    log.warning("WAL checkpoint failed; SQLite's own will run", exc_info=True)
        self._checkpointer = (threading.Thread(target=run, name="likelens-checkpoint",
                                               daemon=True), stop)
        self._checkpointer[0].start()

    def stop_checkpoints(self) -> None:
        if self._checkpointer is not None:
            thread, stop = self._checkpointer
            stop.set()
            thread.join(5)
            self._checkpointer = None

    @property
    def _tx(self) -> Connection | None:
        return getattr(self._local, "tx", None)

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        """This thread's open transaction's connection, or a fresh one."""
        if self._tx is not None:
            yield self._tx
        else:
            with self.engine.connect() as con:
                yield con

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction of this thread; one at a time in this process (see ``_write``)."""
        try:
            with self._write, self.engine.begin() as con:
                self._local.tx = con
                try:
                    yield con
                finally:
                    self._local.tx = None
        except BaseException:
            self._ledger_store.forget()  # what it cached may not have committed
            raise

    # -- decisions ---------------------------------------------------------------------------

    def decided(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among ``event_ids`` that already have a decision."""
        out: set[str] = set()
        with self._conn() as con:
            # Plain SQL: the worker asks this of every micro-batch, and building and caching
            # the statement cost four times the query (0.24 against 0.06 ms for a few ids).
            for s in range(0, len(event_ids), CHUNK):
                part = tuple(event_ids[s:s + CHUNK])
                out.update(r[0] for r in con.exec_driver_sql(
                    f"SELECT event_id FROM decisions WHERE event_id IN "
                    f"({_marks(con, len(part))})", part))
        return out

    def commit(self, decisions: Sequence[Decision], version: str,
               received: Mapping[str, float], quarantined: Iterable[Mapping[str, Any]] = (),
               *, checked: bool = False) -> list[Decision]:
        """Record the decisions not already recorded, with their ledger records, and the
        quarantined events, in one transaction; returns the decisions recorded now.

        ``checked``: the caller has just looked the ids up (the worker does, before scoring),
        so the lookup is not repeated here, a tenth of a one-event batch's work. Should
        another writer have decided one of them since (a second instance on the same
        database), the primary key refuses the insert and the commit runs again with the
        lookup."""
        quarantined = list(quarantined)
        if checked:
            try:
                return self._commit(decisions, version, received, quarantined, check=False)
            except Exception as exc:
                if not _duplicate_key(exc):
                    raise
        return self._commit(decisions, version, received, quarantined, check=True)

    def _commit(self, decisions: Sequence[Decision], version: str,
                received: Mapping[str, float], quarantined: list[Mapping[str, Any]], *,
                check: bool) -> list[Decision]:
        now = time.time()
        with self.transaction() as con:
            seen = self.decided([d.event_id for d in decisions]) if check else set()
            fresh, ids = [], set()
            for d in decisions:
                if d.event_id not in seen and d.event_id not in ids:
                    fresh.append(d)
                    ids.add(d.event_id)
            q = [dict(r, received_at=now) for r in quarantined]
            if q:
                con.execute(T.quarantine.insert(), q)
            if not fresh:
                return []
            span = self.ledger.append(_ledger_record("decision", d, version) for d in fresh)
            insert_rows(con, T.decisions, [
                {"event_id": d.event_id, "ts": d.ts, "user_id": d.user_id, "action": d.action,
                 "video_id": d.video_id, "creator_id": d.creator_id, "score": d.score,
                 "flagged": d.flagged, "reasons": json.dumps(d.reasons),
                 "model_version": version, "received_at": received.get(d.event_id, now),
                 "decided_at": now, "ledger_index": idx, "device": d.device, "net": d.net}
                for d, idx in zip(fresh, span, strict=True)])
        return fresh

    def current(self, event_ids: Sequence[str]) -> dict[str, tuple[bool, str]]:
        """(flag now, user id) of each decided engagement among ``event_ids``: the flag of
        its latest revision, else of its decision."""
        out: dict[str, tuple[bool, str]] = {}
        with self._conn() as con:
            for s in range(0, len(event_ids), CHUNK):
                part = list(event_ids[s:s + CHUNK])
                out.update((r[0], (bool(r[1]), r[2])) for r in con.execute(sa.select(
                    T.decisions.c.event_id, T.decisions.c.flagged, T.decisions.c.user_id).where(
                    T.decisions.c.event_id.in_(part))))
                for eid, flagged in con.execute(sa.select(
                        T.revisions.c.event_id, T.revisions.c.flagged).where(
                        T.revisions.c.event_id.in_(part)).order_by(T.revisions.c.id)):
                    out[eid] = (bool(flagged), out[eid][1])
        return out

    def revise(self, revised: Sequence[Decision], version: str, cause: str) -> int:
        """Record later decisions beside the first ones (a batch scan that sees the whole day
        found what the stream could not), each with its ledger record; an engagement the
        service never decided, or already revised for the same cause, is skipped. Returns how
        many were recorded."""
        if not revised:
            return 0
        now = time.time()
        with self.transaction() as con:
            ids = [d.event_id for d in revised]
            known = self.decided(ids)
            already: set[str] = set()
            for s in range(0, len(ids), CHUNK):
                already.update(r[0] for r in con.execute(sa.select(T.revisions.c.event_id).where(
                    T.revisions.c.cause == cause, T.revisions.c.event_id.in_(ids[s:s + CHUNK]))))
            todo = [d for d in revised if d.event_id in known and d.event_id not in already]
            if not todo:
                return 0
            span = self.ledger.append(
                _ledger_record("revision", d, version, cause=cause) for d in todo)
            insert_rows(con, T.revisions, [
                {"event_id": d.event_id, "score": d.score, "flagged": d.flagged,
                 "reasons": json.dumps(d.reasons), "model_version": version, "cause": cause,
                 "revised_at": now, "ledger_index": idx}
                for d, idx in zip(todo, span, strict=True)])
        return len(todo)

    def engagement(self, event_id: str) -> dict[str, Any] | None:
        with self._conn() as con:
            row = con.execute(sa.select(T.decisions).where(
                T.decisions.c.event_id == event_id)).mappings().first()
            if row is None:
                return None
            revs = con.execute(sa.select(T.revisions).where(
                T.revisions.c.event_id == event_id).order_by(T.revisions.c.id)).mappings().all()
        out = _decision_json(row)
        out["revisions"] = [_decision_json(r) for r in revs]
        return out

    def summary(self, column: str, value: str, *, limit: int = 50) -> dict[str, Any] | None:
        """Totals of the decisions whose ``column`` is ``value`` (an account, video or creator),
        with the latest of them. ``flagged_now`` takes each engagement's latest revision where
        it has one (a scan can flag what the stream passed, or clear what it flagged), and the
        authentic share follows it."""
        d, r = T.decisions, T.revisions
        last = sa.select(r.c.event_id, sa.func.max(r.c.id).label("id")).group_by(
            r.c.event_id).subquery()
        rev = sa.select(r.c.event_id, r.c.flagged).join(last, r.c.id == last.c.id).subquery()
        now = sa.func.coalesce(rev.c.flagged, d.c.flagged)
        with self._conn() as con:
            total, flagged, flagged_now = con.execute(sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((d.c.flagged, 1), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case((now, 1), else_=0)), 0)).select_from(
                d.outerjoin(rev, rev.c.event_id == d.c.event_id)).where(
                d.c[column] == value)).one()
            if not total:
                return None
            latest = con.execute(sa.select(d).where(d.c[column] == value).order_by(
                d.c.ts.desc()).limit(limit)).mappings().all()
        total, flagged, flagged_now = int(total), int(flagged), int(flagged_now)
        return {column: value, "engagements": total, "flagged_at_decision": flagged,
                "flagged_now": flagged_now,
                "authentic_share": round(1.0 - flagged_now / total, 6),
                "latest": [_decision_json(x) for x in latest]}

    def counts(self) -> dict[str, int]:
        with self._conn() as con:
            return {name: int(con.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                              or 0)
                    for name, t in (("decisions", T.decisions), ("revisions", T.revisions),
                                    ("quarantine", T.quarantine))}

    # -- models ------------------------------------------------------------------------------

    def record_model(self, version: str, path: str, info: Mapping[str, Any]) -> None:
        with self.engine.begin() as con:
            exists = con.execute(sa.select(T.models.c.version).where(
                T.models.c.version == version)).first()
            if exists is None:
                con.execute(T.models.insert().values(version=version, path=path,
                                                     loaded_at=time.time(),
                                                     info=json.dumps(info, default=str)))

    # -- keys --------------------------------------------------------------------------------

    def add_key(self, prefix: str, key_hash: str, role: str, note: str = "") -> None:
        with self.engine.begin() as con:
            con.execute(T.api_keys.insert().values(prefix=prefix, key_hash=key_hash, role=role,
                                                   created_at=time.time(), note=note))

    def key(self, prefix: str) -> dict[str, Any] | None:
        with self.engine.connect() as con:
            row = con.execute(sa.select(T.api_keys).where(
                T.api_keys.c.prefix == prefix)).mappings().first()
        return dict(row) if row else None

    def keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as con:
            return [dict(r) for r in con.execute(sa.select(
                T.api_keys.c.prefix, T.api_keys.c.role, T.api_keys.c.created_at,
                T.api_keys.c.revoked_at, T.api_keys.c.note).order_by(
                T.api_keys.c.created_at)).mappings()]

    def revoke_key(self, prefix: str) -> int:
        """Revoke every unrevoked key whose prefix starts with ``prefix``; how many."""
        with self.engine.begin() as con:
            res = con.execute(T.api_keys.update().where(
                T.api_keys.c.prefix.startswith(prefix, autoescape=True),
                T.api_keys.c.revoked_at.is_(None)).values(revoked_at=time.time()))
            return int(res.rowcount or 0)


def insert_rows(con: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` in the open transaction: PostgreSQL's COPY (one round trip, no
    statement per row), else an executemany."""
    if not rows:
        return
    cols = list(rows[0])
    names = ", ".join(f'"{c}"' for c in cols)
    if con.dialect.name != "postgresql":
        # Plain SQL too (the values need no conversion: SQLite stores bools as the 1 and 0
        # SQLAlchemy would, bytes as blobs); a third of a small batch's commit was compiling.
        con.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) VALUES '
                            f"({_marks(con, len(cols))})",
                            [tuple(r[c] for c in cols) for r in rows])
        return
    cursor = con.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for r in rows:
            copy.write_row([r[c] for c in cols])


def _marks(con: Connection, n: int) -> str:
    """``n`` positional parameter markers in the driver's own style."""
    return ", ".join(["?" if con.dialect.paramstyle == "qmark" else "%s"] * n)


def _duplicate_key(exc: BaseException) -> bool:
    """Whether ``exc`` is an integrity violation: SQLAlchemy's, or psycopg's own from the COPY
    that ``insert_rows`` runs on the driver's cursor (SQLSTATE class 23)."""
    return isinstance(exc, sa.exc.IntegrityError) or str(
        getattr(exc, "sqlstate", None) or "").startswith("23")


def _ledger_record(kind: str, d: Decision, version: str, **extra: Any) -> dict[str, Any]:
    """A decision's ledger record. The score is in integer parts per million, as the scan's
    records have it: no float in the record keeps its canonical JSON on the fast path
    (``ledger.log.canonical``, a quarter of a small batch's commit otherwise)."""
    return {"kind": kind, "event_id": d.event_id, "user_id": d.user_id, "action": d.action,
            "video_id": d.video_id, "score_ppm": round(d.score * 1e6), "flagged": d.flagged,
            "reasons": d.reasons, "model_version": version, **extra}


def _decision_json(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["reasons"] = json.loads(out["reasons"])
    out["flagged"] = bool(out["flagged"])
    out.pop("id", None)
    return out


def _short(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]


class _LedgerStore:
    """likelens.ledger's ``Store`` on the service's tables, inside the open transaction.

    The worker is the only writer, so the size and the newest node of each level (all an
    append needs to hash the next records in) are kept after each append instead of read
    back: a batch's ledger costs its inserts, not a query per level. A failed transaction
    forgets them (``forget``); another writer on the same database makes the next insert
    collide on the index, which fails the transaction and makes the retry read afresh.
    """

    def __init__(self, store: ServiceStore) -> None:
        self.s = store
        self._size: int | None = None
        self._frontier: dict[tuple[int, int], bytes] = {}

    def forget(self) -> None:
        self._size = None
        self._frontier = {}

    def size(self) -> int:
        if self._size is not None and self.s._tx is not None:
            return self._size
        with self.s._conn() as con:
            return int(con.execute(sa.select(sa.func.coalesce(
                sa.func.max(T.ledger_records.c.idx) + 1, 0))).scalar() or 0)

    def append(self, records: Sequence[bytes], leaves: Sequence[bytes],
               nodes: Iterable[tuple[int, int, bytes]]) -> None:
        start = self.size()
        nodes = list(nodes)
        with self.s._conn() as con:
            insert_rows(con, T.ledger_records, [
                {"idx": start + i, "data": r, "leaf": h}
                for i, (r, h) in enumerate(zip(records, leaves, strict=True))])
            rows = [{"level": lv, "idx": i, "hash": h} for lv, i, h in nodes]
            if rows:
                insert_rows(con, T.ledger_nodes, rows)
        self._size = start + len(records)
        newest: dict[int, tuple[int, bytes]] = {}
        if leaves:
            newest[0] = (self._size - 1, leaves[-1])
        for lv, i, h in nodes:
            if lv not in newest or i > newest[lv][0]:
                newest[lv] = (i, h)
        frontier = {k: v for k, v in self._frontier.items() if k[0] not in newest}
        frontier.update({(lv, i): h for lv, (i, h) in newest.items()})
        self._frontier = frontier

    def node(self, level: int, idx: int) -> bytes | None:
        hit = self._frontier.get((level, idx))
        if hit is not None and self.s._tx is not None:
            return hit
        with self.s._conn() as con:
            if level == 0:
                row = con.execute(sa.select(T.ledger_records.c.leaf).where(
                    T.ledger_records.c.idx == idx)).first()
            else:
                row = con.execute(sa.select(T.ledger_nodes.c.hash).where(
                    T.ledger_nodes.c.level == level, T.ledger_nodes.c.idx == idx)).first()
        return bytes(row[0]) if row else None

    def records(self, start: int, end: int) -> list[tuple[int, bytes]]:
        with self.s._conn() as con:
            return [(int(i), bytes(d)) for i, d in con.execute(sa.select(
                T.ledger_records.c.idx, T.ledger_records.c.data).where(
                T.ledger_records.c.idx >= start, T.ledger_records.c.idx < end).order_by(
                T.ledger_records.c.idx))]

    def nodes_at(self, level: int, start: int, end: int) -> list[tuple[int, bytes]]:
        with self.s._conn() as con:
            if level == 0:
                q = sa.select(T.ledger_records.c.idx, T.ledger_records.c.leaf).where(
                    T.ledger_records.c.idx >= start, T.ledger_records.c.idx < end)
            else:
                q = sa.select(T.ledger_nodes.c.idx, T.ledger_nodes.c.hash).where(
                    T.ledger_nodes.c.level == level, T.ledger_nodes.c.idx >= start,
                    T.ledger_nodes.c.idx < end)
            return [(int(i), bytes(h)) for i, h in con.execute(q.order_by(q.selected_columns[0]))]

    def add_checkpoint(self, size: int, text: str) -> None:
        with self.s.engine.begin() as con:
            con.execute(T.ledger_checkpoints.delete().where(T.ledger_checkpoints.c.size == size))
            con.execute(T.ledger_checkpoints.insert().values(size=size, text=text))

    def checkpoints(self) -> list[tuple[int, str]]:
        with self.s._conn() as con:
            return [(int(s), t) for s, t in con.execute(sa.select(
                T.ledger_checkpoints.c.size, T.ledger_checkpoints.c.text).order_by(
                T.ledger_checkpoints.c.size))]
