"""vtorc's /debug/health and /debug/status content."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from vtwist.httpstatus import Health, KeyValues, Section, Table
from vtwist.orc.orc import Orchestrator


def orc_health(orc: Orchestrator) -> Callable[[], Health]:
    """Healthy while the topo is connected (a follower is healthy too: it stands by)."""

    def check() -> Health:
        state = orc.cache.state()
        if state == "connected":
            return Health(True)
        return Health(False, f"topo {state}")

    return check


def orc_sections(orc: Orchestrator) -> Callable[[], Iterable[Section]]:
    """Leadership and settings, each shard's last observation, recent recoveries."""

    def sections() -> list[Section]:
        s = orc.settings
        shards = [
            [
                f"{v.keyspace}/{v.shard}",
                v.primary or "",
                v.term,
                "; ".join(f"{p.kind}: {p.detail}" for p in v.problems) or "ok",
                time.strftime("%H:%M:%S", time.localtime(v.observed)),
            ]
            for _, v in sorted(orc.views.items())
        ]
        return [
            KeyValues(
                "vtorc",
                [
                    ("identifier", orc.identifier),
                    ("leading", "yes" if orc.leading else "no (observing only)"),
                    ("topo state", orc.cache.state()),
                    ("poll interval (s)", s.poll_interval),
                    ("recovery block (s)", s.recovery_block),
                    ("emergency reparent", "on" if s.emergency_reparent else "off"),
                    ("repairs", "on" if s.repair else "off"),
                ],
            ),
            Table("Shards", ["shard", "primary", "term", "problems", "observed"], shards),
            Table("Recent recoveries", ["recovery"], [[line] for line in reversed(orc.recent)]),
        ]

    return sections
