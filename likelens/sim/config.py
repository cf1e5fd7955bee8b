"""Scenario loading: a TOML file of knobs laid over ``scenarios/default.toml``."""

from __future__ import annotations

import copy
import tomllib
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from likelens.errors import ScenarioError

Config = dict[str, Any]


def _defaults() -> Config:
    text = resources.files("likelens.sim").joinpath("scenarios/default.toml").read_text("utf-8")
    return tomllib.loads(text)


def scenario_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files("likelens.sim").joinpath("scenarios")
    return sorted(p.name[:-5] for p in folder.iterdir()
                  if p.name.endswith(".toml") and p.name != "default.toml")


def _merge(base: Config, over: Config, where: str) -> Config:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in out:
            raise ScenarioError(f"{where}: unknown knob {k!r}")
        if isinstance(v, dict):
            out[k] = _merge(out[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def load_scenario(name_or_file: str, *, users: int | None = None) -> Config:
    """Load a scenario by shipped name or TOML path; ``users`` rescales the world."""
    path = Path(name_or_file)
    if path.suffix == ".toml" or path.exists():
        try:
            over = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot load scenario ({exc})") from None
        label = path.stem
    else:
        if name_or_file not in scenario_names():
            raise ScenarioError(f"unknown scenario {name_or_file!r}; choose one of "
                                f"{', '.join(scenario_names())} or give a .toml file")
        text = resources.files("likelens.sim").joinpath(f"scenarios/{name_or_file}.toml")
        over = tomllib.loads(text.read_text("utf-8"))
        label = name_or_file
    cfg = _merge(_defaults(), over, label)
    if users is not None:
        if users < 100:
            raise ScenarioError("--users must be at least 100")
        cfg["world"]["users"] = users
    cfg["name"] = label
    try:
        cfg["world"]["start_ms"] = int(
            datetime.fromisoformat(cfg["world"]["day_start"]).timestamp() * 1000)
    except ValueError as exc:
        raise ScenarioError(f"{label}: world.day_start: {exc}") from None
    return cfg
