"""The groups a fitted model found, by user id: lockstep groups and dense blocks (with their
targets). Read once from the model's tables, for the API's group pages and for the online
scorer's membership lookups alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from likelens.model import Model


@dataclass(frozen=True)
class Group:
    """A lockstep group or dense block the model found, by user id (and target keys)."""

    id: str
    kind: str  # "lockstep" | "dense"
    block: int
    accounts: list[str]
    targets: list[str]  # "action\x1fvideo" (or creator for follows); empty for lockstep

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "accounts": len(self.accounts),
                "targets": len(self.targets)}

    def detail(self, offset: int, limit: int) -> dict[str, Any]:
        return self.summary() | {
            "offset": offset, "limit": limit,
            "account_ids": self.accounts[offset:offset + limit],
            "target_keys": [t.replace("\x1f", ":") for t in self.targets[offset:offset + limit]]}


def groups_of_model(model: Model) -> list[Group]:
    """Every lockstep group and dense block of ``model``, in the model's order."""
    out: list[Group] = []
    st = model.states
    if "lockstep" in st and "members" in st["lockstep"].tables:
        members = st["lockstep"].tables["members"]
        by: dict[int, list[str]] = {}
        for u, g in zip(members["user_id"].to_pylist(), members["group"].to_pylist(),
                        strict=True):
            by.setdefault(int(g), []).append(str(u))
        out += [Group(f"lockstep-{g}", "lockstep", g, sorted(a), [])
                for g, a in sorted(by.items())]
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
        out += [Group(f"dense-{b}", "dense", b, sorted(a), sorted(tgts.get(b, [])))
                for b, a in sorted(accs.items())]
    return out
