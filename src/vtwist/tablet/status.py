"""The tablet's /debug/status sections and /debug/health answer.

Sections (every value is escaped by ``vtwist.httpstatus``, query text included): the tablet
(alias, keyspace, shard, type, serving, term, lag, error, ports, topo state), the pools,
the held connections (transactions and reservations with their last statement), the recent
errors, and the configuration with secrets redacted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from vtwist.config import Config
from vtwist.httpstatus import Health, KeyValues, Section, Table
from vtwist.tablet.metrics import TabletMetrics
from vtwist.tablet.pools import TabletPools
from vtwist.tablet.reserved import HeldConnections
from vtwist.tablet.state import TabletState


def health_check(state: TabletState) -> Callable[[], Health]:
    """/debug/health: 200 only while the tablet serves; else 503 with its error."""

    def check() -> Health:
        if state.serving:
            return Health(True)
        return Health(False, state.error or "not serving")

    return check


def _ago(now: float, then: float) -> str:
    return f"{max(0.0, now - then):.1f}s" if then else ""


def status_sections(
    state: TabletState,
    pools: TabletPools,
    held: HeldConnections,
    metrics: TabletMetrics,
    config: Config | None = None,
    topo_state: Callable[[], str] | None = None,
) -> Callable[[], Iterable[Section]]:
    """The section source of the tablet's /debug/status page."""

    def sections() -> Iterable[Section]:
        clock_now = held.clock.seconds()
        yield KeyValues(
            "Tablet",
            [
                ("alias", state.alias),
                ("keyspace", state.keyspace),
                ("shard", state.shard),
                ("cell", state.cell),
                ("type", state.tablet_type),
                ("serving", state.serving),
                ("writable", state.writable()),
                ("primary term", state.primary_term),
                ("lag (s)", state.lag_s),
                ("mysqld read_only", state.read_only),
                ("error", state.error),
                ("gtid position", state.gtid_position),
                ("ports", ", ".join(f"{k}={v}" for k, v in sorted(state.ports.items()))),
                ("topo", topo_state() if topo_state is not None else ""),
            ],
        )
        rows = []
        for name, pool in pools.named():
            st = pool.stats()
            wait = st.total_wait_time / st.wait_count if st.wait_count else 0.0
            rows.append(
                [
                    name,
                    st.size,
                    st.open,
                    st.in_use,
                    st.idle,
                    st.waiters,
                    st.wait_count,
                    f"{wait * 1000:.1f} ms",
                    st.wait_timeouts,
                    st.rejected,
                    st.connect_errors,
                ]
            )
        yield Table(
            "Pools",
            [
                "pool",
                "size",
                "open",
                "active",
                "idle",
                "waiters",
                "waits",
                "mean wait",
                "wait timeouts",
                "rejected",
                "connect errors",
            ],
            rows,
        )
        yield Table(
            "Transactions and reserved connections",
            ["transaction", "reserved", "mysqld id", "age", "idle", "busy", "last statement"],
            [
                [
                    h.transaction_id or "",
                    h.reserved_id or "",
                    h.lease.connection_id,
                    _ago(clock_now, h.created),
                    "" if h.busy else _ago(clock_now, h.last_used),
                    h.busy,
                    h.last_sql,
                ]
                for h in held
            ],
        )
        wall = time.time()
        yield Table(
            "Recent errors",
            ["when", "code", "message", "query"],
            [
                [f"{wall - e.at:.0f}s ago", e.code, e.message, e.sql]
                for e in metrics.recent_errors()
            ],
        )
        if config is not None:
            yield KeyValues("Configuration", list(config.redacted().items()))

    return sections
