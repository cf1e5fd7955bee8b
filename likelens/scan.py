"""The scan pipeline: ingest → features → detectors → fusion → scores, with per-stage timings.

``scan_events`` works on an already-ingested table (the API the service and the tests use);
``scan_paths`` reads files first. Both return a ``ScanResult`` of Arrow tables; writing them is
``outputs.write``'s job, so nothing here touches the file system.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens import __version__, runtime
from likelens.detect.base import Group, Signal
from likelens.detect.registry import REGISTRY, get
from likelens.features import Features, build_features, task_shaped
from likelens.fusion import (
    Fusion,
    account_context,
    apply_fusion,
    collective_fires,
    corroborate_structures,
    explain_away,
    fit_fusion,
    organic_floor,
)
from likelens.ingest import QUARANTINE_SCHEMA, IngestResult, ingest
from likelens.model import VERSION as MODEL_VERSION
from likelens.model import Model
from likelens.score.authentic import creator_scores, video_scores
from likelens.spark.session import SparkOptions

Progress = Callable[[str], None]


@dataclass
class ScanResult:
    """Every output table of a scan, plus the summary that goes to summary.json."""

    engagements: pa.Table
    accounts: pa.Table
    groups: pa.Table
    videos: pa.Table
    creators: pa.Table
    quarantine: pa.Table
    summary: dict[str, Any]
    features: Features | None = field(default=None, repr=False)
    signals: dict[str, Signal] = field(default_factory=dict, repr=False)
    model: Model | None = field(default=None, repr=False)  # what the scan learned


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 3)


@dataclass
class Timer:
    """Wall time per named stage, in seconds, and the memory high-water mark after each.

    The high-water mark only grows: the first stage whose figure jumps is the one that set it.
    """

    stages: dict[str, float] = field(default_factory=dict)
    peak_gib: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, progress: Progress | None = None) -> Iterator[None]:
        if progress:
            progress(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - t0, 4)
            self.peak_gib[name] = peak_rss_gib()


def scan_paths(paths: Iterable[str | Path], *, key: bytes, target_fpr: float = 0.001,
               detectors: Sequence[str] | None = None, threads: int | None = None,
               progress: Progress | None = None,
               params: Mapping[str, Mapping[str, Any]] | None = None,
               model: Model | None = None, spark: SparkOptions | None = None
               ) -> tuple[ScanResult, IngestResult]:
    """Read the input files and scan them: fit and label, or with ``model`` label with what
    an earlier scan learned (``apply``). With ``spark``, ingest and the engine's aggregates
    run on Spark (``likelens.spark``); the outputs are the embedded engine's.

    The log is the largest thing a scan holds, and nothing needs it once the features are
    built: the returned ``IngestResult`` keeps its schema and count, not its rows, so that
    memory goes back before the detectors run.
    """
    timer = Timer()
    session = None
    if spark is not None:
        from likelens.spark import session as spark_session

        with timer.stage("spark start", progress):
            session = spark_session.session(spark)
    # A failure inside Spark becomes one EngineError line, not a JVM stack trace.
    with nullcontext() if session is None else spark_session.spark_errors():
        with runtime.reusing_freed_memory():
            with timer.stage("ingest", progress):
                if session is None:
                    ing = ingest(paths, key=key, threads=threads, views_apart=True)
                else:
                    from likelens.spark.ingest import ingest_spark

                    ing = ingest_spark(session, paths, key=key, partitions=spark.partitions)
            n_events = ing.n_events
            log = [ing.events] if ing.views is None else [ing.events, ing.views]
            ing.events = ing.events.schema.empty_table()
            if ing.views is not None:
                ing.views = ing.views.schema.empty_table()
            feats = _features(log, threads, timer, progress)
        spark_engine = None
        if session is not None:
            from likelens.spark.engine import SparkEngine

            feats.scale_out = spark_engine = SparkEngine(session, feats.engagements,
                                                         spark_session.partitions_of(session))
        try:
            if model is not None:
                result = _apply(feats, model, progress=progress, timer=timer,
                                quarantine=ing.quarantine, threads=threads)
            else:
                result = _scan(feats, target_fpr=target_fpr, detectors=detectors,
                               progress=progress, timer=timer, quarantine=ing.quarantine,
                               threads=threads, params=params)
        finally:
            if spark_engine is not None:  # its staged tables go, whatever happened
                spark_engine.close()
    result.summary["input"] = {"files": ing.files, "rows_read": ing.rows_read,
                               "events": n_events, "quarantined": ing.quarantine.num_rows}
    result.summary["engine"] = {"name": "embedded"} if session is None else {
        "name": "spark", "master": str(session.sparkContext.master),
        "partitions": spark_session.partitions_of(session),
        "spark_version": spark_session.version(session)}
    return result, ing


def scan_events(events: pa.Table, *, target_fpr: float = 0.001,
                detectors: Sequence[str] | None = None, threads: int | None = None,
                progress: Progress | None = None, timer: Timer | None = None,
                quarantine: pa.Table | None = None,
                params: Mapping[str, Mapping[str, Any]] | None = None) -> ScanResult:
    """Scan a canonical events table (as ``ingest`` returns it)."""
    timer = timer or Timer()
    feats = _features([events], threads, timer, progress)
    return _scan(feats, target_fpr=target_fpr, detectors=detectors, progress=progress,
                 timer=timer, quarantine=quarantine, threads=threads, params=params)


def apply_events(events: pa.Table, model: Model, *, threads: int | None = None,
                 progress: Progress | None = None, timer: Timer | None = None,
                 quarantine: pa.Table | None = None) -> ScanResult:
    """Label a canonical events table with a fitted model, learning nothing from it."""
    timer = timer or Timer()
    feats = _features([events], threads, timer, progress)
    return _apply(feats, model, progress=progress, timer=timer, quarantine=quarantine,
                  threads=threads)


def _features(log: list[pa.Table], threads: int | None, timer: Timer,
              progress: Progress | None) -> Features:
    """The features stage. ``log`` holds the events (or the engagements and the views, as
    ``ingest(..., views_apart=True)`` gives them) and is emptied, so that this stage holds
    the only reference to them (from ``scan_paths``) and they are freed when it ends."""
    with timer.stage("features", progress):
        # Popped into the call: a local here would keep the views' columns alive while
        # build_features lets go of them.
        feats = (build_features(log.pop(), threads=threads) if len(log) == 1 else
                 build_features(log.pop(0), views=log.pop(), threads=threads))
        runtime.release_freed()  # the log's last columns and the index temporaries
        return feats


def _scan(feats: Features, *, target_fpr: float, detectors: Sequence[str] | None,
          progress: Progress | None, timer: Timer, quarantine: pa.Table | None,
          threads: int | None = None,
          params: Mapping[str, Mapping[str, Any]] | None = None) -> ScanResult:
    """Fit the detectors and fusion on built features, and label the log with them."""
    names = list(detectors) if detectors else [s.name for s in REGISTRY]
    params = {n: dict((params or {}).get(n, {})) for n in names}
    with timer.stage("detect", progress), runtime.reusing_freed_memory():
        fitted = _detect(feats, names, timer, workers=1 if threads == 1 else 2,
                         work=lambda name, f: get(name).create(**params[name]).fit(f))
    signals = {name: d.signal_ for name, d in fitted.items()}
    e = feats.engagements
    with timer.stage("fusion", progress):
        columns, context, floor = _fusion_columns(feats, signals, floor=True)
        starts = {name: s.score for name, s in signals.items()}
        for s in signals.values():
            starts.update(s.components)
        fusion_model, fusion = fit_fusion(columns, starts, e["action"], context=context,
                                          target_fpr=target_fpr, floor=floor)
    model = Model(fusion_model, {n: d.get_params() for n, d in fitted.items()},
                  {n: d.state_ for n, d in fitted.items()},
                  {"fitted_on": {"engagements": int(e.num_rows)}})
    return _finish(feats, fusion, signals, model, timer, progress, quarantine, fitted=True)


def _apply(feats: Features, model: Model, *, progress: Progress | None, timer: Timer,
           quarantine: pa.Table | None, threads: int | None = None) -> ScanResult:
    """Label built features with a fitted model: each detector applies its learned state,
    fusion its tables and threshold."""
    with timer.stage("detect", progress), runtime.reusing_freed_memory():
        signals: dict[str, Signal] = _detect(
            feats, model.detectors, timer, workers=1 if threads == 1 else 2,
            work=lambda name, f: get(name).create(**model.params[name]).apply(
                f, model.states[name]))
    e = feats.engagements
    with timer.stage("fusion", progress):
        columns, context, _ = _fusion_columns(feats, signals, floor=False)
        fusion = apply_fusion(model.fusion, columns, e["action"], context=context)
    return _finish(feats, fusion, signals, model, timer, progress, quarantine, fitted=False)


def _fusion_columns(feats: Features, signals: Mapping[str, Signal], *, floor: bool
                    ) -> tuple[dict[str, np.ndarray], np.ndarray,
                               tuple[np.ndarray, np.ndarray] | None]:
    """Every detector's evidence columns with block evidence only where the account is
    corroborated (``corroborate_structures``), pile members explained away by the members with
    evidence of their own (``explain_away``), the engagements account-level evidence applies to
    (``account_context``), and when fitting (``floor``) the estimate's ``organic_floor``."""
    columns: dict[str, np.ndarray] = {}
    for s in signals.values():
        columns.update(s.columns)
    # Without views, every engagement is kept as task-shaped (for peeling), but none is known
    # to be: an export without views says nothing about any one engagement's session.
    task = task_shaped(feats) if feats.has_views else np.zeros(feats.engagements.num_rows,
                                                                  dtype=bool)
    context = account_context(columns, task)
    if not feats.has_views:
        # Nor can the log tell a rented account's owner, liking from their own phone, from the
        # farm running it: what places an engagement on the farm is its device or network.
        # The farm's accounts meeting the owner on a hot video (lockstep_met) does not.
        columns = {**columns, **{c: np.where(context, columns[c], 0.0)
                                 for c in ("dense_block", "dev_shared", "lockstep_met")
                                 if c in columns}}
    accounts = feats.account_codes  # a property that reads the column out of Arrow each time
    columns, fires = corroborate_structures(columns, accounts, collective_fires(columns, context))
    if "burst" in signals:
        columns = explain_away(columns, fires, accounts, feats.target_codes,
                               feats.engagements["ts"].to_numpy(),
                               int(signals["burst"].params["near_s"]) * 1000)
    return (columns, context,
            organic_floor(columns, fires, accounts, task) if floor else None)


def _finish(feats: Features, fusion: Fusion, signals: dict[str, Signal], model: Model,
            timer: Timer, progress: Progress | None, quarantine: pa.Table | None, *,
            fitted: bool) -> ScanResult:
    """Scores, groups, accounts, videos, creators and the summary, from the decisions."""
    e = feats.engagements
    with timer.stage("scores", progress):
        engagements = _engagement_table(e, fusion)
        groups, account_group = _groups(signals)
        accounts = _account_table(feats, engagements, account_group)
        videos = video_scores(feats.con, engagements)
        creators = creator_scores(feats.con, videos)
    summary = _summary(feats, fusion, model, groups, model.fusion.target_fpr, timer)
    summary["model"] = {"fitted_here": fitted, "format_version": MODEL_VERSION}
    return ScanResult(engagements, accounts, groups, videos, creators,
                      quarantine if quarantine is not None else QUARANTINE_SCHEMA.empty_table(),
                      summary, feats, signals, model)


def _detect(feats: Features, names: Sequence[str], timer: Timer, *, workers: int,
            work: Callable[[str, Features], Any]) -> dict[str, Any]:
    """Run ``work`` for each detector, ``workers`` at a time, each on its own DuckDB cursor.

    Detectors are independent and spend much of their time in single-threaded NumPy and
    compiled kernels, so two at a time fill the second core. A cursor does not see its parent's
    registered tables, so each registers the engagement table again (no copy). Each detector's
    own wall time goes in ``detect.<name>``; with two workers these overlap, and ``detect`` is
    the stage's wall time.
    """
    own: dict[str, float] = {}
    _ = feats.target_codes  # computed once here: each worker gets a copy of ``feats``

    def run(name: str) -> Any:
        con = feats.con.cursor()
        try:
            con.register("eng", feats.engagements)
            t0 = time.perf_counter()
            done = work(name, replace(feats, con=con))
            own[name] = round(time.perf_counter() - t0, 4)
            return done
        finally:
            con.close()

    if workers <= 1 or len(names) <= 1:
        out = {name: run(name) for name in names}
    else:
        # Costliest first (greedy longest-processing-time), so that the workers finish
        # together: in registry order burst, among the longest, started last and ran alone
        # (zoo world 1000: detect 10.2 s for 16.7 s of detector time on two workers). The
        # results keep the registry order, which fusion's components follow.
        with ThreadPoolExecutor(workers) as pool:
            jobs = {name: pool.submit(run, name)
                    for name in sorted(names, key=lambda n: -_cost(n))}
            out = {name: jobs[name].result() for name in names}
    for name in names:
        timer.stages[f"detect.{name}"] = own[name]
    return out


def _cost(name: str) -> float:
    """A detector's registered cost (``DetectorSpec.cost``); 1.0 for one not registered."""
    try:
        return get(name).cost
    except KeyError:
        return 1.0


def _engagement_table(e: pa.Table, fusion: Fusion) -> pa.Table:
    """One row per engagement with its decision. ``action`` is plain text whatever the input
    held (a Parquet dictionary, CSV text): the file's schema follows the contract, not the
    format the log came in."""
    return pa.table({
        "event_id": e["event_id"], "user_id": e["user_id"], "video_id": e["video_id"],
        "creator_id": e["creator_id"], "action": pc.cast(e["action"], pa.string()),
        "ts": e["ts"],
        "score": pa.array(np.round(fusion.probability, 6)),
        "flagged": pa.array(fusion.flagged),
        "reasons": fusion.reasons,
        # The share of the video the account watched in its view before the engagement (null
        # without one): what ranking weighs an authentic like by (likelens rank).
        "watch_frac": pc.round(pc.min_element_wise(e["watch_frac"], 1.0), 4),
    })


def _groups(signals: dict[str, Signal]) -> tuple[pa.Table, dict[Any, int]]:
    rows: list[Group] = []
    account_group: dict[Any, int] = {}
    for s in signals.values():
        offset = len(rows)  # this detector's group i becomes group offset + i
        rows.extend(s.groups)
        for acc, gi in s.account_group.items():
            account_group.setdefault(acc, offset + gi)
    table = pa.table({
        "group_id": pa.array(range(len(rows)), pa.int64()),
        "kind": pa.array([g.kind for g in rows], pa.string()),
        "accounts": pa.array([[str(a) for a in g.accounts] for g in rows],
                             pa.list_(pa.string())),
        "videos": pa.array([[str(v) for v in g.videos] for g in rows], pa.list_(pa.string())),
        "first_ts": pa.array([g.first_ts for g in rows], pa.int64()),
        "last_ts": pa.array([g.last_ts for g in rows], pa.int64()),
        "evidence": pa.array([g.evidence for g in rows], pa.string()),
        "strength": pa.array([g.strength for g in rows], pa.float64()),
    })
    return table, account_group


def _account_table(feats: Features, engagements: pa.Table, account_group: dict[Any, int]
                   ) -> pa.Table:
    con = feats.con
    con.register("scored_eng", engagements)
    acc = con.sql("""
        SELECT user_id, max(score) AS score, bool_or(flagged) AS flagged,
               count(*) AS engagements, count(*) FILTER (WHERE flagged) AS flagged_engagements,
               list_sort(list_distinct(flatten(list(reasons) FILTER (WHERE flagged))))
                   AS reasons
        FROM scored_eng GROUP BY user_id ORDER BY score DESC, user_id
    """).to_arrow_table()
    con.unregister("scored_eng")
    users = acc["user_id"].to_pylist()
    gid = pa.array([account_group.get(u) for u in users], pa.int64())
    return acc.add_column(3, "group_id", gid)


def _summary(feats: Features, fusion: Fusion, model: Model, groups: pa.Table,
             target_fpr: float, timer: Timer) -> dict[str, Any]:
    e = feats.engagements
    actions = e["action"].to_numpy(zero_copy_only=False)
    likes = actions == "like"
    return {
        "version": __version__,
        "counts": {
            "engagements": int(e.num_rows), "likes": int(likes.sum()),
            "flagged_engagements": int(fusion.flagged.sum()),
            "flagged_likes": int((fusion.flagged & likes).sum()),
            "accounts": feats.n_accounts, "groups": groups.num_rows,
        },
        "thresholds": {
            "target_fpr": target_fpr, "score_threshold": fusion.threshold,
            "estimated_organic_fpr": fusion.estimated_fpr, "tau": fusion.tau,
            "estimated_bought_share": fusion.prior,
        },
        "signals": {"views": feats.has_views, "device": feats.has_device, "ip": feats.has_ip,
                    "text": feats.has_text},
        "detectors": {n: dict(p) for n, p in model.params.items()},
        "timings_s": timer.stages,
        "peak_rss_gib": timer.peak_gib,
    }
