"""Signed checkpoints (signed tree heads) with Ed25519 from ``cryptography``.

A checkpoint is a frozen value: origin, tree size, root hash and time, in a small text form
(after C2SP's tlog-checkpoint) followed by one signature line. Verification checks the signature
first, then the caller checks the root. The private key is made on first use and stored with
0600 permissions; its public part can be exported and is all a verifier needs.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from likelens.errors import InputError, LedgerVerificationError

SIGNATURE_MARK = "— "


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head."""

    origin: str
    size: int
    root: bytes
    timestamp_ms: int
    signature: bytes = b""

    def body(self) -> bytes:
        return (f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"
                f"{self.timestamp_ms}\n").encode()

    def to_text(self) -> str:
        return (self.body().decode() + "\n" + SIGNATURE_MARK + self.origin + " "
                + base64.b64encode(self.signature).decode() + "\n")

    @staticmethod
    def from_text(text: str) -> Checkpoint:
        try:
            body, sig_line = text.rstrip("\n").split("\n\n", 1)
            origin, size, root, ts = body.split("\n")
            mark_origin, sig = sig_line[len(SIGNATURE_MARK):].rsplit(" ", 1)
            if not sig_line.startswith(SIGNATURE_MARK) or mark_origin != origin:
                raise ValueError("signature line does not name the origin")
            return Checkpoint(origin, int(size), base64.b64decode(root, validate=True), int(ts),
                              base64.b64decode(sig, validate=True))
        except ValueError as exc:
            raise LedgerVerificationError(f"malformed checkpoint: {exc}") from None

    def signed(self, key: Ed25519PrivateKey) -> Checkpoint:
        return Checkpoint(self.origin, self.size, self.root, self.timestamp_ms,
                          key.sign(self.body()))

    def verify_signature(self, public: Ed25519PublicKey) -> None:
        try:
            public.verify(self.signature, self.body())
        except InvalidSignature:
            raise LedgerVerificationError(
                f"checkpoint at size {self.size}: signature does not verify with this public "
                "key (signed with another key, or altered)") from None


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path``; made on first use with 0600 permissions."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InputError(f"signing key is readable by others (mode {mode:o}); chmod 600",
                             file=str(path))
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError("not an Ed25519 private key", file=str(path))
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read public key ({exc})", file=str(path)) from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError("not an Ed25519 public key", file=str(path))
    return key
