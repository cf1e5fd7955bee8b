"""The detector list, as data: read by the CLI (`likelens detectors`), the scanner and the tests."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from likelens.detect.base import Detector


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: its name, where its class lives, its status and what it needs."""

    name: str
    path: str
    status: str
    needs: tuple[str, ...]
    summary: str

    def create(self, **params: object) -> Detector:
        module, cls = self.path.rsplit(".", 1)
        return getattr(importlib.import_module(module), cls)(**params)  # type: ignore[no-any-return]


REGISTRY: tuple[DetectorSpec, ...] = (
    DetectorSpec("behaviour", "likelens.detect.behavior.BehaviourDetector", "stable", ("views",),
                 "watch before the like, isolated views, no view, cadence"),
    DetectorSpec("infra", "likelens.detect.infra.InfraDetector", "stable", (),
                 "devices and /24 ranges converging on the same targets; accounts per device"),
    DetectorSpec("lockstep", "likelens.detect.lockstep.LockstepDetector", "stable", (),
                 "accounts meeting on many targets of several creators within minutes"),
    DetectorSpec("dense", "likelens.detect.dense.DenseDetector", "stable", (),
                 "account-target blocks denser than a degree-preserving shuffle (FRAUDAR)"),
    DetectorSpec("text", "likelens.detect.text.TextDetector", "stable", ("text",),
                 "near-duplicate comments across accounts (character 3-grams, MinHash)"),
    DetectorSpec("burst", "likelens.detect.burst.BurstDetector", "stable", ("views",),
                 "targets piling up task-shaped engagements; hours with more likes than views"),
)


def get(name: str) -> DetectorSpec:
    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise KeyError(name)
