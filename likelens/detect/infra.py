"""Infrastructure: devices and network ranges that deliver many accounts onto the same targets.

A carrier-grade NAT address carries thousands of organic users, and a campus address hundreds, so
"many accounts on one address" alone is no evidence. What organic users behind one address do not
do is converge: the number of accounts from one device, address or /24 range that engage the same
video should match what the range's volume and the video's popularity predict. The null is
Poisson with mean (engagements from the key − 1) × (engagements on the target − 1) / all
engagements; the evidence is how far the observed count lies in its tail (``poisson_surprise``).
The same test on engaging accounts per device learns the organic sharing rate from the data itself
(accounts that only watch are not counted: a farm phone's accounts are there to engage).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from likelens.detect.base import Detector, Signal, poisson_surprise, squash
from likelens.features import Features

KEYS = (("device_hash", "dev"), ("ip_hash", "ip"), ("ip_net", "net"))


class InfraDetector(Detector):
    """Co-engagement surprise per device, address and /24; accounts per device."""

    name = "infra"
    needs: ClassVar[tuple[str, ...]] = ()
    reason = "farm_network"

    def __init__(self, *, half_surprise: float = 4.0) -> None:
        self.half_surprise = half_surprise

    def _fit(self, feats: Features) -> Signal:
        con = feats.con
        n = feats.engagements.num_rows
        columns: dict[str, np.ndarray] = {}
        present = {"device_hash": feats.has_device, "ip_hash": feats.has_ip,
                   "ip_net": feats.has_ip}
        for key, short in KEYS:
            if not present[key]:
                columns[f"{short}_surprise"] = np.zeros(n)
                continue
            t = con.sql(f"""
                WITH tot AS (SELECT count(*)::DOUBLE AS n FROM eng),
                kc AS (SELECT {key} AS k, count(*) AS n_k FROM eng WHERE {key} IS NOT NULL
                       GROUP BY 1),
                tc AS (SELECT target, count(*) AS n_t FROM eng GROUP BY 1),
                co AS (SELECT {key} AS k, target, count(DISTINCT user_id) AS n_kt FROM eng
                       WHERE {key} IS NOT NULL GROUP BY 1, 2)
                SELECT e.rid, co.n_kt - 1 AS obs,
                       (kc.n_k - 1) * (tc.n_t - 1) / tot.n AS lam
                FROM eng e
                LEFT JOIN co ON co.k = e.{key} AND co.target = e.target
                LEFT JOIN kc ON kc.k = e.{key}
                LEFT JOIN tc ON tc.target = e.target, tot
                ORDER BY e.rid
            """).to_arrow_table()
            obs = np.nan_to_num(t["obs"].to_numpy(zero_copy_only=False).astype(float))
            lam = np.nan_to_num(t["lam"].to_numpy(zero_copy_only=False).astype(float))
            columns[f"{short}_surprise"] = poisson_surprise(obs, lam, tests=n)
        if feats.has_device:
            columns["dev_accounts_surprise"] = self._accounts_per_device(feats)
        else:
            columns["dev_accounts_surprise"] = np.zeros(n)
        # An account that converges from one key converges as an account, wherever it acts.
        acct_max = feats.per_account_max(np.maximum.reduce(
            [columns["dev_surprise"], columns["ip_surprise"], columns["net_surprise"]]))
        columns["acct_infra_surprise"] = acct_max
        event = np.maximum.reduce([columns["dev_surprise"], columns["ip_surprise"],
                                   columns["net_surprise"], columns["dev_accounts_surprise"]])
        return Signal(self.name, self.get_params(), columns, squash(event, self.half_surprise),
                      self.reason)

    @staticmethod
    def _accounts_per_device(feats: Features) -> np.ndarray:
        """Surprise of a device's account count against the organic sharing rate.

        Shared devices are common (families), so the null is geometric with the decay the log's
        own shared devices show: q = P(K >= 3) / P(K >= 2), the chance a shared device carries
        one more account. A device's count k is scored by -log10 q^(k-2), Bonferroni-corrected
        for the number of devices.
        """
        con = feats.con
        counts = con.sql("SELECT device_hash, k FROM device_accounts").to_arrow_table()
        k = counts["k"].to_numpy().astype(float)
        if len(k) == 0:
            return np.zeros(feats.engagements.num_rows)
        shared = float(np.sum(k >= 2))
        q = float(np.sum(k >= 3)) / shared if shared else 0.5
        q = min(max(q, 1e-3), 0.9)
        surprise = np.maximum(np.maximum(k - 2, 0) * -np.log10(q) - np.log10(len(k)), 0.0)
        con.register("dev_k", pa.table({"device_hash": counts["device_hash"], "s": surprise}))
        out = con.sql("""
            SELECT coalesce(d.s, 0) AS s FROM eng e
            LEFT JOIN dev_k d USING (device_hash) ORDER BY e.rid
        """).to_arrow_table()["s"].to_numpy(zero_copy_only=False)
        con.unregister("dev_k")
        return np.asarray(out, dtype=float)
