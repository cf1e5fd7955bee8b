"""The brand audit report: should a brand pay this creator for their numbers?

For one creator, over one or more scans (oldest first), a self-contained HTML page (and PDF):
authentic engagement against the claimed numbers, the bought share by likely supply, the groups
that targeted the creator's videos, the trend across scans, certification, and a comparison with
creators of a similar audience. Every figure on the page comes from one JSON payload embedded in
it and signed with the ledger's Ed25519 key (RFC 8785 canonical JSON); ``verify`` checks it
with the public key alone, and the payload's hash is appended to the ledger.

Likely supply is read from a flagged like's reasons (the scan has no labels): automation (a
shared device, a converging network, no view before, machine cadence, chained actions),
coordinated accounts (a lockstep group or dense block, without automation), a paid crowd (a
burst the audience does not explain, and nothing else collective), other.

Peers are the creators whose audience (distinct accounts that liked their videos in the newest
scan) is within half to twice this creator's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import plotly.graph_objects as go
import plotly.io as pio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from jinja2 import Environment, PackageLoader, select_autoescape

from likelens.errors import CertificateError, InputError
from likelens.ledger.api import Ledger, file_digest
from likelens.ledger.log import EvidenceLog, canonical
from likelens.report.embed import script_json

FORMAT = "likelens-audit"
AUTOMATION = ("shared_device", "farm_network", "no_view_before", "regular_cadence",
              "fast_sequence")
COORDINATED = ("lockstep", "dense_block")
KINDS = ("automation", "coordinated", "crowd", "other")
PAYLOAD_ID = "likelens-audit"
SIGNATURE_ID = "likelens-audit-signature"


def _ppm(x: float | None) -> int | None:
    return None if x is None else round(float(x) * 1_000_000)


def _scan_figures(con: duckdb.DuckDBPyConnection, scan_dir: Path, creator: str
                  ) -> dict[str, Any]:
    files = {n: scan_dir / f"{n}.parquet" for n in ("engagements", "videos", "groups")}
    for f in files.values():
        if not f.exists():
            raise InputError("no such file (is this a scan directory?)", file=str(f))
    e, v, g = (str(files[n]) for n in ("engagements", "videos", "groups"))
    auto = ", ".join(f"'{r}'" for r in AUTOMATION)
    coord = ", ".join(f"'{r}'" for r in COORDINATED)
    row = con.execute(f"""
        SELECT count(*) AS videos, coalesce(sum(likes), 0) AS likes,
               coalesce(sum(flagged_likes), 0) AS flagged_likes,
               coalesce(sum(authentic_likes), 0) AS authentic_likes,
               coalesce(sum(views), 0) AS views, median(completion) AS completion
        FROM read_parquet('{v}') WHERE CAST(creator_id AS VARCHAR) = ?""", [creator]).fetchone()
    if row is None or not row[0]:
        return {"found": False, "sha256": file_digest(files.values())}
    kinds = dict(con.execute(f"""
        SELECT CASE WHEN len(list_intersect(reasons, [{auto}])) > 0 THEN 'automation'
                    WHEN len(list_intersect(reasons, [{coord}])) > 0 THEN 'coordinated'
                    WHEN list_contains(reasons, 'video_burst') THEN 'crowd'
                    ELSE 'other' END AS kind, count(*)
        FROM read_parquet('{e}')
        WHERE CAST(creator_id AS VARCHAR) = ? AND action = 'like' AND flagged
        GROUP BY 1""", [creator]).fetchall())
    actions = dict(con.execute(f"""
        SELECT action, count(*) FROM read_parquet('{e}')
        WHERE CAST(creator_id AS VARCHAR) = ? GROUP BY 1""", [creator]).fetchall())
    groups = con.execute(f"""
        WITH mine AS (SELECT DISTINCT CAST(video_id AS VARCHAR) AS vid FROM read_parquet('{v}')
                      WHERE CAST(creator_id AS VARCHAR) = ?),
        gv AS (SELECT group_id, kind, len(accounts) AS n_acc, evidence, unnest(videos) AS vid
               FROM read_parquet('{g}'))
        SELECT CAST(group_id AS VARCHAR), any_value(kind), any_value(n_acc),
               count(DISTINCT gv.vid), any_value(evidence)
        FROM gv JOIN mine USING (vid) GROUP BY group_id
        ORDER BY 4 DESC, 3 DESC, 1""", [creator]).fetchall()
    videos, likes, flagged, authentic, views, completion = row
    return {
        "found": True, "sha256": file_digest(files.values()), "videos": int(videos),
        "likes": int(likes), "flagged_likes": int(flagged),
        "authentic_likes_ppm": _ppm(authentic),
        "authentic_share_ppm": _ppm(authentic / likes) if likes else None,
        "views": int(views), "completion_ppm": _ppm(completion),
        "actions": {str(k): int(n) for k, n in sorted(actions.items())},
        "bought_by_supply": {k: int(kinds.get(k, 0)) for k in KINDS},
        "groups": [{"group_id": gid, "kind": kind, "accounts": int(n_acc),
                    "creator_videos": int(n_vid), "evidence": ev}
                   for gid, kind, n_acc, n_vid, ev in groups],
    }


def _peers(con: duckdb.DuckDBPyConnection, scan_dir: Path, creator: str) -> dict[str, Any]:
    e, v = scan_dir / "engagements.parquet", scan_dir / "videos.parquet"
    rows = con.execute(f"""
        WITH aud AS (
            SELECT CAST(creator_id AS VARCHAR) AS creator, count(DISTINCT user_id) AS audience
            FROM read_parquet('{e}') WHERE action = 'like' AND creator_id IS NOT NULL
            GROUP BY 1
        ), share AS (
            SELECT CAST(creator_id AS VARCHAR) AS creator,
                   sum(authentic_likes) / nullif(sum(likes), 0) AS share
            FROM read_parquet('{v}') GROUP BY 1
        )
        SELECT aud.creator, audience, share FROM aud JOIN share USING (creator)
        WHERE share IS NOT NULL""").fetchall()
    me = next((r for r in rows if r[0] == creator), None)
    if me is None:
        return {"peers": 0}
    peers = [r for r in rows if r[0] != creator and me[1] / 2 <= r[1] <= me[1] * 2]
    shares = sorted(float(r[2]) for r in peers)
    if not shares:
        return {"peers": 0, "audience": int(me[1])}
    below = sum(1 for s in shares if s < me[2])
    return {"peers": len(peers), "audience": int(me[1]),
            "peer_median_authentic_share_ppm": _ppm(shares[len(shares) // 2]),
            "authentic_share_percentile_ppm": _ppm(below / len(shares))}


def _certification(certs: Path | None, creator: str) -> dict[str, Any]:
    if certs is None:
        return {"status": "not checked"}
    revoked: dict[str, str] = {}
    if (certs / "revoked.json").exists():
        rl = json.loads((certs / "revoked.json").read_text())
        revoked = {r["id"]: r["reason"] for r in rl["revocations"]["revoked"]}
    for p in sorted(certs.glob("creator-*.cert.json")):
        doc = json.loads(p.read_text())
        if doc["certificate"]["subject"]["id"] == creator:
            if doc["id"] in revoked:
                return {"status": "revoked", "certificate": doc["id"],
                        "reason": revoked[doc["id"]]}
            return {"status": "certified", "certificate": doc["id"],
                    "issued_at_ms": doc["certificate"]["issued_at_ms"]}
    return {"status": "not certified"}


def payload(creator: str, scan_dirs: list[Path], certs: Path | None = None,
            now: float | None = None) -> dict[str, Any]:
    """Everything the report shows, as integers and text (canonical JSON without floats)."""
    if not scan_dirs:
        raise InputError("give at least one --scan directory")
    con = duckdb.connect()
    try:
        scans = [_scan_figures(con, d, creator) for d in scan_dirs]
        if not any(s["found"] for s in scans):
            raise InputError(f"creator {creator!r} has no videos in the scans given",
                             file=str(scan_dirs[-1]))
        peers = _peers(con, scan_dirs[-1], creator)
    finally:
        con.close()
    return {"format": FORMAT, "version": 1, "creator_id": creator,
            "generated_at_ms": int((time.time() if now is None else now) * 1000),
            "scans": scans, "peers": peers, "certification": _certification(certs, creator)}


def sign(ledger: Ledger, data: dict[str, Any]) -> tuple[str, int]:
    """The payload's signature (base64) and the ledger index of its record."""
    return sign_with(ledger.key, ledger.log, data)


def sign_with(key: Ed25519PrivateKey, log: EvidenceLog, data: dict[str, Any]
              ) -> tuple[str, int]:
    """``sign`` with any key and evidence log (the service's, from the console)."""
    body = canonical(data)
    sig = base64.b64encode(key.sign(body)).decode()
    span = log.append([{"type": "audit", "creator_id": data["creator_id"],
                        "sha256": hashlib.sha256(body).hexdigest()}])
    return sig, span.start


def _trend_figure(data: dict[str, Any]) -> str:
    found = [(i + 1, s) for i, s in enumerate(data["scans"]) if s["found"]]
    x = [f"scan {i}" for i, _ in found]
    fig = go.Figure([
        go.Bar(name="authentic likes", x=x, y=[s["authentic_likes_ppm"] / 1e6 for _, s in found],
               marker_color="#1d6b3a"),
        go.Bar(name="likes counted as bought or doubtful", x=x,
               y=[s["likes"] - s["authentic_likes_ppm"] / 1e6 for _, s in found],
               marker_color="#a3162f")])
    fig.update_layout(barmode="stack", height=320, margin={"l": 50, "r": 10, "t": 30, "b": 40},
                      title="Claimed likes, split into authentic and not", template="plotly_white")
    return pio.to_html(fig, full_html=False, include_plotlyjs=True,
                       config={"displaylogo": False, "staticPlot": True})


def render(data: dict[str, Any], signature: str, public_pem: str, ledger_index: int) -> str:
    env = Environment(loader=PackageLoader("likelens.remedies", "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["pct"] = lambda ppm: "–" if ppm is None else f"{ppm / 1e4:.1f} %"
    last = next(s for s in reversed(data["scans"]) if s["found"])
    return env.get_template("audit.html").render(
        d=data, last=last, kinds=KINDS, trend=_trend_figure(data), signature=signature,
        public_pem=public_pem, ledger_index=ledger_index, payload_id=PAYLOAD_ID,
        signature_id=SIGNATURE_ID, payload_json=script_json(data, sort_keys=True))


def write_pdf(html_path: Path, pdf_path: Path) -> None:
    """Print the report with headless Chromium (the plots are drawn before printing)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome")
    if chromium is None:
        raise InputError("a PDF needs Chromium (Debian: apt install chromium); the HTML "
                         "report was written", file=str(html_path))
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", f"--user-data-dir={profile}",
                            "--no-pdf-header-footer", "--virtual-time-budget=10000",
                            f"--print-to-pdf={pdf_path.resolve()}",
                            html_path.resolve().as_uri()],
                           capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not pdf_path.exists():
        raise InputError(f"Chromium could not print the report ({r.stderr.strip()[-200:]})",
                         file=str(pdf_path))


def verify(report: Path, public: Ed25519PublicKey) -> dict[str, Any]:
    """Check a report's embedded payload against its signature with the public key alone."""
    try:
        text = report.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the report ({exc})", file=str(report)) from None
    found = {}
    for key in (PAYLOAD_ID, SIGNATURE_ID):
        m = re.search(rf'<script type="application/json" id="{key}">(.*?)</script>', text,
                      re.S)
        if m is None:
            raise CertificateError(f"{report}: no {key} block (not a LikeLens audit report)")
        found[key] = m.group(1)
    try:
        data = json.loads(found[PAYLOAD_ID])
        sig = base64.b64decode(json.loads(found[SIGNATURE_ID])["signature"], validate=True)
        public.verify(sig, canonical(data))
    except InvalidSignature:
        raise CertificateError(f"{report}: the signature does not verify (altered, or signed "
                               "with another key)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CertificateError(f"{report}: unreadable payload or signature ({exc})") from None
    return {"creator_id": data["creator_id"], "generated_at_ms": data["generated_at_ms"],
            "scans": len(data["scans"])}


def from_export(export: Path, model: Path | None, work: Path, key: bytes) -> Path:
    """Scan a creator's own export of their videos' engagement (the input contract): with a
    fitted model when given (``apply``), else on its own (``scan``). Returns the scan dir."""
    from likelens import api

    out = work / "export-scan"
    if model is not None:
        api.apply([export], model=model, key=key, out=out, report=False)
    else:
        api.scan([export], key=key, out=out, report=False)
    return out


__all__ = ["from_export", "payload", "render", "sign", "verify", "write_pdf"]
