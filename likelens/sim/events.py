"""Columnar event batches the simulator builds and concatenates, with their labels beside them."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from likelens.schema import ACTIONS

ACTION = {a: np.int8(i) for i, a in enumerate(ACTIONS)}
KINDS = ("organic", "bot", "pool", "crowd")
KIND = {k: np.int8(i) for i, k in enumerate(KINDS)}
# Why an organic event happened (truth's ``organic_cause``): the look-alike it belongs to.
CAUSES = ("feed", "push", "share", "chat", "trend", "search", "live", "fanclub", "rewatch")
CAUSE = {c: np.int8(i) for i, c in enumerate(CAUSES)}


@dataclass
class Batch:
    """Events as parallel numpy arrays (indices into the world), plus truth for each event."""

    ts: np.ndarray        # int64 ms
    user: np.ndarray      # int64 account index
    action: np.ndarray    # int8 index into ACTIONS
    video: np.ndarray     # int64 video index, live room index offset by n_videos, -1 for follow
    creator: np.ndarray   # int64 account index of the owner
    watch: np.ndarray     # int64 ms on views, -1 elsewhere
    ip: np.ndarray        # uint32 IPv4
    device: np.ndarray    # int64 device index
    text: np.ndarray      # int32 index into the comment texts, -1 for none
    kind: np.ndarray      # int8 index into KINDS
    order: np.ndarray     # int64 order index, -1 for none
    cause: np.ndarray     # int8 index into CAUSES (organic events only)

    @property
    def n(self) -> int:
        return len(self.ts)

    @staticmethod
    def make(n: int, *, kind: str = "organic", **cols: np.ndarray) -> Batch:
        """A batch of ``n`` events; columns not given get their 'none' value."""
        def full(v: int, dt: type) -> np.ndarray:
            return np.full(n, v, dtype=dt)

        base = {
            "ts": full(0, np.int64), "user": full(0, np.int64), "action": full(0, np.int8),
            "video": full(-1, np.int64), "creator": full(-1, np.int64),
            "watch": full(-1, np.int64), "ip": full(0, np.uint32), "device": full(0, np.int64),
            "text": full(-1, np.int32), "kind": full(int(KIND[kind]), np.int8),
            "order": full(-1, np.int64), "cause": full(0, np.int8),
        }
        for k, v in cols.items():
            base[k] = np.broadcast_to(np.asarray(v), (n,)).astype(base[k].dtype, copy=True)
        return Batch(**base)

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        return Batch(**{f.name: np.concatenate([getattr(b, f.name) for b in batches])
                        for f in fields(Batch)})

    def take(self, idx: np.ndarray) -> Batch:
        return Batch(**{f.name: getattr(self, f.name)[idx] for f in fields(Batch)})
