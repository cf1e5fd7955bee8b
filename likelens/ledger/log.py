"""The evidence log: append canonical JSON records, prove inclusion and consistency, verify.

Records are canonicalised with RFC 8785 (JSON Canonicalization Scheme) so that the same decision
always hashes the same. Appending a batch computes the new leaf hashes and every subtree that
the batch completes, and writes them in one transaction. Proofs read O(log n) stored subtrees.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from likelens.errors import LedgerVerificationError
from likelens.ledger import hashing
from likelens.ledger.checkpoint import Checkpoint
from likelens.ledger.store import Store

ORIGIN = "likelens/ledger"


@dataclass(frozen=True)
class Problem:
    """One thing ``verify`` found wrong: where, and the expected against the computed hash."""

    index: int | None
    what: str
    expected: str | None = None
    computed: str | None = None

    def __str__(self) -> str:
        where = f"index {self.index}: " if self.index is not None else ""
        hashes = (f" (expected {self.expected}, computed {self.computed})"
                  if self.expected or self.computed else "")
        return where + self.what + hashes


# In compact JSON every number token follows ':', ',' or '['. A float token has a '.', an
# exponent, or is Infinity/NaN; an integer of 16 digits or more may be past 2**53. A match
# inside a string only costs the slow path, never a wrong byte.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_NOT_PLAIN = re.compile(r"[:,\[]-?(?:\d+\.|\d+[eE]|\d{16,}|Infinity|NaN)")


def canonical(record: Mapping[str, Any]) -> bytes:
    """RFC 8785 (JCS) bytes of a record.

    On ASCII records without floats or huge integers (the ledger writes scores as integer parts
    per million), sorted compact ``json.dumps`` is byte-identical to JCS and ten times faster
    than the ``rfc8785`` package; a property test holds the two together. Anything else goes to
    ``rfc8785``.
    """
    text = _ENCODER.encode(record)
    if text.isascii() and not _NOT_PLAIN.search(text):
        return text.encode("ascii")
    return rfc8785.dumps(record)


class EvidenceLog:
    """An append-only Merkle log over a ``Store``."""

    def __init__(self, store: Store, *, origin: str = ORIGIN) -> None:
        self.store, self.origin = store, origin

    @property
    def size(self) -> int:
        return self.store.size()

    def append(self, records: Iterable[Mapping[str, Any]]) -> range:
        """Append records in one batch; returns their indices."""
        data = [canonical(r) for r in records]
        start = self.size
        leaves: list[bytes] = []
        nodes: list[tuple[int, int, bytes]] = []
        waiting: dict[int, bytes] = {}  # per level, the newest left child awaiting its sibling
        leaf, node = hashing.leaf_hash, hashing.node_hash
        for i, d in enumerate(data):
            idx, level, h = start + i, 0, leaf(d)
            leaves.append(h)
            while idx & 1:  # a right child completes its parent
                left = waiting.get(level) or self.store.node(level, idx - 1)
                if left is None:
                    raise LedgerVerificationError(f"missing node ({level}, {idx - 1})",
                                                  index=idx - 1)
                h = node(left, h)
                idx, level = idx >> 1, level + 1
                nodes.append((level, idx, h))
            waiting[level] = h
        self.store.append(data, leaves, nodes)
        return range(start, start + len(data))

    def subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) from stored complete subtrees."""
        n = hi - lo
        if n <= 0:
            return hashing.EMPTY_ROOT
        if n & (n - 1) == 0 and lo % n == 0:
            h = self.store.node(n.bit_length() - 1, lo // n)
            if h is None:
                raise LedgerVerificationError(f"missing subtree [{lo}, {hi})", index=lo)
            return h
        k = hashing.split(n)
        return hashing.node_hash(self.subtree(lo, lo + k), self.subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        return self.subtree(0, self.size if size is None else size)

    def record(self, index: int) -> bytes:
        rows = self.store.records(index, index + 1)
        if not rows:
            raise LedgerVerificationError(f"no record at index {index}", index=index)
        return rows[0][1]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return hashing.inclusion_proof(index, self.size if size is None else size, self.subtree)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        return hashing.consistency_proof(old, self.size if new is None else new, self.subtree)

    def checkpoint(self, key: Ed25519PrivateKey) -> Checkpoint:
        """Sign the current tree head and remember it."""
        cp = Checkpoint(self.origin, self.size, self.root(), int(time.time() * 1000)).signed(key)
        self.store.add_checkpoint(cp.size, cp.to_text())
        return cp

    def verify(self, public: Ed25519PublicKey, *, full: bool = False,
               checkpoints: Iterable[Checkpoint] = ()) -> list[Problem]:
        """Every problem found: signatures, rollback, consistency, and with ``full`` every
        stored record and subtree recomputed from the records."""
        problems: list[Problem] = []
        size = self.size
        known = [Checkpoint.from_text(t) for _, t in self.store.checkpoints()]
        for cp in [*known, *checkpoints]:
            try:
                cp.verify_signature(public)
            except LedgerVerificationError as exc:
                problems.append(Problem(None, str(exc)))
                continue
            if cp.size > size:
                problems.append(Problem(
                    cp.size - 1, f"log holds {size} records but a checkpoint at size {cp.size} "
                    "was published: the log was rolled back", cp.root.hex(), None))
                continue
            try:
                computed = self.root(cp.size)
            except LedgerVerificationError as exc:
                problems.append(Problem(exc.index, str(exc)))
                continue
            if computed != cp.root:
                problems.append(Problem(None, f"root at checkpoint size {cp.size} differs",
                                        cp.root.hex(), computed.hex()))
        if full:
            problems += self._verify_records(size)
        return problems

    def _verify_records(self, size: int, batch: int = 65536) -> list[Problem]:
        """Recompute every leaf from its record and every stored subtree from its children."""
        problems: list[Problem] = []
        for start in range(0, size, batch):
            end = min(size, start + batch)
            rows = dict(self.store.records(start, end))
            stored = dict(self.store.nodes_at(0, start, end))
            for i in range(start, end):
                if i not in rows:
                    problems.append(Problem(i, "record missing (deleted row)",
                                            stored.get(i, b"").hex() or None, None))
                    continue
                h = hashing.leaf_hash(rows[i])
                if stored.get(i) != h:
                    problems.append(Problem(i, "record does not match its leaf hash",
                                            (stored.get(i) or b"").hex() or None, h.hex()))
        level = 1
        while (1 << level) <= size:
            width = size >> level
            for start in range(0, width, batch):
                end = min(width, start + batch)
                parents = dict(self.store.nodes_at(level, start, end))
                children = dict(self.store.nodes_at(level - 1, 2 * start, 2 * end))
                for i in range(start, end):
                    left, right = children.get(2 * i), children.get(2 * i + 1)
                    if left is None or right is None:
                        continue
                    h = hashing.node_hash(left, right)
                    if parents.get(i) != h:
                        problems.append(Problem(i << level, f"subtree at level {level} does "
                                                "not match its children",
                                                (parents.get(i) or b"").hex() or None, h.hex()))
            level += 1
        return problems
