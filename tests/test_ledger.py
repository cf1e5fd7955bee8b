"""The evidence ledger: RFC 6962 vectors, a naive reference, property tests, tamper and crash."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from likelens.errors import LedgerVerificationError
from likelens.ledger import hashing
from likelens.ledger.checkpoint import Checkpoint, load_or_create_key
from likelens.ledger.log import EvidenceLog
from likelens.ledger.store import MemoryStore, SqliteStore

# Certificate Transparency's published test vectors (RFC 6962 reference tree of 8 leaves).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                        "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
CT_INCLUSION = [  # (0-based index, size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CT_CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
LEAF_HASHES = [hashing.leaf_hash(d) for d in CT_LEAVES]


# A deliberately naive reference: RFC 6962 §2.1 written as literally as possible.
def naive_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def test_published_roots() -> None:
    for n, root in CT_ROOTS.items():
        assert hashing.root_of(LEAF_HASHES[:n]).hex() == root
        assert naive_mth(CT_LEAVES[:n]).hex() == root


def test_published_inclusion_proofs() -> None:
    for index, size, proof in CT_INCLUSION:
        got = hashing.inclusion_proof(index, size, hashing.list_subtree(LEAF_HASHES[:size]))
        assert [p.hex() for p in got] == proof
        hashing.verify_inclusion(index, size, LEAF_HASHES[index], got,
                                 bytes.fromhex(CT_ROOTS[size]))


def test_published_consistency_proofs() -> None:
    for old, new, proof in CT_CONSISTENCY:
        got = hashing.consistency_proof(old, new, hashing.list_subtree(LEAF_HASHES[:new]))
        assert [p.hex() for p in got] == proof
        hashing.verify_consistency(old, new, bytes.fromhex(CT_ROOTS[old]),
                                   bytes.fromhex(CT_ROOTS[new]), got)


def _log(n: int) -> tuple[EvidenceLog, list[bytes]]:
    log = EvidenceLog(MemoryStore())
    log.append({"i": i, "x": "y" * (i % 5)} for i in range(n))
    leaves = [hashing.leaf_hash(log.record(i)) for i in range(n)]
    return log, leaves


def _flip(b: bytes, bit: int) -> bytes:
    i = (bit // 8) % len(b)
    return b[:i] + bytes([b[i] ^ (1 << (bit % 8))]) + b[i + 1:]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.data())
def test_every_inclusion_proof_verifies_and_every_bit_flip_fails(n: int, data) -> None:
    log, leaves = _log(n)
    index = data.draw(st.integers(0, n - 1))
    size = data.draw(st.integers(index + 1, n))
    proof = log.inclusion_proof(index, size)
    assert proof == naive_path(index, [log.record(i) for i in range(size)])
    root = log.root(size)
    assert root == naive_mth([log.record(i) for i in range(size)])
    hashing.verify_inclusion(index, size, leaves[index], proof, root)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(LedgerVerificationError):
        hashing.verify_inclusion(index, size, _flip(leaves[index], bit), proof, root)
    with pytest.raises(LedgerVerificationError):
        hashing.verify_inclusion(index, size, leaves[index], proof, _flip(root, bit))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1:]]
        with pytest.raises(LedgerVerificationError):
            hashing.verify_inclusion(index, size, leaves[index], bad, root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.data())
def test_every_consistency_proof_verifies_and_every_bit_flip_fails(n: int, data) -> None:
    log, _ = _log(n)
    old = data.draw(st.integers(1, n))
    proof = log.consistency_proof(old, n)
    assert proof == naive_subproof(old, [log.record(i) for i in range(n)], True)
    old_root, new_root = log.root(old), log.root(n)
    hashing.verify_consistency(old, n, old_root, new_root, proof)
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(LedgerVerificationError):
        hashing.verify_consistency(old, n, _flip(old_root, bit), new_root, proof)
    with pytest.raises(LedgerVerificationError):
        hashing.verify_consistency(old, n, old_root, _flip(new_root, bit), proof)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1:]]
        with pytest.raises(LedgerVerificationError):
            hashing.verify_consistency(old, n, old_root, new_root, bad)


def test_checkpoint_text_round_trip_and_signature() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    cp = Checkpoint("likelens/test", 5, b"\x01" * 32, 1_700_000_000_000).signed(key)
    back = Checkpoint.from_text(cp.to_text())
    assert back == cp
    back.verify_signature(key.public_key())
    with pytest.raises(LedgerVerificationError, match="signature"):
        back.verify_signature(other.public_key())


@pytest.fixture
def sqlite_log(tmp_path: Path):
    store = SqliteStore(tmp_path / "ledger.db")
    log = EvidenceLog(store)
    log.append({"decision": i, "group": f"g{i % 3}"} for i in range(40))
    key = load_or_create_key(tmp_path / "signing.key")
    cp = log.checkpoint(key)
    return log, store, key, cp, tmp_path


def test_key_is_private_and_clean_log_verifies(sqlite_log) -> None:
    log, _, key, cp, tmp = sqlite_log
    assert (tmp / "signing.key").stat().st_mode & 0o777 == 0o600
    assert log.verify(key.public_key(), full=True) == []
    log.append([{"decision": "later"}])
    assert log.verify(key.public_key(), full=True, checkpoints=[cp]) == []
    hashing.verify_consistency(cp.size, log.size, cp.root, log.root(),
                               log.consistency_proof(cp.size))


def _raw(store: SqliteStore) -> sqlite3.Connection:
    return sqlite3.connect(store.path, isolation_level=None)


def test_one_changed_byte_is_reported_with_index_and_hashes(sqlite_log) -> None:
    log, store, key, _, _ = sqlite_log
    raw = _raw(store)
    data = bytes(raw.execute("SELECT data FROM records WHERE idx = 17").fetchone()[0])
    raw.execute("UPDATE records SET data = ? WHERE idx = 17", (data[:-2] + b"9}",))
    problems = log.verify(key.public_key(), full=True)
    hit = [p for p in problems if p.index == 17]
    assert hit and hit[0].expected and hit[0].computed and hit[0].expected != hit[0].computed


def test_deleted_and_swapped_rows_are_reported(sqlite_log) -> None:
    log, store, key, _, _ = sqlite_log
    raw = _raw(store)
    raw.execute("DELETE FROM records WHERE idx = 5")
    a = raw.execute("SELECT data FROM records WHERE idx = 8").fetchone()[0]
    b = raw.execute("SELECT data FROM records WHERE idx = 9").fetchone()[0]
    raw.execute("UPDATE records SET data = ? WHERE idx = 8", (b,))
    raw.execute("UPDATE records SET data = ? WHERE idx = 9", (a,))
    indices = {p.index for p in log.verify(key.public_key(), full=True)}
    assert {5, 8, 9} <= indices


def test_rewritten_tree_is_caught_by_the_signed_root(sqlite_log) -> None:
    _, store, key, _, _ = sqlite_log
    raw = _raw(store)
    raw.execute("DELETE FROM nodes")
    raw.execute("UPDATE records SET data = ? WHERE idx = 3", (b'{"decision":"forged"}',))
    data = [bytes(d) for (d,) in raw.execute("SELECT data FROM records ORDER BY idx")]
    raw.close()
    # rebuild every node consistently, as an operator with database access could
    rebuilt = EvidenceLog(SqliteStore(store.path))
    rebuilt.store.con.execute("DELETE FROM records")
    rebuilt.append(__import__("json").loads(d) for d in data)
    problems = rebuilt.verify(key.public_key(), full=True)
    assert any("root at checkpoint" in p.what and p.expected != p.computed for p in problems)


def test_checkpoint_from_another_key_is_reported(sqlite_log) -> None:
    log, _, key, _, _ = sqlite_log
    intruder = Ed25519PrivateKey.generate()
    fake = Checkpoint(log.origin, log.size, log.root(), 1).signed(intruder)
    problems = log.verify(key.public_key(), checkpoints=[fake])
    assert any("signature" in p.what for p in problems)


def test_rollback_behind_a_published_checkpoint_is_reported(sqlite_log) -> None:
    log, store, key, cp, _ = sqlite_log
    raw = _raw(store)
    raw.execute("DELETE FROM records WHERE idx >= 30")
    raw.execute("DELETE FROM nodes WHERE (idx + 1) << level > 30")
    problems = log.verify(key.public_key(), checkpoints=[cp])
    assert any("rolled back" in p.what for p in problems)


CRASH_SCRIPT = """
import sys
from likelens.ledger.log import EvidenceLog
from likelens.ledger.store import SqliteStore
log = EvidenceLog(SqliteStore(sys.argv[1]))
print("ready", flush=True)
for b in range(1000):
    log.append({"batch": b, "i": i, "pad": "x" * 64} for i in range(5000))
"""


def test_kill_9_mid_append_leaves_a_log_that_verifies_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    key = load_or_create_key(tmp_path / "k.key")
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(db)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log = EvidenceLog(SqliteStore(db))
    size = log.size
    assert size > 0 and size % 5000 == 0  # whole batches only
    assert log.verify(key.public_key(), full=True) == []
    log.append([{"after": "crash"}])
    assert log.size == size + 1
    assert log.verify(key.public_key(), full=True) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json, max_size=6))
def test_canonical_is_rfc8785(record) -> None:
    import rfc8785

    from likelens.ledger.log import canonical

    assert canonical(record) == rfc8785.dumps(record)
