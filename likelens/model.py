"""A fitted model as a directory: what a scan learned, to score other logs without refitting.

Layout (every file named in the manifest with its SHA-256)::

    model/
      manifest.json                    format, version, likelens version, files and hashes
      fusion.json                      the mixture's bin tables, weights and threshold
      detectors/NAME.json              the detector's parameters and learned values
      detectors/NAME.TABLE.parquet     learned tables (dense blocks, lockstep groups)

Only JSON and Parquet: nothing is unpickled, so a model from elsewhere cannot run code. A model
whose files do not match its manifest, or of a format version this LikeLens does not read, is
refused (``ModelError``, exit 2) before anything is scored with it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from likelens import __version__
from likelens.detect.base import State
from likelens.errors import ModelError
from likelens.fusion import FusionModel

FORMAT = "likelens-model"
VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class Model:
    """Fusion's tables, and per detector its parameters and learned state."""

    fusion: FusionModel
    params: dict[str, dict[str, Any]]
    states: dict[str, State]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def detectors(self) -> list[str]:
        return list(self.params)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite floats refused (JSON has none)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot store the non-finite value {value!r} in a model")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(model: Model, path: str | Path) -> Path:
    """Write ``model`` under ``path`` (created; files of an older model there are replaced).

    The manifest is written last, so a directory whose writing was interrupted has no manifest
    and is refused rather than half read.
    """
    root = Path(path)
    (root / "detectors").mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)
    files: list[str] = []

    def write_json(rel: str, obj: Any) -> None:
        (root / rel).write_text(json.dumps(_plain(obj), indent=1, sort_keys=True) + "\n")
        files.append(rel)

    write_json("fusion.json", model.fusion.to_dict())
    for name, params in model.params.items():
        state = model.states.get(name, State())
        write_json(f"detectors/{name}.json", {"params": params, "values": state.values,
                                              "tables": sorted(state.tables)})
        for tname, table in sorted(state.tables.items()):
            rel = f"detectors/{name}.{tname}.parquet"
            pq.write_table(table, root / rel)
            files.append(rel)
    manifest = {"format": FORMAT, "version": VERSION, "likelens": __version__,
                "detectors": list(model.params), "info": model.info,
                "files": {rel: _sha256(root / rel) for rel in files}}
    (root / MANIFEST).write_text(json.dumps(_plain(manifest), indent=1, sort_keys=True) + "\n")
    return root


def _read_json(root: Path, rel: str) -> Any:
    try:
        return json.loads((root / rel).read_text())
    except FileNotFoundError:
        raise ModelError(f"{root / rel}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{root / rel}: not readable JSON ({exc})") from None


def load(path: str | Path) -> Model:
    """Read and check a model directory: manifest, version, every file's hash."""
    root = Path(path)
    if not root.is_dir():
        raise ModelError(f"{root}: not a model directory")
    manifest = _read_json(root, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelError(f"{root / MANIFEST}: not a LikeLens model manifest")
    if manifest.get("version") != VERSION:
        raise ModelError(f"{root / MANIFEST}: model format version {manifest.get('version')!r};"
                         f" this LikeLens reads version {VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or "fusion.json" not in files:
        raise ModelError(f"{root / MANIFEST}: no file list")
    for rel, digest in files.items():
        target = root / rel
        if ".." in Path(rel).parts or not target.is_file():
            raise ModelError(f"{target}: listed in the manifest but missing")
        if _sha256(target) != digest:
            raise ModelError(f"{target}: does not match the manifest's SHA-256 (changed after "
                             "the model was written)")
    try:
        fusion = FusionModel.from_dict(_read_json(root, "fusion.json"))
        params: dict[str, dict[str, Any]] = {}
        states: dict[str, State] = {}
        for name in manifest["detectors"]:
            d = _read_json(root, f"detectors/{name}.json")
            tables: dict[str, pa.Table] = {}
            for tname in d["tables"]:
                rel = f"detectors/{name}.{tname}.parquet"
                if rel not in files:
                    raise ModelError(f"{root / rel}: not in the manifest")
                tables[tname] = pq.read_table(root / rel)
            params[name] = dict(d["params"])
            states[name] = State(dict(d["values"]), tables)
    except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
        raise ModelError(f"{root}: malformed model ({exc})") from None
    return Model(fusion, params, states, dict(manifest.get("info") or {}))
