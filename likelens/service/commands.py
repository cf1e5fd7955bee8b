"""CLI verbs of the service: ``serve``, ``keys create|list|revoke`` and ``replay``.

Imports of the web stack happen inside the commands, so ``likelens scan`` does not pay for them.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from likelens.errors import ServiceError

err = Console(stderr=True)
out = Console()

DATA_HELP = "Directory of the embedded database (SQLite) and the ledger's signing key."
DB_HELP = "PostgreSQL URL (postgresql://user@host/db) instead of SQLite in --data."


def _need_service() -> None:
    """A clear error instead of a traceback when the service's libraries are not installed."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "redis", "psycopg")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ServiceError(f"the service needs {', '.join(missing)}: "
                           "pip install 'likelens[service]'")


def _where(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--database", default=None, envvar="LIKELENS_DATABASE",
                     help=DB_HELP)(f)
    return click.option("--data", type=click.Path(path_type=Path), default=None,
                        envvar="LIKELENS_DATA", help=DATA_HELP)(f)


@click.command()
@_where
@click.option("--model", "model_dir", type=click.Path(path_type=Path), default=None,
              help="Fitted model directory (SCAN_DIR/model); default: the last one loaded.")
@click.option("--redis", default=None, envvar="LIKELENS_REDIS",
              help="Redis URL: also read events from the stream likelens:events.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--key-file", type=click.Path(path_type=Path), default=None,
              help="Pseudonymisation key (as for scan; default $LIKELENS_KEY).")
@click.option("--max-body", type=int, default=16 * 1024 * 1024, show_default=True,
              help="Largest POST /v1/events body in bytes (413 past it).")
@click.option("--rate", type=float, default=2000.0, show_default=True,
              help="Requests per second per API key (429 with Retry-After past it; 0: none).")
@click.option("--stream", default="likelens:events", show_default=True,
              help="Redis stream to read (with --redis).")
@click.option("--consumer", default=None, help="Consumer name in the stream's group "
              "(default: host name); a restarted service with the same name resumes its "
              "unacknowledged entries.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info",
              show_default=True, help="debug adds a line per accepted POST /v1/events.")
def serve(data: Path | None, database: str | None, model_dir: Path | None, redis: str | None,
          host: str, port: int, key_file: Path | None, max_body: int, rate: float,
          stream: str, consumer: str | None, log_level: str) -> None:
    """Score events in real time over HTTP (and a Redis stream) with a fitted model.

    \b
    Embedded (no other server):
      likelens serve --data svc/ --model scan/model --port 8080
    With servers:
      likelens serve --database postgresql://user@host/db --redis redis://host:6379 \\
                     --data svc/ --model scan/model
    Then create a key (likelens keys create --role ingest --data svc/) and POST events to
    /v1/events with Authorization: Bearer KEY. API reference: /docs and /openapi.json.
    """
    _need_service()
    import socket

    import uvicorn

    from likelens.privacy import load_key
    from likelens.service.app import Settings
    from likelens.service.run import configure_logging, make_app
    from likelens.service.store import database_url

    if data is None:
        data = Path("likelens-data")
    settings = Settings(data=data, database=database_url(data, database),
                        model=str(model_dir) if model_dir else None, redis=redis,
                        consumer=consumer or f"{socket.gethostname()}-serve",
                        max_body_bytes=max_body, rate_per_key=rate, stream=stream)
    configure_logging(log_level)
    # The worker thread is busy Python; with the default 5 ms switch interval the event loop
    # waits that long for the GIL at every step of a request. 0.5 ms keeps requests moving.
    sys.setswitchinterval(0.0005)
    app = make_app(settings, key=load_key(key_file))
    err.print(f"serving on http://{host}:{port} (database: {_safe(settings.database)}"
              f"{', redis: ' + _safe(redis) if redis else ''})")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


def _safe(url: str) -> str:
    """A URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return url


@click.group()
def keys() -> None:
    """API keys: create (printed once), list, revoke."""


@keys.command("create")
@_where
@click.option("--role", type=click.Choice(["ingest", "analyst", "admin"]), required=True,
              help="ingest: post events; analyst: read; admin: both, and models and keys.")
@click.option("--note", default="", help="Who or what the key is for.")
def keys_create(data: Path | None, database: str | None, role: str, note: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    _need_service()
    from likelens.service.auth import create_key
    from likelens.service.run import open_store

    key, prefix = create_key(open_store(data, database), role, note)
    err.print(f"created {role} key {prefix} (shown once; store it now)")
    click.echo(key)


@keys.command("list")
@_where
def keys_list(data: Path | None, database: str | None) -> None:
    """List keys by prefix, role and state (never the keys)."""
    _need_service()
    from likelens.service.run import open_store

    t = Table(title="API keys")
    for c in ("prefix", "role", "created", "state", "note"):
        t.add_column(c)
    for k in open_store(data, database).keys():
        t.add_row(k["prefix"], k["role"], _when(k["created_at"]),
                  "revoked " + _when(k["revoked_at"]) if k["revoked_at"] else "active", k["note"])
    out.print(t)


@keys.command("revoke")
@_where
@click.argument("prefix")
def keys_revoke(data: Path | None, database: str | None, prefix: str) -> None:
    """Revoke the key(s) whose prefix starts with PREFIX (honoured within seconds)."""
    _need_service()
    from likelens.service.run import open_store

    if len(prefix) < 4:
        raise ServiceError("give at least 4 characters of the prefix")
    n = open_store(data, database).revoke_key(prefix)
    if n == 0:
        raise ServiceError(f"no active key with prefix {prefix!r}")
    err.print(f"revoked {n} key(s)")


@click.group()
def users() -> None:
    """People who sign in to the analyst console (/console): create, list, disable."""


@users.command("create")
@_where
@click.argument("name")
@click.option("--role", type=click.Choice(["analyst", "admin"]), required=True,
              help="analyst: review and read; admin: also draw audit samples, see people.")
def users_create(data: Path | None, database: str | None, name: str, role: str) -> None:
    """Add a person. The password is read from the terminal (asked twice), or from the first
    line of standard input when it is not a terminal; never from an argument, which would
    stay in the shell's history and the process list."""
    _need_service()
    from likelens.console.users import MIN_PASSWORD, create_user
    from likelens.service.run import open_store

    if sys.stdin.isatty():
        password = click.prompt(f"password for {name} (at least {MIN_PASSWORD} characters)",
                                hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    create_user(open_store(data, database), name, role, password)
    err.print(f"created {role} {name}")


@users.command("list")
@_where
def users_list(data: Path | None, database: str | None) -> None:
    """List people, their roles and whether they are active or locked."""
    _need_service()
    from likelens.console.users import list_users
    from likelens.service.run import open_store

    t = Table(title="Console users")
    for c in ("name", "role", "created", "state"):
        t.add_column(c)
    now = time.time()
    for u in list_users(open_store(data, database)):
        locked = u["locked_until"] and float(u["locked_until"]) > now
        state = ("disabled " + _when(u["disabled_at"]) if u["disabled_at"]
                 else "locked" if locked else "active")
        t.add_row(str(u["name"]), str(u["role"]), _when(u["created_at"]), state)
    out.print(t)


@users.command("disable")
@_where
@click.argument("name")
def users_disable(data: Path | None, database: str | None, name: str) -> None:
    """Disable a person and end their sessions at once."""
    _need_service()
    from likelens.console.users import disable_user
    from likelens.service.run import open_store

    if not disable_user(open_store(data, database), name):
        raise ServiceError(f"no active user {name!r}")
    err.print(f"disabled {name}")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"


@click.command()
@click.argument("events", type=click.Path(exists=True, path_type=Path))
@click.option("--to", "to", required=True,
              help="http://HOST:PORT of a service, or redis://HOST:PORT (its stream).")
@click.option("--speed", default="max", show_default=True,
              help="Event time to wall time: 60x plays an hour in a minute; max: no pacing.")
@click.option("--batch", type=int, default=1000, show_default=True,
              help="Events per request (HTTP) or per pipeline (Redis).")
@click.option("--api-key", default=None, envvar="LIKELENS_API_KEY",
              help="An ingest key for HTTP (default $LIKELENS_API_KEY).")
@click.option("--stream", default="likelens:events", show_default=True,
              help="Redis stream to write (with redis://).")
@click.option("--per-entry", type=int, default=1, show_default=True,
              help="Events per stream entry (NDJSON); batching saves Redis's per-entry cost.")
def replay(events: Path, to: str, speed: str, batch: int, api_key: str | None,
           stream: str, per_entry: int) -> None:
    """Send a log to a running service in time order (demos, benchmarks, tests).

    \b
    Example:
      likelens replay sim/events.parquet --to http://127.0.0.1:8080 --speed 600x
      likelens replay sim/events.parquet --to redis://127.0.0.1:6379 --speed max
    """
    from rich.progress import Progress

    from likelens.service.replay import read_log
    from likelens.service.replay import replay as send

    log = read_log(events)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("replaying", total=log[0].num_rows)
        res = send(events, to, speed=speed, batch=batch,
                   api_key=api_key or os.environ.get("LIKELENS_API_KEY"), stream=stream,
                   per_entry=per_entry, log=log,
                   progress=lambda n: progress.advance(task, n))
    err.print(f"sent {res.sent:,} events in {res.batches:,} batches, {res.seconds:.1f} s "
              f"({res.sent / max(res.seconds, 1e-9):,.0f} events/s)"
              + (f"; {res.quarantined:,} quarantined" if res.quarantined else ""))
