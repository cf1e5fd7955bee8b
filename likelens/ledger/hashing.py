"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification, as pure functions.

leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right). Proof generation takes a
``subtree(lo, hi)`` callback returning MTH(D[lo:hi]), so the same code serves an in-memory list
of leaf hashes and a store that keeps every complete subtree (O(log n) lookups per proof).
Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and raises ``LedgerVerificationError`` that
states the expected and the computed hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from likelens.errors import LedgerVerificationError

EMPTY_ROOT = hashlib.sha256(b"").digest()
Subtree = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, bottom-up (no recursion, any size)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def list_subtree(leaves: Sequence[bytes]) -> Subtree:
    """A ``subtree`` callback over an in-memory list of leaf hashes."""
    return lambda lo, hi: root_of(leaves[lo:hi])


def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} outside a tree of size {size}")
    proof: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = split(hi - lo)
        if m < k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m = lo + k, m - k
    proof.reverse()
    return proof


def consistency_proof(old: int, new: int, subtree: Subtree) -> list[bytes]:
    """PROOF(old, D[0:new]) of RFC 6962 §2.1.2."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to {new}")
    proof: list[bytes] = []
    lo, hi, m, complete = 0, new, old, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(subtree(lo, hi))
            break
        k = split(n)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    proof.reverse()
    return proof


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises with expected and computed root on failure."""
    if not 0 <= index < size:
        raise LedgerVerificationError(f"index {index} outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise LedgerVerificationError(f"inclusion proof for {index} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LedgerVerificationError(f"inclusion proof for {index} is too short")
    if r != root:
        raise LedgerVerificationError(
            f"inclusion of leaf {index} in size {size}: expected root {root.hex()}, "
            f"computed {r.hex()}", index=index, expected=root.hex(), computed=r.hex())


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises with expected and computed roots on failure."""
    if old == new:
        if proof or old_root != new_root:
            raise LedgerVerificationError(
                f"consistency {old}->{new}: expected root {old_root.hex()}, "
                f"computed {new_root.hex()}", expected=old_root.hex(), computed=new_root.hex())
        return
    if not 0 < old < new:
        raise LedgerVerificationError(f"no consistency between sizes {old} and {new}")
    if not proof:
        raise LedgerVerificationError(f"consistency {old}->{new}: empty proof")
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LedgerVerificationError(f"consistency {old}->{new}: proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LedgerVerificationError(f"consistency {old}->{new}: proof too short")
    if fr != old_root:
        raise LedgerVerificationError(
            f"consistency {old}->{new}: expected old root {old_root.hex()}, computed "
            f"{fr.hex()}", expected=old_root.hex(), computed=fr.hex())
    if sr != new_root:
        raise LedgerVerificationError(
            f"consistency {old}->{new}: expected new root {new_root.hex()}, computed "
            f"{sr.hex()}", expected=new_root.hex(), computed=sr.hex())
