"""Redis Streams intake: entries of ``likelens:events`` read through a consumer group.

Each entry holds one event as JSON in its ``e`` field (the input contract, as a line of an
NDJSON file), or several events as NDJSON lines: a producer that batches pays Redis's per-entry
cost once per batch, and the service decides and acknowledges the entry as a whole. The worker
reads with XREADGROUP and acknowledges (XACK) only after the decisions are committed. Entries a
consumer read but never acknowledged stay pending: on start a consumer reads its own pending
entries first, and every ``claim_every_s`` it takes over entries another consumer left idle for
``claim_idle_ms`` (XAUTOCLAIM), so a consumer that died loses nothing. A Redis that restarted
comes back without the group: it is created again (MKSTREAM) and reading goes on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import redis

STREAM = "likelens:events"
GROUP = "likelens"
FIELD = b"e"


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)


class StreamReader:
    """One consumer of the group."""

    def __init__(self, url: str, consumer: str, *, stream: str = STREAM, group: str = GROUP,
                 claim_idle_ms: int = 30_000, claim_every_s: float = 5.0) -> None:
        self.r = connect(url)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.claim_idle_ms, self.claim_every_s = claim_idle_ms, claim_every_s
        self._own_pending = True  # read what this consumer left unacknowledged first
        self._claimed_at = 0.0
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, block_ms: int = 50) -> tuple[list[bytes], list[bytes]] | None:
        """(entry ids, event lines) of up to ``count`` entries, or None."""
        try:
            return self._read(count, block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis restarted empty: the group is gone
                self._ensure_group()
                self._own_pending = True
                return None
            raise

    def _read(self, count: int, block_ms: int) -> tuple[list[bytes], list[bytes]] | None:
        if self._own_pending:
            got = self._entries(self.r.xreadgroup(self.group, self.consumer, {self.stream: "0"},
                                                  count=count))
            if got is not None:
                return got
            self._own_pending = False
        now = time.monotonic()
        if now - self._claimed_at >= self.claim_every_s:
            self._claimed_at = now
            _next, claimed, *_ = self.r.xautoclaim(self.stream, self.group, self.consumer,
                                                   self.claim_idle_ms, start_id="0-0",
                                                   count=count)
            got = self._pairs(claimed)
            if got is not None:
                return got
        return self._entries(self.r.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                               count=count, block=block_ms or None))

    def _entries(self, reply: list | None) -> tuple[list[bytes], list[bytes]] | None:  # type: ignore[type-arg]
        if not reply:
            return None
        return self._pairs(reply[0][1])

    @staticmethod
    def _pairs(entries: Iterable[tuple[bytes, dict[bytes, bytes]]]
               ) -> tuple[list[bytes], list[bytes]] | None:
        ids, lines = [], []
        for eid, fields in entries:
            if fields is None:  # deleted while pending
                continue
            ids.append(eid)
            lines.append(fields.get(FIELD, b"{}"))
        return (ids, lines) if ids else None

    def ack(self, ids: list[bytes]) -> None:
        if ids:
            self.r.xack(self.stream, self.group, *ids)

    def lag(self) -> int:
        """Entries of the stream the group has not acknowledged (pending + not yet read)."""
        try:
            info = self.r.xinfo_groups(self.stream)
        except redis.ResponseError:
            return 0
        for g in info:
            if g.get("name") in (self.group, self.group.encode()):
                pending = int(g.get("pending", 0) or 0)
                lag = g.get("lag")
                return pending + (int(lag) if lag is not None else 0)
        return 0

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False


def publish(r: redis.Redis, lines: Sequence[bytes], *, stream: str = STREAM,
            per_entry: int = 1) -> int:
    """XADD the event lines, ``per_entry`` to an entry (NDJSON), pipelined; returns how many
    events."""
    pipe = r.pipeline(transaction=False)
    for s in range(0, len(lines), per_entry):
        pipe.xadd(stream, {FIELD: b"\n".join(lines[s:s + per_entry])})
    pipe.execute()
    return len(lines)
