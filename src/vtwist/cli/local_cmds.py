"""The local cluster commands: ``vtwist up``, ``vtwist status`` and ``vtwist down``.

```
vtwist up     [--dir DIR] [--config FILE]   # default DIR ./.vtwist, FILE etc/local.toml
vtwist status [--dir DIR] [--json]
vtwist down   [--dir DIR]
```

The work is in ``vtwist.local.cluster``; ``up`` and ``down`` run it on a worker thread
(it waits on processes), and hand topo operations back to the reactor.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThread

from vtwist.cli.common import EXIT_FAILED, LOCAL_DIR, CliContext, CliError, table
from vtwist.local import cluster
from vtwist.local.config import LocalConfigError, load_local_config
from vtwist.local.procs import LOOPBACK, LaunchError
from vtwist.local.state import ClusterState, load_state

DEFAULT_DIR = LOCAL_DIR
DEFAULT_CONFIG = "etc/local.toml"
STATUS_TOPO_TIMEOUT = 3.0

AddCommon = Callable[[argparse.ArgumentParser], None]


def register(subparsers: Any, add_common: AddCommon) -> None:
    """Add ``up``, ``status`` and ``down`` to the ``vtwist`` parser."""

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(
            name, help=help_text, description=help_text
        )
        add_common(parser)
        parser.add_argument(
            "--dir",
            default=DEFAULT_DIR,
            metavar="DIR",
            help=f"the cluster's directory: data, logs, pidfiles (default: {DEFAULT_DIR})",
        )
        return parser

    p = command("up", "start the local cluster (ZooKeeper, MariaDB, tablets, gate)")
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help=f"the cluster description (default: {DEFAULT_CONFIG}, else built-in defaults)",
    )
    p.set_defaults(handler=up_command)
    command("status", "show the local cluster and how to connect").set_defaults(
        handler=status_command
    )
    command("down", "stop every process of the local cluster, by PID").set_defaults(
        handler=down_command
    )


class ThreadTopoRunner:
    """``cluster.TopoRunner`` for code on a worker thread: one topo connection per address,
    opened on the reactor, closed by ``close()`` (on the reactor)."""

    def __init__(self, reactor: Any, session_timeout: float, connect_timeout: float) -> None:
        self.reactor = reactor
        self.session_timeout = session_timeout
        self.connect_timeout = connect_timeout
        self._topos: dict[str, Any] = {}

    async def _run(self, address: str, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        from vtwist.topo.address import open_topo

        topo = self._topos.get(address)
        if topo is None:
            topo = open_topo(address, self.reactor, session_timeout=self.session_timeout)
            await topo.connect(self.connect_timeout)
            self._topos[address] = topo
        return await fn(topo)

    def __call__(self, address: str, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        return blockingCallFromThread(
            self.reactor, lambda: Deferred.fromCoroutine(self._run(address, fn))
        )

    async def close(self) -> None:
        topos, self._topos = self._topos, {}
        for topo in topos.values():
            await topo.close()


def _directory(ctx: CliContext) -> Path:
    return Path(ctx.args.dir).resolve()


def _config_path(ctx: CliContext) -> Path | None:
    if ctx.args.config:
        return Path(ctx.args.config)
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


async def up_command(ctx: CliContext) -> int:
    from twisted.internet import reactor

    directory = _directory(ctx)
    try:
        config = load_local_config(_config_path(ctx))
    except LocalConfigError as e:
        raise CliError(str(e), kind="invalid") from None
    progress = ctx.err if ctx.json else ctx.out

    def say(line: str) -> None:
        progress.write(line + "\n")
        progress.flush()

    runner = ThreadTopoRunner(reactor, config.topo_session_timeout, config.start_timeout)
    try:
        result = await deferToThread(cluster.up, directory, config, runner, say)
    except (LaunchError, ValueError) as e:
        raise CliError(str(e)) from None
    finally:
        await runner.close()
    if result.already_running:
        say(f"the cluster in {directory} is already running; nothing started")
    for why in result.skipped:
        say(f"note: {why}; started everything else")
    await _emit_status(ctx, directory, result.state)
    if result.not_serving:
        ctx.report_error(
            f"tablets not serving: {', '.join(result.not_serving)} (the cluster is running;"
            f" see {directory}/tablets/<alias>/twistd.log)",
            "not_serving",
        )
        return EXIT_FAILED
    return 0


async def down_command(ctx: CliContext) -> None:
    directory = _directory(ctx)
    try:
        lines = await deferToThread(cluster.down, directory)
    except (LaunchError, ValueError) as e:
        raise CliError(str(e)) from None
    ctx.emit({"dir": str(directory), "stopped": lines}, "\n".join(lines))


async def status_command(ctx: CliContext) -> None:
    directory = _directory(ctx)
    try:
        state = load_state(directory)
    except ValueError as e:
        raise CliError(str(e)) from None
    if state is None:
        raise CliError(f"no cluster in {directory}: run `vtwist up --dir {directory}` first")
    await _emit_status(ctx, directory, state)


async def _topo_tablets(state: ClusterState, reactor: Any) -> list[dict[str, Any]] | None:
    """The cell's tablets from the topo, or None when it cannot be read."""
    from vtwist.topo.address import open_topo

    if not state.topo_address:
        return None
    topo = open_topo(state.topo_address, reactor, op_timeout=STATUS_TOPO_TIMEOUT)
    try:
        await topo.connect(STATUS_TOPO_TIMEOUT)
        records = await topo.list_tablets(state.cell)
    except Exception:
        return None
    finally:
        await topo.close()
    return [
        {
            "alias": t.alias,
            "keyspace": t.keyspace,
            "shard": t.shard,
            "type": t.tablet_type,
            "serving": t.serving,
            "mysql_port": t.mysql_port,
            "http": f"{t.host}:{t.http_port}",
        }
        for t in sorted(records, key=lambda t: t.alias)
    ]


def status_data(
    directory: Path, state: ClusterState, topo_tablets: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The ``status --json`` object (``topo_tablets`` None: tablets from the saved state)."""
    comps = cluster.components(directory, state)
    running = {c.name: c.running for c in comps}
    user, password = state.default_user()
    # Planned tablets the topo does not list (not started, dead, or no topo) come from the
    # saved plan: not serving when the topo says so by omission, unknown without a topo.
    listed = {t["alias"]: t for t in topo_tablets or []}
    tablets = [
        listed.pop(
            t.alias,
            {
                "alias": t.alias,
                "keyspace": t.keyspace,
                "shard": t.shard,
                "type": t.initial_type,
                "serving": None if topo_tablets is None else False,
                "mysql_port": t.mysql_port,
                "http": f"{LOOPBACK}:{t.http_port}",
            },
        )
        for t in state.tablets
    ]
    tablets += listed.values()  # registered by hand, not by up
    return {
        "dir": str(directory),
        "gate": {
            "mysql": f"{LOOPBACK}:{state.gate_mysql_port}",
            "http": f"{LOOPBACK}:{state.gate_http_port}",
            "user": user,
            "password": password,
            "running": running.get("vtgate", False),
        },
        "vtorc": [
            {"http": f"{LOOPBACK}:{port}", "running": running.get(f"vtorc {i}", False)}
            for i, port in enumerate(state.vtorc_http_ports)
        ],
        "topo": state.zookeeper_hosts,
        "topo_address": state.topo_address,
        "tablets": tablets,
        "tablets_from": "state" if topo_tablets is None else "topo",
        "processes": [{"name": c.name, "pid": c.pid, "running": c.running} for c in comps],
        "connect": connect_command(state),
    }


def connect_command(state: ClusterState) -> str:
    """The ``mariadb`` command line that connects to the gate as the first gate user."""
    user, password = state.default_user()
    keyspace = next(iter(state.shards), "")
    args = ["mariadb", "-h", LOOPBACK, "-P", str(state.gate_mysql_port), "-u", user]
    if password:
        args.append(f"-p{password}")
    if keyspace:
        args.append(keyspace)
    return shlex.join(args)


async def _emit_status(ctx: CliContext, directory: Path, state: ClusterState) -> None:
    from twisted.internet import reactor

    comps = cluster.components(directory, state)
    zk_up = any(c.kind == "zookeeper" and c.running for c in comps)
    topo_tablets = await _topo_tablets(state, reactor) if zk_up else None
    data = status_data(directory, state, topo_tablets)
    processes = table(
        ["PROCESS", "PID", "RUNNING"],
        [[c.name, c.pid, "yes" if c.running else "no"] for c in comps],
    )
    tablets = table(
        ["ALIAS", "KEYSPACE", "SHARD", "TYPE", "SERVING", "MYSQL_PORT", "HTTP"],
        [
            [
                t["alias"],
                t["keyspace"],
                t["shard"],
                t["type"],
                {True: "yes", False: "no", None: "?"}[t["serving"]],
                t["mysql_port"],
                t["http"],
            ]
            for t in data["tablets"]
        ],
    )
    source = "topo" if topo_tablets is not None else "saved state (topo unreachable)"
    gate = data["gate"]
    text = "\n".join(
        [
            f"cluster in {directory}",
            f"topo: {state.topo_address or '-'}",
            f"gate: mysql {gate['mysql']}, http {gate['http']}"
            f" ({'running' if gate['running'] else 'not running'})",
            "",
            processes,
            "",
            f"tablets (from the {source}):",
            tablets,
            "",
            "connect:",
            f"  {connect_command(state)}",
        ]
    )
    ctx.emit(data, text)
