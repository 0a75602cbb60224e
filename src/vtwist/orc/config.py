"""The vtorc configuration: every key of ``etc/vtorc.toml``, declared once.

``SCHEMA`` is what ``twistd vtorc`` loads (file, then flags: ``orc.poll_interval`` is
``--orc-poll-interval``) and what ``etc/vtorc.toml`` is generated from::

    python -m vtwist.config write vtwist.orc.config:SCHEMA etc/vtorc.toml
"""

from __future__ import annotations

from typing import Any

from vtwist.config import (
    BoolOption,
    DurationOption,
    EndpointOption,
    ListOption,
    Option,
    PathOption,
    Schema,
    StrOption,
)
from vtwist.topo.config_checks import check_cells, check_topo_address

IDENTIFIER = StrOption("orc.id", "", doc="This instance's name in the election (empty: host:pid)")
CELLS = ListOption(
    "orc.cells", ("zone1",), check=check_cells, doc="Cells whose tablets vtorc watches"
)
KEYSPACES = ListOption(
    "orc.keyspaces", (), doc="Keyspaces vtorc looks after (empty: every keyspace)"
)
POLL_INTERVAL = DurationOption(
    "orc.poll_interval", 1.0, min=0.1, max=600.0, doc="How often every shard is observed"
)
STATUS_TIMEOUT = DurationOption(
    "orc.status_timeout",
    2.0,
    min=0.1,
    max=60.0,
    doc="Longest wait for one tablet's status; a tablet slower than this counts as unreachable",
)
MYSQLD_TIMEOUT = DurationOption(
    "orc.mysqld_timeout",
    1.0,
    min=0.1,
    max=60.0,
    doc="Longest wait for the primary's mysqld to greet before it counts as down",
)
RECOVERY_BLOCK = DurationOption(
    "orc.recovery_block",
    30.0,
    min=0.0,
    max=86400.0,
    doc="Anti-flapping: no second automatic failover of a shard within this time",
)
LOCK_TIMEOUT = DurationOption(
    "orc.lock_timeout",
    2.0,
    min=0.1,
    max=600.0,
    doc="Longest wait for a shard lock before a repair is left to the next poll",
)
EMERGENCY_REPARENT = BoolOption(
    "orc.emergency_reparent", True, doc="Fail over a dead primary (false: only report it)"
)
REPAIR = BoolOption("orc.repair", True, doc="Run repairs at all (false: detect and report only)")
WAIT_TIMEOUT = DurationOption(
    "reparent.wait_timeout",
    10.0,
    min=0.1,
    max=3600.0,
    doc="Longest wait for a replica's relay log to be applied during an emergency reparent",
)
ACTION_TIMEOUT = DurationOption(
    "reparent.action_timeout", 10.0, min=0.1, max=600.0, doc="Longest wait for one tablet action"
)
FENCE_TIMEOUT = DurationOption(
    "reparent.fence_timeout",
    2.0,
    min=0.1,
    max=600.0,
    doc="Longest wait to fence (read_only) or repoint the old, dead primary",
)
HTTP_LISTEN = EndpointOption(
    "http.listen", "tcp:15000:interface=127.0.0.1", doc="HTTP: /metrics, /debug/status"
)
TOPO_ADDRESS = StrOption(
    "topo.address",
    "zk:127.0.0.1:2181/vtwist",
    check=check_topo_address,
    doc="Topo server: zk:HOST:PORT[,HOST:PORT...][/ROOT]",
)
TOPO_SESSION_TIMEOUT = DurationOption(
    "topo.session_timeout", 10.0, min=0.1, doc="ZooKeeper session timeout"
)
TOPO_CONNECT_TIMEOUT = DurationOption(
    "topo.connect_timeout", 10.0, min=0.1, doc="How long start waits for the topo (then retries)"
)
TOPO_AUTH_FILE = PathOption(
    "topo.auth_file",
    "",
    must_exist=True,
    doc="File with one line user:password: ZooKeeper digest credentials (empty: none)",
)

OPTIONS: list[Option[Any]] = [
    IDENTIFIER,
    CELLS,
    KEYSPACES,
    POLL_INTERVAL,
    STATUS_TIMEOUT,
    MYSQLD_TIMEOUT,
    RECOVERY_BLOCK,
    LOCK_TIMEOUT,
    EMERGENCY_REPARENT,
    REPAIR,
    WAIT_TIMEOUT,
    ACTION_TIMEOUT,
    FENCE_TIMEOUT,
    HTTP_LISTEN,
    TOPO_ADDRESS,
    TOPO_SESSION_TIMEOUT,
    TOPO_CONNECT_TIMEOUT,
    TOPO_AUTH_FILE,
]

SCHEMA = Schema(
    "vtorc",
    OPTIONS,
    doc=(
        "vtorc: watches every shard and repairs it: a dead primary gets an emergency "
        "reparent, a writable replica or a read-only primary is fixed, a replica pointed at "
        "the wrong server is repointed. Several may run: one acts, by ZooKeeper election."
    ),
)
