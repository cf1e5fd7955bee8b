"""Remedies on scan outputs: ranking by authentic engagement, certificates (issue, verify,
revoke), and creator credits (double-entry invariants as properties)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from likelens import api
from likelens.errors import CertificateError
from likelens.ledger.api import Ledger
from likelens.ledger.checkpoint import load_public
from likelens.remedies import credits as C
from likelens.remedies.certify import Criteria, certify, evaluate, verify
from likelens.remedies.rank import rank, read_scan
from likelens.remedies.rankbench import kendall_tau_b, ndcg_at
from likelens.service.store import ServiceStore
from tests.conftest import KEY, pg_store

# -- ranking ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ranked(demo_scan: Path) -> pa.Table:
    return rank(*read_scan(demo_scan))


def test_rank_has_one_row_per_video_in_score_order(ranked: pa.Table, demo_scan: Path) -> None:
    videos = pq.read_table(demo_scan / "videos.parquet")
    ids = ranked["video_id"].to_pylist()
    assert len(set(ids)) == len(ids)  # one row per video: every one of videos.parquet, and
    assert set(videos["video_id"].to_pylist()) <= set(ids)  # those with other engagement only
    assert ranked["rank"].to_pylist() == list(range(1, ranked.num_rows + 1))
    s = ranked["rank_score"].to_numpy()
    assert np.all(np.diff(s) <= 1e-9)
    for col in ("authentic_likes", "watched_likes", "interaction", "returns", "engagement"):
        assert pc.min(ranked[col]).as_py() >= 0


def test_bought_engagement_adds_nothing(demo_scan: Path) -> None:
    eng, videos = read_scan(demo_scan)
    base = rank(eng, videos)
    top = base["video_id"][0].as_py()
    row = base.filter(pc.equal(base["video_id"], top)).to_pylist()[0]
    # 500 more likes on the top video, all flagged: its score must not move.
    n = 500
    fake = pa.table({c: pa.array([eng[c][0].as_py()] * n, eng[c].type) for c in eng.schema.names})
    fake = fake.set_column(fake.schema.get_field_index("event_id"), "event_id",
                           pa.array([10**12 + i for i in range(n)], eng["event_id"].type))
    fake = fake.set_column(fake.schema.get_field_index("video_id"), "video_id",
                           pa.array([top] * n, eng["video_id"].type))
    fake = fake.set_column(fake.schema.get_field_index("action"), "action",
                           pa.array(["like"] * n, eng["action"].type))
    fake = fake.set_column(fake.schema.get_field_index("flagged"), "flagged",
                           pa.array([True] * n))
    after = rank(pa.concat_tables([eng, fake]), videos)
    again = after.filter(pc.equal(after["video_id"], top)).to_pylist()[0]
    assert again["likes"] == row["likes"] + n
    assert again["engagement"] == pytest.approx(row["engagement"])
    assert again["rank_score"] == pytest.approx(row["rank_score"], rel=1e-6)


def test_small_counts_are_shrunk_toward_the_prior() -> None:
    eng = pa.table({"event_id": [1, 2, 3], "user_id": ["a", "b", "c"],
                    "video_id": [1, 1, 2], "creator_id": ["x", "x", "y"],
                    "action": ["like", "like", "like"], "score": [0.0, 0.0, 0.0],
                    "flagged": [False, False, False], "watch_frac": [1.0, 1.0, 1.0]})
    # video 1: 2 likes in 2 views; video 2: 1 like in 2 views; video 3: 100 views, no likes;
    # median views 2, so the prior's weight is 2 views.
    videos = pa.table({"video_id": [1, 2, 3], "creator_id": ["x", "y", "z"],
                       "views": [2, 2, 100], "completion": [1.0, 1.0, 0.5]})
    out = {r["video_id"]: r for r in rank(eng, videos).to_pylist()}
    r0 = 3 / 104
    assert out[1]["rate_per_1000_views"] == pytest.approx(1000 * (2 + 2 * r0) / 4)
    assert out[1]["rank_score"] == pytest.approx(2 * (2 + 2 * r0) / 4 / r0, rel=1e-6)
    assert out[1]["rank"] == 1 and out[3]["rank"] == 3 and out[3]["rank_score"] == 0


def test_rank_score_finds_good_videos_better_than_raw_likes(demo_day, ranked) -> None:
    """Against the simulator's latent quality on the seeded demo world (a floor, not a tune)."""
    result, _ = demo_day
    q = result.videos
    quality = q["quality"].to_numpy()
    pos = pc.index_in(q["video_id"], pc.cast(ranked["video_id"], q["video_id"].type))
    pos = np.nan_to_num(pos.to_numpy(zero_copy_only=False).astype(float), nan=-1).astype(int)
    score = np.where(pos >= 0, ranked["rank_score"].to_numpy()[np.maximum(pos, 0)], 0.0)
    likes = np.where(pos >= 0, ranked["likes"].to_numpy()[np.maximum(pos, 0)], 0).astype(float)
    assert ndcg_at(score, quality) >= ndcg_at(likes, quality) + 0.02
    assert kendall_tau_b(score, quality) > 0.3


def test_ranking_metrics_on_known_orders() -> None:
    gain = np.array([3.0, 2.0, 1.0, 0.0])
    assert ndcg_at(gain, gain, k=4) == pytest.approx(1.0)
    assert ndcg_at(-gain, gain, k=4) < 0.7
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert kendall_tau_b(x, x) == pytest.approx(1.0)
    assert kendall_tau_b(x, -x) == pytest.approx(-1.0)


def test_rank_cli_writes_the_file(demo_scan: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    r = subprocess.run([sys.executable, "-m", "likelens.cli", "rank", str(demo_scan), "--out",
                        str(out), "--top", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_text().splitlines()[0].startswith('"video_id","creator_id","rank_score"')
    r = subprocess.run([sys.executable, "-m", "likelens.cli", "rank", str(tmp_path), "--out",
                        str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "engagements.parquet" in r.stderr


# -- certificates -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_scans(demo_day, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The demo day cut in two halves by time, each scanned: the same videos in two scans."""
    _, sim_dir = demo_day
    root = tmp_path_factory.mktemp("halves")
    events = pq.read_table(sim_dir / "events.parquet")
    events = events.take(pc.sort_indices(events, [("ts", "ascending")]))
    half = events.num_rows // 2
    out = []
    for i, part in enumerate((events.slice(0, half), events.slice(half))):
        pq.write_table(part, root / f"h{i}.parquet")
        api.scan([root / f"h{i}.parquet"], key=KEY, out=root / f"s{i}", report=False)
        out.append(root / f"s{i}")
    return out


def test_certificates_are_issued_verified_and_idempotent(two_scans, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    crit = Criteria()
    got = certify(two_scans, ledger, tmp_path / "certs", crit)
    assert got["issued"] > 5
    certs = sorted((tmp_path / "certs").glob("video-*.cert.json"))
    assert certs and sorted((tmp_path / "certs").glob("creator-*.cert.json"))
    public = load_public(tmp_path / "ledger" / "public.pem")
    info = verify(certs[0], public)
    doc = json.loads(certs[0].read_text())
    assert info["id"] == doc["id"]
    record = json.loads(ledger.log.record(doc["ledger_index"]))
    assert record["type"] == "certificate" and record["id"] == doc["id"]
    # every certified video meets the criteria in both scans' numbers
    ev = doc["certificate"]["evidence"]
    assert ev["scans"] >= crit.min_scans and ev["likes"] >= crit.min_likes
    assert ev["authentic_share_ppm"] >= crit.min_authentic * 1e6
    # the same scans again: nothing new
    assert certify(two_scans, ledger, tmp_path / "certs", crit)["issued"] == 0
    # one scan is not enough
    assert not evaluate(two_scans[:1], crit)["videos"]


def test_altered_or_foreign_certificates_fail(two_scans, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    certify(two_scans, ledger, tmp_path / "certs", Criteria())
    cert = sorted((tmp_path / "certs").glob("video-*.cert.json"))[0]
    doc = json.loads(cert.read_text())
    doc["certificate"]["evidence"]["likes"] += 1000
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    public = load_public(tmp_path / "ledger" / "public.pem")
    with pytest.raises(CertificateError, match="signature"):
        verify(forged, public)
    other = Ledger(tmp_path / "other")
    with pytest.raises(CertificateError):
        verify(cert, other.public_key)
    r = subprocess.run([sys.executable, "-m", "likelens.cli", "certify", "verify", str(forged),
                        "--pubkey", str(tmp_path / "ledger" / "public.pem")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "signature" in r.stderr
    r = subprocess.run([sys.executable, "-m", "likelens.cli", "certify", "verify", str(cert),
                        "--pubkey", str(tmp_path / "ledger" / "public.pem")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["valid"] is True


def test_bought_engagement_in_a_later_scan_revokes(two_scans, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    certs = tmp_path / "certs"
    certify(two_scans, ledger, certs, Criteria())
    certified_creators = {json.loads(p.read_text())["certificate"]["subject"]["id"]: p
                          for p in certs.glob("creator-*.cert.json")}
    cert = next(p for p in sorted(certs.glob("video-*.cert.json"))
                if json.loads(p.read_text())["certificate"]["subject"]["creator_id"]
                in certified_creators)
    doc = json.loads(cert.read_text())
    video = doc["certificate"]["subject"]["id"]
    # A third scan in which that video's likes are found bought.
    later = tmp_path / "s2"
    shutil.copytree(two_scans[1], later)
    v = pq.read_table(later / "videos.parquet")
    hit = pc.equal(pc.cast(v["video_id"], pa.string()), video)
    v = v.set_column(v.schema.get_field_index("flagged_likes"), "flagged_likes",
                     pc.if_else(hit, v["likes"], v["flagged_likes"]))
    pq.write_table(v, later / "videos.parquet")
    got = certify([*two_scans, later], ledger, certs, Criteria())
    assert got["revoked"] >= 2  # the video and its creator
    public = load_public(tmp_path / "ledger" / "public.pem")
    verify(cert, public)  # still genuinely signed...
    with pytest.raises(CertificateError, match="revoked"):
        verify(cert, public, certs / "revoked.json")  # ...but revoked
    ccert = certified_creators[doc["certificate"]["subject"]["creator_id"]]
    with pytest.raises(CertificateError, match="revoked"):
        verify(ccert, public, certs / "revoked.json")  # the creator's too
    records = [json.loads(d) for _, d in ledger.log.store.records(0, ledger.log.size)]
    revoked = {r["id"]: r["reason"] for r in records if r["type"] == "revocation"}
    assert "flagged share" in revoked[doc["id"]]
    assert revoked[json.loads(ccert.read_text())["id"]].startswith("bought engagement")
    # an edited revocation list does not verify
    rl = json.loads((certs / "revoked.json").read_text())
    rl["revocations"]["revoked"] = []
    (tmp_path / "rl.json").write_text(json.dumps(rl))
    with pytest.raises(CertificateError, match="revocation list"):
        verify(cert, public, tmp_path / "rl.json")


# -- credits ----------------------------------------------------------------------------------


def _store() -> ServiceStore:
    return ServiceStore("sqlite://")


def _table(ids, creators, actions, scores, flagged, watch=None) -> pa.Table:
    n = len(ids)
    return pa.table({"event_id": pa.array([str(i) for i in ids]),
                     "creator_id": pa.array(creators), "action": pa.array(actions),
                     "score": pa.array(scores, pa.float64()), "flagged": pa.array(flagged),
                     "watch_frac": pa.array(watch if watch is not None else [1.0] * n,
                                            pa.float64())})


def test_earn_then_claw_back_exactly_what_was_earned_and_penalties_escalate() -> None:
    store = _store()
    n = 12
    first = _table(range(n), ["c1"] * n, ["like"] * n, [0.0] * n, [False] * n)
    got = C.post(store, first, "scan-a")
    assert got.earned == n * C.MICRO and C.balance(store, "c1") == n * C.MICRO
    # the next scan finds all of them bought: back to zero, then a first penalty
    later = _table(range(n), ["c1"] * n, ["like"] * n, [1.0] * n, [True] * n)
    got = C.post(store, later, "scan-b")
    assert got.clawed == n * C.MICRO
    assert C.balance(store, "c1") == -C.PENALTY_BASE
    # and a third finds more: the penalty doubles, nothing is clawed twice
    more = _table(range(n, 2 * n), ["c1"] * n, ["like"] * n, [1.0] * n, [True] * n)
    got = C.post(store, pa.concat_tables([later, more]), "scan-c")
    assert got.clawed == 0 and got.penalties == 2 * C.PENALTY_BASE
    kinds = [r["kind"] for r in C.statement(store, "c1")]
    assert kinds == ["earn", "clawback", "penalty", "penalty"]
    # a scan of an overlapping window sees the same bought likes again: no new penalty
    got = C.post(store, pa.concat_tables([later, more]), "scan-d")
    assert got.penalties == 0 and got.clawed == 0
    assert not C.unbalanced(store) and sum(C.trial_balance(store).values()) == 0


def test_credits_on_postgresql() -> None:
    with pg_store() as store:
        n = 15
        C.post(store, _table(range(n), ["c1"] * n, ["like"] * n, [0.0] * n, [False] * n), "a")
        C.post(store, _table(range(n), ["c1"] * n, ["like"] * n, [1.0] * n, [True] * n), "b")
        assert C.post(store, _table(range(n), ["c1"] * n, ["like"] * n, [1.0] * n,
                                    [True] * n), "b").transactions == 0
        assert C.balance(store, "c1") == -C.PENALTY_BASE
        assert not C.unbalanced(store) and sum(C.trial_balance(store).values()) == 0


scan_strategy = st.lists(
    st.tuples(st.integers(0, 30), st.sampled_from(["c1", "c2", "c3"]),
              st.sampled_from(["like", "like", "comment", "share", "follow"]),
              st.floats(0, 1), st.booleans(), st.one_of(st.none(), st.floats(0, 1.5))),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scans=st.lists(scan_strategy, min_size=1, max_size=4), replay=st.integers(0, 3))
def test_credit_ledger_properties(scans, replay) -> None:
    """Postings sum to zero, replays change nothing, a clawback never exceeds what the
    engagement earned."""
    store = _store()
    tables = []
    for rows in scans:
        # one creator per event id, as in a real log
        rows = [(i, f"c{i % 3}", a, s, f, w) for i, _, a, s, f, w in rows]
        ids, creators, actions, scores, flagged, watch = zip(*rows, strict=True)
        tables.append(_table(ids, list(creators), list(actions), list(scores), list(flagged),
                             [np.nan if w is None else w for w in watch]))
    for k, t in enumerate(tables):
        C.post(store, t, f"scan-{k}")
    assert not C.unbalanced(store)
    assert sum(C.trial_balance(store).values()) == 0
    before = C.trial_balance(store)
    k = replay % len(tables)
    assert C.post(store, tables[k], f"scan-{k}").transactions == 0
    assert C.trial_balance(store) == before
    for c in ("c0", "c1", "c2"):
        rows = C.statement(store, c)
        earned = sum(r["amount"] for r in rows if r["kind"] == "earn")
        clawed = -sum(r["amount"] for r in rows if r["kind"] == "clawback")
        assert 0 <= clawed <= earned
    import sqlalchemy as sa

    from likelens.service import tables as T

    with store.engine.connect() as con:
        claws = dict(con.execute(sa.select(T.credit_postings.c.txn_id,
                                           sa.func.sum(T.credit_postings.c.amount)).where(
            T.credit_postings.c.account.startswith("creator:"),
            T.credit_postings.c.txn_id.startswith("clawback:")).group_by(
            T.credit_postings.c.txn_id)).all())
        per_txn = dict(con.execute(sa.select(T.credit_earnings.c.clawback_txn,
                                             sa.func.sum(T.credit_earnings.c.amount)).where(
            T.credit_earnings.c.clawback_txn.is_not(None)).group_by(
            T.credit_earnings.c.clawback_txn)).all())
    assert {t: -a for t, a in claws.items()} == per_txn


# -- brand audit ------------------------------------------------------------------------------


def _busiest_creator(scan: Path) -> str:
    v = pq.read_table(scan / "videos.parquet", columns=["creator_id", "flagged_likes"])
    by = v.group_by("creator_id").aggregate([("flagged_likes", "sum")]).sort_by(
        [("flagged_likes_sum", "descending")])
    return str(by["creator_id"][0].as_py())


def test_audit_report_is_signed_and_renders_in_chromium(two_scans, tmp_path: Path) -> None:
    from likelens.remedies import audit as A
    from tests.conftest import require_program

    creator = _busiest_creator(two_scans[1])
    ledger = Ledger(tmp_path / "ledger")
    data = A.payload(creator, two_scans)
    last = data["scans"][-1]
    assert last["found"] and last["flagged_likes"] > 0
    assert sum(last["bought_by_supply"].values()) == last["flagged_likes"]
    assert last["groups"], "the demo's market targets its busiest buyer with a group"
    sig, index = A.sign(ledger, data)
    page = A.render(data, sig, ledger.pubkey_pem(), index)
    report = tmp_path / "audit.html"
    report.write_text(page, encoding="utf-8")
    assert A.verify(report, ledger.public_key)["creator_id"] == creator
    # an edited figure in the payload breaks the signature; another key does not verify
    forged = tmp_path / "forged.html"
    forged.write_text(page.replace(f'"likes":{last["likes"]}', f'"likes":{last["likes"] + 1}'))
    with pytest.raises(CertificateError):
        A.verify(forged, ledger.public_key)
    with pytest.raises(CertificateError):
        A.verify(report, Ledger(tmp_path / "other").public_key)
    record = json.loads(ledger.log.record(index))
    assert record["type"] == "audit" and record["creator_id"] == creator

    chromium = require_program("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    shots = Path(__file__).resolve().parents[1] / "build" / "test-artifacts" / "remedies"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page_ = browser.new_page(viewport={"width": 1100, "height": 1400})
        errors: list[str] = []
        page_.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page_.on("pageerror", lambda e: errors.append(str(e)))
        page_.goto(report.as_uri())
        page_.wait_for_selector(".main-svg", timeout=30_000)
        page_.screenshot(path=str(shots / "audit.png"), full_page=True)
        text = page_.inner_text("main")
        browser.close()
    assert not errors
    assert f"{last['likes']:,}" in text and "Bought likes by likely supply" in text
    # and as PDF, printed by Chromium
    pdf = tmp_path / "audit.pdf"
    A.write_pdf(report, pdf)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000


def test_audit_from_a_creators_own_export(demo_day, demo_scan: Path, tmp_path: Path) -> None:
    """A creator hands over their videos' engagement; the fitted model labels it."""
    _, sim_dir = demo_day
    creator = _busiest_creator(demo_scan)
    events = pq.read_table(sim_dir / "events.parquet")
    mine = events.filter(pc.equal(pc.cast(events["creator_id"], pa.string()), creator))
    export = tmp_path / "export.csv"
    import pyarrow.csv as pcsv

    pcsv.write_csv(mine, export)
    r = subprocess.run([sys.executable, "-m", "likelens.cli", "audit", creator, "--export",
                        str(export), "--model", str(demo_scan / "model"), "--ledger",
                        str(tmp_path / "ledger"), "--out", str(tmp_path / "a.html")],
                       capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "LIKELENS_KEY": KEY.decode()})
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "likelens.cli", "audit", "verify",
                        str(tmp_path / "a.html"), "--pubkey",
                        str(tmp_path / "ledger" / "public.pem")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["creator_id"] == creator
    r = subprocess.run([sys.executable, "-m", "likelens.cli", "audit", "no-such-creator",
                        "--scan", str(demo_scan), "--ledger", str(tmp_path / "ledger"),
                        "--out", str(tmp_path / "b.html")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no videos" in r.stderr
