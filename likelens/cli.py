"""The ``likelens`` command: one small function per verb over the in-process API.

Errors: every ``LikeLensError`` is caught once, in ``main``, and printed as one line on stderr
with the exit code DESIGN.md fixes (2 bad usage or input, 3 too many bad rows).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from likelens import __version__
from likelens.errors import InputError, LikeLensError, SettingError

if TYPE_CHECKING:
    from likelens.api import Run
    from likelens.spark.session import SparkOptions

err = Console(stderr=True)
out = Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="likelens")
def cli() -> None:
    """LikeLens tells which likes on a short-video platform are real.

    \b
    Typical run:
      likelens simulate --scenario demo --seed 1 --out sim/
      likelens scan sim/events.parquet --out scan/
      likelens eval --truth sim/truth.parquet scan/
    """


@cli.command()
@click.option("--scenario", default="demo", show_default=True,
              help="Shipped scenario name (see --list) or a .toml file.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed.")
@click.option("--users", type=int, default=None, help="Scale the world to this many users.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Directory for events.parquet and truth.parquet (required unless --list).")
@click.option("--stats", is_flag=True, help="Print like rate, completion and market figures.")
@click.option("--list", "list_", is_flag=True, help="List the shipped scenarios and exit.")
def simulate(scenario: str, seed: int, users: int | None, out_dir: Path | None, stats: bool,
             list_: bool) -> None:
    """Simulate a platform day with a labelled like market inside it.

    Writes events.parquet (the input contract) and truth.parquet (labels, kept apart) into
    --out. The market exists only here, as synthetic data: nothing touches a real platform.

    \b
    Example:
      likelens simulate --scenario baseline --seed 7 --out sim/
      likelens simulate --scenario zoo --seed 12 --out zoo/   # a randomised look-alike world
    """
    from likelens import sim

    if list_:
        for name in sim.scenario_names():
            out.print(name)
        return
    if out_dir is None:
        raise click.UsageError("Missing option '--out'.")
    cfg = sim.load_scenario(scenario, users=users)
    with err.status(f"simulating {cfg['name']} with {cfg['world']['users']:,} users"):
        result = sim.simulate(cfg, seed)
        paths = sim.write(result, out_dir)
    err.print(f"{result.events.num_rows:,} events -> {paths['events']}")
    err.print(f"truth -> {paths['truth']}")
    if stats:
        from likelens.sim.stats import stats_table

        out.print(stats_table(result))


def _run_options(f: Callable[..., None]) -> Callable[..., None]:
    """The options scan and apply share: inputs, outputs, key, limits, report, ledger."""
    options = [
        click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path)),
        click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
                     help="Directory for the output files."),
        click.option("--key-file", type=click.Path(path_type=Path), default=None,
                     help="Key for pseudonymising IPs and devices (else $LIKELENS_KEY, else "
                          "the demo key); apply needs the scan's key, so that ids line up."),
        click.option("--max-bad-rows", type=int, default=None,
                     help="Exit 3 when more rows than this are quarantined."),
        click.option("--threads", type=int, default=None,
                     help="Threads for DuckDB (default: all)."),
        click.option("--profile", is_flag=True, help="Print the time each stage took."),
        click.option("--no-report", is_flag=True, help="Skip report.html."),
        click.option("--ledger", "ledger_dir", type=click.Path(path_type=Path), default=None,
                     help="Append the groups and decisions to the evidence ledger in DIR."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _engine_options(f: Callable[..., None]) -> Callable[..., None]:
    """The options that choose where scan and apply run (docs/spark.md)."""
    options = [
        click.option("--engine", type=click.Choice(["embedded", "spark"]), default="embedded",
                     show_default=True,
                     help="Where the pipeline runs: in this process (DuckDB + numba) or on "
                          "Apache Spark (the `spark` extra and Java); the outputs are the "
                          "same."),
        click.option("--master", default=None,
                     help="Spark master URL with --engine spark (local[N], spark://…, yarn, "
                          "k8s://…; default: local[*], every core here)."),
        click.option("--partitions", type=click.IntRange(1), default=None,
                     help="Spark shuffle partitions with --engine spark (default: Spark's)."),
        click.option("--spark-conf", "spark_conf", multiple=True, metavar="KEY=VALUE",
                     help="A further Spark setting with --engine spark, e.g. "
                          "spark.executor.memory=8g (repeatable)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command()
@_run_options
@click.option("--target-fpr", type=float, default=0.001, show_default=True,
              help="Target organic false-positive rate that sets the flag threshold.")
@click.option("--detectors", default=None,
              help="Comma-separated detectors to run (default: all; see `likelens detectors`).")
@click.option("--set", "settings", multiple=True, metavar="DETECTOR.PARAM=VALUE",
              help="A detector parameter, e.g. lockstep.window_s=300 (repeatable; "
                   "`likelens detectors --params` lists them).")
@_engine_options
def scan(inputs: tuple[Path, ...], out_dir: Path, key_file: Path | None,
         max_bad_rows: int | None, target_fpr: float, detectors: str | None,
         threads: int | None, profile: bool, no_report: bool, ledger_dir: Path | None,
         settings: tuple[str, ...], engine: str, master: str | None, partitions: int | None,
         spark_conf: tuple[str, ...]) -> None:
    """Find bought engagement in an engagement log and score authentic engagement.

    INPUTS are Parquet, CSV or JSON Lines files, or directories of them, read as one log.
    Rows that break the input contract go to quarantine.parquet with their reason. What the
    scan learned goes to OUT/model, for `likelens apply` on later logs.

    \b
    Example:
      likelens scan events.parquet --out scan/ --target-fpr 0.001
      likelens scan events.parquet --out scan/ --set lockstep.window_s=300
      likelens scan logs/ --out scan/ --engine spark --master local[2] --partitions 8
    """
    from likelens import api, runtime
    from likelens.privacy import load_key

    runtime.enable()
    names = [d.strip() for d in detectors.split(",")] if detectors else None
    key = load_key(key_file)
    spark = _spark_options(engine, master, partitions, spark_conf)
    with err.status("scanning") as status:
        run = api.scan(inputs, key=key, out=out_dir, target_fpr=target_fpr, detectors=names,
                       settings=settings, threads=threads, report=not no_report,
                       ledger=ledger_dir, max_bad_rows=None, spark=spark,
                       progress=lambda stage: status.update(f"scanning: {stage}"))
    _report_run(run, profile, ledger_dir, max_bad_rows)


def _spark_options(engine: str, master: str | None, partitions: int | None,
                   conf: tuple[str, ...]) -> SparkOptions | None:
    """``--engine spark``'s settings, checked before anything runs (exit 2 with what to
    install when Spark cannot run here)."""
    from likelens.spark.session import SparkOptions, require

    if engine != "spark":
        if conf or partitions is not None or master is not None:
            raise SettingError("--master, --partitions and --spark-conf need --engine spark")
        return None
    require()
    pairs = {}
    for item in conf:
        k, sep, v = item.partition("=")
        if not sep or not k.strip().startswith("spark."):
            raise SettingError(f"--spark-conf {item!r}: expected spark.KEY=VALUE")
        pairs[k.strip()] = v.strip()
    return SparkOptions(master=master or "local[*]", partitions=partitions, conf=pairs)


@cli.command(name="apply")
@_run_options
@click.option("--model", "model_dir", type=click.Path(path_type=Path), required=True,
              help="A model directory written by `likelens scan` (SCAN_DIR/model).")
@_engine_options
def apply_cmd(inputs: tuple[Path, ...], model_dir: Path, out_dir: Path, key_file: Path | None,
              max_bad_rows: int | None, threads: int | None, profile: bool, no_report: bool,
              ledger_dir: Path | None, engine: str, master: str | None,
              partitions: int | None, spark_conf: tuple[str, ...]) -> None:
    """Score a log with a saved model, learning nothing from it.

    The detectors use what they learned (conversion ceilings, the lockstep threshold and
    groups, dense blocks, the device-sharing rate) and fusion its tables and threshold; the
    output files are scan's. On the log the model was fitted on, the flags and scores are the
    scan's exactly. A model whose files do not match its manifest exits 2.

    \b
    Example:
      likelens scan monday.parquet --out mon/
      likelens apply tuesday.parquet --model mon/model --out tue/
      likelens apply tuesday/ --model mon/model --out tue/ --engine spark --master local[4]
    """
    from likelens import api, runtime
    from likelens.privacy import load_key

    runtime.enable()
    key = load_key(key_file)
    spark = _spark_options(engine, master, partitions, spark_conf)
    with err.status("applying") as status:
        run = api.apply(inputs, model=model_dir, key=key, out=out_dir, threads=threads,
                        report=not no_report, ledger=ledger_dir, max_bad_rows=None,
                        spark=spark,
                        progress=lambda stage: status.update(f"applying: {stage}"))
    _report_run(run, profile, ledger_dir, max_bad_rows)


def _report_run(run: Run, profile: bool, ledger_dir: Path | None,
                max_bad_rows: int | None) -> None:
    """What a scan or apply prints: the counts, the timings, the report's path; then the
    bad-row limit (after the files a user needs to look into it are written)."""
    result, ing, paths = run.result, run.ingest, run.paths
    if run.ledger_records is not None:
        r = run.ledger_records
        err.print(f"ledger: records {r.start}..{r.stop - 1} appended to {ledger_dir}")
    c = result.summary["counts"]
    err.print(f"{result.summary['input']['events']:,} events, "
              f"{ing.quarantine.num_rows:,} quarantined; "
              f"{c['flagged_likes']:,} of {c['likes']:,} likes flagged")
    if profile:
        t = Table(title="stage timings")
        t.add_column("stage")
        t.add_column("seconds", justify="right")
        t.add_column("peak RSS GiB", justify="right")
        peaks = result.summary.get("peak_rss_gib", {})
        for stage, secs in result.summary["timings_s"].items():
            peak = f"{peaks[stage]:.2f}" if stage in peaks else "-"
            t.add_row(stage, f"{secs:.3f}", peak)
        err.print(t)
    if "model" in paths:
        err.print(f"model: {paths['model']}")
    if "report" in paths:
        out.print(f"report: {paths['report'].resolve()}")
    from likelens.api import check_bad_rows

    check_bad_rows(run, max_bad_rows)


@cli.command("eval")
@click.option("--truth", "truth", type=click.Path(path_type=Path), required=True,
              help="truth.parquet written by `likelens simulate`.")
@click.argument("scan_dir", type=click.Path(path_type=Path))
@click.option("--action", default="like", show_default=True, help="Which engagements to score.")
def eval_(truth: Path, scan_dir: Path, action: str) -> None:
    """Score a scan against simulator truth: precision, recall, F1, organic FPR, AUC-PR.

    Split by supply kind (bot, pool, crowd) and by package size. Also writes quality.json into
    SCAN_DIR; for a zoo world, the organic likes flagged per organic cause too
    (quality_causes.json).

    \b
    Example:
      likelens eval --truth sim/truth.parquet scan/
    """
    import json
    from dataclasses import asdict

    from likelens.evaluate import evaluate, format_table, organic_causes

    rows = evaluate(truth, scan_dir, action=action)
    click.echo(f"quality over {action}s (organic FPR: share of organic {action}s flagged)")
    click.echo(format_table(rows))
    (scan_dir / "quality.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    causes = organic_causes(truth, scan_dir, action=action)
    if causes:  # a zoo world: attribute every false positive to its organic cause
        click.echo(f"\norganic {action}s flagged, by cause (truth's organic_cause)")
        for cause, (flagged, n) in causes.items():
            click.echo(f"  {cause:<10}{flagged:>8,} of {n:>9,}  {flagged / n:>8.3%}")
        (scan_dir / "quality_causes.json").write_text(json.dumps(
            {c: {"flagged": f, "total": n} for c, (f, n) in causes.items()}, indent=2))


def publish(out_md: Path, text: str) -> None:
    """A benchmark's markdown: written to its report file and printed."""
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text + "\n", encoding="utf-8")
    click.echo(text)


@cli.group()
def bench() -> None:
    """Benchmarks that print their figures (quality here; speed lives in bench/perf.py)."""


@bench.command("quality")
@click.option("--scenarios", default=None,
              help="Comma-separated scenarios (default: every shipped scenario).")
@click.option("--seed", type=int, default=101, show_default=True,
              help="Seed; the tests never use it, so nothing was tuned on it.")
@click.option("--max-users", type=int, default=30000, show_default=True,
              help="Cap on a scenario's world size (platform-day is sized for speed work).")
@click.option("--out", "out_md", type=click.Path(path_type=Path),
              default=Path("bench/quality.md"), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("bench/work"),
              show_default=True, help="Where the simulated days are written.")
def bench_quality(scenarios: str | None, seed: int, max_users: int, out_md: Path,
                  work: Path) -> None:
    """Every scenario against fusion, each detector alone, and the baselines.

    Writes a markdown table (precision, recall, F1, organic FPR, the fusion's own FPR
    estimate, recall by supply kind and for 10-like orders) to --out.

    \b
    Example:
      likelens bench quality --scenarios baseline,adaptive --seed 101
    """
    import platform

    from likelens import sim
    from likelens.bench import markdown, run_scenario

    names = scenarios.split(",") if scenarios else sim.scenario_names()
    results = []
    with err.status("bench") as status:
        for name in names:
            users = min(sim.load_scenario(name)["world"]["users"], max_users)
            results += run_scenario(name, seed, users, work,
                                    progress=lambda s: status.update(f"bench: {s}"))
    header = (f"# Detection quality\n\nProduced by `likelens bench quality --seed {seed} "
              f"--max-users {max_users}` (likelens {__version__}, Python "
              f"{platform.python_version()}). Metrics over likes; organic FPR is the share of "
              "organic likes flagged; est. FPR is the fusion's label-free estimate.")
    publish(out_md, markdown(results, header))


@bench.command("robustness")
@click.option("--worlds", type=int, default=60, show_default=True,
              help="How many zoo worlds to draw (seeds --first-seed, --first-seed + 1, ...).")
@click.option("--first-seed", type=int, default=1000, show_default=True,
              help="Seed of the first world; the tests use other seeds.")
@click.option("--users", type=int, default=15000, show_default=True,
              help="Users per world (each world draws everything else itself).")
@click.option("--out", "out_md", type=click.Path(path_type=Path),
              default=Path("bench/robustness.md"), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("bench/work"),
              show_default=True, help="Where the simulated worlds are written.")
@click.option("--fake-like-share", type=click.FloatRange(0.0, 0.9), default=None,
              help="Set every world's market to this share of the likes, after drawing the "
                   "rest (the zoo draws 0.03-0.15): a heavy market, e.g. 0.4.")
def bench_robustness(worlds: int, first_seed: int, users: int, out_md: Path,
                     work: Path, fake_like_share: float | None) -> None:
    """Quality across randomised worlds of the organic look-alike zoo.

    Each world (`likelens simulate --scenario zoo --seed N`) draws its own organic crowds,
    platform shape and market adaptations; each is scanned with default settings. Writes per
    world F1, organic FPR, recall per supply kind and for 10-like orders, the label-free FPR
    estimate against the truth, the median and worst world, and per organic cause the share of
    its likes flagged.

    \b
    Example:
      likelens bench robustness --worlds 60
    """
    import platform

    from likelens.robustness import markdown, run

    if worlds < 1:
        raise click.BadParameter("must be at least 1", param_hint="--worlds")
    seeds = list(range(first_seed, first_seed + worlds))
    with err.status("bench robustness") as status:
        results = run(seeds, users, work,
                      progress=lambda s: status.update(f"bench robustness: {s}"),
                      fake_like_share=fake_like_share)
    market = "" if fake_like_share is None else f" --fake-like-share {fake_like_share:g}"
    header = (f"# Robustness across zoo worlds\n\nProduced by `likelens bench robustness "
              f"--worlds {worlds} --first-seed {first_seed} --users {users}{market}` (likelens "
              f"{__version__}, Python {platform.python_version()}). Each world draws its own "
              "organic crowds, platform shape and market (likelens/sim/zoo.py); metrics over "
              "likes; organic FPR is the share of organic likes flagged; est. FPR is the "
              "scan's label-free estimate (summary.json).")
    publish(out_md, markdown(results, header))


@cli.group()
def review() -> None:
    """Reviewers' verdicts on a probability sample: precision and FPR with intervals.

    \b
    Example:
      likelens review sample scan/ --size 2000 --seed 7 --out sample.parquet
      (reviewers fill in verdicts.csv: event_id,bought)
      likelens review estimate scan/ --verdicts verdicts.csv
    """


@review.command("sample")
@click.argument("scan_dir", type=click.Path(path_type=Path))
@click.option("--size", type=int, required=True, help="How many likes to send to reviewers.")
@click.option("--seed", type=int, required=True, help="Seed of the draw (record it).")
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True,
              help="Parquet (or .csv) file: event_id, stratum, inclusion_prob.")
def review_sample(scan_dir: Path, size: int, seed: int, out_file: Path) -> None:
    """Draw a stratified probability sample of a scan's likes for review.

    Strata by score (flagged likes, then unflagged ones in score bands), unflagged likes
    included, so that precision, organic FPR and recall can all be estimated.

    \b
    Example:
      likelens review sample scan/ --size 2000 --seed 7 --out sample.parquet
    """
    from likelens import review as rv

    if size < 1:
        raise click.BadParameter("must be at least 1", param_hint="--size")
    likes = rv.load_scan_likes(scan_dir)
    table = rv.sample(likes, size, seed)
    rv.write_table(table, out_file)
    err.print(f"{table.num_rows:,} of {likes.num_rows:,} likes sampled -> {out_file}")


@review.command("estimate")
@click.argument("scan_dir", type=click.Path(path_type=Path))
@click.option("--verdicts", "verdicts_file", type=click.Path(path_type=Path), required=True,
              help="Parquet or CSV with event_id and bought (true/false; empty = unsure).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the posterior draws behind the intervals.")
def review_estimate(scan_dir: Path, verdicts_file: Path, seed: int) -> None:
    """Precision, organic FPR and recall of a scan's like flags, with 95 % intervals.

    Prints JSON: each figure as {estimate, low, high}, the verdicts read, used, unsure and
    not in the scan (counted and reported, never dropped silently), and the strata.

    \b
    Example:
      likelens review estimate scan/ --verdicts verdicts.csv
    """
    import json

    from likelens import review as rv

    verdicts = rv.read_verdicts(verdicts_file)
    result = rv.estimate(rv.load_scan_likes(scan_dir), verdicts, seed=seed)
    missing = result["verdicts"]["not_in_scan"]
    if missing:
        err.print(f"warning: {missing} verdict(s) name events that are not likes of this scan; "
                  "they are counted in verdicts.not_in_scan and not used")
    click.echo(json.dumps(result, indent=2))


@review.command("simulate-verdicts")
@click.option("--truth", type=click.Path(path_type=Path), required=True,
              help="truth.parquet written by `likelens simulate`.")
@click.option("--sample", "sample_file", type=click.Path(path_type=Path), required=True,
              help="The sample written by `likelens review sample`.")
@click.option("--error-rate", type=float, default=0.0, show_default=True,
              help="Chance that a simulated reviewer gets a verdict wrong.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True,
              help="Parquet (or .csv) verdict file: event_id, bought.")
def review_simulate_verdicts(truth: Path, sample_file: Path, error_rate: float, seed: int,
                             out_file: Path) -> None:
    """Stand in for reviewers with the simulator's truth (tests and demos only).

    \b
    Example:
      likelens review simulate-verdicts --truth sim/truth.parquet --sample sample.parquet \\
          --error-rate 0.02 --out verdicts.parquet
    """
    from likelens import review as rv

    if not 0 <= error_rate <= 1:
        raise click.BadParameter("must be between 0 and 1", param_hint="--error-rate")
    table = rv.simulate_verdicts(rv.read_table(truth), rv.read_table(sample_file), error_rate,
                                 seed)
    rv.write_table(table, out_file)
    err.print(f"{table.num_rows:,} verdicts -> {out_file}")


@cli.group()
def ledger() -> None:
    """The evidence ledger: an append-only Merkle log (RFC 6962) of decisions.

    \b
    Example:
      likelens scan events.parquet --out scan/ --ledger ledger/
      likelens ledger checkpoint --ledger ledger/
      likelens ledger prove 0 --ledger ledger/ > proof.json
      likelens ledger verify --bundle proof.json --pubkey ledger/public.pem
    """


LEDGER_OPT = click.option("--ledger", "ledger_dir", type=click.Path(path_type=Path),
                          default=Path("ledger"), show_default=True, help="Ledger directory.")


@ledger.command("init")
@LEDGER_OPT
def ledger_init(ledger_dir: Path) -> None:
    """Create the ledger and its Ed25519 signing key (0600) if they do not exist."""
    from likelens.ledger.api import Ledger

    lg = Ledger(ledger_dir)
    click.echo(f"ledger at {ledger_dir} with {lg.log.size} records; public key "
               f"{ledger_dir / 'public.pem'}")


@ledger.command("checkpoint")
@LEDGER_OPT
def ledger_checkpoint(ledger_dir: Path) -> None:
    """Sign the current tree head and print the checkpoint (publish it somewhere else)."""
    from likelens.ledger.api import Ledger

    lg = Ledger(ledger_dir, create=False)
    click.echo(lg.log.checkpoint(lg.key).to_text(), nl=False)


@ledger.command("prove")
@click.argument("index", type=int)
@LEDGER_OPT
def ledger_prove(index: int, ledger_dir: Path) -> None:
    """Print a JSON bundle proving record INDEX is in the log: record, proof, checkpoint."""
    import json

    from likelens.ledger.api import Ledger

    click.echo(json.dumps(Ledger(ledger_dir, create=False).prove(index), indent=2))


@ledger.command("verify")
@LEDGER_OPT
@click.option("--full", is_flag=True, help="Recompute every record and subtree hash.")
@click.option("--checkpoint", "checkpoint_files", multiple=True,
              type=click.Path(path_type=Path), help="A checkpoint published earlier.")
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="Verify a `prove` bundle offline instead of the ledger.")
@click.option("--pubkey", type=click.Path(path_type=Path), default=None,
              help="Public key PEM (default: the ledger's own public.pem).")
def ledger_verify(ledger_dir: Path, full: bool, checkpoint_files: tuple[Path, ...],
                  bundle: Path | None, pubkey: Path | None) -> None:
    """Check signatures, consistency with published checkpoints and, with --full, every record.

    Each problem is printed with its index and the expected against the computed hash; the exit
    code is 4 when anything is wrong.
    """
    import json

    from likelens.errors import LedgerVerificationError
    from likelens.ledger.api import Ledger, verify_bundle
    from likelens.ledger.checkpoint import Checkpoint, load_public

    if bundle is not None:
        key = load_public(pubkey or ledger_dir / "public.pem")
        try:
            data = json.loads(bundle.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read bundle ({exc})", file=str(bundle)) from None
        cp = verify_bundle(data, key)
        click.echo(f"ok: record {data['index']} is in the log of size {cp.size} "
                   f"(root {cp.root.hex()})")
        return
    lg = Ledger(ledger_dir, create=False)
    key = load_public(pubkey) if pubkey else lg.public_key
    cps = [Checkpoint.from_text(p.read_text(encoding="utf-8")) for p in checkpoint_files]
    problems = lg.log.verify(key, full=full, checkpoints=cps)
    for p in problems:
        click.echo(f"FAIL {p}", err=True)
    if problems:
        raise LedgerVerificationError(f"{len(problems)} problem(s) in {ledger_dir}")
    click.echo(f"ok: {lg.log.size} records, root {lg.log.root().hex()}")


@ledger.command("export")
@LEDGER_OPT
def ledger_export(ledger_dir: Path) -> None:
    """Print every record as JSON Lines (index and record)."""
    import json

    from likelens.ledger.api import Ledger

    for row in Ledger(ledger_dir, create=False).export():
        click.echo(json.dumps(row, ensure_ascii=False, sort_keys=True))


@ledger.command("pubkey")
@LEDGER_OPT
def ledger_pubkey(ledger_dir: Path) -> None:
    """Print the ledger's public key (PEM): all a verifier needs besides a checkpoint."""
    from likelens.ledger.api import Ledger

    click.echo(Ledger(ledger_dir, create=False).pubkey_pem(), nl=False)


@cli.command()
@click.option("--params", "show_params", is_flag=True,
              help="List every parameter with its default (what `--set` accepts).")
def detectors(show_params: bool) -> None:
    """List the registered detectors, their status and what they need from the log."""
    from likelens.detect.registry import REGISTRY

    if show_params:
        from likelens.api import settings_help

        p = Table(title="detector parameters (likelens scan --set DETECTOR.PARAM=VALUE)")
        for col in ("setting", "default"):
            p.add_column(col)
        for name, params in settings_help().items():
            for param, default in sorted(params.items()):
                p.add_row(f"{name}.{param}", repr(default))
        out.print(p)
        return
    t = Table(title="detectors")
    for col in ("name", "status", "needs", "what it finds"):
        t.add_column(col)
    for s in REGISTRY:
        t.add_row(s.name, s.status, ", ".join(s.needs) or "-", s.summary)
    out.print(t)


@cli.command()
def info() -> None:
    """Say which optional parts (Spark, Redis, browser) are installed, without importing them."""
    from likelens.spark.session import missing as spark_missing

    t = Table(title=f"likelens {__version__}")
    t.add_column("part")
    t.add_column("available")
    checks = {
        "Spark engine (pyspark, pandas, java)": not spark_missing(),
        "service libraries (the service extra)": all(
            importlib.util.find_spec(m) is not None
            for m in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "redis", "psycopg")),
        "redis server": shutil.which("redis-server") is not None,
        "postgresql client (psql)": shutil.which("psql") is not None,
        "java": shutil.which("java") is not None,
        "chromium (report screenshots)": shutil.which("chromium") is not None,
        "playwright": importlib.util.find_spec("playwright") is not None,
    }
    for name, ok in checks.items():
        t.add_row(name, "yes" if ok else "no")
    out.print(t)


def _service_commands() -> None:
    """serve, keys, users and replay live with the service; the web stack loads only when
    they run."""
    from likelens.service.commands import keys, replay, serve, users

    for command in (serve, keys, replay, users):
        cli.add_command(command)


_service_commands()


def _remedy_commands() -> None:
    """rank, certify, credits, audit and bench ranking (likelens/remedies)."""
    from likelens.remedies.commands import register

    register(cli, bench)


_remedy_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning LikeLensError into one line and its exit code."""
    try:
        cli.main(args=argv, prog_name="likelens", standalone_mode=False)
    except LikeLensError as exc:
        print(f"likelens: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Abort:
        print("likelens: aborted", file=sys.stderr)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
