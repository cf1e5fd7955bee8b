"""The one thread that decides: takes events from the in-process queue and the Redis stream,
scores them in arrival order, commits, and only then acknowledges.

Order of work for each micro-batch, and why:

1. parse and pseudonymise (in the request thread for HTTP, here for the stream), so ids line up
   with ``scan``'s;
2. drop events already decided (a replay, or a stream entry redelivered after a crash): an
   event is decided once;
3. score with the online state (``online.OnlineScorer``);
4. commit decisions, quarantine and ledger records in one transaction;
5. only then acknowledge: XACK the stream entries, answer the waiting HTTP requests.

If the commit fails (the database is down), the batch's decisions are kept and the commit is
retried with backoff; nothing new is read meanwhile, nothing is acknowledged, and the stream's
unacknowledged entries stay in Redis for this consumer or, if it dies, for another one
(XAUTOCLAIM).
"""

from __future__ import annotations

import gc
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.ingest import ingest_raw
from likelens.ingest.readers import ndjson_to_raw
from likelens.ingest.small import parse_small
from likelens.model import Model
from likelens.service.metrics import Metrics
from likelens.service.online import Decision, OnlineScorer
from likelens.service.store import ServiceStore
from likelens.service.stream import StreamReader

log = logging.getLogger("likelens.service")
T = TypeVar("T")
FREEZE_EVERY_S = 10.0


@dataclass
class Outcome:
    """What a request's events came to: the decisions made now, the events that break the
    contract, and every accepted event's id and action (to tell replays apart)."""

    decisions: list[Decision]
    quarantined: list[dict[str, Any]]
    ids: list[str]
    actions: list[str]


@dataclass
class Batch:
    """Events waiting to be decided (as NDJSON lines until the worker parses them), and who
    waits for them."""

    events: pa.Table | None
    quarantine: list[dict[str, Any]]
    received: float
    source: str
    future: Future[Outcome] | None = None
    ack: list[bytes] = field(default_factory=list)
    arrived: dict[str, float] | None = None  # per event id, when it entered the stream
    lines: list[bytes] | None = None
    # The events' ids (as text) and actions, read out once per micro-batch, not per request.
    ids: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.events.num_rows if self.events is not None else len(self.lines or [])


def quarantine_rows(table: pa.Table) -> list[dict[str, Any]]:
    return [{"source": r["source"], "row": int(r["row"]), "raw": r["raw"] or "",
             "reason": r["reason"]} for r in table.to_pylist()]


def parse_lines(lines: Sequence[bytes], *, source: str, key: bytes
                ) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Events (with their line number as ``_row``) and quarantine rows of NDJSON lines,
    judged as a file's lines would be. A few clean events take ``parse_small``, which gives
    the same table for a tenth of the fixed cost."""
    small = parse_small(lines, key)
    if small is not None:
        return small, []
    good, bad = ingest_raw(ndjson_to_raw(b"\n".join(lines)), source=source, key=key,
                           require_event_id=True, keep_rows=True)
    return good, quarantine_rows(bad)


class Worker:
    """Decides events from the queue and the stream; see the module docstring."""

    def __init__(self, store: ServiceStore, model: Model, version: str, *, key: bytes,
                 metrics: Metrics, stream: StreamReader | None = None, batch_rows: int = 5000,
                 max_wait_s: float = 0.02, linger_s: float = 0.001) -> None:
        self.store, self.key, self.metrics, self.stream = store, key, metrics, stream
        self.scorer = OnlineScorer(model, version=version)
        self.batch_rows, self.max_wait_s, self.linger_s = batch_rows, max_wait_s, linger_s
        self.inbox: queue.Queue[Batch] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._swap: tuple[Model, str] | None = None
        self._lock = threading.Lock()
        self.healthy = True
        self._lines_per_entry = 1.0
        self._frozen_at = 0.0

    @property
    def version(self) -> str:
        return self.scorer.version

    def start(self, warm_up_s: float = 30.0) -> None:
        """Start the worker thread, and return once it has warmed up (``warm_up``) on that
        thread, which opens the DuckDB connection its parses use (``ingest._local_con``)."""
        self.store.start_checkpoints()
        warmed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(warmed,), name="likelens-worker",
                                        daemon=True)
        self._thread.start()
        warmed.wait(warm_up_s)

    def warm_up(self) -> None:
        """Run a few made-up events through the parse and the scoring, on a scorer of their
        own, before the first request: the first batch otherwise pays for loading the compiled
        kernels and the lazy imports (0.5-0.7 s, which at 500 requests/s is the slowest percent
        of a minute's latencies). Nothing is stored or folded into the real state."""
        t = int(time.time() * 1000)
        lines = [json.dumps(e).encode() for e in (
            {"event_id": "warm-1", "ts": t, "user_id": "u", "action": "view", "video_id": "v",
             "creator_id": "c", "watch_ms": 5000, "video_ms": 9000, "ip": "192.0.2.1",
             "device_id": "d"},
            {"event_id": "warm-2", "ts": t + 1000, "user_id": "u", "action": "like",
             "video_id": "v", "creator_id": "c", "ip": "2001:db8::1", "device_id": "d"},
            {"event_id": "warm-3", "ts": t + 2000, "user_id": "w", "action": "comment",
             "video_id": "v", "creator_id": "c", "ip": "not an address", "text": "hi"})]
        events, _ = parse_lines(lines, source="warm-up", key=self.key)
        OnlineScorer(self.scorer.model, version="warm-up").score(events.drop_columns(["_row"]))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.stop_checkpoints()

    def submit(self, lines: list[bytes], source: str) -> Future[Outcome]:
        """Queue NDJSON event lines; the future resolves once their decisions are committed.

        The worker parses the lines of every request in a micro-batch in one go: one request
        of one event costs the coercion's fixed price once per batch, not once per request."""
        fut: Future[Outcome] = Future()
        self.inbox.put(Batch(None, [], time.time(), source, fut, lines=lines))
        self.metrics.events_in.labels(source).inc(len(lines))
        return fut

    def swap_model(self, model: Model, version: str) -> None:
        """Score with ``model`` from the next micro-batch on (no event is lost or rescored)."""
        with self._lock:
            self._swap = (model, version)

    def queue_depth(self) -> int:
        return self.inbox.qsize()

    # -- the loop ----------------------------------------------------------------------------

    def _run(self, warmed: threading.Event) -> None:
        try:
            self.warm_up()
        except Exception:  # the first batch then loads what it needs
            log.exception("warm-up failed")
        finally:
            warmed.set()
        while not self._stop.is_set():
            batches = self._gather()
            if not batches:
                continue
            with self._lock:
                if self._swap is not None:
                    self.scorer.swap_model(*self._swap)
                    self._swap = None
            done = self._retry(lambda b=batches: self._already_decided(b), "lookup")
            if done is None:
                return  # shutting down before the database came back: nothing acknowledged
            try:
                decisions = self._decide(batches, done)
            except Exception as exc:  # a bad batch must not stop the service
                log.exception("scoring failed")
                for b in batches:
                    if b.future is not None and not b.future.done():
                        b.future.set_exception(exc)
                continue
            self._commit_until_done(batches, decisions)
            self._commit_revisions()
            self._freeze_state()

    def _gather(self) -> list[Batch]:
        """Up to ``batch_rows`` events from the queue, then the stream."""
        out: list[Batch] = []
        rows = 0
        deadline = time.monotonic() + self.max_wait_s
        while rows < self.batch_rows:
            now = time.monotonic()
            try:
                if not out and self.stream is None:
                    b = self.inbox.get(timeout=max(deadline - now, 0.0))
                    # Linger a little for the requests right behind the first: a batch costs
                    # the same for one request as for ten.
                    deadline = now + self.linger_s
                elif self.stream is None:
                    b = self.inbox.get(timeout=max(deadline - now, 0.0))
                else:  # with a stream, its read is what blocks; the queue is only looked at
                    b = self.inbox.get_nowait()
            except queue.Empty:
                break
            out.append(b)
            rows += b.rows
        self._parse_queued([b for b in out if b.lines is not None])
        if self.stream is not None and rows < self.batch_rows:
            try:
                want = max(1, int((self.batch_rows - rows) / self._lines_per_entry))
                got = self.stream.read(want, block_ms=0 if out else 50)
            except Exception as exc:
                self._unhealthy(f"stream read failed: {exc.__class__.__name__}")
                time.sleep(0.5)
                return out
            if got:
                ids, payloads = got
                # An entry holds one event or several (NDJSON): one line each.
                lines = [line for p in payloads for line in p.split(b"\n") if line.strip()]
                entry_of = [k for k, p in enumerate(payloads)
                            for line in p.split(b"\n") if line.strip()]
                self._lines_per_entry = max(1.0, len(lines) / len(payloads))
                events, q = parse_lines(lines, source="redis", key=self.key)
                self.metrics.events_in.labels("redis").inc(len(lines))
                arrived = _stream_times(events, ids, entry_of)
                event_ids, actions = _ids_and_actions(events)
                out.append(Batch(events.drop_columns(["_row"]), q, time.time(), "redis", None,
                                 ids, arrived, ids=event_ids, actions=actions))
        return out

    def _parse_queued(self, batches: list[Batch]) -> None:
        """Parse the lines of queued requests together and hand each its events and its
        quarantined rows (numbered within the request)."""
        if not batches:
            return
        starts, lines = [], []
        for b in batches:
            starts.append(len(lines))
            lines += b.lines or []
        try:
            good, bad = parse_lines(lines, source=batches[0].source, key=self.key)
        except Exception as exc:  # a request the coercion refuses (no ts column at all)
            if len(batches) > 1:  # only that request fails, not the others beside it
                for b in batches:
                    self._parse_queued([b])
                return
            for b in batches:
                if b.future is not None:
                    b.future.set_exception(exc)
                b.events, b.lines, b.future = _EMPTY, None, None
            return
        row = good["_row"].to_numpy()
        good = good.drop_columns(["_row"])
        ids, actions = _ids_and_actions(good)
        # The events keep their lines' order, so each request's are one slice (no copy, and
        # no pass over the whole batch per request).
        ordered = bool(np.all(row[1:] >= row[:-1]))
        for k, b in enumerate(batches):
            lo, hi = starts[k], starts[k] + len(b.lines or [])
            if ordered:
                first, end = (int(x) for x in np.searchsorted(row, [lo, hi]))
                b.events = good.slice(first, end - first)
                b.ids, b.actions = ids[first:end], actions[first:end]
            else:
                take = np.flatnonzero((row >= lo) & (row < hi))
                b.events = good.take(pa.array(take))
                b.ids = [ids[i] for i in take.tolist()]
                b.actions = [actions[i] for i in take.tolist()]
            b.quarantine = [dict(q, row=q["row"] - lo) for q in bad if lo <= q["row"] < hi]
            b.lines = None

    def _freeze_state(self) -> None:
        """Keep the cyclic garbage collector off the online state: millions of long-lived
        dicts and tuples that a full collection would walk again and again (a fifth of the
        worker's time). Every few seconds the young generations are collected and what
        survives is frozen; the state holds no cycles, so nothing is kept alive that
        reference counting would not free."""
        now = time.monotonic()
        if now - self._frozen_at >= FREEZE_EVERY_S:
            self._frozen_at = now
            gc.collect(1)
            gc.freeze()

    def _already_decided(self, batches: list[Batch]) -> set[str]:
        """Engagements among the batches that already have a decision (views have none)."""
        ids = [i for b in batches for i, a in zip(b.ids, b.actions, strict=True) if a != "view"]
        return self.store.decided(ids) if ids else set()

    def _retry(self, step: Callable[[], T], what: str) -> T | None:
        """Run a database step until it succeeds (None if the worker stops first): while the
        database is away nothing is scored, committed or acknowledged."""
        wait = 0.1
        while True:
            try:
                out = step()
            except Exception as exc:
                self._unhealthy(f"{what} failed: {exc.__class__.__name__}")
                if self._stop.wait(wait):
                    return None
                wait = min(wait * 2, 5.0)
                continue
            if not self.healthy:
                log.warning("database reachable again; resuming")
            self.healthy = True
            return out

    def _decide(self, batches: list[Batch], done: set[str]) -> list[Decision]:
        tables = [b.events for b in batches if b.events.num_rows]
        if not tables:
            return []
        events = pa.concat_tables(tables, promote_options="permissive")
        # Replays: events already decided are not scored again (nor fold into the state).
        ids = pc.cast(events["event_id"], pa.string())
        if done:
            keep = pc.invert(pc.is_in(ids, value_set=pa.array(sorted(done), pa.string())))
            events = events.filter(keep)
            self.metrics.replayed.inc(len(done))
        t0 = time.perf_counter()
        decisions = self.scorer.score(events)
        self.metrics.score_seconds.observe(time.perf_counter() - t0)
        return decisions

    def _commit_until_done(self, batches: list[Batch], decisions: list[Decision]) -> None:
        received: dict[str, float] = {}
        for b in batches:
            if b.arrived is not None:
                received.update(b.arrived)
            else:
                received.update(dict.fromkeys(b.ids, b.received))
        quarantine = [q for b in batches for q in b.quarantine]
        if self._retry(lambda: self.store.commit(decisions, self.version, received,
                                                 quarantine, checked=True),
                       "commit") is None:
            return  # shutting down: nothing acknowledged, the stream keeps it
        now = time.time()
        for d in decisions:
            self.metrics.decisions.labels(str(d.flagged).lower()).inc()
            self.metrics.latency.observe(max(now - received.get(d.event_id, now), 0.0))
        self.metrics.quarantined.inc(len(quarantine))
        self.metrics.committed.inc(sum(b.events.num_rows for b in batches))
        acks = [i for b in batches for i in b.ack]
        if acks and self.stream is not None:
            try:
                self.stream.ack(acks)
            except Exception:  # redelivered later and recognised as decided
                log.warning("stream ack failed; entries will be redelivered and skipped")
        by_id = {d.event_id: d for d in decisions}
        for b in batches:
            if b.future is not None and not b.future.done():
                b.future.set_result(Outcome([by_id[i] for i in b.ids if i in by_id],
                                            b.quarantine, b.ids, b.actions))

    def _commit_revisions(self) -> None:
        """Record the flags a later view of the same session cleared (``OnlineScorer``), after
        the decisions they revise are committed. They are the in-memory state's findings, so a
        crash before this step loses them as it loses that state; the next batch scan's
        revisions still come."""
        revised = self.scorer.take_revisions()
        if not revised:
            return
        n = self._retry(lambda: self.store.revise(revised, self.version, cause="session"),
                        "revise")
        if n:
            self.metrics.revisions.inc(n)

    def _unhealthy(self, why: str) -> None:
        if self.healthy:
            log.warning("%s; retrying", why)
        self.healthy = False


_EMPTY = pa.table({"event_id": pa.array([], pa.string()), "action": pa.array([], pa.string())})


def _ids_and_actions(events: pa.Table) -> tuple[list[str], list[str]]:
    """Each event's id as text (how decisions are keyed) and its action."""
    if not events.num_rows:
        return [], []
    return (pc.cast(events["event_id"], pa.string()).to_pylist(),
            pc.cast(events["action"], pa.string()).to_pylist())


def _stream_times(events: pa.Table, ids: list[bytes], entry_of: list[int]
                  ) -> dict[str, float]:
    """When each event entered the stream: its entry id's milliseconds (Redis stamps the id at
    XADD), so the latency metric runs from XADD to the committed decision."""
    if not events.num_rows:
        return {}
    ms = [int(i.split(b"-", 1)[0]) / 1000.0 for i in ids]
    return {str(e): ms[entry_of[r]] for e, r in zip(
        events["event_id"].to_pylist(), events["_row"].to_pylist(), strict=True)}
