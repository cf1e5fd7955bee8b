"""Send a log to a running service in time order: for demos, benchmarks and tests.

Events go as the input contract (raw, not pseudonymised: the service pseudonymises with its own
key, as ``scan`` does), over HTTP as NDJSON batches or into the Redis stream one entry per
event. ``speed`` maps event time to wall time: ``60x`` plays an hour in a minute, ``max`` sends
as fast as the target takes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.errors import InputError, ServiceError
from likelens.ingest.readers import READERS, SUFFIXES, discover


@dataclass
class ReplayResult:
    sent: int
    batches: int
    seconds: float
    quarantined: int = 0


def parse_speed(speed: str) -> float | None:
    """``60x`` -> 60.0; ``max`` -> None (no pacing)."""
    s = speed.strip().lower()
    if s in ("max", "inf", "0"):
        return None
    try:
        value = float(s[:-1] if s.endswith("x") else s)
    except ValueError:
        raise InputError(f"--speed {speed!r} is not like 60x or max") from None
    if value <= 0:
        raise InputError(f"--speed {speed!r} must be positive")
    return value


def _order(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Rows by event time (stable), with their times in ms (NaN-free; unparsable times keep
    their place and the service quarantines them)."""
    ts = table["ts"]
    if pa.types.is_integer(ts.type):
        ms = ts.to_numpy(zero_copy_only=False).astype(np.int64)
    elif pa.types.is_timestamp(ts.type):
        ms = pc.cast(ts, pa.timestamp("ms")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    else:
        text = pc.cast(ts, pa.string())
        values = []
        for v in text.to_pylist():
            try:
                values.append(int(v))
            except (TypeError, ValueError):
                try:
                    values.append(int(np.datetime64(str(v).replace("Z", ""), "ms")
                                      .astype(np.int64)))
                except ValueError:
                    values.append(values[-1] if values else 0)
        ms = np.asarray(values, dtype=np.int64)
    order = np.argsort(ms, kind="stable")
    return table.take(pa.array(order)), ms[order]


def read_log(path: str | Path) -> tuple[pa.Table, np.ndarray]:
    files = discover([path])
    tables = []
    for f in files:
        raw = READERS[SUFFIXES[f.suffix.lower()]](f)
        t = raw.table
        if "_row" in t.column_names:
            t = t.drop_columns(["_row"])
        tables.append(t)
    table = pa.concat_tables(tables, promote_options="permissive")
    if "ts" not in table.column_names:
        raise InputError("required column 'ts' is missing", file=str(path), column="ts")
    return _order(table)


def _lines(table: pa.Table) -> list[bytes]:
    return [json.dumps(r, default=str, separators=(",", ":")).encode()
            for r in table.to_pylist()]


def _batches(table: pa.Table, ts: np.ndarray, size: int, speed: float | None
             ) -> Iterator[list[bytes]]:
    """Batches of lines, each sent when its first event is due."""
    start_wall = time.monotonic()
    t0 = int(ts[0]) if len(ts) else 0
    for s in range(0, table.num_rows, size):
        if speed is not None:
            due = (int(ts[s]) - t0) / 1000.0 / speed
            wait = due - (time.monotonic() - start_wall)
            if wait > 0:
                time.sleep(wait)
        yield _lines(table.slice(s, size))


def replay(path: str | Path, to: str, *, speed: str = "max", batch: int = 1000,
           api_key: str | None = None, stream: str = "likelens:events", per_entry: int = 1,
           progress: Callable[[int], None] | None = None,
           log: tuple[pa.Table, np.ndarray] | None = None) -> ReplayResult:
    """Send the log at ``path`` to ``to`` (``http(s)://HOST:PORT`` or ``redis://...``);
    ``log`` is that log already read by ``read_log`` (the CLI reads it first to size its
    progress bar)."""
    table, ts = log if log is not None else read_log(path)
    pace = parse_speed(speed)
    t0 = time.perf_counter()
    sent = n_batches = quarantined = 0
    if to.startswith("redis://") or to.startswith("rediss://"):
        from likelens.service.stream import connect, publish

        r = connect(to)
        for lines in _batches(table, ts, batch, pace):
            sent += _retry(lambda lines=lines: publish(r, lines, stream=stream,
                                                          per_entry=per_entry))
            n_batches += 1
            if progress:
                progress(len(lines))
    elif to.startswith("http://") or to.startswith("https://"):
        import httpx

        headers = {"Content-Type": "application/x-ndjson"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        with httpx.Client(base_url=to.rstrip("/"), headers=headers, timeout=60) as client:
            for lines in _batches(table, ts, batch, pace):
                res = _retry(lambda lines=lines: _post(client, lines))
                sent += len(lines)
                quarantined += len(res.get("quarantined", []))
                n_batches += 1
                if progress:
                    progress(len(lines))
    else:
        raise ServiceError(f"--to {to!r}: give http://HOST:PORT or redis://HOST:PORT")
    return ReplayResult(sent, n_batches, time.perf_counter() - t0, quarantined)


def _post(client: Any, lines: list[bytes]) -> dict[str, Any]:
    res = client.post("/v1/events", content=b"\n".join(lines))
    if res.status_code in (401, 403):
        raise ServiceError(f"the service refused the key ({res.status_code}): pass --api-key "
                           "with an ingest key")
    if res.status_code == 429 or res.status_code >= 500:
        raise ConnectionError(f"service answered {res.status_code}")
    if res.status_code >= 400:
        raise ServiceError(f"the service refused a batch ({res.status_code}): {res.text[:300]}")
    return dict(res.json())


def _retry(send: Callable[[], Any], attempts: int = 30) -> Any:
    """Retry a send while the target is unreachable or busy (a restart, a full queue), up to
    about a minute; a refusal (bad key, bad batch) is not retried."""
    wait = 0.2
    for i in range(attempts):
        try:
            return send()
        except ServiceError:
            raise
        except Exception as exc:
            if i == attempts - 1:
                raise ServiceError(f"target unreachable after {attempts} tries "
                                   f"({exc.__class__.__name__})") from None
            time.sleep(wait)
            wait = min(wait * 2, 5.0)
    return None
