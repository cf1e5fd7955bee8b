"""The model the service scores with: the fitted directory, its version, and its groups.

A model's version is the first 16 hex digits of its manifest's SHA-256: the manifest names every
file with its hash, so the version changes whenever anything the model learned does, and a
decision's ``model_version`` says exactly which model made it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from likelens import model as model_dir
from likelens.model import MANIFEST, Model
from likelens.service.groups import Group, groups_of_model
from likelens.service.online import Decision
from likelens.service.store import ServiceStore

# What the service keeps of the scan beside a model: enough to revise its decisions, and for
# the console to draw audit samples and show the batch verdict on a sampled like.
SCAN_COLUMNS = ("event_id", "user_id", "action", "video_id", "creator_id", "ts", "score",
                "flagged", "reasons")


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

    def likes(self) -> pa.Table | None:
        """The scan's likes (event_id as text, score, flagged): the population of audit
        samples, and what the reviewers' estimates weigh. Built once per model."""
        if not hasattr(self, "_likes"):
            e = self.scan_engagements
            self._likes = None
            if e is not None and "action" in e.schema.names:
                likes = e.filter(pc.equal(e["action"], "like"))
                self._likes = pa.table({"event_id": pc.cast(likes["event_id"], pa.string()),
                                        "score": likes["score"], "flagged": likes["flagged"]})
        return self._likes

    def scan_row(self, event_id: str) -> dict[str, Any] | None:
        """The scan's verdict on one engagement, by event id."""
        e = self.scan_engagements
        if e is None:
            return None
        if not hasattr(self, "_scan_ids"):  # the ids as text, once per model
            self._scan_ids = pc.cast(e["event_id"], pa.string())
        hit = e.filter(pc.equal(self._scan_ids, event_id))
        return hit.slice(0, 1).to_pylist()[0] if hit.num_rows else None


def version_of(path: str | Path) -> str:
    return hashlib.sha256((Path(path) / MANIFEST).read_bytes()).hexdigest()[:16]


def load_model(path: str | Path) -> LoadedModel:
    """Load and verify a model directory (``ModelError`` if it is missing or tampered)."""
    root = Path(path)
    model = model_dir.load(root)
    scan = root.parent / "engagements.parquet"
    engagements = None
    if scan.exists():
        have = set(pq.read_schema(scan).names)
        engagements = pq.read_table(scan, columns=[c for c in SCAN_COLUMNS if c in have])
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
