"""What the tablet exports: Prometheus metrics, the recent-errors log, the status page sections.

Every metric is declared here, on the registry passed in (tests read their own). Names:

==========================================  ================================================
``vttablet_queries_total{kind}``            statements and transaction operations by kind
                                            (select, insert, update, delete, other, begin,
                                            commit, rollback)
``vttablet_query_duration_seconds{kind}``   latency histogram, same kinds
``vttablet_errors_total{code}``             errors returned to gates, by MySQL code
``vttablet_refused_total{reason}``          statements refused by a policy (read_only,
                                            denylist, session_state, not_serving,
                                            multi_statement, transaction_statement)
``vttablet_kills_total{reason}``            KILL QUERY sent to mysqld (timeout, cancelled,
                                            killed, released, timeout_stuck)
``vttablet_result_rows_exceeded_total``     results refused for query.max_result_rows
``vttablet_result_rows_warned_total``       results above query.warn_result_rows
``vttablet_ended_total{kind,reason}``       transactions/reservations ended by the tablet
``vttablet_pool_*{pool}``                   size, open, active, idle, waiters (gauges);
                                            wait_count, wait_seconds, wait_timeouts,
                                            rejected, connect_errors (counters)
``vttablet_open_transactions``              transactions open now
``vttablet_reserved_connections``           reserved connections held now
``vttablet_serving``                        1 while serving
``vttablet_tablet_type_info{type}``         1 for the current type
``vttablet_topo_state{state}``              1 for the topo connection's current state
==========================================  ================================================
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vtwist.fastmetrics import LabelledHistogram
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.pool import PoolStats
from vtwist.tablet.policies import KINDS

#: Latency buckets: local point queries take ~100 µs, timeouts are tens of seconds.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
MAX_QUERY_TEXT = 300


class HasStats(Protocol):
    """A pool as the metrics see it."""

    def stats(self) -> PoolStats:
        """The pool's counters."""


@dataclass(frozen=True, slots=True)
class RecentError:
    """One error returned to a gate, for /debug/status."""

    at: float
    code: int
    message: str
    sql: str


class TabletMetrics:
    """The tablet's metrics and recent errors (at most ``recent_errors`` kept)."""

    def __init__(self, registry: CollectorRegistry | None = None, recent_errors: int = 50) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # Every statement's path: counted without locks, exported when scraped (both the
        # counter and the histogram come from the same observations).
        self._latency = LabelledHistogram(
            "vttablet_query_duration_seconds",
            "Time to run a statement or transaction operation",
            "kind",
            LATENCY_BUCKETS,
            counter=("vttablet_queries", "Statements and transaction operations run"),
            values=KINDS,
        )
        r.register(self._latency)
        self.errors = Counter(
            "vttablet_errors", "Errors returned to gates, by MySQL error code", ["code"], registry=r
        )
        self.refused = Counter(
            "vttablet_refused", "Statements refused by a tablet policy", ["reason"], registry=r
        )
        self.kills = Counter("vttablet_kills", "KILL QUERY sent to mysqld", ["reason"], registry=r)
        self.rows_exceeded = Counter(
            "vttablet_result_rows_exceeded",
            "Results refused for exceeding query.max_result_rows",
            registry=r,
        )
        self.rows_warned = Counter(
            "vttablet_result_rows_warned",
            "Results with more rows than query.warn_result_rows",
            registry=r,
        )
        self.ended = Counter(
            "vttablet_ended",
            "Transactions and reserved connections ended by the tablet",
            ["kind", "reason"],
            registry=r,
        )
        self._recent: deque[RecentError] = deque(maxlen=max(1, recent_errors))

    def observe(self, kind: str, seconds: float) -> None:
        """Count one statement of ``kind`` that took ``seconds``."""
        self._latency.observe(kind, seconds)

    def query_count(self, kind: str) -> int:
        """How many statements of ``kind`` were counted (``vttablet_queries_total``)."""
        return self._latency.count(kind)

    def error(self, error: MySQLError, sql: bytes | str | None = None) -> None:
        """Count an error returned to a gate and keep it for the status page."""
        self.errors.labels(code=str(error.code)).inc()
        text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else (sql or "")
        if len(text) > MAX_QUERY_TEXT:
            text = text[: MAX_QUERY_TEXT - 3] + "..."
        self._recent.append(RecentError(time.time(), error.code, error.message, text))

    def recent_errors(self) -> list[RecentError]:
        """The kept errors, newest first."""
        return list(reversed(self._recent))

    def add_collector(self, collector: Collector) -> None:
        """Register a collector of values read at scrape time."""
        self.registry.register(collector)


class StateCollector(Collector):
    """Gauges read at scrape time: pools, open transactions, serving state, topo state."""

    def __init__(
        self,
        pools: Sequence[tuple[str, HasStats]],
        snapshot: Callable[[], dict[str, Any]],
        counts: Callable[[], tuple[int, int]],
        topo_state: Callable[[], str] | None = None,
    ) -> None:
        self._pools = pools
        self._snapshot = snapshot
        self._counts = counts
        self._topo_state = topo_state

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Yield the current values."""
        gauges = {
            name: GaugeMetricFamily(f"vttablet_pool_{name}", doc, labels=["pool"])
            for name, doc in (
                ("size", "Configured maximum connections of the pool"),
                ("open", "Connections open (or being opened)"),
                ("active", "Connections lent out"),
                ("idle", "Idle connections"),
                ("waiters", "Requests waiting for a connection"),
            )
        }
        counters = {
            name: CounterMetricFamily(f"vttablet_pool_{name}", doc, labels=["pool"])
            for name, doc in (
                ("wait_count", "Checkouts that had to wait"),
                ("wait_seconds", "Time spent waiting by checkouts that got a connection"),
                ("wait_timeouts", "Checkouts that timed out waiting (ERROR 1203)"),
                ("rejected", "Checkouts refused because the wait queue was full"),
                ("connect_errors", "Failed attempts to open a connection"),
            )
        }
        for label, pool in self._pools:
            st = pool.stats()
            gauges["size"].add_metric([label], st.size)
            gauges["open"].add_metric([label], st.open)
            gauges["active"].add_metric([label], st.in_use)
            gauges["idle"].add_metric([label], st.idle)
            gauges["waiters"].add_metric([label], st.waiters)
            counters["wait_count"].add_metric([label], st.wait_count)
            counters["wait_seconds"].add_metric([label], st.total_wait_time)
            counters["wait_timeouts"].add_metric([label], st.wait_timeouts)
            counters["rejected"].add_metric([label], st.rejected)
            counters["connect_errors"].add_metric([label], st.connect_errors)
        yield from gauges.values()
        yield from counters.values()
        transactions, reserved = self._counts()
        yield GaugeMetricFamily(
            "vttablet_open_transactions", "Transactions open now", value=transactions
        )
        yield GaugeMetricFamily(
            "vttablet_reserved_connections", "Reserved connections held now", value=reserved
        )
        snap = self._snapshot()
        yield GaugeMetricFamily(
            "vttablet_serving", "1 while the tablet serves", value=1 if snap.get("serving") else 0
        )
        info = GaugeMetricFamily("vttablet_tablet_type_info", "The tablet type", labels=["type"])
        info.add_metric([str(snap.get("tablet_type", ""))], 1)
        yield info
        if self._topo_state is not None:
            topo = GaugeMetricFamily(
                "vttablet_topo_state", "The topo connection's state", labels=["state"]
            )
            current = self._topo_state()
            for state in ("connecting", "connected", "degraded", "expired", "closed"):
                topo.add_metric([state], 1 if state == current else 0)
            yield topo

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Nothing up front: values are only known at scrape time."""
        return iter(())
