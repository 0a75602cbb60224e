"""The tablet manager: the actions on its own mysqld that reparents and vtorc ask a tablet for.

They arrive as the tablet RPC's ``manage`` operation (``action`` + ``params``) and run on
the dba pool, so the callers (``vtwist reparent``, ``vtorc``) need no MySQL credentials:
only the topo and the tablets' RPC ports. The SQL is MariaDB's (GTID positions as
``domain-server-seq`` lists, ``MASTER_GTID_WAIT``, ``CHANGE MASTER ... MASTER_USE_GTID``).

========================  =============================================================
action                    what it does (each answers the ``status`` map afterwards)
========================  =============================================================
status                    read only: type, serving, ``read_only``, server id, GTID
                          positions, the replication channel, semi-sync state
demote_primary            stop taking new work at once (not serving), let open
                          transactions end (at most ``shutdown.grace_period``), then
                          ``read_only=ON``; the answer's ``gtid_binlog_pos`` is the
                          position to wait for
undo_demote_primary       ``read_only=OFF`` again (a planned reparent that failed)
set_read_only             ``{"on": bool}``: vtorc's repair of a writable replica or of a
                          primary left read-only
wait_for_position         ``{"position", "timeout"}``: until this mysqld applied it
stop_replication          ``{"wait_relay": bool, "timeout"}``: stop the IO thread, wait
                          until the relay log is applied, stop the SQL thread
promote_replica           ``{"semi_sync": bool}``: stop and forget replication,
                          semi-sync primary side as asked, ``read_only=OFF``
set_replication_source    ``{"host", "port", "semi_sync"}``: ``read_only=ON`` (a former
                          primary's app connections killed first), repoint by
                          GTID (``current_pos``: a former primary keeps its history),
                          heartbeat and ``slave_net_timeout`` from the config, start
========================  =============================================================

Every SQL session first sets ``lock_wait_timeout`` (``manager.lock_wait_timeout``) so a
``read_only`` change waiting behind other sessions' locks is bounded. A failing statement
fails the action with its MySQL error, prefixed with the tablet and the action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from vtwist.interfaces import ITabletRPCRequest
from vtwist.orc import gtid
from vtwist.protocols.mysql.client_commands import Result
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.literals import sql_literal
from vtwist.protocols.mysql.pool import MySQLPool
from vtwist.protocols.tabletrpc_ops import ManageArgs
from vtwist.tablet.state import TabletState

log = Logger()

#: Longest wait an action accepts for a position (seconds), whatever the caller asks.
MAX_WAIT = 600.0

ER_NO_SUCH_THREAD = 1094

DEMOTED = "demoted by a reparent: mysqld is read_only and this tablet takes no writes"


@dataclass(frozen=True)
class ManagerSettings:
    """What the manager needs from the tablet's config (``from_config`` in the tap)."""

    app_user: str = "vt_app"
    repl_user: str = "vt_repl"
    repl_password: str = ""
    net_timeout: int = 2
    heartbeat: float = 0.5
    lock_wait_timeout: int = 5


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _rows(result: Result) -> list[dict[str, str]]:
    names = [c.name for c in result.columns]
    return [{n: _text(v) for n, v in zip(names, row, strict=False)} for row in result.rows]


def quote(value: str) -> str:
    """``value`` as a SQL string literal (``sql_literal``, as text)."""
    return sql_literal(value).decode("utf-8", "surrogateescape")


def _param(args: ManageArgs, name: str, kind: type, default: Any = None) -> Any:
    value = args.params.get(name, default)
    if kind is float and type(value) is int:
        value = float(value)
    if value is None or type(value) is not kind:
        raise MySQLError(
            ErrorCode.WRONG_ARGUMENTS,
            f"Incorrect arguments to tablet action {args.action}: {name!r} must be a "
            f"{kind.__name__}",
        )
    return value


class TabletManager:
    """Runs ``manage`` actions on the tablet's mysqld (see the module docstring)."""

    def __init__(
        self,
        state: TabletState,
        dba: MySQLPool[Any],
        settings: ManagerSettings,
        *,
        on_change: Callable[[], object] | None = None,
    ) -> None:
        self.state = state
        self.dba = dba
        self.settings = settings
        #: Called after an action changed mysqld (the health probe's ``probe_now``).
        self.on_change = on_change
        #: Waits (bounded) for open transactions to end before a demotion turns mysqld
        #: read-only (the query service's ``quiesce``).
        self.quiesce: Callable[[], Deferred[None]] | None = None
        self.actions: dict[str, Callable[[ManageArgs], Awaitable[dict[str, Any]]]] = {
            "status": self._status,
            "demote_primary": self._demote_primary,
            "undo_demote_primary": self._undo_demote,
            "set_read_only": self._set_read_only,
            "wait_for_position": self._wait_for_position,
            "stop_replication": self._stop_replication,
            "promote_replica": self._promote_replica,
            "set_replication_source": self._set_replication_source,
        }

    def manage(self, request: ITabletRPCRequest, args: ManageArgs) -> Deferred[dict[str, Any]]:
        """Run ``args.action``; ERROR 1235 for an unknown one."""
        fn = self.actions.get(args.action)
        if fn is None:
            raise MySQLError(
                1235,
                f"This tablet does not support the action {args.action!r}; known: "
                + ", ".join(sorted(self.actions)),
                "42000",
            )
        return Deferred.fromCoroutine(self._run(args, fn))

    async def _run(
        self, args: ManageArgs, fn: Callable[[ManageArgs], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        try:
            report = await fn(args)
        except MySQLError as e:
            log.warn(
                "tablet {alias}: action {action} failed: {error}",
                alias=self.state.alias,
                action=args.action,
                error=e,
            )
            raise MySQLError(
                e.code, f"tablet {self.state.alias}: {args.action} failed: {e.message}", e.sqlstate
            ) from None
        if args.action != "status":
            log.info("tablet {alias}: {action} done", alias=self.state.alias, action=args.action)
        return report

    # --- SQL ------------------------------------------------------------------------------

    async def _sql(self, *statements: str) -> list[Result]:
        """Run ``statements`` in order on one dba connection; their results."""

        async def run(client: Any) -> list[Result]:
            out = [
                await client.query(
                    f"SET SESSION lock_wait_timeout = {self.settings.lock_wait_timeout}"
                )
            ]
            for stmt in statements:
                out.append(await client.query(stmt))
            return out[1:]

        results: list[Result] = await self.dba.run(run)
        return results

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # --- actions ----------------------------------------------------------------------------

    async def _status(self, args: ManageArgs | None = None) -> dict[str, Any]:
        top, repl, semi = await self._sql(
            "SELECT @@global.server_id, @@global.read_only, @@global.gtid_binlog_pos,"
            " @@global.gtid_current_pos, @@global.gtid_slave_pos",
            "SHOW SLAVE STATUS",
            "SHOW GLOBAL STATUS WHERE Variable_name IN"
            " ('Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients')",
        )
        row = [_text(v) for v in top.rows[0]] if top.rows else ["0", "", "", "", ""]
        status = {r["Variable_name"].lower(): r["Value"] for r in _rows(semi)}
        channels = _rows(repl)
        replication: dict[str, Any] | None = None
        if channels:
            ch = channels[0]
            behind = ch.get("Seconds_Behind_Master", "")
            replication = {
                "host": ch.get("Master_Host", ""),
                "port": int(ch.get("Master_Port") or 0),
                "io_running": ch.get("Slave_IO_Running", "No"),
                "sql_running": ch.get("Slave_SQL_Running", "No"),
                "last_io_error": ch.get("Last_IO_Error", ""),
                "last_sql_error": ch.get("Last_SQL_Error", ""),
                "seconds_behind": int(behind) if behind.isdigit() else None,
                "gtid_io_pos": ch.get("Gtid_IO_Pos", ""),
                "using_gtid": ch.get("Using_Gtid", ""),
            }
        state = self.state
        return {
            "alias": state.alias,
            "tablet_type": state.tablet_type,
            "serving": state.serving,
            "primary_term": state.primary_term,
            "error": state.error,
            "server_id": int(row[0] or 0),
            "read_only": row[1] not in ("", "0", "OFF"),
            "gtid_binlog_pos": row[2],
            "gtid_current_pos": row[3],
            "gtid_slave_pos": row[4],
            "replication": replication,
            "semi_sync_primary": status.get("rpl_semi_sync_master_status", "OFF") == "ON",
            "semi_sync_clients": int(status.get("rpl_semi_sync_master_clients") or 0),
        }

    async def _demote_primary(self, args: ManageArgs) -> dict[str, Any]:
        # Refuse new work first (the gate buffers it), let what runs end, then make mysqld
        # refuse writes too.
        if self.state.tablet_type == "primary":
            self._demote()
            if self.quiesce is not None:
                await self.quiesce()
        try:
            await self._sql("SET GLOBAL read_only = ON")
        except MySQLError as e:
            if e.code != ErrorCode.LOCK_WAIT_TIMEOUT:
                raise
            raise MySQLError(
                e.code,
                f"read_only waited manager.lock_wait_timeout "
                f"({self.settings.lock_wait_timeout} s) for statements still writing (a long "
                "LOAD DATA, ALTER TABLE or transaction outlasting shutdown.grace_period); "
                "retry when they are done",
                e.sqlstate,
            ) from None
        self._changed()
        return await self._status()

    def _demote(self) -> None:
        """Stop serving at once, and keep the health probe from serving again while this
        tablet is the primary (mysqld looks writable until read_only goes on)."""
        self.state.demoted = DEMOTED
        self.state.update(serving=False, error=DEMOTED)

    async def _undo_demote(self, args: ManageArgs) -> dict[str, Any]:
        self.state.demoted = ""  # (the probe serves it again once read_only is off)
        await self._sql("SET GLOBAL read_only = OFF")
        self._changed()
        return await self._status()

    async def _set_read_only(self, args: ManageArgs) -> dict[str, Any]:
        on = _param(args, "on", bool)
        if on and self.state.tablet_type == "primary":
            self._demote()
        elif not on:
            self.state.demoted = ""
        await self._sql(f"SET GLOBAL read_only = {'ON' if on else 'OFF'}")
        self._changed()
        return await self._status()

    async def _wait_for_position(self, args: ManageArgs) -> dict[str, Any]:
        position = _param(args, "position", str)
        timeout = min(max(_param(args, "timeout", float, 10.0), 0.0), MAX_WAIT)
        if position:
            try:
                wanted = gtid.parse_position(position)
            except ValueError as e:
                raise MySQLError(ErrorCode.WRONG_ARGUMENTS, f"bad GTID position: {e}") from None
            status = await self._status()
            if gtid.contains(gtid.parse_position(status["gtid_current_pos"]), wanted):
                # Reached already, maybe by transactions this server wrote itself (a former
                # primary): MASTER_GTID_WAIT only follows gtid_slave_pos, what replication
                # applied, so it would wait for them in vain.
                return status
            (result,) = await self._sql(f"SELECT MASTER_GTID_WAIT({quote(position)}, {timeout})")
            if not result.rows or _text(result.rows[0][0]) != "0":
                status = await self._status()
                if gtid.contains(gtid.parse_position(status["gtid_current_pos"]), wanted):
                    return status
                raise MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    f"did not reach GTID position {position} within {timeout:g}s (it has "
                    f"{status['gtid_current_pos'] or 'nothing'}; replication "
                    f"{_describe(status['replication'])})",
                )
        return await self._status()

    async def _stop_replication(self, args: ManageArgs) -> dict[str, Any]:
        wait_relay = bool(args.params.get("wait_relay", False))
        timeout = min(max(_param(args, "timeout", float, 10.0), 0.0), MAX_WAIT)
        if wait_relay:
            await self._sql("STOP SLAVE IO_THREAD")
            status = await self._status()
            repl = status["replication"]
            io_pos = repl["gtid_io_pos"] if repl else ""
            if io_pos and repl and repl["sql_running"] == "Yes":
                (result,) = await self._sql(f"SELECT MASTER_GTID_WAIT({quote(io_pos)}, {timeout})")
                if not result.rows or _text(result.rows[0][0]) != "0":
                    raise MySQLError(
                        ErrorCode.UNKNOWN_ERROR,
                        f"the relay log (up to {io_pos}) was not applied within {timeout:g}s",
                    )
        await self._sql("STOP SLAVE")
        self._changed()
        return await self._status()

    async def _promote_replica(self, args: ManageArgs) -> dict[str, Any]:
        semi_sync = bool(args.params.get("semi_sync", False))
        self.state.demoted = ""
        await self._sql(
            "STOP SLAVE",
            "RESET SLAVE ALL",
            f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if semi_sync else 'OFF'}",
            "SET GLOBAL read_only = OFF",
        )
        self._changed()
        return await self._status()

    async def _set_replication_source(self, args: ManageArgs) -> dict[str, Any]:
        host = _param(args, "host", str)
        port = _param(args, "port", int)
        if not host or not 0 < port < 65536:
            raise MySQLError(ErrorCode.WRONG_ARGUMENTS, f"bad replication source {host}:{port}")
        s = self.settings
        heartbeat = min(s.heartbeat, s.net_timeout / 2)
        if self.state.tablet_type == "primary":
            self._demote()
        before = await self._status()
        if before["semi_sync_primary"] or before["replication"] is None:
            # A former primary: commits may still wait for a semi-sync ack that will never
            # come. They hold the commit lock (read_only would wait behind them), and turning
            # semi-sync off would let them return OK to their clients although no replica
            # has them: kill their connections first (an error, not an OK).
            await self.dba.run(kill_user_connections(self.settings.app_user))
        await self._sql("SET GLOBAL read_only = ON")
        await self._sql(
            "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
            "STOP SLAVE",
            f"SET GLOBAL slave_net_timeout = {s.net_timeout}",
            f"CHANGE MASTER TO MASTER_HOST = {quote(host)}, MASTER_PORT = {port},"
            f" MASTER_USER = {quote(s.repl_user)}, MASTER_PASSWORD = {quote(s.repl_password)},"
            f" MASTER_USE_GTID = current_pos, MASTER_CONNECT_RETRY = 1,"
            f" MASTER_HEARTBEAT_PERIOD = {heartbeat:g}",
            "START SLAVE",
        )
        self._changed()
        return await self._status()


async def _ignore_gone(d: Any) -> None:
    try:
        await d
    except MySQLError as e:
        if e.code != ER_NO_SUCH_THREAD:
            raise


def kill_user_connections(user: str) -> Callable[[Any], Awaitable[None]]:
    """For ``pool.run``: ``KILL CONNECTION`` every session of MySQL ``user`` but this one."""

    async def run(client: Any) -> None:
        result = await client.query(
            "SELECT ID FROM information_schema.PROCESSLIST"
            f" WHERE USER = {quote(user)} AND ID <> CONNECTION_ID()"
        )
        for row in result.rows:
            await _ignore_gone(client.query(f"KILL CONNECTION {int(_text(row[0]))}"))

    return run


def _describe(replication: dict[str, Any] | None) -> str:
    if not replication:
        return "not configured"
    return (
        f"from {replication['host']}:{replication['port']}, IO {replication['io_running']}, "
        f"SQL {replication['sql_running']}"
        + (f", {replication['last_io_error']}" if replication["last_io_error"] else "")
        + (f", {replication['last_sql_error']}" if replication["last_sql_error"] else "")
    )
