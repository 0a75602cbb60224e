"""The gate's Prometheus metrics, declared once, in a registry passed in (tests read it).

``vtgate_queries_total{keyspace,tablet_type,kind}``, ``vtgate_query_seconds{kind}``
(histogram), ``vtgate_errors_total{code}``, ``vtgate_client_connections``,
``vtgate_auth_failures_total``, ``vtgate_hosts_blocked_total``, the failover buffer's
``vtgate_buffer_buffered_total{keyspace,shard}``, ``vtgate_buffer_drained_total{keyspace,
shard}``, ``vtgate_buffer_failed_total{keyspace,shard,reason}`` (reason: window, size,
duration, disabled) and ``vtgate_buffer_statements`` (waiting now), and, computed at scrape
time, ``vtgate_tablets{state,tablet_type}`` and ``vtgate_topo_state{state}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vtwist.gate.discovery import Discovery

MAX_CACHED_CHILDREN = 4096
TOPO_STATES = ("connected", "degraded", "expired", "connecting", "closed")


class GateMetrics:
    """Every metric of the gate."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queries = Counter(
            "vtgate_queries",
            "Statements routed to tablets.",
            ["keyspace", "tablet_type", "kind"],
            registry=r,
        )
        self.latency = Histogram(
            "vtgate_query_seconds",
            "Time from a statement's arrival to its result, gate-owned answers included.",
            ["kind"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            registry=r,
        )
        self.errors = Counter(
            "vtgate_errors", "Errors sent to clients, by MySQL code.", ["code"], registry=r
        )
        self.connections = Gauge("vtgate_client_connections", "Client sessions open.", registry=r)
        self.auth_failures = Counter(
            "vtgate_auth_failures", "Failed client authentications.", registry=r
        )
        self.blocked = Counter(
            "vtgate_hosts_blocked",
            "Client connections refused because their host failed auth too often.",
            registry=r,
        )
        self.buffered = Counter(
            "vtgate_buffer_buffered",
            "Primary-bound statements that waited in the failover buffer.",
            ["keyspace", "shard"],
            registry=r,
        )
        self.drained = Counter(
            "vtgate_buffer_drained",
            "Buffered statements released to a new primary.",
            ["keyspace", "shard"],
            registry=r,
        )
        self.buffer_failed = Counter(
            "vtgate_buffer_failed",
            "Statements the failover buffer failed, by bound (window, size, duration) or "
            "because buffering is off (disabled).",
            ["keyspace", "shard", "reason"],
            registry=r,
        )
        self.buffer_statements = Gauge(
            "vtgate_buffer_statements", "Statements waiting in the failover buffer now.", registry=r
        )
        # Labelled children of the per-statement metrics: ``labels()`` costs a lock and a
        # tuple per call. Bounded like the metrics themselves (label sets seen so far).
        self._queries: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[str, Any] = {}

    def count_query(self, keyspace: str, tablet_type: str, kind: str) -> None:
        """``queries{keyspace, tablet_type, kind}`` + 1 (the labelled child is cached)."""
        key = (keyspace, tablet_type, kind)
        child = self._queries.get(key)
        if child is None:
            if len(self._queries) >= MAX_CACHED_CHILDREN:
                self._queries.clear()
            child = self._queries[key] = self.queries.labels(keyspace, tablet_type, kind)
        child.inc()

    def observe(self, kind: str, seconds: float) -> None:
        """``latency{kind}`` observes ``seconds`` (the labelled child is cached)."""
        child = self._latency.get(kind)
        if child is None:
            child = self._latency[kind] = self.latency.labels(kind=kind)
        child.observe(seconds)

    def add_state(self, discovery: Discovery, topo_state: Callable[[], str]) -> None:
        """Export tablets by state/type and the topo state, computed at scrape time."""
        self.registry.register(_StateCollector(discovery, topo_state))


class _StateCollector(Collector):
    def __init__(self, discovery: Discovery, topo_state: Callable[[], str]) -> None:
        self.discovery = discovery
        self.topo_state = topo_state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tablets = GaugeMetricFamily(
            "vtgate_tablets", "Known tablets by health state and type.", labels=["state", "type"]
        )
        counts: dict[tuple[str, str], int] = {}
        for h in self.discovery.all():
            key = (h.state, h.tablet_type)
            counts[key] = counts.get(key, 0) + 1
        for (state, ttype), n in sorted(counts.items()):
            tablets.add_metric([state, ttype], n)
        yield tablets
        topo = GaugeMetricFamily(
            "vtgate_topo_state", "1 for the topo connection's current state.", labels=["state"]
        )
        current = self.topo_state()
        for state in sorted({*TOPO_STATES, current}):
            topo.add_metric([state], 1 if state == current else 0)
        yield topo
