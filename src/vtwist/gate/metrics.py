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

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vtwist.fastmetrics import LabelledCounter, LabelledHistogram
from vtwist.gate.discovery import Discovery

TOPO_STATES = ("connected", "degraded", "expired", "connecting", "closed")


class GateMetrics:
    """Every metric of the gate."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Every statement's path: counted without locks, exported when scraped.
        self.queries = LabelledCounter(
            "vtgate_queries", "Statements routed to tablets.", ["keyspace", "tablet_type", "kind"]
        )
        r.register(self.queries)
        self.latency = LabelledHistogram(
            "vtgate_query_seconds",
            "Time from a statement's arrival to its result, gate-owned answers included.",
            "kind",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
        )
        r.register(self.latency)
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

    def count_query(self, keyspace: str, tablet_type: str, kind: str) -> None:
        """``queries{keyspace, tablet_type, kind}`` + 1."""
        self.queries.inc((keyspace, tablet_type, kind))

    def observe(self, kind: str, seconds: float) -> None:
        """``latency{kind}`` observes ``seconds``."""
        self.latency.observe(kind, seconds)

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
