"""Quality certificates for videos and creators, signed, ledgered and revocable.

A subject is certified when, across the scans given (oldest first), it meets every criterion of
``Criteria`` (docs/remedies.md says why each one is there):

- seen in at least ``min_scans`` scans, with at least ``min_likes`` likes in all;
- authentic share (authentic likes / likes, summed over scans) at least ``min_authentic``, and
  flagged likes at most ``max_flagged`` of likes, in every scan;
- completion (the median share of the video its viewers watch) at least ``min_completion``;
- interaction depth: authentic comments, shares and follows at least ``min_depth`` per like;
- no unresolved group: no group of the newest scan targets the video (for a creator: any of
  the creator's videos).

A creator also needs ``min_videos`` certified videos. A certificate is RFC 8785 canonical JSON
signed with the ledger's Ed25519 key, and its hash is appended to the ledger. A later run whose
newest scan finds bought engagement on a certified subject (a flagged share above
``max_flagged``, or a group) revokes the certificate: a revocation record in the ledger and a
signed revocation list beside the certificates. ``verify`` needs only the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from likelens.errors import CertificateError, InputError
from likelens.ledger.api import Ledger, file_digest
from likelens.ledger.log import canonical

FORMAT = "likelens-certificate"
REVOCATIONS = "revoked.json"


@dataclass(frozen=True)
class Criteria:
    min_scans: int = 2
    min_likes: int = 20
    min_authentic: float = 0.95
    max_flagged: float = 0.02
    min_completion: float = 0.3
    min_depth: float = 0.01
    min_videos: int = 2


def _ppm(x: float) -> int:
    return round(float(x) * 1_000_000)


def _scan_rows(scan_dir: Path) -> tuple[pa.Table, set[str], str]:
    """Per video of one scan: likes, flagged, authentic, completion, depth; the videos its
    groups target; the digest of its files."""
    files = [scan_dir / n for n in ("engagements.parquet", "videos.parquet", "groups.parquet")]
    for f in files:
        if not f.exists():
            raise InputError("no such file (is this a scan directory?)", file=str(f))
    con = duckdb.connect()
    try:
        con.register("eng", pq.read_table(files[0], columns=[
            "video_id", "creator_id", "action", "score", "flagged"]))
        con.register("vids", pq.read_table(files[1]))
        rows = con.sql("""
            WITH d AS (
                SELECT CAST(video_id AS VARCHAR) AS video_id,
                       sum(CASE WHEN flagged THEN 0 ELSE 1 - score END)
                           FILTER (WHERE action IN ('comment', 'share', 'follow')) AS depth
                FROM eng WHERE video_id IS NOT NULL GROUP BY 1
            )
            SELECT CAST(v.video_id AS VARCHAR) AS video_id,
                   CAST(v.creator_id AS VARCHAR) AS creator_id, v.likes, v.flagged_likes,
                   v.authentic_likes, v.completion, coalesce(d.depth, 0) AS depth
            FROM vids v LEFT JOIN d ON d.video_id = CAST(v.video_id AS VARCHAR)
            WHERE v.video_id IS NOT NULL
        """).to_arrow_table()
    finally:
        con.close()
    grouped = {str(v) for vs in pq.read_table(files[2], columns=["videos"])["videos"].to_pylist()
               for v in (vs or [])}
    return rows, grouped, file_digest(files)


@dataclass
class _Tally:
    creator: str
    scans: int = 0
    likes: int = 0
    flagged: int = 0
    authentic: float = 0.0
    depth: float = 0.0
    completion: float | None = None
    worst_flagged: float = 0.0

    def add(self, r: dict[str, Any]) -> None:
        self.scans += 1
        self.likes += int(r["likes"] or 0)
        self.flagged += int(r["flagged_likes"] or 0)
        self.authentic += float(r["authentic_likes"] or 0.0)
        self.depth += float(r["depth"] or 0.0)
        if r["completion"] is not None:
            self.completion = float(r["completion"])  # the newest scan's
        if r["likes"]:
            self.worst_flagged = max(self.worst_flagged, r["flagged_likes"] / r["likes"])

    def failures(self, c: Criteria, grouped: bool) -> list[str]:
        out = []
        if self.scans < c.min_scans:
            out.append(f"seen in {self.scans} scans (< {c.min_scans})")
        if self.likes < c.min_likes:
            out.append(f"{self.likes} likes (< {c.min_likes})")
        share = self.authentic / self.likes if self.likes else 0.0
        if share < c.min_authentic:
            out.append(f"authentic share {share:.3f} (< {c.min_authentic})")
        if self.worst_flagged > c.max_flagged:
            out.append(f"flagged share {self.worst_flagged:.3f} in a scan (> {c.max_flagged})")
        if self.completion is None or self.completion < c.min_completion:
            out.append(f"completion {self.completion} (< {c.min_completion})")
        if self.likes and self.depth / self.likes < c.min_depth:
            out.append(f"depth {self.depth / self.likes:.4f} per like (< {c.min_depth})")
        if grouped:
            out.append("targeted by a group of the newest scan")
        return out

    def evidence(self) -> dict[str, Any]:
        return {"scans": self.scans, "likes": self.likes, "flagged_likes": self.flagged,
                "authentic_share_ppm": _ppm(self.authentic / self.likes) if self.likes else 0,
                "completion_ppm": None if self.completion is None else _ppm(self.completion),
                "depth_per_like_ppm": _ppm(self.depth / self.likes) if self.likes else 0}


def evaluate(scan_dirs: list[Path], criteria: Criteria) -> dict[str, Any]:
    """Who meets the criteria over ``scan_dirs`` (oldest first), who does not and why, and
    who shows bought engagement in the newest scan (what revokes a certificate)."""
    if not scan_dirs:
        raise InputError("give at least one scan directory")
    videos: dict[str, _Tally] = {}
    digests = []
    last_rows: pa.Table | None = None
    grouped: set[str] = set()
    for d in scan_dirs:
        rows, grouped, digest = _scan_rows(d)
        digests.append(digest)
        last_rows = rows
        for r in rows.to_pylist():
            videos.setdefault(r["video_id"], _Tally(r["creator_id"])).add(r)
    assert last_rows is not None
    bought_now: dict[str, str] = {}
    for r in last_rows.to_pylist():
        share = r["flagged_likes"] / r["likes"] if r["likes"] else 0.0
        if share > criteria.max_flagged:
            bought_now[r["video_id"]] = f"flagged share {share:.3f} in the newest scan"
        elif r["video_id"] in grouped:
            bought_now[r["video_id"]] = "targeted by a group in the newest scan"
    video_ok, video_why = {}, {}
    creators: dict[str, _Tally] = {}
    creator_videos: dict[str, list[str]] = {}
    for vid, t in videos.items():
        fails = t.failures(criteria, vid in grouped)
        (video_ok if not fails else video_why)[vid] = t if not fails else fails
        ct = creators.setdefault(t.creator, _Tally(t.creator))
        ct.scans = max(ct.scans, t.scans)
        ct.likes += t.likes
        ct.flagged += t.flagged
        ct.authentic += t.authentic
        ct.depth += t.depth
        ct.worst_flagged = max(ct.worst_flagged, t.worst_flagged)
        if t.completion is not None:
            ct.completion = max(ct.completion or 0.0, t.completion)
        creator_videos.setdefault(t.creator, []).append(vid)
    creator_ok, creator_why = {}, {}
    for cid, t in creators.items():
        vids = creator_videos[cid]
        fails = t.failures(criteria, any(v in grouped for v in vids))
        n_ok = sum(1 for v in vids if v in video_ok)
        if n_ok < criteria.min_videos:
            fails.append(f"{n_ok} certified videos (< {criteria.min_videos})")
        (creator_ok if not fails else creator_why)[cid] = t if not fails else fails
        if any(v in bought_now for v in vids):
            bought_now["creator:" + cid] = "bought engagement on one of the creator's videos"
    return {"videos": video_ok, "creators": creator_ok, "video_failures": video_why,
            "creator_failures": creator_why, "bought_now": bought_now, "digests": digests}


def _sign(ledger: Ledger, body: dict[str, Any]) -> str:
    return base64.b64encode(ledger.key.sign(canonical(body))).decode()


def _key_id(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def certify(scan_dirs: list[Path], ledger: Ledger, out: Path, criteria: Criteria,
            now: float | None = None) -> dict[str, int]:
    """Issue certificates for subjects that newly qualify, revoke those of subjects with bought
    engagement in the newest scan; returns counts."""
    result = evaluate(scan_dirs, criteria)
    out.mkdir(parents=True, exist_ok=True)
    issued_at = int((now if now is not None else time.time()) * 1000)
    existing = {p.name: json.loads(p.read_text()) for p in out.glob("*.cert.json")}
    revoked = _read_revocations(out)
    held = {c["certificate"]["subject"]["kind"] + ":" + c["certificate"]["subject"]["id"]: c
            for c in existing.values() if c["id"] not in revoked}
    key_id = _key_id(ledger.public_key)
    issued = 0
    records: list[dict[str, Any]] = []
    files: list[tuple[Path, dict[str, Any]]] = []
    for kind, found in (("video", result["videos"]), ("creator", result["creators"])):
        for sid, tally in sorted(found.items()):
            if f"{kind}:{sid}" in held:
                continue
            subject = {"kind": kind, "id": sid}
            if kind == "video":
                subject["creator_id"] = tally.creator
            body = {"format": FORMAT, "version": 1, "subject": subject,
                    "criteria": {k: _ppm(v) if isinstance(v, float) else v
                                 for k, v in asdict(criteria).items()},
                    "evidence": tally.evidence(), "scans_sha256": result["digests"],
                    "issued_at_ms": issued_at, "key_id": key_id}
            cert_id = hashlib.sha256(canonical(body)).hexdigest()[:32]
            doc = {"id": cert_id, "certificate": body, "signature": _sign(ledger, body)}
            records.append({"type": "certificate", "id": cert_id, "subject": subject,
                            "sha256": hashlib.sha256(canonical(body)).hexdigest()})
            files.append((out / f"{kind}-{_safe(sid)}.cert.json", doc))
            issued += 1
    newly_revoked = []
    for key, doc in held.items():
        kind, sid = key.split(":", 1)
        why = result["bought_now"].get(sid if kind == "video" else "creator:" + sid)
        if why:
            newly_revoked.append((doc["id"], why))
            records.append({"type": "revocation", "id": doc["id"], "reason": why,
                            "at_ms": issued_at})
    span = ledger.log.append(records) if records else range(0)
    for (path, doc), idx in zip(files, span, strict=False):
        doc["ledger_index"] = idx
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if newly_revoked:
        revoked.update({cid: why for cid, why in newly_revoked})
        body = {"format": FORMAT + "-revocations", "version": 1, "key_id": key_id,
                "updated_at_ms": issued_at,
                "revoked": [{"id": c, "reason": w} for c, w in sorted(revoked.items())]}
        (out / REVOCATIONS).write_text(json.dumps(
            {"revocations": body, "signature": _sign(ledger, body)}, indent=2,
            sort_keys=True) + "\n", encoding="utf-8")
    return {"issued": issued, "revoked": len(newly_revoked), "held": len(held),
            "videos_failing": len(result["video_failures"]),
            "creators_failing": len(result["creator_failures"])}


def _safe(s: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)[:80]
    return keep if keep == s else f"{keep}-{hashlib.sha256(s.encode()).hexdigest()[:8]}"


def _read_revocations(out: Path) -> dict[str, str]:
    path = out / REVOCATIONS
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {r["id"]: r["reason"] for r in doc["revocations"]["revoked"]}


def verify(cert_path: Path, public: Ed25519PublicKey, revocations: Path | None = None
           ) -> dict[str, Any]:
    """Check a certificate offline; raises ``CertificateError`` (exit 4) when it is forged,
    altered, or revoked by the (signature-checked) revocation list."""
    try:
        doc = json.loads(cert_path.read_text(encoding="utf-8"))
        body, sig = doc["certificate"], base64.b64decode(doc["signature"], validate=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CertificateError(f"{cert_path}: not a certificate ({exc})") from None
    if body.get("format") != FORMAT:
        raise CertificateError(f"{cert_path}: not a {FORMAT}")
    try:
        public.verify(sig, canonical(body))
    except InvalidSignature:
        raise CertificateError(f"{cert_path}: signature does not verify with this public key "
                               "(altered, or signed with another key)") from None
    if hashlib.sha256(canonical(body)).hexdigest()[:32] != doc.get("id"):
        raise CertificateError(f"{cert_path}: id does not match the certificate's content")
    if revocations is not None:
        try:
            rdoc = json.loads(revocations.read_text(encoding="utf-8"))
            rbody = rdoc["revocations"]
            public.verify(base64.b64decode(rdoc["signature"], validate=True), canonical(rbody))
        except (OSError, ValueError, KeyError, TypeError, InvalidSignature) as exc:
            raise CertificateError(f"{revocations}: revocation list does not verify "
                                   f"({exc.__class__.__name__})") from None
        for r in rbody["revoked"]:
            if r["id"] == doc["id"]:
                raise CertificateError(f"{cert_path}: revoked ({r['reason']})")
    return {"id": doc["id"], "subject": body["subject"], "issued_at_ms": body["issued_at_ms"],
            "ledger_index": doc.get("ledger_index")}
