"""The ``likelens`` command: one small function per verb over the in-process API.

Errors: every ``LikeLensError`` is caught once, in ``main``, and printed as one line on stderr
with the exit code DESIGN.md fixes (2 bad usage or input, 3 too many bad rows).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from likelens import __version__
from likelens.errors import LikeLensError, TooManyBadRows

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
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for events.parquet and truth.parquet.")
@click.option("--stats", is_flag=True, help="Print like rate, completion and market figures.")
@click.option("--list", "list_", is_flag=True, help="List the shipped scenarios and exit.")
def simulate(scenario: str, seed: int, users: int | None, out_dir: Path, stats: bool,
             list_: bool) -> None:
    """Simulate a platform day with a labelled like market inside it.

    Writes events.parquet (the input contract) and truth.parquet (labels, kept apart) into
    --out. The market exists only here, as synthetic data: nothing touches a real platform.

    \b
    Example:
      likelens simulate --scenario baseline --seed 7 --out sim/
    """
    from likelens import sim

    if list_:
        for name in sim.scenario_names():
            out.print(name)
        return
    cfg = sim.load_scenario(scenario, users=users)
    with err.status(f"simulating {cfg['name']} with {cfg['world']['users']:,} users"):
        result = sim.simulate(cfg, seed)
        paths = sim.write(result, out_dir)
    err.print(f"{result.events.num_rows:,} events -> {paths['events']}")
    err.print(f"truth -> {paths['truth']}")
    if stats:
        from likelens.sim.stats import stats_table

        out.print(stats_table(result))


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Directory for the output files.")
@click.option("--key-file", type=click.Path(path_type=Path), default=None,
              help="Key for pseudonymising IPs and devices (else $LIKELENS_KEY, else demo key).")
@click.option("--max-bad-rows", type=int, default=None,
              help="Exit 3 when more rows than this are quarantined.")
@click.option("--target-fpr", type=float, default=0.001, show_default=True,
              help="Target organic false-positive rate that sets the flag threshold.")
@click.option("--detectors", default=None,
              help="Comma-separated detectors to run (default: all; see `likelens detectors`).")
@click.option("--threads", type=int, default=None, help="Threads for DuckDB (default: all).")
@click.option("--profile", is_flag=True, help="Print the time each stage took.")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
def scan(inputs: tuple[Path, ...], out_dir: Path, key_file: Path | None,
         max_bad_rows: int | None, target_fpr: float, detectors: str | None,
         threads: int | None, profile: bool, no_report: bool) -> None:
    """Find bought engagement in an engagement log and score authentic engagement.

    INPUTS are Parquet, CSV or JSON Lines files, or directories of them, read as one log.
    Rows that break the input contract go to quarantine.parquet with their reason.

    \b
    Example:
      likelens scan events.parquet --out scan/ --target-fpr 0.001
    """
    from likelens import outputs
    from likelens.privacy import load_key
    from likelens.scan import scan_paths

    if not 0 < target_fpr < 1:
        raise click.BadParameter("must be between 0 and 1", param_hint="--target-fpr")
    names = [d.strip() for d in detectors.split(",")] if detectors else None
    if names:
        from likelens.detect.registry import REGISTRY

        known = {s.name for s in REGISTRY}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise click.BadParameter(f"unknown detector(s) {', '.join(unknown)}; choose from "
                                     f"{', '.join(sorted(known))}", param_hint="--detectors")
    key = load_key(key_file)
    with err.status("scanning") as status:
        result, ing = scan_paths(inputs, key=key, target_fpr=target_fpr, detectors=names,
                                 threads=threads,
                                 progress=lambda stage: status.update(f"scanning: {stage}"))
        status.update("writing outputs")
        paths = outputs.write(result, out_dir, report=not no_report)
    c = result.summary["counts"]
    err.print(f"{ing.events.num_rows:,} events, {ing.quarantine.num_rows:,} quarantined; "
              f"{c['flagged_likes']:,} of {c['likes']:,} likes flagged")
    if profile:
        t = Table(title="stage timings")
        t.add_column("stage")
        t.add_column("seconds", justify="right")
        for stage, secs in result.summary["timings_s"].items():
            t.add_row(stage, f"{secs:.3f}")
        err.print(t)
    if "report" in paths:
        out.print(f"report: {paths['report'].resolve()}")
    if max_bad_rows is not None and ing.quarantine.num_rows > max_bad_rows:
        raise TooManyBadRows(f"{ing.quarantine.num_rows} rows quarantined, more than "
                             f"--max-bad-rows {max_bad_rows}; see {paths['quarantine']}")


@cli.command("eval")
@click.option("--truth", "truth", type=click.Path(path_type=Path), required=True,
              help="truth.parquet written by `likelens simulate`.")
@click.argument("scan_dir", type=click.Path(path_type=Path))
@click.option("--action", default="like", show_default=True, help="Which engagements to score.")
def eval_(truth: Path, scan_dir: Path, action: str) -> None:
    """Score a scan against simulator truth: precision, recall, F1, organic FPR, AUC-PR.

    Split by supply kind (bot, pool, crowd) and by package size. Also writes quality.json into
    SCAN_DIR.

    \b
    Example:
      likelens eval --truth sim/truth.parquet scan/
    """
    import json
    from dataclasses import asdict

    from likelens.evaluate import evaluate, format_table

    rows = evaluate(truth, scan_dir, action=action)
    click.echo(f"quality over {action}s (organic FPR: share of organic {action}s flagged)")
    click.echo(format_table(rows))
    (scan_dir / "quality.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))


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
    text = markdown(results, header)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text + "\n", encoding="utf-8")
    click.echo(text)


@cli.command()
def detectors() -> None:
    """List the registered detectors, their status and what they need from the log."""
    from likelens.detect.registry import REGISTRY

    t = Table(title="detectors")
    for col in ("name", "status", "needs", "what it finds"):
        t.add_column(col)
    for s in REGISTRY:
        t.add_row(s.name, s.status, ", ".join(s.needs) or "-", s.summary)
    out.print(t)


@cli.command()
def info() -> None:
    """Say which optional parts (Spark, Redis, browser) are installed, without importing them."""
    t = Table(title=f"likelens {__version__}")
    t.add_column("part")
    t.add_column("available")
    checks = {
        "pyspark (--engine spark)": importlib.util.find_spec("pyspark") is not None,
        "redis server": shutil.which("redis-server") is not None,
        "java": shutil.which("java") is not None,
        "chromium (report screenshots)": shutil.which("chromium") is not None,
        "playwright": importlib.util.find_spec("playwright") is not None,
    }
    for name, ok in checks.items():
        t.add_row(name, "yes" if ok else "no")
    out.print(t)


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
