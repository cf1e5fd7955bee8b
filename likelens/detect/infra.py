"""Infrastructure: devices and network ranges that deliver many accounts onto the same targets.

A carrier-grade NAT address carries thousands of organic users, and a campus address hundreds, so
"many accounts on one address" alone is no evidence. What organic users behind one address do not
do is converge: the number of accounts from one device, address or /24 range that engage the same
video should match what the range's volume and the video's popularity predict. The null is
Poisson with mean (engagements from the key − 1) × (engagements on the target − 1) / all
engagements, corrected where bought volume dilutes an organic key's share (``_convergence``);
the evidence is how far the observed count lies in its tail (``poisson_surprise``).
The same test on engaging accounts per device learns the organic sharing rate from the data itself
(accounts that only watch are not counted: a farm phone's accounts are there to engage).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from likelens.arrays import distinct_per_key
from likelens.detect.base import Detector, Signal, State, poisson_surprise, squash
from likelens.features import Features, task_shaped

# The range key is the site subnet (/24 for IPv4, /64 for IPv6), not IPv6's /48: a carrier's
# /48 pools thousands of phones, and a farm hiding in it converges only at its own /64.
KEYS = (("device_hash", "dev"), ("ip_hash", "ip"), ("ip_sub", "net"))


def _convergence(key: np.ndarray, tgt: np.ndarray, acc: np.ndarray,
                 feed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per engagement: other accounts from its key on its target (observed), and the Poisson
    mean chance gives, (engagements from the key - 1) x (engagements on the target - 1) / all.

    With ``feed`` (engagements made inside a feed session), the mean is at least the key's
    share of the feed times the target's engagements. The whole log's volume includes what
    was bought, which comes from other keys: on a day when bots make most engagements, a
    carrier NAT address behind half of the organic users holds a quarter of the log, and its
    users "converge" on every popular video (small zoo worlds of 4,000 users, where a
    1,000-like order outweighs the organic day: 4.98 % and 1.95 % of organic likes flagged in
    two of ten). Its share of the feed is its share of the people the platform serves. A
    farm's or a bot range's engagements are task-shaped, so their share of the feed stays
    small and their targets still surprise.

    Engagements with no key (code -1) get 0 and 0.
    """
    n = len(key)
    has = key >= 0
    n_k = np.bincount(key[has]).astype(float)
    n_t = np.bincount(tgt).astype(float)
    obs = np.zeros(n)
    lam = np.zeros(n)
    if not has.any():
        return obs, lam
    k, t, a = key[has], tgt[has], acc[has]
    _, kt = np.unique(k * (int(t.max()) + 1) + t, return_inverse=True)
    obs[has] = distinct_per_key(kt, a)[kt] - 1
    lam[has] = (n_k[k] - 1) * (n_t[t] - 1) / n
    if feed is not None and (has & feed).any():
        f_k = np.bincount(key[has & feed], minlength=len(n_k)).astype(float)
        share = np.maximum(f_k - 1, 0) / max(float((has & feed).sum()), 1.0)
        lam[has] = np.maximum(lam[has], share[k] * (n_t[t] - 1))
    # Scaled after the floor above, so a carrier's chance counts are its typical ratio over
    # its feed share's mean, not over the diluted one.
    lam[has] *= _inflation(obs[has], lam[has], k, t, len(n_k), n_t)[k]
    return obs, lam


MIN_POPULAR = 20  # engagements that make a target popular enough to measure a key on
MIN_MEAN = 10.0  # chance counts large enough that the ratio is not Poisson noise
# Popular targets a key must reach to count as a population: in a log with a handful of
# popular videos, half of them is what one farm's orders cover.
MIN_REACH = 10


def _inflation(obs: np.ndarray, lam: np.ndarray, k: np.ndarray, t: np.ndarray, n_keys: int,
               n_t: np.ndarray) -> np.ndarray:
    """Per key code, the factor its chance counts are scaled by: for a key on at least half
    of the popular targets and ``MIN_REACH`` of them (a carrier's address or range: a
    population, not a crew), the median over those targets of observed accounts against
    chance, when at least 1.

    Genomic control, as association studies correct for population structure: a key that
    reaches most popular videos is a slice of the audience, and its typical ratio on them is
    how much the whole log's volume understates its share. Where bought engagement outweighs
    the organic day its volume comes from other keys, and bought likes made inside the
    bought accounts' own sessions hide that from the feed share as well: in a zoo world with
    40 % of likes bought a carrier address behind a fifth of the organic users held 15 % of
    the log, and 14,666 of its users' likes on popular videos were flagged (4.6 % of organic
    likes). A farm's or a bot range's ratio on the targets it was paid for is far above its
    ratio elsewhere, and a crew reaches few popular videos; the median is taken over
    popular targets with a chance count of at least ``MIN_MEAN``, where the ratio is not
    Poisson noise.
    """
    out = np.ones(n_keys)
    popular = n_t >= MIN_POPULAR
    n_pop = int(popular.sum())
    if n_pop == 0:
        return out
    on = popular[t]
    n_tc = len(n_t)
    cell, first = np.unique(k[on] * n_tc + t[on], return_index=True)
    key_of = cell // n_tc
    reach = np.bincount(key_of, minlength=n_keys)
    rows = np.flatnonzero(on)[first]
    for key in np.flatnonzero((2 * reach >= n_pop) & (reach >= MIN_REACH)):
        mine = rows[(key_of == key) & (lam[rows] >= MIN_MEAN)]
        if len(mine):
            out[key] = max(1.0, float(np.median(obs[mine] / lam[mine])))
    return out


def accounts_surprise(k: np.ndarray, q: float, devices: int) -> np.ndarray:
    """-log10 of a device carrying ``k`` engaging accounts under a geometric null with
    sharing rate ``q`` (each account past the second has chance q), Bonferroni-corrected for
    ``devices`` devices; shared by the batch detector and the service's online state."""
    k = np.asarray(k, dtype=float)
    return np.maximum(np.maximum(k - 2, 0) * -np.log10(q) - np.log10(max(devices, 1)), 0.0)


class InfraDetector(Detector):
    """Co-engagement surprise per device, address and /24; accounts per device."""

    name = "infra"
    learns = ("device_share_decay",)
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, half_surprise: float = 4.0) -> None:
        self.half_surprise = half_surprise

    def _run(self, feats: Features, state: State, *, fitting: bool) -> Signal:
        n = feats.engagements.num_rows
        columns: dict[str, np.ndarray] = {}
        present = {"device_hash": feats.has_device, "ip_hash": feats.has_ip,
                   "ip_sub": feats.has_ip}
        acc = feats.account_codes.astype(np.int64)
        tgt = feats.target_codes
        codes = {key: feats.key_codes(key) for key, _ in KEYS if present[key]}
        # The organic sharing rate (0.5, an even chance, when the log has no devices).
        q = state.value("device_share_decay", lambda: self._share_decay(
            codes["device_hash"], acc) if "device_hash" in codes else 0.5, fitting=fitting)
        feed = ~task_shaped(feats) if feats.has_views else None
        for key, short in KEYS:
            if key not in codes:
                columns[f"{short}_surprise"] = np.zeros(n)
                continue
            obs, lam = _convergence(codes[key], tgt, acc, feed)
            columns[f"{short}_surprise"] = poisson_surprise(obs, lam, tests=n)
        if "device_hash" in codes:
            dev = codes["device_hash"]
            columns["dev_accounts_surprise"] = self._accounts_per_device(dev, acc, q)
            # Not evidence (families share phones): it tells fusion whether an engagement was
            # made on a phone of the account's own or on one it shares.
            columns["dev_shared"] = feats.shared_device().astype(float)
        else:
            columns["dev_accounts_surprise"] = np.zeros(n)
            columns["dev_shared"] = np.zeros(n)
        # Convergence on this engagement's own device, address or range.
        converges = np.maximum.reduce(
            [columns["dev_surprise"], columns["ip_surprise"], columns["net_surprise"]])
        # An account that converges from one key converges as an account, wherever it acts.
        acct_max = feats.per_account_max(converges)
        columns["acct_infra_surprise"] = acct_max
        # Not evidence either: the engagement was made on a phone where two or more accounts
        # converge, a farm's phone. Fusion lets account-level evidence apply there. What counts
        # is convergence seen on the phone's own engagements: counting accounts that converge
        # anywhere made farms of family phones shared by two rented accounts' owners (in zoo
        # world 1058, 123 of their own feed likes flagged); their own likes do not converge.
        if "device_hash" in codes:
            dev = codes["device_hash"]
            has = (dev >= 0) & (converges > 0)
            farm = np.zeros(n)
            if has.any():
                per_dev = distinct_per_key(dev[has], acc[has])
                converging = np.zeros(int(dev.max()) + 1)
                converging[:len(per_dev)] = per_dev
                farm = ((dev >= 0) & (converging[np.maximum(dev, 0)] >= 2)).astype(float)
            columns["dev_farm"] = farm
        else:
            columns["dev_farm"] = np.zeros(n)
        event = np.maximum(converges, columns["dev_accounts_surprise"])
        return Signal(self.name, self.get_params(), columns, squash(event, self.half_surprise))

    @staticmethod
    def _share_decay(dev: np.ndarray, acc: np.ndarray) -> float:
        """The organic sharing rate, learned from the log's own shared devices (families):
        q = P(K >= 3) / P(K >= 2), the chance a shared device carries one more account, over
        devices that engaged at all (a farm phone's accounts are there to engage, and a family
        member who only watches says nothing about the phone)."""
        has = dev >= 0
        if not has.any():
            return 0.5
        k_all = distinct_per_key(dev[has], acc[has]).astype(float)
        k = k_all[k_all > 0]
        shared = float(np.sum(k >= 2))
        q = float(np.sum(k >= 3)) / shared if shared else 0.5
        return min(max(q, 1e-3), 0.9)

    @staticmethod
    def _accounts_per_device(dev: np.ndarray, acc: np.ndarray, q: float) -> np.ndarray:
        """Surprise of a device's engaging-account count against the sharing rate ``q``: a
        geometric null, count k scored by -log10 q^(k-2), Bonferroni-corrected for the
        number of devices that engaged."""
        has = dev >= 0
        if not has.any():
            return np.zeros(len(dev))
        k_all = distinct_per_key(dev[has], acc[has]).astype(float)
        k = k_all[k_all > 0]  # devices that engaged at all
        surprise = accounts_surprise(k_all, q, len(k))
        return np.where(has, surprise[np.maximum(dev, 0)], 0.0)
