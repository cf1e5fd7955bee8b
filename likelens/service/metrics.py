"""Prometheus metrics of one service instance (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("likelens_events_in", "Events received, by source",
                                 ["source"], registry=r)
        self.decisions = Counter("likelens_decisions", "Decisions committed, by flag",
                                 ["flagged"], registry=r)
        self.committed = Counter("likelens_events_committed",
                                 "Events through the worker and committed (views included)",
                                 registry=r)
        self.replayed = Counter("likelens_replayed_events",
                                "Events received again after their decision (not re-decided)",
                                registry=r)
        self.quarantined = Counter("likelens_quarantined_events",
                                   "Events that broke the input contract", registry=r)
        self.revisions = Counter("likelens_revisions", "Decisions revised: by a batch scan, "
                                 "or by the account's next view in the same session",
                                 registry=r)
        self.latency = Histogram("likelens_decision_latency_seconds",
                                 "From receipt to committed decision", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.score_seconds = Histogram("likelens_score_batch_seconds",
                                       "Scoring time per micro-batch", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.requests = Histogram("likelens_http_request_seconds", "HTTP request time",
                                  ["route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_lag = Gauge("likelens_queue_lag", "Events received and not yet decided "
                               "(in-process queue plus the stream's unacknowledged entries)",
                               registry=r)
        self.state_accounts = Gauge("likelens_state_accounts",
                                    "Accounts held in the online state", registry=r)
