"""The detector list, as data: read by the CLI (`likelens detectors`), the scanner and the tests."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from likelens.detect.base import Detector
from likelens.errors import SettingError


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: its name, where its class lives, its status and what it needs."""

    name: str
    path: str
    status: str
    needs: tuple[str, ...]
    summary: str
    # Its seconds in the detect stage on the 20M-event platform day (bench/perf.md): the scan
    # starts the costliest first, so that its two workers finish together. Order only.
    cost: float = 1.0

    def create(self, **params: object) -> Detector:
        module, cls = self.path.rsplit(".", 1)
        return getattr(importlib.import_module(module), cls)(**params)  # type: ignore[no-any-return]


REGISTRY: tuple[DetectorSpec, ...] = (
    DetectorSpec("behaviour", "likelens.detect.behavior.BehaviourDetector", "stable", ("views",),
                 "watch before the like, isolated views, no view, cadence",
                 cost=1.2),
    DetectorSpec("infra", "likelens.detect.infra.InfraDetector", "stable", (),
                 "devices and /24 ranges converging on the same targets; accounts per device",
                 cost=1.7),
    DetectorSpec("lockstep", "likelens.detect.lockstep.LockstepDetector", "stable", (),
                 "accounts meeting on many targets of several creators within minutes",
                 cost=3.3),
    DetectorSpec("dense", "likelens.detect.dense.DenseDetector", "stable", (),
                 "account-target blocks denser than a degree-preserving shuffle (FRAUDAR)",
                 cost=1.6),
    DetectorSpec("text", "likelens.detect.text.TextDetector", "stable", ("text",),
                 "near-duplicate comments across accounts (character 3-grams, MinHash)",
                 cost=1.0),
    DetectorSpec("burst", "likelens.detect.burst.BurstDetector", "stable", ("views",),
                 "targets piling up task-shaped engagements; hours with more likes than views",
                 cost=2.3),
)


def get(name: str) -> DetectorSpec:
    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise KeyError(name)


def _cast(text: str, default: Any, where: str) -> Any:
    """``text`` as the type of the parameter's default."""
    try:
        if isinstance(default, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise SettingError(f"--set {where}: {text!r} is not a {type(default).__name__}") from None
    return text


def parse_settings(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``DETECTOR.PARAM=VALUE`` strings to parameters per detector, checked against the
    detectors' own constructors: an unknown name fails with the list of valid ones."""
    out: dict[str, dict[str, Any]] = {}
    names = [spec.name for spec in REGISTRY]
    for item in items:
        key, sep, text = item.partition("=")
        det, dot, param = key.strip().partition(".")
        if not sep or not dot or not param:
            raise SettingError(f"--set {item!r}: expected DETECTOR.PARAM=VALUE, e.g. "
                               "lockstep.window_s=300")
        if det not in names:
            raise SettingError(f"--set {item!r}: no detector {det!r}; detectors: "
                               + ", ".join(names))
        defaults = get(det).create().get_params()
        if param not in defaults:
            raise SettingError(f"--set {item!r}: {det} has no parameter {param!r}; its "
                               "parameters: " + ", ".join(sorted(defaults)))
        out.setdefault(det, {})[param] = _cast(text.strip(), defaults[param], key)
    return out
