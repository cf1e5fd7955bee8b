"""CLI verbs of the remedies: ``rank``, ``certify``, ``credits``, ``audit`` and
``bench ranking`` (registered on the main CLI by ``likelens.cli``)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from likelens import __version__
from likelens.service.commands import _need_service, _where

if TYPE_CHECKING:
    from likelens.service.store import ServiceStore

err = Console(stderr=True)


@click.command("rank")
@click.argument("scan_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Parquet file (or .csv) with one row per video.")
@click.option("--top", type=int, default=10, show_default=True,
              help="Rows to print (0: none).")
def rank_cmd(scan_dir: Path, out: Path, top: int) -> None:
    """Rank videos by authentic engagement (formula: docs/remedies.md).

    Each authentic like counts by the watch before it, comments, shares, follows and returning
    likers add depth, bought engagement counts nothing, and the engagement is scaled by its
    rate per view shrunk toward the log's typical rate.

    \b
    Example:
      likelens rank scan/ --out ranking.parquet
    """
    from rich.table import Table

    from likelens.remedies import rank as R

    table = R.rank(*R.read_scan(scan_dir))
    R.write(table, out)
    if top > 0:
        t = Table(title=f"top {min(top, table.num_rows)} of {table.num_rows:,} videos")
        for c in ("rank", "video_id", "creator_id", "rank_score", "likes", "authentic_likes",
                  "views"):
            t.add_column(c, justify="right")
        for r in table.slice(0, top).to_pylist():
            t.add_row(str(r["rank"]), str(r["video_id"]), str(r["creator_id"]),
                      f"{r['rank_score']:.2f}", str(r["likes"]), f"{r['authentic_likes']:.1f}",
                      str(r["views"]))
        Console().print(t)
    err.print(f"wrote {out}")


@click.command("ranking")
@click.option("--scenarios", default="baseline,adaptive,small-orders,crowd-heavy,demo,zoo",
              show_default=True, help="Comma-separated scenarios.")
@click.option("--seed", type=int, default=202, show_default=True,
              help="Seed (the weights were chosen on another one).")
@click.option("--max-users", type=int, default=20000, show_default=True)
@click.option("--out", "out_md", type=click.Path(path_type=Path),
              default=Path("bench/ranking.md"), show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=Path("bench/work"),
              show_default=True, help="Where the simulated days are written.")
def bench_ranking(scenarios: str, seed: int, max_users: int, out_md: Path, work: Path) -> None:
    """Rankings against the simulator's latent video quality: NDCG@100 and Kendall's tau.

    Raw likes with the market, rank_score with the market, and raw likes in the same world
    without a market; where honest small creators' videos land under each.

    \b
    Example:
      likelens bench ranking --scenarios baseline,adaptive
    """
    from likelens.cli import publish
    from likelens.remedies.rankbench import markdown, run

    with err.status("bench ranking") as status:
        results = run(scenarios.split(","), seed, max_users, work,
                      progress=lambda s: status.update(f"bench {s}"))
    header = (f"# Ranking by authentic engagement\n\nProduced by `likelens bench ranking "
              f"--scenarios {scenarios} --seed {seed} --max-users {max_users}` (likelens "
              f"{__version__}, Python {platform.python_version()}). Scores against the "
              "simulator's latent video quality, which no ranking sees (likelens/remedies/"
              "rankbench.py). Honest small creators: the half of creators with the fewest views "
              "who bought nothing; their best videos are their top decile of quality.")
    publish(out_md, markdown(results, header))


class _DefaultGroup(click.Group):
    """A group whose first command runs when the first argument names no command:
    `likelens certify SCAN_DIR...` issues, `likelens certify verify CERT` checks."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [next(iter(self.commands)), *args]
        return super().parse_args(ctx, args)


@click.group("certify", cls=_DefaultGroup)
def certify_cmd() -> None:
    """Quality certificates: issue from scans, verify offline (criteria: docs/remedies.md).

    \b
    Example:
      likelens certify scan-mon/ scan-tue/ --ledger ledger/ --out certs/
      likelens certify verify certs/video-123.cert.json --pubkey ledger/public.pem \\
          --revoked certs/revoked.json
    """


@certify_cmd.command("issue")
@click.argument("scan_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--ledger", "ledger_dir", type=click.Path(path_type=Path), required=True,
              help="Ledger directory: its key signs, its log records every certificate.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Directory of certificates (*.cert.json) and the revocation list.")
@click.option("--min-scans", type=int, default=2, show_default=True,
              help="Scans a subject must appear in.")
@click.option("--min-likes", type=int, default=20, show_default=True)
@click.option("--min-authentic", type=float, default=0.95, show_default=True,
              help="Authentic likes / likes over the scans.")
@click.option("--max-flagged", type=float, default=0.02, show_default=True,
              help="Flagged likes / likes allowed in any scan (above it, revoked).")
@click.option("--min-completion", type=float, default=0.3, show_default=True)
@click.option("--min-depth", type=float, default=0.01, show_default=True,
              help="Authentic comments, shares and follows per like.")
@click.option("--min-videos", type=int, default=2, show_default=True,
              help="Certified videos a creator needs.")
def certify_issue(scan_dirs: tuple[Path, ...], ledger_dir: Path, out: Path, min_scans: int,
                  min_likes: int, min_authentic: float, max_flagged: float,
                  min_completion: float, min_depth: float, min_videos: int) -> None:
    """Certify the videos and creators that meet every criterion over SCAN_DIRS (oldest
    first); revoke earlier certificates of subjects the newest scan finds bought
    engagement on."""
    from likelens.ledger.api import Ledger
    from likelens.remedies.certify import Criteria, certify

    crit = Criteria(min_scans, min_likes, min_authentic, max_flagged, min_completion,
                    min_depth, min_videos)
    counts = certify(list(scan_dirs), Ledger(ledger_dir), out, crit)
    err.print(f"issued {counts['issued']}, revoked {counts['revoked']}, already held "
              f"{counts['held']}; not certified: {counts['videos_failing']} videos, "
              f"{counts['creators_failing']} creators -> {out}")


@certify_cmd.command("verify")
@click.argument("cert", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path), required=True,
              help="The ledger's public key (PEM), e.g. ledger/public.pem.")
@click.option("--revoked", type=click.Path(path_type=Path), default=None,
              help="A signed revocation list (revoked.json); a revoked certificate exits 4.")
def certify_verify(cert: Path, pubkey: Path, revoked: Path | None) -> None:
    """Check a certificate with nothing but the public key: exit 0 valid, 4 invalid or
    revoked."""
    import json

    from likelens.ledger.checkpoint import load_public
    from likelens.remedies.certify import verify

    got = verify(cert, load_public(pubkey), revoked)
    click.echo(json.dumps({"valid": True, **got}))


def _store(data: Path | None, database: str | None) -> ServiceStore:
    from likelens.service.run import open_store

    _need_service()
    return open_store(data, database)


@click.group("credits")
def credits_cmd() -> None:
    """Creator credits: a double-entry ledger in the database (docs/remedies.md).

    \b
    Example:
      likelens credits post scan/ --data svc/
      likelens credits balance 12345 --data svc/
      likelens credits statement 12345 --data svc/
    """


@credits_cmd.command("post")
@click.argument("scan_dir", type=click.Path(path_type=Path))
@_where
def credits_post(scan_dir: Path, data: Path | None, database: str | None) -> None:
    """Post a scan: earnings for authentic engagement, clawbacks for engagement now found
    bought, penalties for purchases. Posting the same scan twice changes nothing."""
    from likelens.remedies import credits as C

    table, scan = C.read_scan(scan_dir)
    got = C.post(_store(data, database), table, scan)
    if got.transactions == 0:
        err.print(f"scan {scan} was posted before: nothing to do")
        return
    err.print(f"scan {scan}: earned {C.as_credits(got.earned)}, clawed back "
              f"{C.as_credits(got.clawed)}, penalties {C.as_credits(got.penalties)} "
              f"({got.transactions} transactions)")


@credits_cmd.command("balance")
@click.argument("creator_id")
@_where
def credits_balance(creator_id: str, data: Path | None, database: str | None) -> None:
    """A creator's balance in credits."""
    from likelens.remedies import credits as C

    click.echo(C.as_credits(C.balance(_store(data, database), creator_id)))


@credits_cmd.command("statement")
@click.argument("creator_id")
@_where
@click.option("--json", "as_json", is_flag=True, help="JSON Lines instead of a table.")
def credits_statement(creator_id: str, data: Path | None, database: str | None,
                      as_json: bool) -> None:
    """A creator's transactions, oldest first, with the running balance."""
    import json

    from rich.table import Table

    from likelens.remedies import credits as C

    rows = C.statement(_store(data, database), creator_id)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    t = Table(title=f"credits of creator {creator_id}")
    for c in ("kind", "scan", "memo", "amount", "balance"):
        t.add_column(c, justify="right" if c in ("amount", "balance") else "left")
    for r in rows:
        t.add_row(r["kind"], r["scan"], r["memo"], C.as_credits(r["amount"]),
                  C.as_credits(r["balance"]))
    Console().print(t)


@click.group("audit", cls=_DefaultGroup)
def audit_cmd() -> None:
    """Brand audit report for one creator: HTML (and PDF), signed (docs/remedies.md).

    \b
    Example:
      likelens audit 12345 --scan scan-mon/ --scan scan-tue/ --ledger ledger/ --out a.html
      likelens audit 12345 --export their-videos.csv --model scan/model --ledger ledger/ \\
          --out a.pdf
      likelens audit verify a.html --pubkey ledger/public.pem
    """


@audit_cmd.command("report")
@click.argument("creator_id")
@click.option("--scan", "scans", multiple=True, type=click.Path(path_type=Path),
              help="Scan directory (repeat, oldest first).")
@click.option("--export", type=click.Path(path_type=Path), default=None,
              help="The creator's own export of their videos' engagement (input contract).")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="With --export: a fitted model to apply (else the export is scanned alone).")
@click.option("--certs", type=click.Path(path_type=Path), default=None,
              help="Certificate directory of `likelens certify` (shows the creator's status).")
@click.option("--ledger", "ledger_dir", type=click.Path(path_type=Path), required=True,
              help="Ledger directory: its key signs the report, its log records it.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="FILE.html, or FILE.pdf (printed with Chromium; the HTML is kept beside).")
@click.option("--key-file", type=click.Path(path_type=Path), default=None,
              help="Pseudonymisation key for --export (default $LIKELENS_KEY).")
def audit_report(creator_id: str, scans: tuple[Path, ...], export: Path | None,
                 model: Path | None, certs: Path | None, ledger_dir: Path, out: Path,
                 key_file: Path | None) -> None:
    """Write the audit report of CREATOR_ID."""
    import tempfile

    from likelens.ledger.api import Ledger
    from likelens.privacy import load_key
    from likelens.remedies import audit as A

    dirs = list(scans)
    with tempfile.TemporaryDirectory() as work:
        if export is not None:
            dirs.append(A.from_export(export, model, Path(work), load_key(key_file)))
        if not dirs:
            raise click.UsageError("give --scan SCAN_DIR (repeatable) or --export FILE")
        data = A.payload(creator_id, dirs, certs)
    ledger = Ledger(ledger_dir)
    signature, index = A.sign(ledger, data)
    page = A.render(data, signature, ledger.pubkey_pem(), index)
    html_path = out if out.suffix.lower() != ".pdf" else out.with_suffix(".html")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    if out.suffix.lower() == ".pdf":
        A.write_pdf(html_path, out)
    err.print(f"wrote {out} (signed; ledger record {index})")


@audit_cmd.command("verify")
@click.argument("report", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path), required=True,
              help="The ledger's public key (PEM).")
def audit_verify(report: Path, pubkey: Path) -> None:
    """Check a report's signature with the public key alone: exit 0 valid, 4 invalid."""
    import json

    from likelens.ledger.checkpoint import load_public
    from likelens.remedies.audit import verify

    click.echo(json.dumps({"valid": True, **verify(report, load_public(pubkey))}))


def register(cli: click.Group, bench: click.Group) -> None:
    cli.add_command(audit_cmd)
    cli.add_command(rank_cmd)
    cli.add_command(certify_cmd)
    cli.add_command(credits_cmd)
    bench.add_command(bench_ranking)
