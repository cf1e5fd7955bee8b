"""The model the service scores with: the fitted directory, its version, and its groups.

A model's version is the first 16 hex digits of its manifest's SHA-256: the manifest names every
file with its hash, so the version changes whenever anything the model learned does, and a
decision's ``model_version`` says exactly which model made it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from likelens import model as model_dir
from likelens.model import MANIFEST, Model
from likelens.service.groups import Group, groups_of_model
from likelens.service.online import Decision
from likelens.service.store import ServiceStore


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
    return LoadedModel(root, version_of(root), model, groups_of_model(model), engagements)


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
            out.append(Decision(eid, 0, "", "", None, None, float(score[i] or 0.0),
                                bool(flagged[i]), list(reasons[i] or [])))
    return out
