"""Ledger storage: records and every complete subtree hash, in SQLite (WAL) or in memory.

A node (level, idx) is the hash of leaves [idx·2^level, (idx+1)·2^level); it is stored once the
subtree is complete and never changes, so any MTH(D[lo:hi]) needs O(log n) lookups. Leaf hashes
(level 0) sit beside their records; only levels 1 and up have rows of their own. Appends are
one transaction: a crash leaves the log as it was before the batch (SQLite's atomic commit).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol


class Store(Protocol):
    """What the log needs from storage."""

    def size(self) -> int: ...
    def append(self, records: Sequence[bytes], leaves: Sequence[bytes],
               nodes: Iterable[tuple[int, int, bytes]]) -> None: ...
    def node(self, level: int, idx: int) -> bytes | None: ...
    def records(self, start: int, end: int) -> list[tuple[int, bytes]]: ...
    def nodes_at(self, level: int, start: int, end: int) -> list[tuple[int, bytes]]: ...
    def add_checkpoint(self, size: int, text: str) -> None: ...
    def checkpoints(self) -> list[tuple[int, str]]: ...


class MemoryStore:
    """The in-memory twin, for fast tests."""

    def __init__(self) -> None:
        self._records: dict[int, bytes] = {}
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._checkpoints: dict[int, str] = {}

    def size(self) -> int:
        return len(self._records)

    def append(self, records: Sequence[bytes], leaves: Sequence[bytes],
               nodes: Iterable[tuple[int, int, bytes]]) -> None:
        start = len(self._records)
        for i, (r, h) in enumerate(zip(records, leaves, strict=True)):
            self._records[start + i] = r
            self._nodes[(0, start + i)] = h
        for level, idx, h in nodes:
            self._nodes[(level, idx)] = h

    def node(self, level: int, idx: int) -> bytes | None:
        return self._nodes.get((level, idx))

    def records(self, start: int, end: int) -> list[tuple[int, bytes]]:
        return [(i, self._records[i]) for i in range(start, end) if i in self._records]

    def nodes_at(self, level: int, start: int, end: int) -> list[tuple[int, bytes]]:
        return [(i, self._nodes[(level, i)]) for i in range(start, end)
                if (level, i) in self._nodes]

    def add_checkpoint(self, size: int, text: str) -> None:
        self._checkpoints[size] = text

    def checkpoints(self) -> list[tuple[int, str]]:
        return sorted(self._checkpoints.items())


class SqliteStore:
    """SQLite in WAL mode: one file, concurrent readers, atomic batches."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.con = sqlite3.connect(self.path, isolation_level=None)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute("PRAGMA cache_size=-262144")  # 256 MiB: B-tree inserts stay in memory
        self.con.executescript("""
            CREATE TABLE IF NOT EXISTS records (idx INTEGER PRIMARY KEY, data BLOB NOT NULL,
                leaf BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL,
                hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, text TEXT NOT NULL);
        """)

    def size(self) -> int:
        row = self.con.execute("SELECT coalesce(max(idx) + 1, 0) FROM records").fetchone()
        return int(row[0])

    def append(self, records: Sequence[bytes], leaves: Sequence[bytes],
               nodes: Iterable[tuple[int, int, bytes]]) -> None:
        start = self.size()
        self.con.execute("BEGIN IMMEDIATE")
        try:
            self.con.executemany("INSERT INTO records (idx, data, leaf) VALUES (?, ?, ?)",
                                 ((start + i, r, h) for i, (r, h) in
                                  enumerate(zip(records, leaves, strict=True))))
            self.con.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def node(self, level: int, idx: int) -> bytes | None:
        if level == 0:
            row = self.con.execute("SELECT leaf FROM records WHERE idx = ?", (idx,)).fetchone()
        else:
            row = self.con.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?",
                                   (level, idx)).fetchone()
        return bytes(row[0]) if row else None

    def records(self, start: int, end: int) -> list[tuple[int, bytes]]:
        return [(int(i), bytes(d)) for i, d in self.con.execute(
            "SELECT idx, data FROM records WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end))]

    def nodes_at(self, level: int, start: int, end: int) -> list[tuple[int, bytes]]:
        if level == 0:
            rows = self.con.execute("SELECT idx, leaf FROM records WHERE idx >= ? AND idx < ? "
                                    "ORDER BY idx", (start, end))
        else:
            rows = self.con.execute("SELECT idx, hash FROM nodes WHERE level = ? AND idx >= ? "
                                    "AND idx < ? ORDER BY idx", (level, start, end))
        return [(int(i), bytes(h)) for i, h in rows]

    def add_checkpoint(self, size: int, text: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO checkpoints (size, text) VALUES (?, ?)",
                         (size, text))

    def checkpoints(self) -> list[tuple[int, str]]:
        return [(int(s), t) for s, t in
                self.con.execute("SELECT size, text FROM checkpoints ORDER BY size")]

    def close(self) -> None:
        self.con.close()
