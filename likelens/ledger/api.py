"""The ledger as the CLI and the scanner use it: a directory with the database and the key.

    DIR/ledger.db       SQLite (WAL): records, subtree hashes, checkpoints
    DIR/signing.key     Ed25519 private key, 0600, made on first use
    DIR/public.pem      its public part, all a verifier needs
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from likelens.errors import InputError, LedgerVerificationError
from likelens.ledger import hashing
from likelens.ledger.checkpoint import Checkpoint, load_or_create_key, public_pem
from likelens.ledger.log import EvidenceLog
from likelens.ledger.store import SqliteStore


class Ledger:
    """A ledger directory: its log and its signing key."""

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        self.dir = Path(directory)
        if not (self.dir / "ledger.db").exists() and not create:
            raise InputError("no ledger here; run `likelens ledger init` first",
                             file=str(self.dir))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = load_or_create_key(self.dir / "signing.key")
        pub = self.dir / "public.pem"
        if not pub.exists():
            pub.write_text(public_pem(self.key), encoding="ascii")
        self.log = EvidenceLog(SqliteStore(self.dir / "ledger.db"))

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.key.public_key()

    def pubkey_pem(self) -> str:
        return public_pem(self.key)

    def prove(self, index: int) -> dict[str, Any]:
        """A self-contained bundle: the record, its inclusion proof and a signed checkpoint."""
        return prove(self.log, self.key, index)

    def export(self) -> Iterable[dict[str, Any]]:
        """Every record with its index, in order (JSON Lines when printed)."""
        size, step = self.log.size, 10_000
        for start in range(0, size, step):
            for i, data in self.log.store.records(start, min(size, start + step)):
                yield {"index": i, "record": json.loads(data)}


def prove(log: EvidenceLog, key: Ed25519PrivateKey, index: int) -> dict[str, Any]:
    """The record at ``index``, its inclusion proof and the checkpoint it proves into, signed
    now with ``key`` (the ledger directory's and the service's bundles alike)."""
    size = log.size
    if not 0 <= index < size:
        raise InputError(f"index {index} outside the log (size {size})")
    cp = log.checkpoint(key)
    record = log.record(index)
    return {
        "index": index,
        "record": record.decode("utf-8"),
        "leaf_hash": hashing.leaf_hash(record).hex(),
        "proof": [p.hex() for p in log.inclusion_proof(index, cp.size)],
        "checkpoint": cp.to_text(),
    }


def verify_bundle(bundle: Mapping[str, Any], public: Ed25519PublicKey) -> Checkpoint:
    """Check a ``prove`` bundle with nothing but the public key: signature, leaf, inclusion."""
    cp = Checkpoint.from_text(bundle["checkpoint"])
    cp.verify_signature(public)
    record = str(bundle["record"]).encode("utf-8")
    leaf = hashing.leaf_hash(record)
    if leaf.hex() != bundle["leaf_hash"]:
        raise LedgerVerificationError(
            f"record at index {bundle['index']} does not match its leaf hash: expected "
            f"{bundle['leaf_hash']}, computed {leaf.hex()}", index=int(bundle["index"]),
            expected=str(bundle["leaf_hash"]), computed=leaf.hex())
    hashing.verify_inclusion(int(bundle["index"]), cp.size, leaf,
                             [bytes.fromhex(p) for p in bundle["proof"]], cp.root)
    return cp


def file_digest(paths: Iterable[str | Path]) -> str:
    """SHA-256 over the input files (names and bytes, in order): what a decision was made on."""
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode() + b"\x00")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def record_scan(ledger: Ledger, summary: Mapping[str, Any], engagements: Any, groups: Any,
                files: Iterable[str | Path]) -> range:
    """Append a scan's decisions: one scan record, its groups, then each flagged engagement.

    Ids are written as text and scores as integer parts per million, so the canonical JSON has no
    number a reader could round differently.
    """
    files = list(files)
    head = {
        "type": "scan", "version": summary["version"], "input_sha256": file_digest(files),
        "files": [str(f) for f in files], "detectors": summary["detectors"],
        "thresholds": {k: round(float(v) * 1e6) for k, v in summary["thresholds"].items()},
        "counts": summary["counts"],
    }
    start = ledger.log.size
    rows: list[dict[str, Any]] = [head]
    for g in groups.to_pylist():
        rows.append({"type": "group", "scan": start, "group_id": g["group_id"],
                     "kind": g["kind"], "accounts": g["accounts"], "videos": g["videos"],
                     "first_ts": g["first_ts"], "last_ts": g["last_ts"],
                     "evidence": g["evidence"]})
    flagged = engagements.filter(engagements["flagged"])
    for e in flagged.to_pylist():
        rows.append({"type": "decision", "scan": start, "event_id": str(e["event_id"]),
                     "user_id": str(e["user_id"]),
                     "video_id": None if e["video_id"] is None else str(e["video_id"]),
                     "action": e["action"], "ts": e["ts"],
                     "score_ppm": round(e["score"] * 1e6), "reasons": e["reasons"]})
    return ledger.log.append(rows)
