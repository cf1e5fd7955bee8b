"""The analyst console (/console): sign-in, roles, CSRF, the review queue, the ledger checked in
the browser, escaping, accessibility, and every page at desktop and phone widths.

The HTTP-level checks run with Starlette's test client; the browser checks drive Debian's
Chromium through Playwright (skipped without it, failed under CI=true) against a live server on
loopback. Screenshots of each page are kept under build/test-artifacts/console (or
$LIKELENS_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from likelens import review
from likelens.console import cases, users
from likelens.ledger.api import verify_bundle
from likelens.ledger.checkpoint import load_public
from likelens.service import tables as T
from likelens.service.app import Settings, build
from likelens.service.auth import create_key
from likelens.service.run import open_service
from likelens.service.store import ServiceStore, database_url
from tests.conftest import KEY, pg_store, require_program

uvicorn = pytest.importorskip("uvicorn")
TestClient = pytest.importorskip("fastapi.testclient").TestClient

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("LIKELENS_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
PASSWORD = "correct-horse-battery"
XSS_USER = "<script>window.__pwned=1</script>"
XSS_VIDEO = "<img src=x onerror=window.__pwned=2>"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking"]


@pytest.fixture(scope="module")
def console(demo_day, demo_scan: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict]:
    """A service with the demo day's model, part of the day decided, three people and a live
    server on loopback."""
    _, sim_dir = demo_day
    root = tmp_path_factory.mktemp("console")
    data = root / "data"
    settings = Settings(data=data, database=database_url(data, None),
                        model=str(demo_scan / "model"))
    service = open_service(settings, key=KEY)
    users.create_user(service.store, "alice", "admin", PASSWORD)
    users.create_user(service.store, "bob", "analyst", PASSWORD)
    users.create_user(service.store, "carol", "analyst", PASSWORD)
    ingest, _ = create_key(service.store, "ingest")
    app = build(service)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    events = pq.read_table(sim_dir / "events.parquet")
    events = events.take(pc.sort_indices(events, [("ts", "ascending")])).slice(0, 60_000)
    rows = events.to_pylist()
    first_ts = int(rows[0]["ts"].timestamp() * 1000) if hasattr(rows[0]["ts"], "timestamp") \
        else int(rows[0]["ts"])
    rows.append({"event_id": "xss-1", "ts": first_ts + 1000, "user_id": XSS_USER,
                 "action": "comment", "video_id": XSS_VIDEO, "creator_id": "c-xss",
                 "text": "<script>window.__pwned=3</script>"})
    with httpx.Client(base_url=base, timeout=60,
                      headers={"Authorization": f"Bearer {ingest}"}) as client:
        for s in range(0, len(rows), 5000):
            body = "\n".join(json.dumps(r, default=str) for r in rows[s:s + 5000])
            resp = client.post("/v1/events", content=body,
                               headers={"Content-Type": "application/x-ndjson"})
            assert resp.status_code == 200, resp.text
    yield {"service": service, "app": app, "base": base, "scan": demo_scan, "data": data}
    server.should_exit = True
    thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sign_in(client: TestClient, name: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/console/login", data={"csrf": token, "name": name,
                                               "password": password, "next": "/console"},
                       follow_redirects=False)


def _csrf(client: TestClient, path: str = "/console/queue") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


PAGES = ["/console", "/console/queue", "/console/groups", "/console/ledger",
         "/console/search?q=nothing-here"]


def test_signed_out_sees_only_the_sign_in_page(console) -> None:
    with TestClient(console["app"], base_url=console["base"]) as client:
        for path in [*PAGES, "/console/admin", "/console/groups/dense-0",
                     "/console/ledger/proof/0", "/console/accounts/x", "/console/verdicts.csv"]:
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/console/login"), path
        r = client.post("/console/queue/claim", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_sign_in_sets_a_strict_http_only_cookie_and_roles_are_checked(console) -> None:
    with TestClient(console["app"], base_url=console["base"]) as client:
        r = _sign_in(client, "bob")
        assert r.status_code == 303
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, path
            assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/console/admin").status_code == 403  # bob is an analyst
        assert client.post("/console/admin/sample", data={"csrf": _csrf(client),
                                                          "size": "5"}).status_code == 403
    with TestClient(console["app"], base_url=console["base"]) as client:
        _sign_in(client, "alice")
        assert client.get("/console/admin").status_code == 200


def test_forms_without_a_valid_csrf_token_are_refused(console) -> None:
    with TestClient(console["app"], base_url=console["base"]) as client:
        _sign_in(client, "alice")
        for path, data in (("/console/queue/claim", {}),
                           ("/console/admin/sample", {"size": "3", "seed": "1"}),
                           ("/console/logout", {})):
            assert client.post(path, data=data).status_code == 403, path
            assert client.post(path, data=data | {"csrf": "forged"}).status_code == 403, path
        # still signed in: the refused sign-out did nothing
        assert client.get("/console/queue").status_code == 200
        page = client.get("/console/login")
        assert client.post("/console/login", data={"name": "alice", "password": PASSWORD},
                           follow_redirects=False).status_code == 403
        assert page.status_code == 200


def test_repeated_failures_lock_the_account(console) -> None:
    store = console["service"].store
    users.create_user(store, "mallory", "analyst", PASSWORD)
    with TestClient(console["app"], base_url=console["base"]) as client:
        for _ in range(users.MAX_FAILED):
            assert _sign_in(client, "mallory", "wrong-password-1").status_code == 401
        r = _sign_in(client, "mallory")  # the right password, too late
        assert r.status_code == 401 and "locked" in r.text
        assert _sign_in(client, "nobody-by-that-name").status_code == 401


def test_claims_never_collide(tmp_path: Path) -> None:
    store = ServiceStore(database_url(tmp_path, None))
    _claim_race(store)


def test_claims_never_collide_on_postgresql() -> None:
    with pg_store() as store:
        _claim_race(store)


def _claim_race(store: ServiceStore) -> None:
    import pyarrow as pa

    likes = pa.table({"event_id": [str(i) for i in range(400)],
                      "score": [i / 400 for i in range(400)],
                      "flagged": [i >= 360 for i in range(400)]})
    assert cases.add_sample(store, likes, 60, 1, "v1") == 60
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(6)

    def analyst(name: str) -> None:
        barrier.wait()
        mine = got.setdefault(name, [])
        while (c := cases.claim(store, name)) is not None:
            mine.append(c["id"])
            cases.decide(store, c["id"], name, "organic", "")

    threads = [threading.Thread(target=analyst, args=(f"a{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == 60 and len(set(claimed)) == 60
    assert sum(1 for ids in got.values() if ids) >= 2  # they really raced
    assert cases.counts(store)["decided"] == 60
    # every verdict is in the ledger, once
    records = [json.loads(d) for _, d in store.ledger.store.records(0, store.ledger.size)]
    assert sorted(r["case"] for r in records if r["kind"] == "verdict") == sorted(claimed)


def test_verdicts_are_ledgered_and_feed_the_estimate(console) -> None:
    service = console["service"]
    with TestClient(console["app"], base_url=console["base"]) as client:
        _sign_in(client, "alice")
        r = client.post("/console/admin/sample", data={"csrf": _csrf(client), "size": "12",
                                                       "seed": "3"})
        assert r.status_code == 200
        truth = pq.read_table(console["scan"] / "engagements.parquet",
                              columns=["event_id", "flagged"])
        flagged = dict(zip([str(x) for x in truth["event_id"].to_pylist()],
                           truth["flagged"].to_pylist(), strict=True))
        for _ in range(12):
            token = _csrf(client)
            r = client.post("/console/queue/claim", data={"csrf": token, "kind": "sample"},
                            follow_redirects=False)
            case_id = int(r.headers["location"].rsplit("/", 1)[1])
            c = cases.case(service.store, case_id)
            verdict = "bought" if flagged[c["ref"]] else "organic"
            r = client.post(f"/console/cases/{case_id}/verdict",
                            data={"csrf": token, "verdict": verdict, "note": "<b>seen</b>"},
                            follow_redirects=False)
            assert r.status_code == 303
            idx = int(r.headers["location"].split("done=")[1])
            bundle = client.get(f"/console/ledger/proof/{idx}").json()
            record = json.loads(bundle["record"])
            assert record["kind"] == "verdict" and record["case"] == case_id
            assert record["verdict"] == verdict and record["by"] == "alice"
            verify_bundle(bundle, load_public(_pubkey(console)))
        page = client.get("/console")
        assert "From 12 reviewed likes" in page.text
        assert "&lt;b&gt;seen&lt;/b&gt;" in client.get("/console/queue").text
        csv = client.get("/console/verdicts.csv").text.strip().splitlines()
        assert csv[0] == "event_id,bought" and len(csv) == 13
    # the same verdicts through `likelens review estimate`'s reader give the same precision
    est = cases.estimates(service.store, service.model.likes(), service.model.version)
    assert est is not None and est["verdicts"]["used"] == 12
    assert est["precision"]["estimate"] == pytest.approx(1.0)
    assert review.strata_names()[0] == "flagged"


def _pubkey(console: dict) -> Path:
    from likelens.ledger.checkpoint import public_pem

    path = console["data"] / "ledger.pub"
    path.write_text(public_pem(console["service"].signing_key))
    return path


def test_users_cli_reads_the_password_from_stdin(tmp_path: Path) -> None:
    def likelens(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "likelens.cli", *args], input=stdin,
                              capture_output=True, text=True, timeout=120)

    r = likelens("users", "create", "dora", "--role", "analyst", "--data", str(tmp_path),
                 stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = likelens("users", "create", "eve", "--role", "analyst", "--data", str(tmp_path),
                 stdin="short\n")
    assert r.returncode == 2 and "at least" in r.stderr
    r = likelens("users", "create", "dora", "--role", "admin", "--data", str(tmp_path),
                 stdin=PASSWORD + "\n")
    assert r.returncode == 2 and "exists already" in r.stderr
    r = likelens("users", "list", "--data", str(tmp_path))
    assert "dora" in r.stdout and "eve" not in r.stdout
    store = ServiceStore(database_url(tmp_path, None))
    with store.engine.connect() as con:
        stored = con.execute(sa.select(T.users.c.pw_hash)).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


# -- in the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(console) -> Iterator:
    chromium = require_program("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _context(browser, console: dict, name: str | None, width: int = 1280):
    ctx = browser.new_context(base_url=console["base"],
                              viewport={"width": width, "height": 900})
    page = ctx.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("dialog", lambda d: (page.errors.append("dialog: " + d.message), d.dismiss()))
    if name:
        page.goto("/console/login")
        page.fill("#name", name)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/console$"))
    return ctx, page


def _axe(page) -> list[dict]:
    # Evaluated through the DevTools protocol: the page's CSP (no inline script) stays on.
    page.evaluate(AXE.read_text() + "\n;undefined")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def test_every_page_at_two_widths_with_no_errors_and_accessible(console, browser) -> None:
    group = console["service"].model.groups[0].id
    account = console["service"].model.groups[0].accounts[0]
    with console["service"].store.engine.connect() as con:
        event, video, creator = con.execute(sa.select(
            T.decisions.c.event_id, T.decisions.c.video_id, T.decisions.c.creator_id).where(
            T.decisions.c.flagged).limit(1)).one()
    paths = {"overview": "/console", "queue": "/console/queue", "groups": "/console/groups",
             "group": f"/console/groups/{group}", "account": f"/console/accounts/{account}",
             "video": f"/console/videos/{video}", "creator": f"/console/creators/{creator}",
             "engagement": f"/console/engagements/{event}",
             "ledger": "/console/ledger?index=0", "admin": "/console/admin",
             "search": "/console/search?q=nothing-here"}
    out = ARTIFACTS / "console"
    out.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        ctx, page = _context(browser, console, "alice", width)
        for name, path in paths.items():
            page.goto(path)
            page.wait_for_load_state("networkidle")
            if page.locator("[data-figure]").count():
                page.wait_for_selector("[data-figure] .main-svg", timeout=30_000)
            if name == "ledger":
                page.wait_for_selector("#result.pass, #result.fail", timeout=30_000)
            page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
            assert not page.errors, (name, width, page.errors)
            bad = _axe(page)
            assert not bad, (name, width, [(v["id"], v["help"]) for v in bad])
            # nothing wider than the window at phone width, except scrollable tables
            if width == 390:
                overflow = page.evaluate("document.documentElement.scrollWidth")
                assert overflow <= width + 1, (name, overflow)
        ctx.close()
    _, page = _context(browser, console, None)
    page.goto("/console/login")
    page.screenshot(path=str(out / "login-1280.png"))
    assert not _axe(page)
    page.context.close()


def test_two_analysts_never_get_the_same_case(console, browser) -> None:
    service = console["service"]
    cases.add_sample(service.store, service.model.likes(), 40, 11, service.model.version)
    _, p1 = _context(browser, console, "bob")
    _, p2 = _context(browser, console, "carol")
    seen: set[str] = set()
    for _ in range(3):
        for page in (p1, p2):
            page.goto("/console/queue")
            page.click("#claim")
            page.wait_for_url(re.compile(r".*/console/cases/\d+$"))
            case_id = page.url.rsplit("/", 1)[1]
            assert case_id not in seen
            seen.add(case_id)
            page.keyboard.press("u")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(r".*/console/queue\?done=\d+$"))
    assert len(seen) == 6
    for page in (p1, p2):
        assert not page.errors
        page.context.close()


def test_verdict_by_keyboard_then_verified_on_the_ledger_page(console, browser) -> None:
    _, page = _context(browser, console, "bob")
    page.goto("/console/queue")
    page.click("#claim")
    page.wait_for_url(re.compile(r".*/console/cases/\d+$"))
    page.wait_for_load_state("networkidle")
    (ARTIFACTS / "console").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console" / "case-1280.png"), full_page=True)
    assert not _axe(page)
    page.keyboard.press("n")
    page.keyboard.type("looked at the timeline")
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 1, "y": 1})
    page.keyboard.press("b")
    assert page.locator("input[value=bought]").is_checked()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/console/queue\?done=\d+$"))
    idx = int(page.url.split("done=")[1])
    page.click(f"text={idx}")
    page.wait_for_url(re.compile(rf".*/console/ledger\?index={idx}$"))
    page.wait_for_selector("#result.pass", timeout=30_000)
    assert "VERIFIED" in page.inner_text("#result")
    record = json.loads(page.inner_text("#record"))
    assert record["verdict"] == "bought" and record["note"] == "looked at the timeline"

    # A tampered proof (one path hash changed in transit) fails in the browser.
    def tamper(route) -> None:
        bundle = route.fetch().json()
        h = bundle["proof"][0] if bundle["proof"] else bundle["leaf_hash"]
        flipped = ("0" if h[0] != "0" else "1") + h[1:]
        if bundle["proof"]:
            bundle["proof"][0] = flipped
        else:
            bundle["leaf_hash"] = flipped
        route.fulfill(json=bundle)

    def altered(route) -> None:
        route.fulfill(json=route.fetch().json()
                      | {"record": '{"kind":"verdict","verdict":"organic"}'})

    # So does a record altered in transit, and a signature checked with another key.
    for handler in (tamper, altered):
        page.route("**/console/ledger/proof/*", handler)
        page.evaluate("document.getElementById('result').className = ''")
        page.click("#verify")
        page.wait_for_selector("#result.fail", timeout=30_000)
        assert "FAILED" in page.inner_text("#result")
        page.unroute_all(behavior="wait")
    page.evaluate("document.getElementById('result').className = ''")
    page.fill("#pubkey", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQ"
                         "hqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n")
    page.click("#verify")
    page.wait_for_selector("#result.fail", timeout=30_000)
    assert "✗ checkpoint signature" in page.inner_text("#result")
    assert not page.errors
    page.context.close()


def test_text_from_the_log_is_escaped_everywhere(console, browser) -> None:
    from urllib.parse import quote

    _, page = _context(browser, console, "alice")
    for path in (f"/console/accounts/{quote(XSS_USER, safe='')}",
                 f"/console/videos/{quote(XSS_VIDEO, safe='')}",
                 "/console/engagements/xss-1", "/console/creators/c-xss",
                 f"/console/search?q={quote(XSS_USER, safe='')}"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__pwned === undefined"), path
        assert XSS_USER in page.inner_text("main") or XSS_VIDEO in page.inner_text("main"), path
    assert not page.errors
    page.context.close()


def test_signed_out_browser_is_sent_to_sign_in(console, browser) -> None:
    _, page = _context(browser, console, None)
    for path in ("/console", "/console/queue", "/console/ledger", "/console/admin"):
        page.goto(path)
        assert "/console/login" in page.url
        assert page.locator("#password").count() == 1
    page.context.close()
    _, page = _context(browser, console, "bob")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/console/login$"))
    page.goto("/console/queue")
    assert "/console/login" in page.url
    page.context.close()


def test_credits_are_read_through_the_api(console) -> None:
    from likelens.remedies import credits as C

    store = console["service"].store
    table, scan = C.read_scan(console["scan"])
    C.post(store, table, scan)
    balances = {a.split(":", 1)[1]: b for a, b in C.trial_balance(store).items()
                if a.startswith("creator:")}
    creator = max(balances, key=lambda c: abs(balances[c]))
    analyst, _ = create_key(store, "analyst")
    ingest, _ = create_key(store, "ingest")
    with TestClient(console["app"], base_url=console["base"]) as client:
        r = client.get(f"/v1/credits/{creator}", headers={"Authorization": f"Bearer {analyst}"})
        assert r.status_code == 200
        body = r.json()
        assert body["balance_micro"] == balances[creator] != 0
        assert body["statement"][-1]["balance"] == balances[creator]
        assert client.get(f"/v1/credits/{creator}",
                          headers={"Authorization": f"Bearer {ingest}"}).status_code == 403


def test_creator_page_hands_out_the_signed_brand_audit(console, tmp_path: Path) -> None:
    from likelens.remedies import audit as A

    service = console["service"]
    v = pq.read_table(console["scan"] / "videos.parquet", columns=["creator_id", "likes"])
    creator = str(v.sort_by([("likes", "descending")])["creator_id"][0].as_py())
    with TestClient(console["app"], base_url=console["base"]) as client:
        _sign_in(client, "bob")
        page = client.get(f"/console/creators/{creator}")
        assert page.status_code == 200 and "Download the signed brand audit" in page.text
        assert client.post(f"/console/audit/{creator}").status_code == 403  # no CSRF token
        r = client.post(f"/console/audit/{creator}", data={"csrf": _csrf(client)})
    assert r.status_code == 200
    assert r.headers["content-disposition"].startswith("attachment")
    report = tmp_path / "audit.html"
    report.write_bytes(r.content)
    assert A.verify(report, service.signing_key.public_key())["creator_id"] == creator
    index = int(re.search(r"ledger record (\d+)", r.text).group(1))
    record = json.loads(service.store.ledger.record(index))
    assert record["type"] == "audit" and record["creator_id"] == creator
