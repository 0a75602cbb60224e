"""The tablet manager's actions against a scripted mysqld: the SQL each runs and in what
order, the state changes, and the errors a caller sees."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.unit.tablet.test_tablet_health_fakes import FakeMysqld, fake_pool, make_state, result
from vtwist.protocols.mysql.client_commands import Result
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.tabletrpc_ops import ManageArgs, parse_args
from vtwist.tablet.manager import ManagerSettings, TabletManager


class ManagedMysqld(FakeMysqld):
    """Also answers what the manager asks."""

    semi_sync_on: bool = False
    slave_host: str | None = None
    wait_result: bytes = b"0"
    app_threads: tuple[int, ...] = ()
    read_only_error: MySQLError | None = None  # what SET GLOBAL read_only = ON fails with

    def answer(self, sql: str) -> Deferred[Result]:
        if sql == "SET GLOBAL read_only = ON" and self.read_only_error is not None:
            self.queries.append(sql)
            return fail(self.read_only_error)
        if sql.startswith("SELECT @@global.server_id"):
            self.queries.append(sql)
            ro = b"1" if self.read_only else b"0"
            return succeed(
                result(["a", "b", "c", "d", "e"], [[b"101", ro, b"0-1-9", b"0-1-9", b""]])
            )
        if sql == "SHOW SLAVE STATUS":
            self.queries.append(sql)
            if self.slave_host is None:
                return succeed(result(["Master_Host"], []))
            cols = [
                "Master_Host",
                "Master_Port",
                "Slave_IO_Running",
                "Slave_SQL_Running",
                "Gtid_IO_Pos",
            ]
            row: list[bytes | None] = [self.slave_host.encode(), b"3301", b"Yes", b"Yes", b"0-1-9"]
            return succeed(result(cols, [row]))
        if sql.startswith("SHOW GLOBAL STATUS"):
            self.queries.append(sql)
            on = b"ON" if self.semi_sync_on else b"OFF"
            rows: list[list[bytes | None]] = [
                [b"Rpl_semi_sync_master_status", on],
                [b"Rpl_semi_sync_master_clients", b"1"],
            ]
            return succeed(result(["Variable_name", "Value"], rows))
        if sql.startswith("SELECT ID FROM information_schema.PROCESSLIST"):
            self.queries.append(sql)
            return succeed(result(["ID"], [[str(t).encode()] for t in self.app_threads]))
        if sql.startswith("SELECT MASTER_GTID_WAIT"):
            self.queries.append(sql)
            return succeed(result(["w"], [[self.wait_result]]))
        if sql.startswith(("SET SESSION", "SET GLOBAL rpl", "SET GLOBAL slave", "STOP", "START")):
            self.queries.append(sql)
            return succeed(Result())
        if sql.startswith(("CHANGE MASTER", "RESET SLAVE", "KILL CONNECTION")):
            self.queries.append(sql)
            if sql.startswith("CHANGE MASTER"):
                self.slave_host = "127.0.0.1"
            return succeed(Result())
        return super().answer(sql)


class Harness:
    def __init__(self, tablet_type: str = "primary") -> None:
        self.clock = Clock()
        self.mysqld = ManagedMysqld()
        self.state = make_state(self.clock, tablet_type)
        self.state.update(serving=True, error="")
        self.changes = 0
        self.manager = TabletManager(
            self.state,
            fake_pool(self.mysqld, self.clock),
            ManagerSettings(app_user="vt_app", repl_user="vt_repl", repl_password="s'cret"),
            on_change=self._changed,
        )

    def _changed(self) -> None:
        self.changes += 1

    def run(self, action: str, **params: Any) -> dict[str, Any]:
        d = self.manager.manage(None, ManageArgs(action, params))  # type: ignore[arg-type]
        self.clock.advance(0)
        out: list[Any] = []
        d.addBoth(out.append)
        assert out, f"{action} did not complete"
        if hasattr(out[0], "raiseException"):
            out[0].raiseException()
        report: dict[str, Any] = out[0]
        return report

    def statements(self) -> list[str]:
        return [
            q
            for q in self.mysqld.queries
            if not q.startswith(("SET SESSION", "SELECT @@global", "SHOW"))
        ]


def test_status_reports_positions_replication_and_semi_sync() -> None:
    h = Harness("replica")
    h.mysqld.slave_host = "127.0.0.1"
    h.mysqld.read_only = True
    report = h.run("status")
    assert report["server_id"] == 101 and report["read_only"] is True
    assert report["gtid_binlog_pos"] == "0-1-9"
    assert report["replication"]["port"] == 3301 and report["replication"]["io_running"] == "Yes"
    assert report["semi_sync_primary"] is False and report["semi_sync_clients"] == 1
    assert h.changes == 0


def test_demote_stops_serving_before_read_only() -> None:
    h = Harness()
    seen: list[bool] = []
    h.state.subscribe(lambda snap: seen.append(bool(snap["serving"])))
    report = h.run("demote_primary")
    assert seen[0] is False  # not serving first, in the same turn
    assert h.mysqld.read_only and report["read_only"] is True
    assert h.statements() == ["SET GLOBAL read_only = ON"]
    assert h.changes == 1
    assert h.state.demoted  # (the health probe keeps it out of service meanwhile)
    h.run("undo_demote_primary")
    assert not h.mysqld.read_only and not h.state.demoted


def test_demote_that_read_only_cannot_pass_says_why() -> None:
    h = Harness()
    h.mysqld.read_only_error = MySQLError(1205, "Lock wait timeout exceeded")
    with pytest.raises(MySQLError) as e:
        h.run("demote_primary")  # a LOAD DATA still writing after the grace period
    assert e.value.code == 1205
    assert "manager.lock_wait_timeout (5 s) for statements still writing" in e.value.message
    h.run("undo_demote_primary")  # the reparent gives the primary back
    assert not h.state.demoted


def test_demote_lets_open_transactions_end_before_read_only() -> None:
    h = Harness()
    waiting: Deferred[None] = Deferred()
    h.manager.quiesce = lambda: waiting
    d = h.manager.manage(None, ManageArgs("demote_primary", {}))  # type: ignore[arg-type]
    h.clock.advance(0)
    assert not h.state.serving and not h.mysqld.read_only and not d.called
    waiting.callback(None)  # the transactions ended (or the grace period passed)
    h.clock.advance(0)
    assert d.called and h.mysqld.read_only


def test_repointing_a_former_primary_kills_its_app_sessions_first() -> None:
    h = Harness()
    h.mysqld.semi_sync_on = True
    h.mysqld.app_threads = (7, 8)
    report = h.run("set_replication_source", host="127.0.0.1", port=3301, semi_sync=True)
    assert h.statements()[:5] == [
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'vt_app' AND ID <> "
        "CONNECTION_ID()",
        "KILL CONNECTION 7",
        "KILL CONNECTION 8",
        "SET GLOBAL read_only = ON",
        "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
    ]
    change = next(q for q in h.statements() if q.startswith("CHANGE MASTER"))
    assert "MASTER_PORT = 3301" in change and "MASTER_USE_GTID = current_pos" in change
    assert "MASTER_PASSWORD = 's\\'cret'" in change  # quoted
    assert h.statements()[-1] == "START SLAVE"
    assert report["replication"] is not None
    assert h.state.serving is False


def test_repointing_a_replica_leaves_its_sessions_alone() -> None:
    h = Harness("replica")
    h.mysqld.slave_host = "127.0.0.1"
    h.mysqld.app_threads = (7,)
    h.run("set_replication_source", host="127.0.0.1", port=3302, semi_sync=False)
    assert not any(q.startswith("KILL") for q in h.mysqld.queries)


def test_wait_for_position_times_out_with_a_clear_error() -> None:
    h = Harness("replica")
    h.mysqld.wait_result = b"-1"
    with pytest.raises(MySQLError) as e:
        h.run("wait_for_position", position="0-1-12", timeout=1)
    assert "did not reach GTID position 0-1-12 within 1s" in e.value.message
    assert e.value.message.startswith("tablet zone1-")


def test_wait_for_a_position_already_reached_returns_at_once() -> None:
    # The candidate wrote 0-1-9 itself (a former primary): MASTER_GTID_WAIT, which follows
    # gtid_slave_pos only, would wait in vain (a planned reparent back to it failed so).
    h = Harness("replica")
    h.mysqld.wait_result = b"-1"
    for position in ("0-1-9", "0-7-5"):  # (any server: seqs order a domain)
        report = h.run("wait_for_position", position=position, timeout=15)
        assert report["gtid_current_pos"] == "0-1-9"
    assert not any(q.startswith("SELECT MASTER_GTID_WAIT") for q in h.mysqld.queries)
    with pytest.raises(MySQLError) as e:
        h.run("wait_for_position", position="0-1-x", timeout=1)
    assert e.value.code == 1210 and "bad GTID position" in e.value.message


def test_promote_and_stop_replication() -> None:
    h = Harness("replica")
    h.mysqld.slave_host = "127.0.0.1"
    h.mysqld.read_only = True
    h.run("stop_replication", wait_relay=True, timeout=5)
    assert h.statements() == [
        "STOP SLAVE IO_THREAD",
        "SELECT MASTER_GTID_WAIT('0-1-9', 5.0)",
        "STOP SLAVE",
    ]
    h.mysqld.queries.clear()
    h.run("promote_replica", semi_sync=True)
    assert h.statements() == [
        "STOP SLAVE",
        "RESET SLAVE ALL",
        "SET GLOBAL rpl_semi_sync_master_enabled = ON",
        "SET GLOBAL read_only = OFF",
    ]


def test_bad_requests() -> None:
    h = Harness()
    with pytest.raises(MySQLError) as e:
        h.run("make_coffee")
    assert e.value.code == 1235 and "status" in e.value.message
    with pytest.raises(MySQLError) as e:
        h.run("set_read_only", on="yes")
    assert e.value.code == 1210 and "'on' must be a bool" in e.value.message
    with pytest.raises(MySQLError) as e:
        parse_args("manage", {"action": "", "params": {}})
    assert e.value.code == 1210
    with pytest.raises(MySQLError):
        parse_args("manage", {"action": "status", "params": [1]})
    assert parse_args("manage", {"action": "status"}) == ManageArgs("status", {})
