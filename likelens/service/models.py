"""The model the service scores with: the fitted directory, its version, and its groups.

A model's version is the first 16 hex digits of its manifest's SHA-256: the manifest names every
file with its hash, so the version changes whenever anything the model learned does, and a
decision's ``model_version`` says exactly which model made it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from likelens import model as model_dir
from likelens.model import MANIFEST, Model
from likelens.service.online import Decision
from likelens.service.store import ServiceStore


@dataclass(frozen=True)
class Group:
    """A lockstep group or dense block the model found, by user id (and target keys)."""

    id: str
    kind: str
    accounts: list[str]
    targets: list[str]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "accounts": len(self.accounts),
                "targets": len(self.targets)}

    def detail(self, offset: int, limit: int) -> dict[str, Any]:
        return self.summary() | {
            "offset": offset, "limit": limit,
            "account_ids": self.accounts[offset:offset + limit],
            "target_keys": [t.replace("\x1f", ":") for t in self.targets[offset:offset + limit]]}


@dataclass
class LoadedModel:
    path: Path
    version: str
    model: Model
    groups: list[Group]
    scan_engagements: pa.Table | None

    def __post_init__(self) -> None:
        self._by_id = {g.id: g for g in self.groups}
        self._of_user: dict[str, list[str]] = {}
        for g in self.groups:
            for u in g.accounts:
                self._of_user.setdefault(u, []).append(g.id)

    def group(self, group_id: str) -> Group | None:
        return self._by_id.get(group_id)

    def groups_of(self, user_id: str) -> list[str]:
        return self._of_user.get(user_id, [])


def version_of(path: str | Path) -> str:
    return hashlib.sha256((Path(path) / MANIFEST).read_bytes()).hexdigest()[:16]


def load_model(path: str | Path) -> LoadedModel:
    """Load and verify a model directory (``ModelError`` if it is missing or tampered)."""
    root = Path(path)
    model = model_dir.load(root)
    scan = root.parent / "engagements.parquet"
    engagements = (pq.read_table(scan, columns=["event_id", "user_id", "score", "flagged",
                                                   "reasons"])
                   if scan.exists() else None)
    return LoadedModel(root, version_of(root), model, _groups(model), engagements)


def _groups(model: Model) -> list[Group]:
    out: list[Group] = []
    st = model.states
    if "lockstep" in st and "members" in st["lockstep"].tables:
        members = st["lockstep"].tables["members"]
        by: dict[int, list[str]] = {}
        for u, g in zip(members["user_id"].to_pylist(), members["group"].to_pylist(),
                        strict=True):
            by.setdefault(int(g), []).append(str(u))
        out += [Group(f"lockstep-{g}", "lockstep", sorted(a), []) for g, a in sorted(by.items())]
    if "dense" in st and "members" in st["dense"].tables:
        t = st["dense"].tables
        accs: dict[int, list[str]] = {}
        tgts: dict[int, list[str]] = {}
        for u, b in zip(t["members"]["user_id"].to_pylist(), t["members"]["block"].to_pylist(),
                        strict=True):
            accs.setdefault(int(b), []).append(str(u))
        for k, b in zip(t["targets"]["target"].to_pylist(), t["targets"]["block"].to_pylist(),
                        strict=True):
            tgts.setdefault(int(b), []).append(str(k))
        out += [Group(f"dense-{b}", "dense", sorted(a), sorted(tgts.get(b, [])))
                for b, a in sorted(accs.items())]
    return out


def revisions_from_scan(store: ServiceStore, engagements: pa.Table) -> list[Decision]:
    """The scan's decisions on engagements the service decided otherwise: the revisions.

    An engagement counts as the same only if its event id and its account match: a scan of
    another log (ids restart at 0 in many exports) revises nothing."""
    ids = [str(x) for x in engagements["event_id"].to_pylist()]
    now = store.current(ids)
    if not now:
        return []
    users = [str(x) for x in engagements["user_id"].to_pylist()]
    flagged = engagements["flagged"].to_pylist()
    score = engagements["score"].to_pylist()
    reasons = engagements["reasons"].to_pylist()
    out = []
    for i, eid in enumerate(ids):
        if eid in now and now[eid][1] == users[i] and bool(flagged[i]) != now[eid][0]:
            why = reasons[i]
            if isinstance(why, str):
                why = json.loads(why) if why.startswith("[") else [w for w in why.split(",") if w]
            out.append(Decision(eid, 0, "", "", None, None, float(score[i] or 0.0),
                                bool(flagged[i]), list(why or [])))
    return out
