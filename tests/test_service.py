"""The real-time service on both backends: embedded (SQLite, in-process queue) and servers
(PostgreSQL, Redis Streams), against the real servers on this machine.

A backend whose server is down is skipped with the reason, except under CI=true, where
``.ci/run`` starts them and a missing one fails.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from likelens import api, sim
from likelens.errors import SchemaError
from likelens.features import SESSION_MS
from likelens.ledger import hashing
from likelens.service import tables as T
from likelens.service.app import Service, Settings, build
from likelens.service.auth import create_key
from likelens.service.online import OnlineScorer
from likelens.service.run import open_service
from likelens.service.store import ServiceStore, database_url
from likelens.service.stream import StreamReader, connect, publish
from tests.conftest import KEY

fastapi_testclient = pytest.importorskip("fastapi.testclient")
TestClient = fastapi_testclient.TestClient

PG = os.environ.get("LIKELENS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("LIKELENS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _need(what: str, ok: bool) -> None:
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is required under CI=true but does not answer")
        pytest.skip(f"{what} does not answer")


def _pg_up() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG, connect_timeout=2):
            return True
    except Exception:
        return False


def _redis_up() -> bool:
    try:
        return bool(connect(REDIS).ping())
    except Exception:
        return False


@pytest.fixture(scope="module")
def day(demo_day, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo day, its scan (with the model), and a model fitted on another day."""
    result, sim_dir = demo_day
    root = tmp_path_factory.mktemp("svc")
    api.scan([sim_dir / "events.parquet"], key=KEY, out=root / "scan", report=False)
    other = sim.simulate(sim.load_scenario("demo"), 12)
    sim.write(other, root / "other")
    api.scan([root / "other" / "events.parquet"], key=KEY, out=root / "other_scan",
             report=False)
    events = pq.read_table(sim_dir / "events.parquet")
    events = events.take(pc.sort_indices(events, [("ts", "ascending")]))
    return {"sim": sim_dir, "scan": root / "scan", "model": root / "scan" / "model",
            "other_model": root / "other_scan" / "model", "events": events,
            "truth": result.truth}


def _lines(table: pa.Table) -> bytes:
    return b"\n".join(json.dumps(r, default=str).encode() for r in table.to_pylist())


@pytest.fixture(params=["embedded", "servers"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict]:
    """Where a service keeps its state: SQLite in a directory, or a fresh PostgreSQL database
    and a fresh Redis stream."""
    if request.param == "embedded":
        yield {"data": tmp_path, "database": database_url(tmp_path, None), "redis": None,
               "stream": "unused"}
        return
    _need("PostgreSQL at " + PG.split("@")[-1], _pg_up())
    _need("Redis at " + REDIS.split("@")[-1], _redis_up())
    import psycopg

    name = f"likelens_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    url = PG.rsplit("/", 1)[0] + "/" + name
    stream = f"likelens:test:{name}"
    try:
        yield {"data": tmp_path, "database": database_url(None, url), "redis": REDIS,
               "stream": stream}
    finally:
        connect(REDIS).delete(stream)
        with psycopg.connect(PG, autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _service(backend: dict, model: Path, **kw) -> Service:
    settings = Settings(data=backend["data"], database=backend["database"], model=str(model),
                        redis=backend["redis"], stream=backend["stream"], **kw)
    return open_service(settings, key=KEY)


def _count_revisions(store: ServiceStore, cause: str) -> int:
    import sqlalchemy as sa

    with store.engine.connect() as con:
        return int(con.execute(sa.select(sa.func.count()).select_from(T.revisions).where(
            T.revisions.c.cause == cause)).scalar() or 0)


def _keys(service: Service) -> dict[str, str]:
    return {role: create_key(service.store, role)[0] for role in ("ingest", "analyst", "admin")}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_migrations_build_the_declared_schema(backend) -> None:
    import sqlalchemy as sa

    store = ServiceStore(backend["database"])
    store.migrate()  # a second upgrade is a no-op
    inspector = sa.inspect(store.engine)
    for table in T.metadata.sorted_tables:
        got = {c["name"] for c in inspector.get_columns(table.name)}
        assert got == {c.name for c in table.columns}, table.name
    store.close()


def test_events_are_decided_once_and_ledgered(backend, day) -> None:
    service = _service(backend, day["model"])
    keys = _keys(service)
    part = day["events"].slice(0, 30_000)
    n_eng = int(pc.sum(pc.not_equal(part["action"], "view")).as_py())
    with TestClient(build(service)) as client:
        decided = 0
        for s in range(0, part.num_rows, 10_000):
            res = client.post("/v1/events", content=_lines(part.slice(s, 10_000)),
                              headers=_auth(keys["ingest"]))
            assert res.status_code == 200, res.text
            decided += res.json()["decided"]
        assert decided == n_eng
        # The same events again (a client's retry): nothing is decided twice.
        again = client.post("/v1/events", content=_lines(part.slice(0, 10_000)),
                            headers=_auth(keys["ingest"])).json()
        assert again["decided"] == 0 and len(again["already_decided"]) > 0
        counts = service.store.counts()
        assert counts["decisions"] == n_eng
        # The start's warm-up events are in neither the store nor the running state.
        assert service.worker.scorer.n_engagements == n_eng
        # Every decision is ledgered, and so is every revision a later view of the same
        # session made (the only cause there is without a batch scan).
        assert service.store.ledger.size == n_eng + counts["revisions"]
        # An engagement's decision, and its ledger record proven into the signed head.
        eid = str(part.filter(pc.equal(part["action"], "like"))["event_id"][0].as_py())
        got = client.get(f"/v1/engagements/{eid}", headers=_auth(keys["analyst"])).json()
        assert got["event_id"] == eid
        assert all(r["cause"] == "session" and not r["flagged"] for r in got["revisions"])
        proof = client.get(f"/v1/ledger/proof/{got['ledger_index']}",
                           headers=_auth(keys["analyst"])).json()
        record = json.loads(proof["record"])
        assert record["event_id"] == eid and isinstance(record["score_ppm"], int)
        size = int(proof["checkpoint"].splitlines()[1])
        root = bytes.fromhex(client.get("/v1/ledger/checkpoint", headers=_auth(
            keys["analyst"])).json()["root"])
        hashing.verify_inclusion(got["ledger_index"], size,
                                 bytes.fromhex(proof["leaf_hash"]),
                                 [bytes.fromhex(p) for p in proof["proof"]], root)  # raises
        # An account's page sums its decisions.
        acct = client.get(f"/v1/accounts/{got['user_id']}", headers=_auth(keys["analyst"]))
        assert acct.status_code == 200 and acct.json()["engagements"] >= 1


def test_bad_events_are_answered_per_event_and_kept(backend, day) -> None:
    service = _service(backend, day["model"])
    keys = _keys(service)
    good = day["events"].slice(0, 3).to_pylist()
    bad = [dict(good[0], event_id="x1", action="lick"),
           dict(good[0], event_id="x2", ts="yesterday"),
           {k: v for k, v in good[0].items() if k != "event_id"}]
    body = [json.dumps(r, default=str) for r in good + bad] + ["{not json"]
    with TestClient(build(service)) as client:
        res = client.post("/v1/events", content="\n".join(body).encode(),
                          headers=_auth(keys["ingest"]))
        assert res.status_code == 200
        q = {r["row"]: r["reason"] for r in res.json()["quarantined"]}
        assert q[3].startswith("unknown_action") and q[4].startswith("bad_time")
        assert q[5] == "missing_value:event_id" and q[6] == "malformed_row"
        assert service.store.counts()["quarantine"] == 4
        # A JSON array and an Arrow IPC stream are read the same way.
        arr = client.post("/v1/events", content=json.dumps(bad, default=str).encode(),
                          headers=_auth(keys["ingest"]) | {"content-type": "application/json"})
        assert len(arr.json()["quarantined"]) == 3
        sink = pa.BufferOutputStream()
        table = day["events"].slice(100, 50)
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        ipc = client.post("/v1/events", content=sink.getvalue().to_pybytes(),
                          headers=_auth(keys["ingest"]) | {
                              "content-type": "application/vnd.apache.arrow.stream"})
        assert ipc.status_code == 200 and ipc.json()["accepted"] == 50


def test_a_commit_told_its_ids_were_checked_still_records_each_decision_once(backend) -> None:
    """The worker looks ids up before scoring and tells the commit so; an id that another
    writer decided meanwhile must be skipped through the primary key, not fail the batch."""
    from likelens.service.online import Decision

    store = ServiceStore(backend["database"])

    def make(i: str) -> Decision:
        return Decision(i, 1000, "u1", "like", "v1", "c1", 0.9, True, ["burst"])

    assert [d.event_id for d in store.commit([make("a"), make("b")], "m", {})] == ["a", "b"]
    size = store.ledger.size
    got = store.commit([make("b"), make("c")], "m", {}, checked=True)
    assert [d.event_id for d in got] == ["c"]
    assert store.counts()["decisions"] == 3 and store.ledger.size == size + 1
    store.ledger.root()  # the frontier it cached before the refused insert was let go


def test_sqlite_checkpoints_run_beside_the_worker_and_stop_with_it(backend, day) -> None:
    import threading

    def running() -> bool:
        return any(t.name == "likelens-checkpoint" for t in threading.enumerate())

    service = _service(backend, day["model"])
    service.worker.start()
    try:
        assert running() == (service.store.kind == "sqlite")
    finally:
        service.worker.stop()
    assert not running()


def test_a_request_the_coercion_refuses_fails_alone(tmp_path, day) -> None:
    """Requests queued together are parsed together; one that cannot be read at all (no ts
    column) must not take the others in its micro-batch down with it."""
    service = _service({"data": tmp_path, "database": database_url(tmp_path, None),
                        "redis": None, "stream": "unused"}, day["model"])
    good = [json.dumps(r, default=str).encode() for r in day["events"].slice(0, 2).to_pylist()]
    no_ts = [json.dumps({"event_id": "n1", "user_id": 1, "action": "like",
                         "video_id": 2}).encode()]
    twice = [json.dumps({"event_id": "n2", "ts": 1, "TS": 2, "user_id": 1, "action": "like",
                         "video_id": 2}).encode()]
    refused = [service.worker.submit(no_ts, "http"), service.worker.submit(twice, "http")]
    decided = service.worker.submit(good, "http")  # queued before the worker starts: one batch
    service.worker.start()
    try:
        assert len(decided.result(30).ids) == 2
        for fut, column in zip(refused, ("ts", "ts"), strict=True):
            exc = fut.exception(30)
            assert isinstance(exc, SchemaError) and exc.column == column
    finally:
        service.worker.stop()


def test_body_over_the_limit_is_413(tmp_path, day) -> None:
    service = _service({"data": tmp_path, "database": database_url(tmp_path, None),
                        "redis": None, "stream": "x"}, day["model"], max_body_bytes=1000)
    keys = _keys(service)
    with TestClient(build(service)) as client:
        res = client.post("/v1/events", content=_lines(day["events"].slice(0, 100)),
                          headers=_auth(keys["ingest"]))
        assert res.status_code == 413


ENDPOINTS = [  # (method, path, permission)
    ("POST", "/v1/events", "ingest"),
    ("GET", "/v1/engagements/1", "read"), ("GET", "/v1/accounts/1", "read"),
    ("GET", "/v1/videos/1", "read"), ("GET", "/v1/creators/1", "read"),
    ("GET", "/v1/groups", "read"), ("GET", "/v1/groups/dense-0", "read"),
    ("GET", "/v1/ledger/checkpoint", "read"), ("GET", "/v1/ledger/proof/0", "read"),
    ("POST", "/v1/model", "admin"),
]
GRANTED = {"ingest": {"ingest"}, "analyst": {"read"}, "admin": {"ingest", "read", "admin"}}


def test_every_endpoint_role_and_bad_key(tmp_path, day, caplog) -> None:
    service = _service({"data": tmp_path, "database": database_url(tmp_path, None),
                        "redis": None, "stream": "x"}, day["model"])
    keys = _keys(service)
    revoked = create_key(service.store, "admin")[0]
    service.store.revoke_key(revoked.split("_")[1])
    body = {"POST /v1/events": _lines(day["events"].slice(0, 5)),
            "POST /v1/model": json.dumps({"path": str(day["model"]), "revise": False}).encode()}
    caplog.set_level("DEBUG", logger="likelens.service")  # accepted posts log at DEBUG
    with TestClient(build(service)) as client:
        for method, path, perm in ENDPOINTS:
            content = body.get(f"{method} {path}")
            for bad in (None, "ll_00000000_wrong", keys["admin"][:-2] + "xx", revoked):
                res = client.request(method, path, content=content,
                                     headers=_auth(bad) if bad else {})
                assert res.status_code == 401, (method, path, bad)
            for role, key in keys.items():
                res = client.request(method, path, content=content, headers=_auth(key))
                if perm in GRANTED[role]:
                    assert res.status_code not in (401, 403), (method, path, role, res.text)
                    assert res.status_code < 500
                else:
                    assert res.status_code == 403, (method, path, role)
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert client.get(path).status_code == 200
    text = caplog.text
    assert "POST /v1/events" in text
    for key in [*keys.values(), revoked]:
        assert key not in text and key.split("_", 2)[2] not in text
    ips = [r for r in day["events"].slice(0, 5)["ip"].to_pylist() if r]
    assert ips and not any(ip in text for ip in ips)
    devices = [r for r in day["events"].slice(0, 5)["device_id"].to_pylist() if r]
    assert devices and not any(d in text for d in devices)


def test_rate_limit_answers_429_with_retry_after(tmp_path, day) -> None:
    service = _service({"data": tmp_path, "database": database_url(tmp_path, None),
                        "redis": None, "stream": "x"}, day["model"], rate_per_key=2.0,
                       burst_per_key=3.0)
    keys = _keys(service)
    with TestClient(build(service)) as client:
        codes = [client.get("/v1/groups", headers=_auth(keys["analyst"])) for _ in range(6)]
    assert [c.status_code for c in codes[:3]] == [200, 200, 200]
    limited = [c for c in codes if c.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1


def test_model_swap_revises_beside_the_first_decisions(backend, day) -> None:
    """Decide with a model from another day, then load the day's own scan: where the scan
    judged an engagement otherwise, a revision sits beside the first decision."""
    service = _service(backend, day["other_model"])
    keys = _keys(service)
    events = day["events"]
    with TestClient(build(service)) as client:
        for s in range(0, events.num_rows, 50_000):
            assert client.post("/v1/events", content=_lines(events.slice(s, 50_000)),
                               headers=_auth(keys["ingest"])).status_code == 200
        before = service.store.counts()
        first, session = before["decisions"], before["revisions"]
        # The stream's own revisions so far: flags a later view of the session cleared.
        assert session == _count_revisions(service.store, "session")
        res = client.post("/v1/model", json={"path": str(day["model"])},
                          headers=_auth(keys["admin"]))
        assert res.status_code == 200, res.text
        revised = res.json()["revised"]
        assert revised > 0
        counts = service.store.counts()
        assert counts["decisions"] == first and counts["revisions"] == session + revised
        assert service.store.ledger.size == first + session + revised
        # Loading it again revises nothing more.
        again = client.post("/v1/model", json={"path": str(day["model"])},
                            headers=_auth(keys["admin"])).json()
        assert again["revised"] == 0
        # After revision, every engagement's current flag is the scan's.
        scan = pq.read_table(day["scan"] / "engagements.parquet",
                             columns=["event_id", "flagged"])
        ids = [str(x) for x in scan["event_id"].to_pylist()]
        now = service.store.current(ids)
        assert all(now[i][0] == f for i, f in zip(ids, scan["flagged"].to_pylist(),
                                                   strict=True) if i in now)
        # A video's page counts the scan's verdicts now, its first decisions apart.
        flagged_ids = [i for i, f in zip(ids, scan["flagged"].to_pylist(), strict=True)
                       if f and i in now]
        vid = service.store.engagement(flagged_ids[0])["video_id"]
        page = client.get(f"/v1/videos/{vid}", headers=_auth(keys["analyst"])).json()
        of_video = pq.read_table(day["scan"] / "engagements.parquet",
                                 columns=["event_id", "video_id", "flagged"])
        of_video = of_video.filter(pc.equal(pc.cast(of_video["video_id"], pa.string()), vid))
        assert page["flagged_now"] == sum(f for i, f in zip(
            [str(x) for x in of_video["event_id"].to_pylist()], of_video["flagged"].to_pylist(),
            strict=True) if i in now)
        groups = client.get("/v1/groups", headers=_auth(keys["analyst"])).json()
        assert groups["total"] >= 1
        gid = groups["groups"][0]["id"]
        detail = client.get(f"/v1/groups/{gid}", headers=_auth(keys["analyst"])).json()
        assert len(detail["account_ids"]) == groups["groups"][0]["accounts"]


def test_online_flags_cover_the_batch_on_a_day_it_was_not_fitted_on(day) -> None:
    """The real-time decisions of a day, with a model fitted on another day, against the
    batch scan of that day: coverage of its flagged likes, and organic FPR against truth."""
    from likelens import model as model_dir
    from likelens.ingest import ingest

    events = ingest([day["sim"] / "events.parquet"], key=KEY).events
    events = events.take(pc.sort_indices(events, [("ts", "ascending")]))
    scorer = OnlineScorer(model_dir.load(day["other_model"]), version="other")
    flags: dict[str, bool] = {}
    first: dict[str, Any] = {}
    revisions = []
    for s in range(0, events.num_rows, 2000):
        for d in scorer.score(events.slice(s, 2000)):
            flags[d.event_id] = d.flagged
            first[d.event_id] = d
        for d in scorer.take_revisions():
            revisions.append(d)
            flags[d.event_id] = d.flagged
    # A session revision only clears a flag that was raised on an isolated engagement, and
    # only once the account viewed again within the session after it.
    views = events.filter(pc.equal(events["action"], "view"))
    view_ts: dict[str, list[int]] = {}
    for u, t in zip(views["user_id"].to_pylist(), views["ts"].to_pylist(), strict=True):
        view_ts.setdefault(str(u), []).append(int(t))
    for d in revisions:
        was = first[d.event_id]
        assert was.flagged and not d.flagged
        assert any(was.ts < t <= was.ts + SESSION_MS for t in view_ts[d.user_id])
    assert scorer.take_revisions() == []
    scan = pq.read_table(day["scan"] / "engagements.parquet")
    likes = scan.filter(pc.equal(scan["action"], "like"))
    ids = [str(x) for x in likes["event_id"].to_pylist()]
    batch = np.asarray(likes["flagged"].to_pylist())
    online = np.asarray([flags[i] for i in ids])
    truth = day["truth"]
    fake = dict(zip([str(x) for x in truth["event_id"].to_pylist()],
                    truth["fake"].to_pylist(), strict=True))
    organic = ~np.asarray([bool(fake.get(i, False)) for i in ids])
    coverage = (online & batch).sum() / batch.sum()
    fpr_batch = (batch & organic).sum() / organic.sum()
    fpr_online = (online & organic).sum() / organic.sum()
    assert coverage >= 0.9, coverage
    assert fpr_online <= max(1.5 * fpr_batch, 0.001), (fpr_online, fpr_batch)


def test_stream_entries_are_decided_once_and_reclaimed_from_a_dead_consumer(backend,
                                                                              day) -> None:
    if backend["redis"] is None:
        pytest.skip("the stream is the servers backend's intake")
    r = connect(REDIS)
    part = day["events"].slice(0, 6000)
    n_eng = int(pc.sum(pc.not_equal(part["action"], "view")).as_py())
    lines = _lines(part).split(b"\n")
    # A consumer that read the first 2,000 entries and died before acknowledging them.
    dead = StreamReader(REDIS, "dead", stream=backend["stream"])
    publish(r, lines[:2000], stream=backend["stream"])
    got = dead.read(2000, block_ms=100)
    assert got is not None and len(got[0]) == 2000
    publish(r, lines[2000:], stream=backend["stream"])
    publish(r, lines[:1000], stream=backend["stream"])  # a producer's retry: replayed events
    service = _service(backend, day["model"], claim_idle_ms=200)
    with TestClient(build(service)):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if service.store.counts()["decisions"] >= n_eng and service.stream.lag() == 0:
                break
            time.sleep(0.3)
    assert service.store.counts()["decisions"] == n_eng
    assert service.stream.lag() == 0  # every entry acknowledged, the dead one's included
    assert service.store.ledger.size == n_eng


def test_readyz_fails_and_nothing_is_acknowledged_without_the_database(tmp_path, day) -> None:
    service = _service({"data": tmp_path, "database": database_url(tmp_path, None),
                        "redis": None, "stream": "x"}, day["model"], wait_s=2.0)
    keys = _keys(service)
    with TestClient(build(service)) as client:
        assert client.get("/readyz").status_code == 200
        good_engine = service.store.engine
        import sqlalchemy as sa

        service.store.engine = sa.create_engine(
            "postgresql+psycopg://nobody@127.0.0.1:1/none",
            connect_args={"connect_timeout": 1})
        service.keys.forget()
        try:
            assert client.get("/readyz").status_code == 503
        finally:
            service.store.engine = good_engine
        # Decisions wait for the database, then land once it is back.
        checker = service.keys
        checker.check(keys["ingest"])  # cached: the key check does not need the database
        service.store.engine = sa.create_engine(
            "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 1})
        res = client.post("/v1/events", content=_lines(day["events"].slice(0, 200)),
                          headers=_auth(keys["ingest"]))
        assert res.status_code == 503
        assert client.get("/readyz").status_code == 503
        service.store.engine = good_engine
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and client.get("/readyz").status_code != 200:
            time.sleep(0.2)
        assert client.get("/readyz").status_code == 200
        n_eng = int(pc.sum(pc.not_equal(day["events"].slice(0, 200)["action"], "view")).as_py())
        assert service.store.counts()["decisions"] == n_eng


def test_keys_cli_prints_once_lists_prefixes_and_revokes(tmp_path, capsys) -> None:
    from likelens.cli import main

    assert main(["keys", "create", "--role", "analyst", "--data", str(tmp_path),
                 "--note", "qa"]) == 0
    key = capsys.readouterr().out.strip()
    prefix = key.split("_")[1]
    assert key.startswith("ll_") and len(key) > 40
    assert main(["keys", "list", "--data", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert prefix in listed and key not in listed and "active" in listed
    assert main(["keys", "revoke", prefix, "--data", str(tmp_path)]) == 0
    assert main(["keys", "list", "--data", str(tmp_path)]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", prefix, "--data", str(tmp_path)]) == 2  # nothing active
    assert main(["keys", "create", "--role", "root", "--data", str(tmp_path)]) == 2
    store = ServiceStore(database_url(tmp_path, None))
    assert all(k["prefix"] == prefix for k in store.keys())
    assert key not in json.dumps(store.keys(), default=str)


def _likes_in_hour(h: int, first: int, *, n: int) -> pa.Table:
    """``n`` accounts' likes in hour ``h`` of event time (accounts ``first`` on), each on its
    own device, 300 addresses and 30 ranges among them."""
    ids = np.arange(first, first + n)
    return pa.table({
        "event_id": (ids + h * 10**6).astype(str), "ts": h * 3_600_000 + ids,
        "user_id": ids.astype(str), "action": ["like"] * n,
        "video_id": ids % 50, "creator_id": ids % 7, "watch_ms": np.full(n, 1000),
        "video_ms": np.full(n, 10_000), "device_hash": ids.astype(str),
        "ip_hash": (ids % 300 + h * 1000).astype(str),
        "ip_sub": (ids % 30 + h * 1000).astype(str)})


def test_online_state_forgets_what_is_older_than_its_window(day) -> None:
    """Accounts, devices, addresses and targets last seen before the window are dropped, so a
    stream of any length keeps the state of about one window."""
    from likelens import model as model_dir

    scorer = OnlineScorer(model_dir.load(day["model"]), version="m", window_s=3600)
    n = 2000
    hour = partial(_likes_in_hour, n=n)

    scorer.score(hour(0, 0))
    assert scorer.stats()["accounts"] == n
    scorer.score(hour(3, 10_000))  # three windows later: other accounts, same videos
    stats = scorer.stats()
    assert stats["accounts"] == n and stats["devices"] == n
    assert all(u not in scorer.accounts for u in ("0", "1", str(n - 1)))
    assert len(scorer.key_counts) == 330  # only the addresses and ranges of the last window
    # The convergence null's totals follow the counts they are compared with.
    assert scorer.n_engagements == sum(c[0] for c in scorer.target_counts.values())
    assert scorer.n_feed == sum(c[2] for c in scorer.target_counts.values())


def test_a_started_and_stopped_service_leaves_forks_safe(tmp_path, day) -> None:
    """A fork that runs Python in the child before exec (pyspark's launcher does) works while
    the service runs and after: the per-thread DuckDB connections the parse keeps used to live
    in thread locals, which the child destroys, and the child crashed (SIGSEGV)."""
    import subprocess
    import sys

    service = _service({"data": tmp_path, "database": database_url(tmp_path, None),
                        "redis": None, "stream": "x"}, day["model"])
    with TestClient(build(service)) as client:
        assert client.get("/readyz").status_code == 200
        # Still serving: a fork with Python in the child works while the worker runs.
        done = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None,
                              check=False, timeout=60)
        assert done.returncode == 0
    done = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None,
                          check=False, timeout=60)
    assert done.returncode == 0


def test_a_batch_longer_than_the_window_decides_all_its_engagements(day) -> None:
    """The state is pruned after a batch is decided, not between folding its events in and
    deciding them: a batch whose times span more than the window (a replayed backlog, or a
    client's bad clock) used to lose its early accounts mid-batch (KeyError, a 500)."""
    from likelens import model as model_dir

    scorer = OnlineScorer(model_dir.load(day["model"]), version="m", window_s=3600)
    n = 2000
    hour = partial(_likes_in_hour, n=n)

    decisions = scorer.score(pa.concat_tables([hour(0, 0), hour(3, 10_000)]))
    assert len(decisions) == 2 * n
    assert "0" not in scorer.accounts and str(10_000) in scorer.accounts  # pruned afterwards
