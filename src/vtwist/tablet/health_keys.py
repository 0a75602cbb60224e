"""The vttablet configuration keys owned by the health probe, the topo publisher and the shard
sync (``health.*``, ``publish.*``, ``role.*``).

``HEALTH_OPTIONS`` is a list of option objects the tablet's ``config.SCHEMA`` includes as is;
``HEALTH_CHECKS`` are its cross-key checks (append them to the schema's ``checks``). The
option objects are also used to read the values: ``config.value(HEALTH_INTERVAL)``.

Why the interval is 1 s and not Vitess's 20 s (``--health_check_interval``): the gate learns
serving changes from the health stream, which only carries what the probe saw; a 20 s probe
lets a dead or paused mysqld keep traffic for that long. Probing a local mysqld costs three
tiny queries on one pooled dba connection, so once a second is cheap. The lag thresholds
follow Vitess's ``--degraded_threshold`` (30 s) and ``--unhealthy_threshold`` (2 h).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vtwist.config import BoolOption, Check, Config, DurationOption, Option

HEALTH_INTERVAL = DurationOption(
    "health.interval",
    1.0,
    min=0.05,
    doc="Time between two health probes of the local mysqld (ping, read_only, replication)",
)
HEALTH_PROBE_TIMEOUT = DurationOption(
    "health.probe_timeout",
    1.0,
    min=0.01,
    doc="A probe that has not finished after this long counts as failed: mysqld not serving",
)
HEALTH_DEGRADED_LAG = DurationOption(
    "health.degraded_lag",
    30.0,
    doc="Replication lag above which a replica still serves but reports itself degraded",
)
HEALTH_UNHEALTHY_LAG = DurationOption(
    "health.unhealthy_lag",
    7200.0,
    min=0.0,
    doc="Replication lag above which a replica stops serving (its error says how far behind)",
)
PUBLISH_MIN_INTERVAL = DurationOption(
    "publish.min_interval",
    1.0,
    doc="Least time between two writes of the tablet's topo node; changes in between coalesce",
)
PUBLISH_LAG_STEP = DurationOption(
    "publish.lag_step",
    5.0,
    doc="A change of replication lag alone is written to the topo node only when this large",
)
ROLE_INIT_PRIMARY = BoolOption(
    "role.init_primary",
    True,
    doc="When the shard names no primary and the initial type is primary, claim the shard",
)
ROLE_RETRY_INTERVAL = DurationOption(
    "role.retry_interval",
    1.0,
    min=0.05,
    doc="Time between retries of a failed shard read, shard claim or read_only change",
)

#: Every key above, in the order ``etc/vttablet.toml`` documents them.
HEALTH_OPTIONS: list[Option[Any]] = [
    HEALTH_INTERVAL,
    HEALTH_PROBE_TIMEOUT,
    HEALTH_DEGRADED_LAG,
    HEALTH_UNHEALTHY_LAG,
    PUBLISH_MIN_INTERVAL,
    PUBLISH_LAG_STEP,
    ROLE_INIT_PRIMARY,
    ROLE_RETRY_INTERVAL,
]


def _lag_order(config: Config) -> Iterable[tuple[str, str]]:
    if config.value(HEALTH_DEGRADED_LAG) > config.value(HEALTH_UNHEALTHY_LAG):
        yield (
            HEALTH_DEGRADED_LAG.key,
            f"must not exceed {HEALTH_UNHEALTHY_LAG.key}; lower it or raise the other",
        )


#: Cross-key checks of the keys above (for ``Schema(..., checks=...)``).
HEALTH_CHECKS: list[Check] = [_lag_order]
