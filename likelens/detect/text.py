"""Text: templated and near-duplicate comments across accounts and videos (Chinese included).

Sellers hand their workers a few comment templates, edited a little (an emoji, punctuation, a
counter). After normalising (letters and CJK characters only, lower case, digits dropped), a
comment becomes a set of character 3-grams, which works for Chinese without word segmentation.
MinHash signatures with LSH banding put near-duplicates in the same bucket without comparing all
pairs; the clusters are the connected components of shared buckets.

Very short comments ("哈哈哈", "好看") are written by many people on their own and carry no
template evidence: texts with fewer than ``min_chars`` normalised characters are skipped.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from likelens.detect.base import Detector, Signal, State
from likelens.detect.lockstep import components
from likelens.features import Features

_KEEP = re.compile(r"[^0-9a-z\u3400-\u9fff]+")
_PRIME = (1 << 61) - 1


def normalise(text: str) -> str:
    """Letters and CJK characters only, lower case, digits dropped."""
    return re.sub(r"[0-9]", "", _KEEP.sub("", text.lower()))


def shingles(text: str, k: int = 3) -> set[int]:
    """Character k-gram hashes (CRC32, stable across runs and machines)."""
    if len(text) <= k:
        return {zlib.crc32(text.encode())}
    return {zlib.crc32(text[i:i + k].encode()) for i in range(len(text) - k + 1)}


def minhash(sets: list[set[int]], n_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (len(sets) × n_perm) under random affine hashes mod a Mersenne prime."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, n_perm, dtype=np.uint64)
    b = rng.integers(0, _PRIME, n_perm, dtype=np.uint64)
    out = np.empty((len(sets), n_perm), dtype=np.uint64)
    for i, s in enumerate(sets):
        x = np.fromiter(s, dtype=np.uint64, count=len(s))
        # uint64 products wrap modulo 2**64 before the reduction: still well mixed for buckets.
        out[i] = ((np.outer(x, a) + b) % _PRIME).min(axis=0)
    return out


class TextDetector(Detector):
    """Clusters of near-duplicate comments and how many accounts wrote each."""

    name = "text"
    needs = ("text",)

    def __init__(self, *, min_chars: int = 6, n_perm: int = 32, bands: int = 8,
                 seed: int = 0) -> None:
        self.min_chars, self.n_perm, self.bands, self.seed = min_chars, n_perm, bands, seed

    def _run(self, feats: Features, state: State, *, fitting: bool) -> Signal:
        """A transform of the log: nothing here is learned."""
        e = feats.engagements
        n = e.num_rows
        acc = feats.account_codes
        # Comments repeat (that is the point): normalise each distinct raw text once.
        rows = np.flatnonzero(pc.is_valid(e["text"]).to_numpy(zero_copy_only=False))
        enc = pc.dictionary_encode(e["text"].take(pa.array(rows))).combine_chunks()
        norm_raw = [normalise(t) for t in enc.dictionary.to_pylist()]
        long_enough = np.array([len(t) >= self.min_chars for t in norm_raw], dtype=bool)
        raw_of_row = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        keep = long_enough[raw_of_row] if len(norm_raw) else np.zeros(0, dtype=bool)
        idx = rows[keep]
        accounts_in_cluster = np.zeros(n)
        if len(idx):
            kept_raw = np.flatnonzero(long_enough)
            uniq, raw_to_u = np.unique(np.array([norm_raw[i] for i in kept_raw], dtype=object),
                                       return_inverse=True)
            u_of_raw = np.full(len(norm_raw), -1, dtype=np.int64)
            u_of_raw[kept_raw] = raw_to_u.ravel()
            inv = u_of_raw[raw_of_row[keep]]
            sig = minhash([shingles(t) for t in uniq], self.n_perm, self.seed)
            rows = self.n_perm // self.bands
            a_list, b_list = [], []
            for band in range(self.bands):
                keys = sig[:, band * rows:(band + 1) * rows]
                _, bucket = np.unique(keys, axis=0, return_inverse=True)
                order = np.argsort(bucket.ravel(), kind="stable")
                bsorted = bucket.ravel()[order]
                same = np.flatnonzero(bsorted[1:] == bsorted[:-1])
                a_list.append(order[same])
                b_list.append(order[same + 1])
            comp = components(len(uniq), np.concatenate(a_list), np.concatenate(b_list))
            row_comp = comp[inv]
            pairs = np.unique(np.stack([row_comp, acc[idx]]), axis=1)
            n_acc = np.bincount(pairs[0], minlength=len(uniq))
            accounts_in_cluster[idx] = n_acc[row_comp]
        template = np.log10(np.maximum(accounts_in_cluster, 1.0))
        score = np.clip(template / 2.0, 0.0, 1.0) * 0.8
        return Signal(self.name, self.get_params(), {"template_accounts": template}, score)
