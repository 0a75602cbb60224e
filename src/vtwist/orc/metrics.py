"""vtorc's Prometheus metrics, declared once, in a registry passed in (tests read it).

``vtorc_detected_problems_total{keyspace,shard,problem}`` (every poll that saw it),
``vtorc_recoveries_total{keyspace,shard,recovery,outcome}`` (outcome ok|failed),
``vtorc_recovery_seconds{recovery}`` (histogram), ``vtorc_failovers_blocked_total{keyspace,
shard}`` (anti-flapping), ``vtorc_poll_seconds`` (histogram) and ``vtorc_leader`` (1 while
this instance leads).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OrcMetrics:
    """Every metric of vtorc."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.detected = Counter(
            "vtorc_detected_problems",
            "Problems seen, counted once per poll that saw them.",
            ["keyspace", "shard", "problem"],
            registry=r,
        )
        self.recoveries = Counter(
            "vtorc_recoveries",
            "Repairs run (emergency reparents and small fixes), by outcome.",
            ["keyspace", "shard", "recovery", "outcome"],
            registry=r,
        )
        self.recovery_seconds = Histogram(
            "vtorc_recovery_seconds",
            "Duration of each repair.",
            ["recovery"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60),
            registry=r,
        )
        self.blocked = Counter(
            "vtorc_failovers_blocked",
            "Emergency reparents not run because the shard failed over within recovery_block.",
            ["keyspace", "shard"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "vtorc_poll_seconds",
            "Duration of one observation of every shard.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
            registry=r,
        )
        self.leader = Gauge(
            "vtorc_leader", "1 while this vtorc holds the election, else 0.", registry=r
        )
