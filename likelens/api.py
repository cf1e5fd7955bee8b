"""The one application surface: scan, apply, load, and lookups over a scan's outputs.

The CLI, the benches, the service and the console call these; the policy that decides what a
run may do lives here once (which detectors exist, which parameters they take, how many bad rows
a caller tolerates, what goes into the evidence ledger). Nothing here prints: long work reports
its stage names through ``progress``, which the caller renders.

Example::

    from likelens import api
    run = api.scan(["events.parquet"], out="scan/", key=b"...")
    again = api.apply(["tomorrow.parquet"], model="scan/model", out="scan2/", key=b"...")
    found = api.load("scan/")
    found.account("user_42")        # {"user_id": ..., "score": ..., "reasons": [...], ...}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from likelens import model as model_io
from likelens.detect.registry import REGISTRY, parse_settings
from likelens.errors import InputError, SettingError, TooManyBadRows
from likelens.ingest import IngestResult
from likelens.model import Model
from likelens.scan import ScanResult
from likelens.spark.session import SparkOptions

Progress = Callable[[str], None]
TABLES = ("engagements", "accounts", "groups", "videos", "creators", "quarantine")


@dataclass
class Run:
    """A finished scan or apply: its result, what was read, and the files written."""

    result: ScanResult
    ingest: IngestResult
    paths: dict[str, Path] = field(default_factory=dict)
    ledger_records: range | None = None


def check_detectors(names: Sequence[str] | None) -> list[str] | None:
    """The detector names a caller asked for, refused when one does not exist."""
    if not names:
        return None
    known = [s.name for s in REGISTRY]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SettingError(f"unknown detector(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(known)}")
    return list(names)


def scan(inputs: Iterable[str | Path], *, key: bytes, out: str | Path | None = None,
         target_fpr: float = 0.001, detectors: Sequence[str] | None = None,
         settings: Iterable[str] = (), threads: int | None = None, report: bool = True,
         ledger: str | Path | None = None, max_bad_rows: int | None = None,
         progress: Progress | None = None, spark: SparkOptions | None = None) -> Run:
    """Fit on a log and label it; with ``out``, write the output files and ``out/model``.

    ``settings`` are ``DETECTOR.PARAM=VALUE`` strings (``--set``); they are recorded in
    summary.json and in the model. With ``spark``, the scan runs on the Spark engine.
    """
    from likelens.scan import scan_paths

    if not 0 < target_fpr < 1:
        raise SettingError(f"--target-fpr {target_fpr}: must be between 0 and 1")
    names = check_detectors(detectors)
    params = parse_settings(settings)
    if names is not None:
        off = sorted(set(params) - set(names))
        if off:
            raise SettingError(f"--set for {', '.join(off)}, which --detectors leaves out")
    result, ing = scan_paths(inputs, key=key, target_fpr=target_fpr, detectors=names,
                             threads=threads, progress=progress, params=params, spark=spark)
    return _finish(result, ing, out, report, ledger, max_bad_rows, progress)


def apply(inputs: Iterable[str | Path], *, model: str | Path | Model, key: bytes,
          out: str | Path | None = None, threads: int | None = None, report: bool = True,
          ledger: str | Path | None = None, max_bad_rows: int | None = None,
          progress: Progress | None = None, spark: SparkOptions | None = None) -> Run:
    """Label a log with a saved model (learning nothing from it); the same output files as
    ``scan``, without a model of their own. With ``spark``, on the Spark engine."""
    from likelens.scan import scan_paths

    fitted = model if isinstance(model, Model) else model_io.load(model)
    result, ing = scan_paths(inputs, key=key, threads=threads, progress=progress,
                             model=fitted, spark=spark)
    if not isinstance(model, Model):
        result.summary["model"]["path"] = str(Path(model).resolve())
    return _finish(result, ing, out, report, ledger, max_bad_rows, progress)


def _finish(result: ScanResult, ing: IngestResult, out: str | Path | None, report: bool,
            ledger: str | Path | None, max_bad_rows: int | None,
            progress: Progress | None) -> Run:
    """Write the outputs, append to the ledger, then apply the bad-row limit (after writing,
    so that the quarantine the caller needs to read is there)."""
    from likelens import outputs

    run = Run(result, ing)
    if out is not None:
        if progress:
            progress("writing outputs")
        run.paths = outputs.write(result, Path(out), report=report)
        if result.model is not None and result.summary["model"]["fitted_here"]:
            run.paths["model"] = model_io.save(result.model, Path(out) / "model")
    if ledger is not None:
        from likelens.ledger.api import Ledger, record_scan

        if progress:
            progress("appending to the evidence ledger")
        run.ledger_records = record_scan(Ledger(Path(ledger)), result.summary,
                                         result.engagements, result.groups, ing.files)
    check_bad_rows(run, max_bad_rows)
    return run


def check_bad_rows(run: Run, max_bad_rows: int | None) -> None:
    """Refuse a run that quarantined more rows than the caller tolerates (exit 3). Callers
    that print a summary first call this after printing; ``scan`` and ``apply`` call it when
    given ``max_bad_rows``."""
    n = run.ingest.quarantine.num_rows
    if max_bad_rows is not None and n > max_bad_rows:
        where = f"; see {run.paths['quarantine']}" if "quarantine" in run.paths else ""
        raise TooManyBadRows(f"{n} rows quarantined, more than --max-bad-rows "
                             f"{max_bad_rows}{where}")


@dataclass
class Scan:
    """A scan's output files, read back: the tables, the summary, and lookups by id."""

    root: Path
    summary: dict[str, Any]
    tables: dict[str, pa.Table]

    @property
    def engagements(self) -> pa.Table:
        return self.tables["engagements"]

    @property
    def accounts(self) -> pa.Table:
        return self.tables["accounts"]

    @property
    def groups(self) -> pa.Table:
        return self.tables["groups"]

    @property
    def videos(self) -> pa.Table:
        return self.tables["videos"]

    @property
    def creators(self) -> pa.Table:
        return self.tables["creators"]

    def _one(self, table: str, column: str, value: Any) -> dict[str, Any] | None:
        t = self.tables[table]
        probe = _as(value, t[column].type)
        if probe is None:
            return None
        rows = t.filter(pc.equal(t[column], probe))
        return rows.slice(0, 1).to_pylist()[0] if rows.num_rows else None

    def engagement(self, event_id: int) -> dict[str, Any] | None:
        return self._one("engagements", "event_id", event_id)

    def account(self, user_id: Any) -> dict[str, Any] | None:
        return self._one("accounts", "user_id", user_id)

    def video(self, video_id: Any) -> dict[str, Any] | None:
        return self._one("videos", "video_id", video_id)

    def creator(self, creator_id: Any) -> dict[str, Any] | None:
        return self._one("creators", "creator_id", creator_id)

    def group(self, group_id: int) -> dict[str, Any] | None:
        return self._one("groups", "group_id", group_id)

    def engagements_of(self, column: str, value: Any) -> pa.Table:
        """Every engagement whose ``column`` (user_id, video_id, creator_id) is ``value``."""
        col = self.engagements[column]
        probe = _as(value, col.type)
        if probe is None:
            return self.engagements.slice(0, 0)
        return self.engagements.filter(pc.equal(col, probe))


def _as(value: Any, to: pa.DataType) -> pa.Scalar | None:
    """``value`` as a scalar of the column's type; None when it cannot be one (a text id
    looked up in an integer column matches nothing)."""
    try:
        return pa.scalar(value).cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def load(scan_dir: str | Path) -> Scan:
    """Read a scan's output directory (for tools that did not run the scan)."""
    root = Path(scan_dir)
    summary_path = root / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a scan directory (no summary.json)", file=str(root)) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable ({exc})", file=str(summary_path)) from None
    tables: dict[str, pa.Table] = {}
    for name in TABLES:
        path = root / f"{name}.parquet"
        try:
            tables[name] = pq.read_table(path)
        except FileNotFoundError:
            raise InputError("missing from the scan directory", file=str(path)) from None
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"unreadable ({exc})", file=str(path)) from None
    return Scan(root, summary, tables)


def settings_help() -> Mapping[str, dict[str, Any]]:
    """Every detector's parameters and defaults (what ``--set`` accepts)."""
    return {s.name: s.create().get_params() for s in REGISTRY}
