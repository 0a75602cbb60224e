"""What ``vtwist up`` remembers under DIR (``DIR/cluster.json``, mode 0600).

The plan (tablet aliases, uids, ports, passwords) is made on the first ``up`` and reused by
later ones, so ``up`` after ``down`` brings back the same cluster on its existing data.
``status`` falls back to it when ZooKeeper is down, and ``down`` finds every PID from it.

Directory layout::

    DIR/cluster.json            this state (secrets included: keep DIR private)
    DIR/zookeeper/zk1/          ZooKeeper data, zoo.cfg, zookeeper.log, zookeeper.pid
    DIR/mysql/<uid>/            one MariaDB: data/, binlog/, mysqld.log, mysqld.pid
    DIR/tablets/<alias>/        vttablet.toml, twistd.log, twistd.pid, password files
    DIR/gate/                   vtgate.toml, users.toml, twistd.log, twistd.pid
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vtwist.local.config import LocalConfig
from vtwist.local.procs import free_port

STATE_VERSION = 1
STATE_FILE = "cluster.json"


@dataclass
class TabletPlan:
    """One tablet and its MariaDB."""

    alias: str
    uid: int
    keyspace: str
    shard: str
    initial_type: str  # primary | replica (the topo's shard record wins after a failover)
    mysql_port: int
    rpc_port: int
    http_port: int


@dataclass
class ClusterState:
    """The persisted plan and the last known runtime facts (ZooKeeper address)."""

    cell: str
    tablets: list[TabletPlan]
    gate_mysql_port: int
    gate_http_port: int
    gate_users: dict[str, str]  # name -> cleartext password (the generated ones included)
    passwords: dict[str, str]  # admin, repl, app, dba
    durability: dict[str, str]  # keyspace -> policy
    shards: dict[str, list[str]]  # keyspace -> shard names
    zookeeper_hosts: str = ""
    topo_root: str = "/vtwist"
    gate_started: bool = False
    tablets_started: bool = False
    vtorc_http_ports: list[int] = field(default_factory=list)  # one per vtorc instance
    vtorc_started: bool = False
    version: int = STATE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def topo_address(self) -> str:
        return f"zk:{self.zookeeper_hosts}{self.topo_root}" if self.zookeeper_hosts else ""

    def shard_tablets(self, keyspace: str, shard: str) -> list[TabletPlan]:
        return [t for t in self.tablets if t.keyspace == keyspace and t.shard == shard]

    def default_user(self) -> tuple[str, str]:
        """The first gate user and its password (what ``status`` shows)."""
        for name, password in self.gate_users.items():
            return name, password
        return "", ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown state version {data.get('version')!r}")
        data["tablets"] = [TabletPlan(**t) for t in data["tablets"]]
        return cls(**data)


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def load_state(directory: Path) -> ClusterState | None:
    """The saved state of DIR, or None when ``up`` never ran there."""
    path = state_path(directory)
    if not path.exists():
        return None
    try:
        return ClusterState.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path} is unreadable ({e}); move DIR away to start fresh") from None


def save_state(directory: Path, state: ClusterState) -> None:
    """Write the state atomically, readable by its owner only."""
    path = state_path(directory)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json(), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def plan_cluster(config: LocalConfig, previous: ClusterState | None) -> ClusterState:
    """The state for ``config``: the previous plan's tablets, ports and secrets where they
    still fit, new ones (free ports, generated passwords) for what is new."""
    old = {t.alias: t for t in previous.tablets} if previous else {}
    tablets: list[TabletPlan] = []
    shard_number = 0
    for ks in config.keyspaces:
        for shard in ks.shards:
            shard_number += 1
            for index in range(ks.replicas + 1):
                uid = 100 * shard_number + index
                alias = f"{config.cell}-{uid:010d}"
                before = old.get(alias)
                if before and before.keyspace == ks.name and before.shard == shard:
                    tablets.append(before)
                    continue
                tablets.append(
                    TabletPlan(
                        alias=alias,
                        uid=uid,
                        keyspace=ks.name,
                        shard=shard,
                        initial_type="primary" if index == 0 else "replica",
                        mysql_port=free_port(),
                        rpc_port=free_port(),
                        http_port=free_port(),
                    )
                )
    passwords = dict(previous.passwords) if previous else {}
    for key in ("admin", "repl", "app", "dba"):
        passwords.setdefault(key, secrets.token_urlsafe(18))
    users: dict[str, str] = {}
    for user in config.gate_users:
        if user.password is not None:
            users[user.name] = user.password
        elif previous and user.name in previous.gate_users:
            users[user.name] = previous.gate_users[user.name]
        else:
            users[user.name] = secrets.token_urlsafe(12)
    return ClusterState(
        cell=config.cell,
        tablets=tablets,
        gate_mysql_port=config.gate_mysql_port,
        gate_http_port=config.gate_http_port,
        gate_users=users,
        passwords=passwords,
        durability={ks.name: ks.durability for ks in config.keyspaces},
        shards={ks.name: list(ks.shards) for ks in config.keyspaces},
        zookeeper_hosts=previous.zookeeper_hosts if previous else "",
        vtorc_http_ports=_vtorc_ports(config, previous),
    )


def _vtorc_ports(config: LocalConfig, previous: ClusterState | None) -> list[int]:
    """``vtorc.http_port`` for the first vtorc, the previous (or free) ports for the others."""
    if not config.vtorc_instances:
        return []
    before = previous.vtorc_http_ports if previous else []
    ports = [config.vtorc_http_port]
    for i in range(1, config.vtorc_instances):
        ports.append(before[i] if i < len(before) else free_port())
    return ports
