"""API keys, roles and per-key rate limits.

A key is ``ll_<prefix>_<secret>``: the prefix (8 hex characters) is stored and shown in lists and
logs, the whole key only as its SHA-256, so neither the database nor a log line gives a key away.
The secret has 256 bits of entropy, so a plain hash is enough (a password hash's slowness guards
low-entropy secrets, which these are not) and a lookup costs one hash.

Roles nest: ``ingest`` may only post events; ``analyst`` reads decisions, accounts, groups and
the ledger; ``admin`` does both and also manages models and keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from likelens.errors import ServiceError
from likelens.service.store import ServiceStore

ROLES = ("ingest", "analyst", "admin")
# What each role may do; an endpoint names the permission it needs.
GRANTS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingest"}),
    "analyst": frozenset({"read"}),
    "admin": frozenset({"ingest", "read", "admin"}),
}
KEY_CACHE_S = 2.0  # a revocation elsewhere (the CLI) is honoured within this


def new_key() -> tuple[str, str]:
    """(key, prefix) for a fresh key."""
    prefix = secrets.token_hex(4)
    return f"ll_{prefix}_{secrets.token_urlsafe(32)}", prefix


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: ServiceStore, role: str, note: str = "") -> tuple[str, str]:
    """Store a new key for ``role``; returns (key, prefix). The key is not kept anywhere."""
    if role not in ROLES:
        raise ServiceError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    key, prefix = new_key()
    store.add_key(prefix, hash_key(key), role, note)
    return key, prefix


def prefix_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ll" or len(parts[1]) != 8:
        return None
    return parts[1]


@dataclass(frozen=True)
class Caller:
    prefix: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in GRANTS[self.role]


class KeyChecker:
    """Resolves a bearer key to its caller, with a short cache so each request is not a query."""

    def __init__(self, store: ServiceStore) -> None:
        self.store = store
        self._cache: dict[str, tuple[float, dict[str, object] | None]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> Caller | None:
        """The caller of a valid, unrevoked key; None otherwise."""
        prefix = prefix_of(key)
        if prefix is None:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(prefix)
        if hit is None or now - hit[0] > KEY_CACHE_S:
            try:
                row = self.store.key(prefix)
            except Exception:
                if hit is None:
                    raise ServiceError("the key store does not answer") from None
                return self._caller(hit[1], key)  # the database is away: the last word

            hit = (now, row)
            with self._lock:
                self._cache[prefix] = hit
        return self._caller(hit[1], key)

    @staticmethod
    def _caller(row: dict[str, object] | None, key: str) -> Caller | None:
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(str(row["key_hash"]), hash_key(key)):
            return None
        return Caller(str(row["prefix"]), str(row["role"]))

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate
