"""The gate's /debug/health and /debug/status content (values escaped by ``httpstatus``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vtwist.config import Config
from vtwist.gate.gate import Gate
from vtwist.gate.querystats_page import ERROR_COLUMNS, error_rows
from vtwist.httpstatus import Health, KeyValues, Section, Table


def gate_health(gate: Gate) -> Callable[[], Health]:
    """Healthy while at least one tablet serves (a gate without tablets serves nothing)
    and the gate is not shutting down."""

    def check() -> Health:
        if gate.shutting_down:
            return Health(False, "shutting down")
        if any(h.serving for h in gate.discovery.all()):
            return Health(True)
        return Health(False, f"no serving tablet (topo {gate.cache.state()})")

    return check


def gate_sections(gate: Gate, config: Config) -> Callable[[], Iterable[Section]]:
    """Gate summary, tablets with their health and roles, shards buffering, client
    sessions, recent errors, config."""

    def sections() -> list[Section]:
        now = gate.clock.seconds()
        tablets = [
            [
                h.alias,
                h.keyspace,
                h.shard,
                h.tablet_type,
                h.state,
                "" if h.lag_s is None else f"{h.lag_s:.1f}",
                h.primary_term,
                h.inflight,
                h.error or "",
                f"{h.tablet.host}:{h.tablet.rpc_port}",
            ]
            for h in gate.discovery.all()
        ]
        sessions = [
            [
                cid,
                s.info.user,
                s.info.host,
                s.target.database() if s.target is not None else "",
                s.command,
                int(now - s.since),
                s.current or "",
            ]
            for cid, s in sorted(gate.sessions.items())
        ]
        return [
            KeyValues(
                "Gate",
                [
                    ("topo state", gate.cache.state()),
                    ("keyspaces", ", ".join(gate.keyspaces())),
                    ("routing policy", getattr(gate.policy, "name", "?")),
                    ("client sessions", len(gate.sessions)),
                    ("uptime (s)", int(now - gate.started)),
                ],
            ),
            Table(
                "Tablets",
                [
                    "alias",
                    "keyspace",
                    "shard",
                    "type",
                    "state",
                    "lag (s)",
                    "primary term",
                    "in flight",
                    "error",
                    "rpc",
                ],
                tablets,
            ),
            Table(
                "Failover buffering (shards without a serving primary)",
                ["keyspace", "shard", "for (s)", "statements waiting", "state"],
                [
                    [
                        ks,
                        shard,
                        int(now - since),
                        waiting,
                        "failing: buffer.max_failover_duration passed" if expired else "buffering",
                    ]
                    for ks, shard, since, waiting, expired in gate.buffer.buffering()
                ],
            ),
            Table("Sessions", ["id", "user", "host", "db", "command", "time", "info"], sessions),
            Table(
                "Recent errors (newest first; statistics by statement: /debug/queryz)",
                ERROR_COLUMNS,
                error_rows(gate.query_stats.recent_errors()),
            ),
            KeyValues("Config", list(config.redacted().items())),
        ]

    return sections
