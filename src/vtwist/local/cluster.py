"""The local cluster: ``up`` starts it, ``down`` stops it by PID, ``components`` lists it.

``up`` runs on a worker thread (it blocks on processes and sockets); the few topo
operations it needs are handed to the reactor through ``TopoRunner`` (the CLI passes one
built on ``blockingCallFromThread``). Order, each step waiting for the previous one:

1. ZooKeeper (standalone, a free loopback port);
2. topo records: every keyspace (with its durability) and shard; the shard record's
   ``primary_alias``, when set, says which tablet is primary (a failover survives
   ``down``/``up``), else the first tablet of the shard is;
3. MariaDB, one per tablet, then per shard: the primary set up (users, database), the
   replicas pointed at it by GTID and caught up, semi-sync switched on (see
   ``vtwist.local.replication``);
4. the vttablets and the gate as ``twistd`` daemons, each in its own directory; ``up``
   waits until every tablet serves and the gate accepts connections.

A role whose twistd plugin is not installed yet is skipped with a message; what exists
still starts. A second ``up`` on a running cluster changes nothing and reports it; when
only daemons (tablets, gate) died, it restarts them with their existing configs; ``up``
after ``down`` reuses the data directories (tables and users survive), the saved ports
and passwords, with a new ZooKeeper port. Delete DIR (after ``down``) to start fresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtwist.local import replication as repl
from vtwist.local.config import LocalConfig
from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import (
    LOOPBACK,
    LaunchError,
    free_port,
    pid_alive,
    port_open,
    read_pidfile,
    stop_pid,
)
from vtwist.local.roles import (
    Daemon,
    role_available,
    start_daemon,
    stop_daemon,
    toml_value,
    write_role_config,
)
from vtwist.local.state import (
    ClusterState,
    TabletPlan,
    load_state,
    plan_cluster,
    save_state,
)
from vtwist.local.zookeeper import ZooKeeper
from vtwist.users import hash_password

# Runs ``fn(topo)`` on the reactor (connected to ``address``) and returns its result.
TopoRunner = Callable[[str, Callable[[Any], Awaitable[Any]]], Any]
Say = Callable[[str], None]

GATE_ROLE = "vtgate"
TABLET_ROLE = "vttablet"
ORC_ROLE = "vtorc"


@dataclass(frozen=True)
class Component:
    """One process of the cluster, for ``status`` and ``down``."""

    name: str
    kind: str  # zookeeper | mariadb | vttablet | vtgate
    pid: int | None
    running: bool


# --- paths --------------------------------------------------------------------------------


def mysql_dir(directory: Path, uid: int) -> Path:
    return directory / "mysql" / str(uid)


def tablet_daemon(directory: Path, alias: str) -> Daemon:
    return Daemon(TABLET_ROLE, directory / "tablets" / alias)


def gate_daemon(directory: Path) -> Daemon:
    return Daemon(GATE_ROLE, directory / "gate")


def orc_daemon(directory: Path, index: int) -> Daemon:
    return Daemon(ORC_ROLE, directory / "vtorc" / str(index))


def zk_pidfile(directory: Path) -> Path:
    return directory / "zookeeper" / "zk1" / "zookeeper.pid"


def mariadb_for(directory: Path, state: ClusterState, tablet: TabletPlan) -> MariaDB:
    """The launcher object of ``tablet``'s MariaDB (not started)."""
    durability = state.durability.get(tablet.keyspace, "none")
    return MariaDB(
        mysql_dir(directory, tablet.uid),
        port=tablet.mysql_port,
        server_id=tablet.uid,
        user="vtwist",
        password=state.passwords["admin"],
        extra_args=repl.server_args(durability),
    )


def _cmdline_has(pid: int, needle: bytes) -> bool:
    # Only stop what is ours: a pidfile can outlive its process (reboot, PID reuse).
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _live(pid: int | None, needle: bytes) -> bool:
    return pid is not None and pid_alive(pid) and _cmdline_has(pid, needle)


# --- what runs ------------------------------------------------------------------------------


def components(directory: Path, state: ClusterState) -> list[Component]:
    """Every process the cluster has, from its pidfiles, in start order."""
    out: list[Component] = []
    pid = read_pidfile(zk_pidfile(directory))
    out.append(Component("zookeeper", "zookeeper", pid, _live(pid, b"zookeeper")))
    for t in state.tablets:
        pid = read_pidfile(mysql_dir(directory, t.uid) / "mysqld.pid")
        out.append(Component(f"mariadb {t.uid}", "mariadb", pid, _live(pid, b"mariadbd")))
    for t in state.tablets:
        d = tablet_daemon(directory, t.alias)
        if state.tablets_started or d.pid is not None:
            out.append(Component(f"vttablet {t.alias}", TABLET_ROLE, d.pid, d.running()))
    g = gate_daemon(directory)
    if state.gate_started or g.pid is not None:
        out.append(Component("vtgate", GATE_ROLE, g.pid, g.running()))
    for i in range(len(state.vtorc_http_ports)):
        o = orc_daemon(directory, i)
        if state.vtorc_started or o.pid is not None:
            out.append(Component(f"vtorc {i}", ORC_ROLE, o.pid, o.running()))
    return out


@contextlib.contextmanager
def dir_lock(directory: Path) -> Iterator[None]:
    """One ``up``/``down`` at a time per DIR (an flock on DIR/.lock)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LaunchError(f"another vtwist up/down is running on {directory}") from None
        yield


# --- up -------------------------------------------------------------------------------------


@dataclass
class UpResult:
    """What ``up`` did: ``already_running`` or started, and the roles it had to skip."""

    state: ClusterState
    already_running: bool
    skipped: list[str]
    not_serving: list[str]


def up(directory: Path, config: LocalConfig, run_topo: TopoRunner, say: Say) -> UpResult:
    """Start the cluster described by ``config`` in ``directory`` (see the module doc)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    with dir_lock(directory):
        previous = load_state(directory)
        if previous is not None:
            comps = components(directory, previous)
            alive = [c for c in comps if c.running]
            if alive and len(alive) == len(comps):
                return UpResult(previous, True, [], [])
            if alive:
                return _restart_daemons(directory, previous, comps, config, run_topo, say)
        state = plan_cluster(config, previous)
        roles = (TABLET_ROLE, GATE_ROLE, ORC_ROLE)
        skipped = [why for role in roles if (why := role_available(role))]
        gate_ok = role_available(GATE_ROLE) is None
        orc_ok = role_available(ORC_ROLE) is None and bool(state.vtorc_http_ports)
        tablets_ok = role_available(TABLET_ROLE) is None
        if gate_ok:
            for key, port in (
                ("gate.mysql_port", state.gate_mysql_port),
                ("gate.http_port", state.gate_http_port),
            ):
                if port_open(LOOPBACK, port):
                    raise LaunchError(
                        f"port {port} on {LOOPBACK} ({key}) is already taken: stop what uses it"
                        f" (another vtwist cluster? see `vtwist status`) or set {key} in the config"
                    )
        if orc_ok and port_open(LOOPBACK, state.vtorc_http_ports[0]):
            raise LaunchError(
                f"port {state.vtorc_http_ports[0]} on {LOOPBACK} (vtorc.http_port) is already"
                " taken: stop what uses it or set vtorc.http_port in the config"
            )
        _refresh_ports(state)
        save_state(directory, state)
        try:
            _start_zookeeper(directory, state, say)
            save_state(directory, state)
            primaries = run_topo(state.topo_address, lambda topo: _ensure_topo(topo, state))
            _start_mariadb(directory, state, primaries, say)
            state.tablets_started = tablets_ok
            if tablets_ok:
                _start_tablets(directory, state, config, primaries, say)
            state.gate_started = gate_ok
            save_state(directory, state)
            if gate_ok:
                _start_gate(directory, state, config, say)
            not_serving: list[str] = []
            if tablets_ok:
                not_serving = _wait_serving(state, config.serving_timeout, run_topo, say)
                if gate_ok and not not_serving:
                    _wait_gate_routes(state, config.serving_timeout, say)
            # vtorc last: a shard still starting must not look broken to it.
            state.vtorc_started = orc_ok
            save_state(directory, state)
            if orc_ok:
                _start_orcs(directory, state, config, say)
        except BaseException:
            say("start failed; stopping what was started")
            for line in down_locked(directory, state):
                say(line)
            raise
        return UpResult(state, False, skipped, not_serving)


def _restart_daemons(
    directory: Path,
    state: ClusterState,
    comps: list[Component],
    config: LocalConfig,
    run_topo: TopoRunner,
    say: Say,
) -> UpResult:
    """Part of the cluster runs: restart the dead daemons when ZooKeeper and every MariaDB
    run (their generated configs are still right); anything else needs ``down`` first."""
    dead = [c for c in comps if not c.running]
    dead_mysql = {c.name.split(" ", 1)[1] for c in dead if c.kind == "mariadb"}
    servers_dead = [c.name for c in dead if c.kind == "zookeeper"]
    if servers_dead:
        raise LaunchError(
            f"the cluster in {directory} is partly running ({', '.join(servers_dead)} not"
            f" running); run `vtwist down --dir {directory}` then `vtwist up` again"
        )
    dead_tablets = {c.name.split(" ", 1)[1] for c in dead if c.kind == TABLET_ROLE}
    if dead_tablets:
        # The dead tablet's ephemeral node lives until its session expires; a new tablet
        # cannot register the alias before that.
        limit = config.topo_session_timeout * 2 + 5
        say(f"waiting up to {limit:.0f}s for the topo to drop {', '.join(sorted(dead_tablets))}")
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            listed = run_topo(state.topo_address, lambda topo: topo.list_tablets(state.cell))
            if not dead_tablets & {t.alias for t in listed}:
                break
            time.sleep(0.2)
    for t in state.tablets:
        if str(t.uid) in dead_mysql:
            # Its data and replication settings are on disk; if it was a primary that lost
            # its place in a failover, vtorc repoints it at the new primary.
            db = mariadb_for(directory, state, t)
            db.start()
            db.proc = None
            say(f"restarted mariadb {t.uid} (pid {db.pid})")
    for c in dead:
        if c.kind == GATE_ROLE:
            daemon = gate_daemon(directory)
        elif c.kind == ORC_ROLE:
            daemon = orc_daemon(directory, int(c.name.split(" ", 1)[1]))
        elif c.kind == TABLET_ROLE:
            daemon = tablet_daemon(directory, c.name.split(" ", 1)[1])
        else:
            continue
        pid = start_daemon(daemon, timeout=config.start_timeout)
        say(f"restarted {c.name} (pid {pid})")
    not_serving = _wait_serving(state, config.serving_timeout, run_topo, say)
    if state.gate_started and state.tablets_started and not not_serving:
        _wait_gate_routes(state, config.serving_timeout, say)
    return UpResult(state, False, [], not_serving)


def _refresh_ports(state: ClusterState) -> None:
    """Replace saved ports that something else took while the cluster was down."""
    seen: set[int] = {state.gate_mysql_port, state.gate_http_port}
    for i, port in enumerate(state.vtorc_http_ports):
        if i:  # the first is vtorc.http_port, checked by up
            while port in seen or port_open(LOOPBACK, port):
                port = free_port()
            state.vtorc_http_ports[i] = port
        seen.add(port)
    for t in state.tablets:
        for name in ("mysql_port", "rpc_port", "http_port"):
            port = getattr(t, name)
            while port in seen or port_open(LOOPBACK, port):
                port = free_port()
            seen.add(port)
            setattr(t, name, port)


def _start_zookeeper(directory: Path, state: ClusterState, say: Say) -> None:
    zk = ZooKeeper(directory / "zookeeper", size=1).start()
    state.zookeeper_hosts = zk.hosts
    say(f"zookeeper: {zk.hosts} (pid {zk.nodes[0].pid})")


async def _ensure_topo(topo: Any, state: ClusterState) -> dict[tuple[str, str], str]:
    """Create missing keyspaces and shards; return each shard's primary alias."""
    from vtwist.topo.errors import NodeExistsError
    from vtwist.topo.records import Keyspace, Shard

    primaries: dict[tuple[str, str], str] = {}
    for ks, shards in state.shards.items():
        sharded = shards != ["0"]
        try:
            await topo.create_keyspace(
                Keyspace(ks, sharded=sharded, durability=state.durability[ks])
            )
        except NodeExistsError:
            current = await topo.get_keyspace(ks)
            if current.durability != state.durability[ks] or current.sharded != sharded:
                await topo.update_keyspace(
                    Keyspace(
                        ks,
                        sharded=sharded,
                        durability=state.durability[ks],
                        node_version=current.node_version,
                        extra=current.extra,
                    )
                )
        for name in shards:
            try:
                record = await topo.create_shard(Shard.new(ks, name))
            except NodeExistsError:
                record = await topo.get_shard(ks, name)
            ours = {t.alias for t in state.shard_tablets(ks, name)}
            if record.primary_alias in ours:
                primaries[(ks, name)] = record.primary_alias
            else:
                first = next(
                    t for t in state.shard_tablets(ks, name) if t.initial_type == "primary"
                )
                primaries[(ks, name)] = first.alias
    return primaries


def _start_mariadb(
    directory: Path, state: ClusterState, primaries: dict[tuple[str, str], str], say: Say
) -> None:
    dbs = {t.alias: mariadb_for(directory, state, t) for t in state.tablets}
    fresh = {alias for alias, db in dbs.items() if not (db.datadir / "mysql").is_dir()}

    def start(alias: str) -> None:
        db = dbs[alias]
        db.start()
        if alias in fresh:
            repl.forget_local_history(db)

    # Concurrent mariadb-install-db runs collide on temporary tables in the shared tmpdir:
    # create fresh instances one by one, restart existing ones side by side.
    for alias in sorted(fresh):
        start(alias)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(start, alias) for alias in dbs if alias not in fresh]:
            future.result()
    for db in dbs.values():
        db.proc = None  # stop by pidfile later; the process outlives this command
    for t in state.tablets:
        say(f"mariadb {t.uid}: {LOOPBACK}:{t.mysql_port} (pid {dbs[t.alias].pid})")
    timeout = 60.0
    for (ks, shard), primary_alias in primaries.items():
        semi = state.durability[ks] != "none"
        primary = dbs[primary_alias]
        repl.make_primary(primary, semi_sync=False)
        repl.setup_primary(
            primary,
            [ks],
            {k: state.passwords[k] for k in ("repl", "app", "dba")},
        )
        replicas = [
            dbs[t.alias] for t in state.shard_tablets(ks, shard) if t.alias != primary_alias
        ]
        for db in replicas:
            repl.point_replica(db, primary, state.passwords["repl"])
        for db in replicas:
            repl.wait_caught_up(db, primary, timeout)
        if semi:
            repl.make_primary(primary, semi_sync=True)
            # Every replica connects as a semi-sync client; one is enough to go on.
            clients = repl.wait_semi_sync_clients(primary, len(replicas), 10.0)
            if clients < 1:
                clients = repl.wait_semi_sync_clients(primary, 1, timeout)
            if clients < len(replicas):
                say(f"warning: {ks}/{shard}: {clients} of {len(replicas)} replicas are semi-sync")
            if clients < 1:
                raise LaunchError(
                    f"{ks}/{shard}: no semi-sync replica connected to the primary on port"
                    f" {primary.port}; writes would block (see {primary.log_path})"
                )
        mode = "semi-sync" if semi else "asynchronous"
        say(
            f"{ks}/{shard}: primary {primary_alias}, {len(replicas)} replica(s), {mode} GTID"
            " replication"
        )
    for t in state.tablets:
        t.initial_type = "primary" if primaries[(t.keyspace, t.shard)] == t.alias else "replica"


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n", encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def tablet_values(directory: Path, state: ClusterState, t: TabletPlan) -> dict[str, object]:
    """The vttablet config keys ``up`` sets for ``t`` (everything else: defaults)."""
    d = tablet_daemon(directory, t.alias).directory
    return {
        "alias": t.alias,
        "keyspace": t.keyspace,
        "shard": t.shard,
        "tablet_type": t.initial_type,
        "hostname": LOOPBACK,
        "mysql.host": LOOPBACK,
        "mysql.port": t.mysql_port,
        "mysql.socket": str(mariadb_for(directory, state, t).socket_path),
        "mysql.app_user": repl.APP_USER,
        "mysql.app_password_file": str(d / "app.password"),
        "mysql.dba_user": repl.DBA_USER,
        "mysql.dba_password_file": str(d / "dba.password"),
        "replication.user": repl.REPL_USER,
        "replication.password_file": str(d / "repl.password"),
        "replication.net_timeout": repl.NET_TIMEOUT,
        "replication.heartbeat_interval": repl.HEARTBEAT,
        "rpc.listen": f"tcp:{t.rpc_port}:interface={LOOPBACK}",
        "http.listen": f"tcp:{t.http_port}:interface={LOOPBACK}",
        "topo.address": state.topo_address,
    }


def _start_tablets(
    directory: Path,
    state: ClusterState,
    config: LocalConfig,
    primaries: dict[tuple[str, str], str],
    say: Say,
) -> None:
    for t in state.tablets:
        daemon = tablet_daemon(directory, t.alias)
        daemon.directory.mkdir(parents=True, exist_ok=True)
        _secret_file(daemon.directory / "app.password", state.passwords["app"])
        _secret_file(daemon.directory / "dba.password", state.passwords["dba"])
        _secret_file(daemon.directory / "repl.password", state.passwords["repl"])
        values: dict[str, object] = {
            "topo.session_timeout": config.topo_session_timeout,
            **tablet_values(directory, state, t),
            **config.tablet_options,
        }
        for key in write_role_config(TABLET_ROLE, daemon.config, values):
            say(f"warning: vttablet has no config key {key}; left out")
        pid = start_daemon(daemon, timeout=config.start_timeout)
        say(f"vttablet {t.alias} ({t.keyspace}/{t.shard} {t.initial_type}): pid {pid}")


def gate_values(directory: Path, state: ClusterState) -> dict[str, object]:
    """The vtgate config keys ``up`` sets (everything else: the gate's defaults)."""
    return {
        "mysql.listen": f"tcp:{state.gate_mysql_port}:interface={LOOPBACK}",
        "mysql.users_file": str(gate_daemon(directory).directory / "users.toml"),
        "http.listen": f"tcp:{state.gate_http_port}:interface={LOOPBACK}",
        "topo.address": state.topo_address,
        "discovery.cells": [state.cell],
    }


def write_users_file(path: Path, users: dict[str, str]) -> None:
    """The gate's users file: hashed passwords only (``vtwist.users`` format)."""
    lines = ["# Gate users written by `vtwist up` (hashes only); cleartext in ../cluster.json."]
    for name, password in users.items():
        lines.append("")
        lines.append(f"[users.{toml_value(name)}]")
        for key, value in hash_password(password).items():
            lines.append(f"{key} = {toml_value(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(path, 0o600)


def _start_gate(directory: Path, state: ClusterState, config: LocalConfig, say: Say) -> None:
    daemon = gate_daemon(directory)
    daemon.directory.mkdir(parents=True, exist_ok=True)
    write_users_file(daemon.directory / "users.toml", state.gate_users)
    values: dict[str, object] = {
        "topo.session_timeout": config.topo_session_timeout,
        **gate_values(directory, state),
        **config.gate_options,
    }
    for key in write_role_config(GATE_ROLE, daemon.config, values):
        say(f"warning: vtgate has no config key {key}; left out")
    pid = start_daemon(daemon, timeout=config.start_timeout)
    deadline = time.monotonic() + config.start_timeout
    while not port_open(LOOPBACK, state.gate_mysql_port):
        if not daemon.running():
            raise LaunchError(f"vtgate exited at start; see {daemon.logfile}")
        if time.monotonic() > deadline:
            raise LaunchError(
                f"vtgate does not listen on {LOOPBACK}:{state.gate_mysql_port};"
                f" see {daemon.logfile}"
            )
        time.sleep(0.1)
    say(
        f"vtgate: mysql {LOOPBACK}:{state.gate_mysql_port},"
        f" http {LOOPBACK}:{state.gate_http_port} (pid {pid})"
    )


def orc_values(directory: Path, state: ClusterState, index: int) -> dict[str, object]:
    """The vtorc config keys ``up`` sets for instance ``index``."""
    return {
        "orc.id": f"vtorc-{index}",
        "orc.cells": [state.cell],
        "http.listen": f"tcp:{state.vtorc_http_ports[index]}:interface={LOOPBACK}",
        "topo.address": state.topo_address,
    }


def _start_orcs(directory: Path, state: ClusterState, config: LocalConfig, say: Say) -> None:
    for i in range(len(state.vtorc_http_ports)):
        daemon = orc_daemon(directory, i)
        daemon.directory.mkdir(parents=True, exist_ok=True)
        values: dict[str, object] = {
            "topo.session_timeout": config.topo_session_timeout,
            **orc_values(directory, state, i),
            **config.vtorc_options,
        }
        for key in write_role_config(ORC_ROLE, daemon.config, values):
            say(f"warning: vtorc has no config key {key}; left out")
        pid = start_daemon(daemon, timeout=config.start_timeout)
        say(f"vtorc {i}: http {LOOPBACK}:{state.vtorc_http_ports[i]} (pid {pid})")


def _wait_serving(state: ClusterState, timeout: float, run_topo: TopoRunner, say: Say) -> list[str]:
    """Wait until every tablet's topo record says serving; return those that never did."""
    aliases = {t.alias for t in state.tablets}
    deadline = time.monotonic() + timeout
    pending = sorted(aliases)
    while True:
        tablets = run_topo(state.topo_address, lambda topo: topo.list_tablets(state.cell))
        serving = {t.alias for t in tablets if t.serving}
        pending = sorted(aliases - serving)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if pending:
        say(f"warning: not serving after {timeout:.0f}s: {', '.join(pending)}")
    return pending


def _wait_gate_routes(state: ClusterState, timeout: float, say: Say) -> None:
    """Wait until the gate lists every tablet as serving (SHOW VITESS_TABLETS), so the
    first query after ``up`` is routed; a warning, not a failure, when it does not."""
    import pymysql

    if not state.gate_users:
        return
    user, password = state.default_user()
    wanted = {t.alias for t in state.tablets}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = pymysql.connect(
                host=LOOPBACK,
                port=state.gate_mysql_port,
                user=user,
                password=password,
                connect_timeout=2,
                read_timeout=5,
            )
            try:
                with conn.cursor() as cur:
                    cur.execute("SHOW VITESS_TABLETS")
                    names = [d[0] for d in cur.description or ()]
                    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            finally:
                conn.close()
            seen = {str(r.get("Alias")) for r in rows if r.get("State") == "SERVING"}
            if wanted <= seen:
                return
        except pymysql.MySQLError:
            pass
        time.sleep(0.2)
    missing = ", ".join(sorted(wanted - seen))
    say(f"warning: the gate does not see these tablets serving yet: {missing}")


# --- down -------------------------------------------------------------------------------------


def down(directory: Path) -> list[str]:
    """Stop every process of the cluster in ``directory`` by PID; say what was stopped."""
    directory = directory.resolve()
    state = load_state(directory)
    if state is None:
        return [f"no cluster in {directory} (no {directory / 'cluster.json'})"]
    with dir_lock(directory):
        return down_locked(directory, state)


def down_locked(directory: Path, state: ClusterState) -> list[str]:
    """``down`` without the lock (``up`` calls it to undo a failed start)."""
    said: list[str] = []

    def report(name: str, pid: int | None) -> None:
        said.append(f"stopped {name} (pid {pid})" if pid else f"{name}: not running")

    # vtorc first (it must not fail over a shard that is being stopped), then the clients,
    # then tablets (they end their ZooKeeper sessions), then the servers.
    # All at once: stopping the leader alone would hand the election to a standby that
    # then "repairs" a cluster being stopped.
    orcs = [orc_daemon(directory, i) for i in range(len(state.vtorc_http_ports))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, pid in enumerate(pool.map(stop_daemon, orcs)):
            report(f"vtorc {i}", pid)
    report("vtgate", stop_daemon(gate_daemon(directory)))
    daemons = [tablet_daemon(directory, t.alias) for t in state.tablets]
    with ThreadPoolExecutor(max_workers=8) as pool:
        pids = list(pool.map(stop_daemon, daemons))
    for t, pid in zip(state.tablets, pids, strict=True):
        report(f"vttablet {t.alias}", pid)

    def stop_mysql(t: TabletPlan) -> int | None:
        pidfile = mysql_dir(directory, t.uid) / "mysqld.pid"
        pid = read_pidfile(pidfile)
        if not _live(pid, b"mariadbd"):
            return None
        assert pid is not None
        stop_pid(pid, 60.0)
        return pid

    with ThreadPoolExecutor(max_workers=8) as pool:
        pids = list(pool.map(stop_mysql, state.tablets))
    for t, pid in zip(state.tablets, pids, strict=True):
        report(f"mariadb {t.uid}", pid)
    pid = read_pidfile(zk_pidfile(directory))
    if _live(pid, b"zookeeper"):
        assert pid is not None
        stop_pid(pid, 15.0)
        zk_pidfile(directory).unlink(missing_ok=True)
        report("zookeeper", pid)
    else:
        report("zookeeper", None)
    return said
