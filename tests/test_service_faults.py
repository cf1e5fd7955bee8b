"""Faults against the real servers: the service killed with SIGKILL mid-stream, Redis restarted
mid-stream, PostgreSQL unreachable mid-stream. In each, every event is decided exactly once.

Each test runs `likelens serve` as a child process reading a Redis stream into a fresh
PostgreSQL database. Redis is a private `redis-server` on a free port with its append-only file
on (a restarted Redis without persistence comes back empty: nothing any client could do would
keep unread entries); PostgreSQL is the machine's, reached through a TCP proxy the test can
cut, so "the database stopped" is real from the service's side without stopping a server other
tests share.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import KEY, require_program
from tests.test_service import PG, _need, _pg_up

LIKELENS = str(Path(sys.executable).with_name("likelens"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """A TCP forwarder to PostgreSQL that the test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, _free_port()
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            if self._server is not srv:  # cut while this connection was being accepted
                client.close()
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        if self._server is not None:
            # shutdown first: a close alone leaves a thread blocked in accept() able to take
            # one more connection on Linux.
            try:
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._conns.clear()


class PrivateRedis:
    """redis-server on a free port, persisting to an append-only file in ``dir``."""

    def __init__(self, directory: Path) -> None:
        self.dir, self.port = directory, _free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [require_program("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always",
             "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        r = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                if r.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: redis flushes its append-only file and exits
            self.proc.wait(10)
            self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def rig(tmp_path: Path, demo_day) -> Iterator[dict]:
    _need("PostgreSQL at " + PG.split("@")[-1], _pg_up())
    require_program("redis-server")
    import psycopg

    from likelens import api

    _, sim_dir = demo_day
    scan = tmp_path / "scan"
    api.scan([sim_dir / "events.parquet"], key=KEY, out=scan, report=False)
    name = f"likelens_fault_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    host, port = "127.0.0.1", int(PG.split("@")[-1].split("/")[0].split(":")[1])
    proxy = Proxy((host, port))
    proxy.start()
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    events = pq.read_table(sim_dir / "events.parquet").slice(0, 40_000)
    events = events.take(pc.sort_indices(events, [("ts", "ascending")]))
    lines = [json.dumps(r, default=str).encode() for r in events.to_pylist()]
    n_eng = int(pc.sum(pc.not_equal(events["action"], "view")).as_py())
    user = PG.split("://", 1)[1].split("@")[0]
    yield {"tmp": tmp_path, "model": scan / "model", "proxy": proxy, "redis": redis_server,
           "db": f"postgresql://{user}@127.0.0.1:{proxy.port}/{name}",
           "direct": PG.rsplit("/", 1)[0] + "/" + name, "lines": lines, "n_eng": n_eng}
    redis_server.stop()
    proxy.cut()
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _serve(rig: dict, http_port: int) -> subprocess.Popen:
    env = dict(os.environ, LIKELENS_KEY=KEY.decode())
    return subprocess.Popen(
        [LIKELENS, "serve", "--database", rig["db"], "--redis", rig["redis"].url,
         "--data", str(rig["tmp"] / "svc"), "--model", str(rig["model"]), "--port",
         str(http_port), "--consumer", "worker-1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _decided(rig: dict) -> tuple[int, int]:
    """(decisions, ledger records that are not revisions), read directly from PostgreSQL.
    (A flag the account's next view cleared is a revision with its own ledger record.)"""
    import psycopg

    with psycopg.connect(rig["direct"], connect_timeout=3) as con:
        d = con.execute("SELECT count(*), count(DISTINCT event_id) FROM decisions").fetchone()
        led = con.execute("SELECT count(*) FROM ledger_records").fetchone()
        rev = con.execute("SELECT count(*) FROM revisions").fetchone()
    assert d[0] == d[1]  # the primary key already says so; a duplicate would fail here too
    return int(d[0]), int(led[0]) - int(rev[0])


def _publish(rig: dict, lines: list[bytes]) -> None:
    from likelens.service.stream import connect, publish

    r = connect(rig["redis"].url)
    for s in range(0, len(lines), 2000):
        publish(r, lines[s:s + 2000])


def _wait(cond: object, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():  # type: ignore[operator]
                return True
        except Exception:
            pass
        time.sleep(0.25)
    return False


def _ready(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _pending(rig: dict) -> int:
    from likelens.service.stream import GROUP, STREAM, connect

    return int(connect(rig["redis"].url).xpending(STREAM, GROUP)["pending"])


def test_kill_9_mid_stream_then_restart_decides_every_event_once(rig) -> None:
    port = _free_port()
    proc = _serve(rig, port)
    try:
        assert _wait(lambda: _ready(port)), proc.stderr.read().decode()[-2000:]
        _publish(rig, rig["lines"])
        assert _wait(lambda: _decided(rig)[0] > 0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        mid = _decided(rig)[0]
        assert mid < rig["n_eng"], "killed too late to test anything"
        proc = _serve(rig, port)
        _all_decided_once(rig)
    finally:
        proc.kill()
        proc.wait(10)


@contextmanager
def _half_decided(rig: dict) -> Iterator[int]:
    """A running service that has decided some of the first half of the events; yields its
    port, kills it after."""
    port = _free_port()
    proc = _serve(rig, port)
    try:
        assert _wait(lambda: _ready(port))
        _publish(rig, rig["lines"][:len(rig["lines"]) // 2])
        assert _wait(lambda: _decided(rig)[0] > 0)
        yield port
    finally:
        proc.kill()
        proc.wait(10)


def _all_decided_once(rig: dict, timeout: float = 90.0) -> None:
    assert _wait(lambda: _decided(rig)[0] == rig["n_eng"] and _pending(rig) == 0, timeout)
    assert _decided(rig) == (rig["n_eng"], rig["n_eng"])


def test_redis_restart_mid_stream_loses_nothing(rig) -> None:
    with _half_decided(rig) as port:
        rig["redis"].stop()
        assert _wait(lambda: not _ready(port), 20)  # /readyz says Redis is away
        rig["redis"].start()  # same port, same append-only file
        _publish(rig, rig["lines"][len(rig["lines"]) // 2:])
        _all_decided_once(rig)
        assert _ready(port)


def test_database_away_mid_stream_then_back_loses_nothing(rig) -> None:
    with _half_decided(rig) as port:
        rig["proxy"].cut()
        assert _wait(lambda: not _ready(port), 30)
        _publish(rig, rig["lines"][len(rig["lines"]) // 2:])
        time.sleep(1.0)
        assert not _ready(port)
        assert _pending(rig) + _lag(rig) > 0  # nothing acknowledged while the database is away
        rig["proxy"].start()
        _all_decided_once(rig, 120)
        assert _wait(lambda: _ready(port), 20)


def _lag(rig: dict) -> int:
    from likelens.service.stream import GROUP, STREAM, connect

    for g in connect(rig["redis"].url).xinfo_groups(STREAM):
        if g["name"] in (GROUP, GROUP.encode()):
            return int(g.get("lag") or 0)
    return 0
