"""Gate sessions against fake tablets over real RPC: routing, transactions, state, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.unit.gate.fakes import Cluster, FakeTablet, RecordingSink, finished, tablet
from vtwist.gate.gate import GateSettings
from vtwist.gate.policies import RandomPolicy
from vtwist.interfaces import (
    IQueryHandler,
    IQueryHandlerFactory,
    IRoutingPolicy,
    ITabletRPCRequest,
)
from vtwist.protocols.mysql.constants import Capability
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.server_types import Statement
from vtwist.protocols.tabletrpc_ops import ExecuteArgs
from vtwist.tablet.policies import not_serving_error

AUTOCOMMIT, IN_TRANS, MORE = 0x2, 0x1, 0x8


def cluster(**kw: Any) -> Cluster:
    c = Cluster(**kw)
    c.add(
        tablet("zone1-100", ttype="primary"),
        tablet("zone1-101", ttype="replica"),
        tablet("zone1-102", ttype="rdonly"),
    )
    return c


def served_by(sink: RecordingSink) -> str | None:
    assert sink.error_code is None, sink.events
    return sink.table[0][0]


def ran_on(c: Any, s: Any, sql: str) -> str:
    """The alias of the one tablet that ran ``sql`` (run now, without error)."""
    before = {a: len(t.calls) for a, t in c.services.items()}
    sink = c.run(s, sql)
    assert sink.error_code is None, sink.events
    ran = [
        a
        for a, t in c.services.items()
        if any(getattr(args, "sql", None) == sql for _, args in t.calls[before.get(a, 0) :])
    ]
    assert len(ran) == 1, (sql, ran)
    return str(ran[0])


@implementer(IPlugin, IRoutingPolicy)
class Reports(RandomPolicy):
    """Sends reads marked ``/* report */`` to ``@replica``."""

    name = "reports"

    def redirect(self, query: Any) -> str | None:
        return "@replica" if b"/* report */" in query.sql else None


def test_handler_and_factory_provide_their_interfaces() -> None:
    c = cluster()
    assert verifyObject(IQueryHandlerFactory, c.gate)
    assert verifyObject(IQueryHandler, c.session())


def test_reads_follow_the_target_type() -> None:
    c = cluster()
    s = c.session(database="commerce")
    assert served_by(c.run(s, "select 1")) == "zone1-100"
    c.run(s, "use commerce@replica")
    assert served_by(c.run(s, "select 1")) == "zone1-101"
    c.run(s, "use commerce:0@rdonly")
    assert served_by(c.run(s, "select 1")) == "zone1-102"
    assert c.services["zone1-101"].calls[0][1].target == "commerce:0@replica"


def test_client_found_rows_reaches_every_tablet_call_that_picks_a_connection() -> None:
    c = cluster()
    s = c.session(database="commerce", capabilities=Capability.FOUND_ROWS)
    c.run(s, "update t set v = 1")  # pooled
    c.run(s, "begin")
    c.run(s, "update t set v = 2")
    c.run(s, "commit")
    c.run(s, "set @x = rand()")  # reserves a connection
    calls = c.services["zone1-100"].calls
    assert [op for op, _ in calls][:3] == ["execute", "begin", "execute"]
    for op, args in calls:
        if op in ("execute", "begin", "reserve"):
            assert args.options == {"found_rows": True}, (op, args)
    assert "reserve" in [op for op, _ in calls]
    plain = cluster()
    p = plain.session(database="commerce")
    plain.run(p, "update t set v = 1")
    plain.run(p, "begin")
    assert all(args.options is None for _, args in plain.services["zone1-100"].calls)


def test_start_transaction_characteristics_reach_the_tablet_begin() -> None:
    c = cluster()
    s = c.session(database="commerce")
    c.run(s, "start transaction read only, with consistent snapshot")
    c.run(s, "select 1")
    c.run(s, "commit")
    c.run(s, "begin")
    c.run(s, "select 1")
    c.run(s, "rollback")
    primary = c.services["zone1-100"]
    begins = [args for op, args in primary.calls if op == "begin"]
    assert begins[0].options == {"start": "READ ONLY, WITH CONSISTENT SNAPSHOT"}
    assert begins[1].options is None  # a plain BEGIN after it
    assert c.run(s, "start transaction read sometimes").error_code == 1064


def test_commit_and_chain_begins_the_next_transaction_at_once() -> None:
    # COMMIT AND CHAIN: a new transaction begins with the same characteristics, so the
    # ROLLBACK after it undoes the next insert (the tablet's own COMMIT never chains).
    c = cluster()
    s = c.session(database="commerce")
    c.run(s, "start transaction read write")
    c.run(s, "insert into t values (1)")
    c.run(s, "commit and chain")
    assert s.in_transaction
    c.run(s, "insert into t values (2)")
    c.run(s, "rollback and no chain")
    assert not s.in_transaction
    primary = c.services["zone1-100"]
    assert primary.ops() == ["begin", "execute", "commit", "begin", "execute", "rollback"]
    begins = [args for op, args in primary.calls if op == "begin"]
    assert begins[0].options == begins[1].options == {"start": "READ WRITE"}
    # A completion_type that chains or releases by default is refused; NO_CHAIN is kept.
    sink = c.run(s, "set session completion_type = 'CHAIN'")
    assert sink.error_code == 1235 and "COMMIT AND CHAIN" in str(sink.events[-1])
    assert c.run(s, "set completion_type = 0").error_code is None


def test_set_names_utf8mb4_after_another_character_set_reaches_the_tablets() -> None:
    # SET NAMES utf8mb4 is a no-op for the tablets' utf8mb4 connections, unless an earlier
    # SET NAMES latin1 is one of the session's settings: then results would stay latin1.
    c = cluster()
    s = c.session()
    primary = c.services["zone1-100"]
    c.run(s, "set names utf8mb4")
    assert primary.calls == []
    c.run(s, "set names latin1")
    c.run(s, "set names utf8mb4")
    c.run(s, "select 1")
    assert primary.calls[-1][1].settings == ["set names latin1", "set names utf8mb4"]
    # On a reserved connection, where SET NAMES latin1 ran, it runs too.
    r = c.session()
    c.run(r, "set @x = rand()")
    c.run(r, "set names latin1")
    c.run(r, "set names utf8mb4")
    last = primary.calls[-1][1]
    assert (last.sql, bool(last.reserved_id)) == ("set names utf8mb4", True)


def test_last_insert_id_is_the_sessions_own() -> None:
    c = cluster()
    s, other = c.session(database="commerce"), c.session(database="commerce")
    c.run(s, "select last_insert_id()")
    c.run(s, "insert into t (v) values (1)")  # the fake tablet answers insert id 7
    c.run(other, "update t set v = 2")  # (also 7 here: another session's, not s's)
    c.run(s, "select 1")  # a result without an id changes nothing
    c.run(s, "select last_insert_id() as id")
    sent = [args.sql for op, args in c.services["zone1-100"].calls if op == "execute"]
    assert sent[0] == "select 0 AS `last_insert_id()`"
    assert sent[-1] == "select 7 as id"
    c.wait(s.reset_connection())
    c.run(s, "select last_insert_id()")
    assert c.services["zone1-100"].calls[-1][1].sql == "select 0 AS `last_insert_id()`"


def test_last_insert_id_expr_is_read_back_from_its_connection() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "select last_insert_id(5)")  # a result set: no id in it
    calls = c.services["zone1-100"].calls
    first, second = calls[-2][1], calls[-1][1]
    assert first.sql == "select last_insert_id(5)" and second.sql == "SELECT LAST_INSERT_ID()"
    assert first.reserved_id and second.reserved_id == first.reserved_id
    c.run(s, "select last_insert_id()")
    assert calls[-1][1].sql == "select 77 AS `last_insert_id()`"
    c.run(s, "select 'last_insert_id(1)'")  # in a string: nothing to read back
    assert calls[-1][1].sql == "select 'last_insert_id(1)'"


def test_row_count_is_the_previous_statements() -> None:
    c = cluster()
    s, other = c.session(database="commerce"), c.session(database="commerce")
    c.run(s, "update t set v = 1")  # the fake tablet answers 1 affected row
    c.run(other, "select 1")
    c.run(s, "select row_count()")
    c.run(s, "select row_count()")  # after a result set: -1
    sent = [args.sql for op, args in c.services["zone1-100"].calls if op == "execute"]
    assert sent[-2:] == ["select 1 AS `row_count()`", "select -1 AS `row_count()`"]


def warnings_shown(c: Cluster, s: Any, sql: str = "show warnings") -> list[list[str | None]]:
    sink = c.run(s, sql)
    assert sink.error_code is None, sink.events
    assert sink.events[0] == ("start", ["Level", "Code", "Message"])
    return sink.table


def test_show_warnings_answers_the_sessions_own_last_statement() -> None:
    c = cluster()
    s, other = c.session(database="commerce"), c.session(database="commerce")
    c.run(s, "warn 2")
    assert warnings_shown(c, other) == []  # not another session's
    w = [["Warning", "1000", "w0 at zone1-100"], ["Warning", "1001", "w1 at zone1-100"]]
    assert warnings_shown(c, s) == w
    assert warnings_shown(c, s, "SHOW WARNINGS LIMIT 1") == w[:1]
    assert warnings_shown(c, s, "show warnings limit 1, 1") == w[1:]
    assert warnings_shown(c, s, "show warnings limit 1 offset 1;") == w[1:]
    assert warnings_shown(c, s, "show errors") == []
    assert c.run(s, "show count(*) warnings").table == [["2"]]
    assert c.run(s, "SHOW COUNT( * ) ERRORS").events[0] == ("start", ["@@session.error_count"])
    c.run(s, "select @@warning_count, @@session.error_count")
    sent = c.services["zone1-100"].calls[-1][1].sql
    assert sent == "select 2 AS `@@warning_count`, 0 AS `@@session.error_count`"
    assert warnings_shown(c, s) == w  # reading the counts keeps them
    for keeping in ("set autocommit = 1", "begin", "commit", "do 1", "use commerce"):
        c.run(s, keeping)
        assert warnings_shown(c, s) == w, keeping
    c.run(s, "select 1")
    assert warnings_shown(c, s) == []
    assert c.services["zone1-100"].sql().count("show warnings") == 0  # never sent on


def test_a_settings_own_warnings_are_asked_for_and_kept() -> None:
    c = cluster()
    s = c.session(database="commerce")
    c.run(s, "set sql_mode = 'warn 2'")
    op, args = c.services["zone1-100"].calls[-1]
    assert (op, args.sql, args.settings) == ("execute", "DO 0", ["set sql_mode = 'warn 2'"])
    assert args.options == {"setting_warnings": True}
    assert [w[1] for w in warnings_shown(c, s)] == ["1000", "1001"]


def test_show_warnings_after_an_error_a_stream_and_a_reset() -> None:
    c = cluster()
    s = c.session(database="commerce")
    assert c.run(s, "error 1146").error_code == 1146
    assert warnings_shown(c, s, "show errors") == [["Error", "1146", "scripted error"]]
    c.run(s, "select @@error_count")
    assert c.services["zone1-100"].calls[-1][1].sql == "select 1 AS `@@error_count`"
    c.run(s, "set workload = 'olap'")
    c.run(s, "select warn 1")  # streamed
    assert warnings_shown(c, s) == [["Warning", "1000", "w0 at zone1-100"]]
    c.run(s, "begin")
    c.run(s, "warn 3")  # in a transaction
    assert len(warnings_shown(c, s)) == 3
    c.run(s, "rollback")
    c.wait(s.reset_connection())
    assert warnings_shown(c, s) == []
    assert c.run(s, "show count(*) warnings").table == [["0"]]


def test_load_data_local_infile_streams_the_clients_file_to_the_primary() -> None:
    c = cluster()
    s = c.session(capabilities=Capability.LOCAL_FILES)
    sink = RecordingSink()
    sink.infile = b"1,a\n2,b\n"
    c.run(s, "LOAD DATA LOCAL INFILE '/tmp/it''s.csv' INTO TABLE t", sink)
    assert sink.files_asked == [("/tmp/it's.csv", 1024 * 1024 * 1024)]
    assert sink.events[-1][:2] == ("ok", 2) and sink.file.finished
    tablet = c.services["zone1-100"]
    [(op, args)] = tablet.calls
    assert op == "execute" and args.infile_stream and args.infile is None
    assert args.sql.startswith("LOAD DATA LOCAL")
    # The tablet pulled it in pieces of the size it asked for (4 bytes here), then the end.
    assert tablet.files == [b"1,a\n2,b\n"]
    assert tablet.pieces == [b"1,a\n", b"2,b\n", b""]
    c.run(s, "begin")  # in a transaction: on its connection
    sink = RecordingSink()
    sink.infile = b"3,c\n"
    c.run(s, "load data local infile 'f' into table t", sink)
    args = tablet.calls[-1][1]
    assert args.transaction_id and args.infile_stream and tablet.files[-1] == b"3,c\n"
    c.run(s, "insert into t values (1)")  # the next statement brings no file
    assert not tablet.calls[-1][1].infile_stream


def test_load_data_local_infile_refusals() -> None:
    c = cluster()
    no_flag = c.run(c.session(), "load data local infile 'f' into table t")
    assert no_flag.error_code == 1148 and "--local-infile=1" in no_flag.events[-1][2]
    s = c.session(capabilities=Capability.LOCAL_FILES)
    # The file breaks off after the tablet read part of it (here: over the gate's limit):
    # the tablet's statement fails, and the client gets the file's error.
    sink = RecordingSink()
    sink.infile = MySQLError(1153, "the LOAD DATA LOCAL INFILE file has more than 8 bytes")
    c.run(s, "load data local infile 'f' into table t", sink)
    assert sink.error_code == 1153 and "session.max_local_infile_size" in sink.events[-1][2]
    assert sink.file.finished and c.services["zone1-100"].pieces[0] == b"abc"
    assert c.run(s, "select 1").events[-1][0] == "done"  # the session goes on
    # Refused before a tablet read it: the client's file is still read to its end first.
    r = c.session(database="commerce@replica", capabilities=Capability.LOCAL_FILES)
    sink = RecordingSink()
    sink.infile = b"1,a\n"
    c.run(r, "load data local infile 'f' into table t", sink)
    assert sink.error_code == 1290 and sink.file.finished and sink.file.consumed == 4
    off = cluster(settings=GateSettings(max_local_infile_size=0))
    t = off.session(capabilities=Capability.LOCAL_FILES)
    refused = off.run(t, "load data local infile 'f' into table t")
    assert refused.error_code == 1148 and "max_local_infile_size = 0" in refused.events[-1][2]
    assert not [op for op, _ in off.services["zone1-100"].calls if op == "execute"]


def test_show_vitess_target() -> None:
    c = cluster()
    s = c.session(database="")
    assert c.run(s, "SHOW VITESS_TARGET").table == [[""]]
    c.run(s, "use commerce:0@replica")
    sink = c.run(s, "show vitess_target")
    assert sink.events[0] == ("start", ["Target"]) and sink.table == [["commerce:0@replica"]]


def test_query_timeout_from_set_and_comment_directive() -> None:
    c = cluster()
    s = c.session(capabilities=Capability.FOUND_ROWS)
    c.run(s, "select 1")
    c.run(s, "select /*vt+ QUERY_TIMEOUT_MS=250 */ 1")
    assert c.run(s, "SET query_timeout = 1500").events[-1][0] == "ok"
    c.run(s, "update t set v = 1")
    c.run(s, "begin")
    c.run(s, "update t set v = 2")  # in a transaction too
    c.run(s, "select /*vt+ QUERY_TIMEOUT_MS=0 */ 1")  # the directive wins: no timeout
    c.run(s, "set @@query_timeout=0")
    c.run(s, "select 'QUERY_TIMEOUT_MS=9 /*vt+ QUERY_TIMEOUT_MS=9 */'")  # in a string: not one
    options = [args.options for op, args in c.services["zone1-100"].calls if op == "execute"]
    found = {"found_rows": True}
    assert options == [
        found,
        {**found, "query_timeout_ms": 250},
        {**found, "query_timeout_ms": 1500},
        {**found, "query_timeout_ms": 1500},
        found,
        found,
    ]


def test_a_statement_timeout_also_shortens_the_tablet_call_deadline() -> None:
    c = cluster()  # session.query_timeout: 30 s
    s = c.session()
    sink = RecordingSink()
    d = finished(s.query(b"sleep /*vt+ QUERY_TIMEOUT_MS=500 */ 100", sink), sink)
    c.flush()
    c.clock.advance(1.4)
    c.flush()
    assert not d.called  # the tablet has until 0.5 s + 1 s to say it killed the statement
    c.clock.advance(0.2)
    c.flush()
    assert d.called and sink.error_code is not None
    assert c.services["zone1-100"].cancelled


def test_a_streamed_statement_has_the_stream_timeout() -> None:
    c = cluster(settings=GateSettings(query_timeout=1.0, stream_timeout=5.0))
    s = c.session()
    c.run(s, "set workload = 'olap'")
    sink = RecordingSink()
    d = finished(s.query(b"select sleep 100", sink), sink)  # (a dump reading a big table)
    c.flush()
    c.clock.advance(4.0)
    c.flush()
    assert not d.called  # past session.query_timeout, within session.stream_timeout
    c.clock.advance(1.5)
    c.flush()
    assert d.called and sink.error_code == 1317
    assert c.services["zone1-100"].cancelled


def test_show_vitess_replication_status() -> None:
    c = cluster()
    c.services["zone1-101"].replication = {
        "host": "127.0.0.1",
        "port": 3306,
        "io_running": "Yes",
        "sql_running": "No",
        "last_io_error": "",
        "last_sql_error": "Duplicate entry '1'",
        "seconds_behind": None,
    }
    c.services["zone1-102"].replication = {
        "host": "127.0.0.1",
        "port": 3306,
        "io_running": "Yes",
        "sql_running": "Yes",
        "seconds_behind": 3,
    }
    s = c.session()
    sink = c.run(s, "SHOW VITESS_REPLICATION_STATUS")
    assert sink.events[0] == (
        "start",
        ["Keyspace", "Shard", "TabletType", "Alias", "Hostname", "ReplicationSource",
         "ReplicationHealth", "ReplicationLag", "ThrottlerStatus"],
    )  # fmt: skip
    rows = sink.table
    assert [r[:4] for r in rows] == [
        ["commerce", "0", "REPLICA", "zone1-101"],
        ["commerce", "0", "RDONLY", "zone1-102"],
    ]  # the primary has no replication to show
    assert rows[0][5] == "127.0.0.1:3306" and rows[0][7] is None
    assert json.loads(rows[0][6] or "") == {
        "EventStreamRunning": "Yes",
        "EventApplierRunning": "No",
        "LastError": "Duplicate entry '1'",
    }
    assert rows[1][7] == "3" and rows[1][8] == ""
    assert c.run(s, "show vitess_replication_status like 'comm%'").table == rows
    assert c.run(s, "show vitess_replication_status like 'other'").table == []
    c.links["zone1-102"].set_connected(False)
    down = c.run(s, "show vitess_replication_status")
    assert "not connected" in json.loads(down.table[1][6] or "")["LastError"]


def test_vitess_shows_and_show_databases_take_like() -> None:
    c = cluster()
    c.cache.add_keyspace("customer", ["-80", "80-"])
    s = c.session()
    assert c.run(s, "show databases").table == [["commerce"], ["customer"]]
    sink = c.run(s, "SHOW DATABASES LIKE 'cust%'")
    assert sink.events[0] == ("start", ["Database (cust%)"]) and sink.table == [["customer"]]
    assert c.run(s, "show vitess_keyspaces like 'comm_rce'").table == [["commerce"]]
    assert c.run(s, "show vitess_shards like 'customer/%'").table == [
        ["customer/-80"],
        ["customer/80-"],
    ]
    assert c.run(s, "show vitess_tablets like 'nohost%'").table == []
    assert len(c.run(s, "show vitess_tablets like '%'").table) == 3


def test_dump_programs_start_in_the_olap_workload() -> None:
    c = cluster()
    dump = c.session(attrs={"program_name": "mysqldump"})
    other = c.session(attrs={"program_name": "myapp"})
    c.run(dump, "select 1")
    c.run(other, "select 1")
    ops = [op for op, _ in c.services["zone1-100"].calls]
    assert ops == ["stream_execute", "execute"]
    c.run(dump, "select @@workload")
    op, args = c.services["zone1-100"].calls[-1]
    assert op == "stream_execute" and "'OLAP'" in args.sql


def test_dump_table_reads_stream_in_any_session() -> None:
    # mydumper sends no program_name; its table reads carry mysqldump's marker.
    c = cluster()
    s = c.session()
    tablet = c.services["zone1-100"]
    c.run(s, "SELECT /*!40001 SQL_NO_CACHE */ * FROM `commerce`.`t`")
    c.run(s, "select /*!40001 SQL_NO_CACHE */ * from t")
    c.run(s, "select 1 /*!40001 SQL_NO_CACHE */")  # not where a dump tool writes it
    c.run(s, "select * from t")
    c.run(s, "begin")
    c.run(s, "select /*!40001 SQL_NO_CACHE */ * from t")  # in a transaction too
    ops = [op for op, _ in tablet.calls if op in ("execute", "stream_execute")]
    assert ops == ["stream_execute", "stream_execute", "execute", "execute", "stream_execute"]
    off = cluster(settings=GateSettings(olap_markers=()))
    off.run(off.session(), "SELECT /*!40001 SQL_NO_CACHE */ * FROM t")
    assert [op for op, _ in off.services["zone1-100"].calls] == ["execute"]


def test_create_and_drop_database_are_the_gates() -> None:
    c = cluster()
    s = c.session()
    # A dump's CREATE DATABASE of the keyspace it restores into: a note, as on mysqld.
    ok = c.run(s, "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `commerce` /*!40100 DEFAULT "
                  "CHARACTER SET utf8mb4 */")  # fmt: skip
    assert ok.events[-1][0] == "ok"
    assert warnings_shown(c, s) == [
        ["Note", "1007", "Can't create database 'commerce'; database exists"]
    ]
    assert c.run(s, "create schema commerce").error_code == 1007
    created = c.run(s, "CREATE SCHEMA newks")
    assert created.error_code == 1235 and "'newks' is not one" in created.events[-1][2]
    # Dropping a keyspace is refused; dropping what is no keyspace does nothing.
    for sql in ("drop database commerce", "/*!40000 DROP DATABASE IF EXISTS `commerce`*/"):
        dropped = c.run(s, sql)
        assert dropped.error_code == 1235 and "drop its tables" in dropped.events[-1][2]
    assert c.run(s, "drop schema if exists mysql").events[-1][0] == "ok"
    assert warnings_shown(c, s)[0][:2] == ["Note", "1008"]
    assert c.run(s, "drop database nosuch").error_code == 1008
    assert c.run(s, "drop database").error_code == 1064
    assert not [call for t in c.services.values() for call in t.calls if call[0] == "execute"]


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("RESET MASTER", "RESET MASTER"),
        ("reset  slave all", "RESET SLAVE"),
        ("PURGE BINARY LOGS BEFORE NOW()", "PURGE BINARY LOGS"),
        ("CHANGE MASTER TO master_host='x'", "CHANGE MASTER"),
        ("stop all slaves", "STOP ALL SLAVES"),
        ("START REPLICA", "START REPLICA"),
        ("/*!50000 SHUTDOWN */", "SHUTDOWN"),
        ("INSTALL SONAME 'ha_x'", "INSTALL SONAME"),
    ],
)
def test_server_administration_is_refused(sql: str, what: str) -> None:
    c = cluster()
    s = c.session()
    sink = c.run(s, sql)
    assert sink.error_code == 1235 and sink.events[-1][2].startswith(what + " is not supported")
    assert not c.services["zone1-100"].calls
    c.run(s, "start transaction")  # (START still means what it meant)
    c.run(s, "select 1")
    c.run(s, "commit")
    assert [op for op, _ in c.services["zone1-100"].calls] == ["begin", "execute", "commit"]


def test_default_tablet_type_from_settings() -> None:
    c = cluster(settings=GateSettings(default_tablet_type="replica"))
    s = c.session(database="commerce")
    assert served_by(c.run(s, "select 1")) == "zone1-101"


def test_write_to_replica_target_is_refused() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    sink = c.run(s, "insert into t values (1)")
    assert sink.error_code == 1290
    assert "commerce@primary" in sink.events[-1][2]
    assert c.services["zone1-101"].calls == []


def test_locking_read_goes_to_primary() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    assert served_by(c.run(s, "select * from t for update")) == "zone1-100"


def test_a_call_returning_two_result_sets_relays_both() -> None:
    c = cluster()
    s = c.session()
    sink = c.run(s, "call two_sets()")
    assert sink.table == [["zone1-100"], ["second"], ["x"]]
    dones = [e for e in sink.events if e[0] == "done"]
    assert dones == [("done", AUTOCOMMIT | MORE), ("done", AUTOCOMMIT)]
    [entry] = [e for e in c.gate.query_stats.top() if e.digest == b"call two_sets()"]
    assert entry.rows_sent == 3


def test_write_goes_to_primary_and_relays_ok() -> None:
    c = cluster()
    s = c.session()
    sink = c.run(s, "insert into t values (1)")
    assert sink.events == [("ok", 1, 7, AUTOCOMMIT)]
    assert c.services["zone1-100"].sql() == ["insert into t values (1)"]


def test_transaction_is_pinned_and_committed() -> None:
    c = cluster()
    s = c.session(database="commerce")
    assert c.run(s, "begin").events == [("ok", 0, 0, AUTOCOMMIT | IN_TRANS)]
    assert c.services["zone1-100"].calls == []  # BEGIN is lazy
    c.run(s, "update t set a = 1")
    c.run(s, "use commerce@replica")  # reads in the transaction stay on it
    assert c.run(s, "select a from t").events[-1] == ("done", AUTOCOMMIT | IN_TRANS)
    assert c.run(s, "commit").events == [("ok", 0, 0, AUTOCOMMIT)]
    primary = c.services["zone1-100"]
    assert primary.ops() == ["begin", "execute", "execute", "commit"]
    tid = primary.calls[2][1].transaction_id
    assert tid and primary.calls[1][1].transaction_id == tid
    assert c.services["zone1-101"].calls == []


def test_transaction_ends_on_a_tablet_that_left_the_topo_while_its_link_is_up() -> None:
    """A tablet shutting down leaves the topo but lets open transactions end: the gate
    keeps its link while one is pinned to it, and its statements still go there."""
    c = cluster()
    s = c.session(database="commerce")
    c.run(s, "begin")
    c.run(s, "update t set a = 1")
    handle = c.discovery.handles["zone1-100"]
    link = c.links["zone1-100"]
    assert handle.pinned == 1
    c.remove("zone1-100")
    c.clock.advance(1.0)
    assert handle.removed and not link.stopped
    assert c.discovery.candidates("commerce", "0", "primary") == []  # nothing new goes there
    assert c.run(s, "update t set a = 2").error_code is None
    assert c.run(s, "commit").events == [("ok", 0, 0, AUTOCOMMIT)]
    assert handle.pinned == 0
    assert [op for op, _ in c.services["zone1-100"].calls][-2:] == ["execute", "commit"]
    c.clock.advance(0.1)
    assert link.stopped  # nothing runs or is pinned on it any more


class ShuttingDownTablet(FakeTablet):
    """A replica that has just begun to stop: it refuses every statement, running none."""

    def execute(self, request: ITabletRPCRequest, args: ExecuteArgs) -> Any:
        self.calls.append(("execute", args))
        raise not_serving_error(self.alias, "tablet is shutting down")

    def stream_execute(self, request: ITabletRPCRequest, args: ExecuteArgs, sink: Any) -> Any:
        self.calls.append(("stream_execute", args))
        raise not_serving_error(self.alias, "tablet is shutting down")


@pytest.mark.parametrize("sql", ["select 1", "select /* olap */ 1"])
def test_a_read_refused_by_a_replica_that_stops_runs_on_another(sql: str) -> None:
    c = Cluster()
    c.services["zone1-101"] = ShuttingDownTablet("zone1-101")
    c.add(
        tablet("zone1-100", ttype="primary"),
        tablet("zone1-101", ttype="replica"),
        tablet("zone1-103", ttype="replica"),
    )
    s = c.session(database="commerce@replica")
    if "olap" in sql:
        c.run(s, "set workload = 'olap'")  # streamed: the coroutine path
    served = {served_by(c.run(s, sql)) for _ in range(12)}
    assert served == {"zone1-103"}
    assert c.services["zone1-101"].calls  # it was chosen, and refused
    # With no other replica serving, the refusal reaches the client.
    c.remove("zone1-103")
    sink = c.run(s, sql)
    assert sink.error_code == 1105 and "is not serving" in sink.events[-1][2]


class StalledTablet(FakeTablet):
    """A replica that takes statements and never answers (a stopped process)."""

    def execute(self, request: ITabletRPCRequest, args: ExecuteArgs) -> Any:
        self.calls.append(("execute", args))
        return Deferred()

    def stream_execute(self, request: ITabletRPCRequest, args: ExecuteArgs, sink: Any) -> Any:
        self.calls.append(("stream_execute", args))
        return Deferred()


@pytest.mark.parametrize("streamed", [False, True])
def test_a_read_whose_replica_link_breaks_runs_on_another(streamed: bool) -> None:
    c = Cluster()
    c.services["zone1-101"] = StalledTablet("zone1-101")
    c.add(
        tablet("zone1-100", ttype="primary"),
        tablet("zone1-101", ttype="replica"),
        tablet("zone1-103", ttype="replica"),
    )
    s = c.session(database="commerce@replica")
    if streamed:
        c.run(s, "set workload = 'olap'")
    sink = RecordingSink()
    d = finished(s.query(b"select 1", sink), sink)
    c.flush()
    assert not d.called and c.services["zone1-101"].calls  # stuck on the stalled replica
    # The gate gives up on it (its health went silent): the link breaks under the read.
    c.links["zone1-101"].client.abandon(MySQLError(2013, "zone1-101 stopped answering"))
    c.flush()
    assert d.called
    if not streamed:
        assert served_by(sink) == "zone1-103"  # a read may run again: it did, elsewhere
    else:  # (a stream may have sent rows already: the client hears of the loss)
        assert sink.error_code == 1105 and "zone1-101 stopped answering" in sink.events[-1][2]


def test_write_inside_transaction_on_replica_target_is_refused() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    c.run(s, "begin")
    assert c.run(s, "insert into t values (1)").error_code == 1290


def test_rollback_and_begin_commits_open_transaction() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "begin")
    c.run(s, "insert into t values (1)")
    c.run(s, "start transaction")  # implicit commit of the first
    c.run(s, "insert into t values (2)")
    c.run(s, "rollback")
    assert c.services["zone1-100"].ops() == [
        "begin",
        "execute",
        "commit",
        "begin",
        "execute",
        "rollback",
    ]
    assert s.status() == AUTOCOMMIT


def test_autocommit_off_opens_transactions_on_writes() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "set autocommit = 0")
    assert s.status() == 0
    c.run(s, "select 1")  # plain reads before a write run autocommit
    c.run(s, "insert into t values (1)")
    assert s.status() == IN_TRANS
    c.run(s, "commit")
    c.run(s, "set autocommit=1")
    assert c.services["zone1-100"].ops() == ["execute", "begin", "execute", "commit"]
    assert s.status() == AUTOCOMMIT


def test_autocommit_off_savepoint_opens_the_transaction() -> None:
    # SQLAlchemy's Session.begin_nested() with autocommit off: SAVEPOINT comes first.
    c = cluster()
    s = c.session()
    c.run(s, "set autocommit = 0")
    c.run(s, "savepoint sa_savepoint_1")
    assert s.status() == IN_TRANS
    c.run(s, "insert into t values (1)")
    c.run(s, "release savepoint sa_savepoint_1")
    c.run(s, "rollback")
    primary = c.services["zone1-100"]
    assert primary.ops() == ["begin", "execute", "execute", "execute", "rollback"]
    tids = {args.transaction_id for op, args in primary.calls if op == "execute"}
    assert len(tids) == 1 and 0 not in tids  # all three in the one transaction


def test_autocommit_off_reads_of_tables_open_the_transaction() -> None:
    # As in MySQL (and Vitess): with autocommit off the first read of a table starts the
    # transaction, so the session's later reads share its snapshot (Spring's @Transactional
    # and PyMySQL's default run this way). SELECT 1, @@ variables and system schemas do not.
    c = cluster()
    s = c.session()
    c.run(s, "set autocommit = 0")
    c.run(s, "select 1, @@sql_mode")
    c.run(s, "select * from information_schema.tables")
    assert s.status() == 0
    c.run(s, "select * from t where id = 1")
    assert s.status() == IN_TRANS
    c.run(s, "select count(*) from t")
    c.run(s, "commit")
    primary = c.services["zone1-100"]
    assert primary.ops() == ["execute", "execute", "begin", "execute", "execute", "commit"]
    tids = [args.transaction_id for op, args in primary.calls if op == "execute"]
    assert tids[:2] == [0, 0] and tids[2] == tids[3] != 0
    # A prepared SELECT's field-only query opens nothing; its execute does.
    info = c.wait(s.prepare(b"select a from t where id = ?"))
    assert info.columns is not None and s.status() == 0
    c.run(s, "rollback")


def test_an_ended_transaction_that_only_read_starts_again_quietly() -> None:
    # An autocommit-off client that only reads and sits idle past the tablet's
    # transaction.timeout: its next read (or COMMIT) gets no error, nothing was lost.
    c = cluster()
    s = c.session()
    primary = c.services["zone1-100"]
    c.run(s, "set autocommit = 0")
    c.run(s, "select * from t")
    primary.end_transactions()
    assert served_by(c.run(s, "select * from t")) == "zone1-100"
    assert primary.ops()[-3:] == ["execute", "begin", "execute"] and s.status() == IN_TRANS
    primary.end_transactions()
    c.run(s, "commit")
    assert s.status() == 0 and not s.in_transaction
    # Once it wrote (or on a reserved connection, or BEGIN), the end is an error.
    c.run(s, "select * from t")
    c.run(s, "update t set a = 1")
    primary.end_transactions()
    sink = c.run(s, "select * from t")
    assert sink.error_code == 1105
    c.run(s, "rollback")
    c.run(s, "begin")
    c.run(s, "select * from t")
    primary.end_transactions()
    assert c.run(s, "select * from t").error_code == 1105
    assert c.run(s, "commit").error_code == 1105


def test_a_tablet_that_stops_serving_gets_read_only_transactions_back_at_once() -> None:
    # A planned reparent (or a restart) waits for the primary's open transactions: an idle
    # autocommit-off reader's transaction, which has only read, is rolled back as soon as
    # the tablet says it stops serving, and the session's next read opens a new one.
    c = cluster()
    primary = c.services["zone1-100"]
    reader, writer, busy = c.session(), c.session(), c.session()
    for s in (reader, writer, busy):
        c.run(s, "set autocommit = 0")
        c.run(s, "select * from t")
    c.run(writer, "update t set a = 1")
    running = RecordingSink()
    busy.query(b"select sleep(1) from t", running)  # a read of it still runs
    c.flush()
    assert len(primary.transactions) == 3
    c.serve("zone1-100", "primary", serving=False)
    c.flush()
    assert primary.ops().count("rollback") == 1 and not reader.in_transaction
    assert writer.in_transaction and busy.in_transaction  # it wrote; one still runs
    c.serve("zone1-100", "primary")
    c.run(reader, "select * from t")
    assert reader.in_transaction and primary.ops()[-2:] == ["begin", "execute"]


def test_a_read_that_cannot_open_its_transaction_says_how_to_keep_reads_pooled() -> None:
    c = cluster()
    s = c.session()
    primary = c.services["zone1-100"]
    primary.begin_error = MySQLError(1203, "transaction pool full: raise pool.transaction.size")
    c.run(s, "set autocommit = 0")
    sink = c.run(s, "select * from t")
    assert sink.error_code == 1203
    message = str(sink.events[-1])
    assert "pool.transaction.size" in message
    assert "session.autocommit_off_reads_in_transaction" in message
    assert not s.in_transaction  # nothing opened: the next read tries again
    primary.begin_error = None
    c.run(s, "select * from t")
    assert s.in_transaction


def test_autocommit_off_reads_stay_pooled_when_configured_or_not_at_the_primary() -> None:
    off = cluster(settings=GateSettings(autocommit_off_reads_in_transaction=False))
    s = off.session()
    primary = off.services["zone1-100"]
    off.run(s, "set autocommit = 0")
    off.run(s, "select * from t")
    assert s.status() == 0 and primary.ops() == ["execute"]
    # A replica target's reads go to replicas, outside any transaction.
    c = cluster()
    r = c.session(database="commerce@replica")
    c.run(r, "set autocommit = 0")
    assert served_by(c.run(r, "select * from t")) == "zone1-101"
    assert r.status() == 0
    # USE of a replica target after a read opened a transaction on the primary: that
    # transaction, which has only read, ends, and reads go to the replicas.
    p = c.session()
    c.run(p, "set autocommit = 0")
    c.run(p, "select * from t")
    assert p.in_transaction
    c.run(p, "use commerce@replica")
    assert not p.in_transaction and c.services["zone1-100"].ops()[-1] == "rollback"
    assert served_by(c.run(p, "select * from t")) == "zone1-101"


def test_autocommit_off_reads_a_policy_redirects_run_outside_the_transaction() -> None:
    c = cluster(policy=Reports(lambda n: 0))
    s = c.session()
    c.run(s, "set autocommit = 0")
    assert served_by(c.run(s, "select /* report */ count(*) from t")) == "zone1-101"
    assert s.status() == 0
    assert served_by(c.run(s, "select count(*) from t")) == "zone1-100"
    assert s.status() == IN_TRANS


def test_ddl_commits_the_transaction_first_and_opens_none() -> None:
    # As in MySQL: DDL (and GRANT, ANALYZE TABLE...) commits the open transaction, then
    # runs; none is open after it. On the tablet's transaction connection (autocommit on)
    # the writes after it would each have committed at once, out of ROLLBACK's reach.
    c = cluster()
    s = c.session()
    primary = c.services["zone1-100"]
    c.run(s, "set autocommit = 0")
    c.run(s, "create table t (id int)")  # opens no transaction
    assert not s.in_transaction and primary.ops() == ["execute"]
    c.run(s, "insert into t values (1)")
    c.run(s, "alter table t add column v int")
    assert not s.in_transaction
    c.run(s, "insert into t values (2, 0)")
    c.run(s, "rollback")
    assert primary.ops() == [
        "execute",  # CREATE TABLE, pooled
        "begin",
        "execute",  # INSERT 1
        "commit",  # before the ALTER
        "execute",  # ALTER, pooled
        "begin",
        "execute",  # INSERT 2, in a new transaction...
        "rollback",  # ...which ROLLBACK undoes
    ]
    tids = [args.transaction_id for op, args in primary.calls if op == "execute"]
    assert tids[0] == tids[2] == 0 and tids[1] != 0 and tids[3] not in (0, tids[1])
    # Temporary tables are session state, not DDL that commits.
    c.run(s, "insert into t values (3, 0)")
    c.run(s, "create temporary table tmp (a int)")
    assert s.in_transaction
    c.run(s, "rollback")
    # With autocommit on, after BEGIN: the DDL ends the transaction.
    c.run(s, "set autocommit = 1")
    c.run(s, "begin")
    c.run(s, "insert into t values (4, 0)")
    c.run(s, "truncate t")
    assert not s.in_transaction and s.status() == AUTOCOMMIT
    c.run(s, "begin")
    c.run(s, "insert into t values (5, 0)")
    c.run(s, "flush tables")
    assert not s.in_transaction and primary.ops()[-2:] == ["commit", "execute"]


def test_lock_tables_with_autocommit_off() -> None:
    # The tablet opens a transaction with START TRANSACTION, which in MySQL releases the
    # session's table locks: a write under LOCK TABLES with autocommit off is refused
    # (reads run under the locks), and LOCK TABLES commits an open transaction first.
    c = cluster()
    s = c.session()
    primary = c.services["zone1-100"]
    c.run(s, "set autocommit = 0")
    c.run(s, "insert into t values (1)")
    c.run(s, "lock tables t write")
    assert primary.ops() == ["begin", "execute", "commit", "reserve", "execute"]
    assert not s.in_transaction
    sink = c.run(s, "insert into t values (2)")
    assert sink.error_code == 1235
    assert "autocommit = 1" in str(sink.events[-1])
    c.run(s, "select * from t")
    assert not s.in_transaction and primary.ops()[-1] == "execute"
    c.run(s, "unlock tables")
    c.run(s, "insert into t values (3)")
    assert s.in_transaction and primary.ops()[-2:] == ["begin", "execute"]
    c.run(s, "commit")
    # With autocommit on, writes under the locks run one by one, as in MySQL.
    c.run(s, "set autocommit = 1")
    c.run(s, "lock tables t write")
    c.run(s, "insert into t values (4)")
    assert not s.in_transaction and c.run(s, "unlock tables").error_code is None


def test_a_deadlock_ends_the_transaction_as_mysqld_did() -> None:
    # mysqld rolls the whole transaction back on a deadlock (1213): what the session runs
    # next must not go, one autocommitted statement at a time, to that connection.
    c = cluster()
    s = c.session()
    primary = c.services["zone1-100"]
    c.run(s, "set autocommit = 0")
    c.run(s, "insert into t values (1)")
    assert c.run(s, "error 1213").error_code == 1213
    assert not s.in_transaction and primary.ops()[-1] == "rollback"
    c.run(s, "insert into t values (3)")  # opens a new one, which ROLLBACK undoes
    c.run(s, "rollback")
    assert primary.ops()[-3:] == ["begin", "execute", "rollback"]
    c.run(s, "set autocommit = 1")
    c.run(s, "begin")
    c.run(s, "insert into t values (4)")
    assert c.run(s, "error 1213").error_code == 1213
    assert s.status() == AUTOCOMMIT  # the transaction is over, as in MySQL
    c.run(s, "insert into t values (5)")
    assert primary.calls[-1][1].transaction_id == 0
    # A statement that ends the transaction in mysqld (a procedure's COMMIT) ends it here.
    c.run(s, "set autocommit = 0")
    c.run(s, "call commits_inside()")
    assert not s.in_transaction and primary.ops()[-2:] == ["execute", "rollback"]
    c.run(s, "insert into t values (7)")
    assert s.in_transaction and primary.ops()[-2:] == ["begin", "execute"]
    c.run(s, "rollback")
    c.run(s, "set autocommit = 1")
    # Other errors leave the transaction open, as in MySQL.
    c.run(s, "begin")
    c.run(s, "insert into t values (6)")
    assert c.run(s, "error 1062").error_code == 1062
    assert s.in_transaction
    c.run(s, "rollback")


def test_set_autocommit_1_commits() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "set autocommit=0")
    c.run(s, "delete from t")
    c.run(s, "set autocommit=1")
    assert c.services["zone1-100"].ops()[-1] == "commit"


def test_session_state_reserves_and_is_released_on_reset() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "set @x = rand()")
    primary = c.services["zone1-100"]
    assert primary.ops() == ["reserve", "execute"]
    rid = primary.calls[1][1].reserved_id
    assert rid in primary.reserved
    c.run(s, "select @x")
    assert primary.calls[-1][1].reserved_id == rid
    c.wait(s.reset_connection())
    assert primary.ops()[-1] == "release" and primary.reserved == set()
    c.run(s, "select 1")
    assert primary.calls[-1][1].reserved_id == 0


def test_state_is_replayed_on_another_tablet() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    c.run(s, "set sql_mode = ''")  # a setting: no reservation (next test)
    c.run(s, "set @x = rand()")  # a user variable: reserves, with the settings so far
    replica = c.services["zone1-101"]
    assert replica.ops() == ["execute", "reserve", "execute"]
    assert replica.calls[1][1].settings == ["set sql_mode = ''"]
    c.run(s, "select * from t for update")
    primary = c.services["zone1-100"]
    assert primary.ops() == ["reserve", "execute"]
    assert primary.calls[0][1].settings == ["set sql_mode = ''", "set @x = rand()"]
    assert primary.calls[1][1].reserved_id


def test_settings_travel_with_pooled_statements_instead_of_reserving() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    setting = "SET SESSION sql_mode = 'ANSI_QUOTES', @@session.wait_timeout = 60"
    sink = c.run(s, setting)
    assert sink.events[-1][0] == "ok" and sink.events[-1][1] == 0  # no rows affected
    replica = c.services["zone1-101"]
    assert replica.ops() == ["execute"]  # a pooled connection checks it: no reservation
    assert (replica.calls[0][1].sql, replica.calls[0][1].settings) == ("DO 0", [setting])
    assert served_by(c.run(s, "select 1")) == "zone1-101"
    assert replica.calls[-1][1].settings == [setting] and not replica.calls[-1][1].reserved_id
    c.run(s, "select * from t for update")  # to the primary, with the settings
    primary = c.services["zone1-100"]
    assert primary.ops() == ["execute"] and primary.calls[0][1].settings == [setting]
    c.run(s, "use commerce")
    c.run(s, "begin")
    c.run(s, "update t set a = 1")
    c.run(s, "commit")
    assert primary.ops()[1:] == ["begin", "execute", "commit"]
    assert primary.calls[1][1].settings == [setting] and not primary.calls[1][1].reserved_id
    assert s.reserved == {}
    # A failing setting is relayed and not kept.
    sink = c.run(s, "set sql_mode = 'error 1231'")
    assert sink.error_code == 1231
    assert s.settings == [setting] and s.reserved == {}
    # COM_RESET_CONNECTION forgets them.
    c.wait(s.reset_connection())
    assert s.settings == []
    c.run(s, "select 1")
    assert primary.calls[-1][1].sql == "select 1" and primary.calls[-1][1].settings is None


def test_transaction_after_state_begins_on_the_reservation() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "select get_lock('a', 1)")
    c.run(s, "begin")
    c.run(s, "update t set a = 2")
    c.run(s, "commit")
    primary = c.services["zone1-100"]
    assert primary.ops() == ["reserve", "execute", "begin", "execute", "commit"]
    rid = primary.calls[1][1].reserved_id
    assert primary.calls[2][1].reserved_id == rid
    c.run(s, "select 1")
    assert primary.calls[-1][1].reserved_id == rid  # still reserved after commit


def test_state_inside_transaction_reserves_its_connection() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "begin")
    c.run(s, "insert into t values (1)")
    c.run(s, "create temporary table tt (a int)")
    c.run(s, "commit")
    primary = c.services["zone1-100"]
    assert primary.ops() == ["begin", "execute", "reserve", "execute", "commit"]
    assert primary.calls[2][1].transaction_id == primary.calls[1][1].transaction_id
    c.run(s, "select * from tt")
    assert primary.calls[-1][1].reserved_id != 0


def test_close_releases_everything() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "set @a = rand()")
    c.run(s, "begin")
    c.run(s, "insert into t values (1)")
    s.close()
    c.flush()
    primary = c.services["zone1-100"]
    assert primary.ops()[-1] == "release"
    assert primary.reserved == set() and primary.transactions == {}
    assert s.connection_id not in c.gate.sessions


def test_no_serving_tablet_names_the_target() -> None:
    c = cluster()
    c.serve("zone1-101", "replica", serving=False)
    s = c.session(database="commerce@replica")
    sink = c.run(s, "select 1")
    assert sink.error_code == 1105
    assert "no healthy tablet available for 'commerce/0@replica'" in sink.events[-1][2]


def test_tablet_errors_pass_through_and_link_errors_become_1105() -> None:
    c = cluster()
    s = c.session()
    assert c.run(s, "error 1146").error_code == 1146
    assert c.gate.metrics.errors.labels(code="1146")._value.get() == 1
    # mysqld's errors above 2999 are its own too (3572 NOWAIT, 4025 CHECK constraint).
    for code in (3572, 4025, 4166):
        sink = c.run(s, f"error {code}")
        assert sink.error_code == code and "retry" not in sink.events[-1][2]
    link = c.links["zone1-100"]
    assert link.client.transport is not None
    link.client.transport.loseConnection()  # link lost, not yet noticed by discovery
    c.flush()
    sink = c.run(s, "select 1")
    assert sink.error_code == 1105 and "zone1-100" in sink.events[-1][2]


def test_unknown_database_and_no_database() -> None:
    c = cluster()
    s = c.session(database="")
    with pytest.raises(MySQLError) as e:
        s.init_db("nosuch")
    assert e.value.code == 1049
    assert c.run(s, "use nosuch").error_code == 1049
    # One keyspace only: it is used.
    assert served_by(c.run(s, "select 1")) == "zone1-100"
    c.cache.add_keyspace("customer")
    c.add(tablet("zone1-200", keyspace="customer", ttype="primary"))
    # Several keyspaces: what may read a default database needs one...
    for sql in ("select * from t", "insert into t values (1)", "show tables", "describe t"):
        sink = c.run(s, sql)
        assert sink.error_code == 1046 and "FROM commerce.t" in sink.events[-1][2], sql
    # ...what reads none runs on the first keyspace (GUI tools and drivers send these
    # before choosing a database)...
    for sql in (
        "select 1",
        "select @@sql_mode, now() from dual",
        "SELECT table_name FROM information_schema.tables t JOIN `mysql`.`user` u",
        "show variables like 'max_allowed%'",
        "show full tables from mysql",
        "do 1",
    ):
        assert ran_on(c, s, sql) == "zone1-100", sql
    # ...and a statement naming a keyspace goes there.
    assert served_by(c.run(s, "select * from customer.t where a = 'commerce.t'")) == "zone1-200"
    assert ran_on(c, s, "show tables from `customer`") == "zone1-200"
    # Inside a transaction, what needs no database runs in the transaction's keyspace.
    c.run(s, "begin")
    assert ran_on(c, s, "insert into customer.t values (1)") == "zone1-200"
    assert ran_on(c, s, "select @@sql_mode") == "zone1-200"
    c.run(s, "rollback")


def test_statements_naming_another_keyspace_go_there() -> None:
    c = cluster()
    c.cache.add_keyspace("customer")
    c.add(tablet("zone1-200", keyspace="customer", ttype="primary"))
    c.add(tablet("zone1-201", keyspace="customer", ttype="replica"))
    s = c.session(database="commerce")
    assert served_by(c.run(s, "select * from t")) == "zone1-100"
    for sql in (
        "select * from customer.t",
        "insert into `customer`.t values (1)",
        "update customer . t set a = 1",
        "delete from customer.t",
        "show columns from t from customer",
        "show create table customer.t",
    ):
        assert ran_on(c, s, sql) == "zone1-200", sql
    # Not a keyspace qualifier: strings, comments, columns, a table named like a keyspace.
    for sql in (
        "select 'from customer.t' from t",
        "select * from t /* from customer.t */",
        "select customer.id from t as customer",
        "show columns from customer",
        "select * from customer_orders.t",
    ):
        assert ran_on(c, s, sql) == "zone1-100", sql
    # The session's tablet type still applies; a write is still refused at a replica target.
    r = c.session(database="commerce@replica")
    assert served_by(c.run(r, "select * from customer.t")) == "zone1-201"
    assert c.run(r, "insert into customer.t values (1)").error_code == 1290
    # Two keyspaces in one statement: refused, naming both.
    sink = c.run(s, "select * from commerce.t join customer.u")
    assert sink.error_code == 1235 and "commerce, customer" in sink.events[-1][2]
    # A transaction stays on its shard.
    c.run(s, "begin")
    c.run(s, "insert into t values (1)")
    sink = c.run(s, "insert into customer.t values (1)")
    assert sink.error_code == 1105 and "COMMIT or ROLLBACK" in sink.events[-1][2]


def test_transaction_spans_one_shard() -> None:
    c = cluster()
    c.cache.add_keyspace("customer")
    c.add(tablet("zone1-200", keyspace="customer", ttype="primary"))
    s = c.session()
    c.run(s, "begin")
    c.run(s, "insert into t values (1)")
    c.run(s, "use customer")
    sink = c.run(s, "insert into t values (1)")
    assert sink.error_code == 1105 and "COMMIT or ROLLBACK" in sink.events[-1][2]


def test_gate_owned_answers() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    assert c.run(s, "select @@version_comment limit 1").table == [["vtwist gate"]]
    assert c.run(s, "select connection_id()").table == [[str(s.connection_id)]]
    assert c.run(s, "select database()").table == [["commerce@replica"]]
    # Columns are named as the client wrote them, as mysqld names them.
    for sql, column in (
        ("select @@version_comment limit 1", "@@version_comment"),
        ("SELECT @@VERSION_COMMENT", "@@VERSION_COMMENT"),
        ("/* c */ SELECT   VERSION() ;", "VERSION()"),
        ("select @@version", "@@version"),
        ("select Connection_Id()", "Connection_Id()"),
        ("select schema()", "schema()"),
    ):
        start = c.run(s, sql).events[0]
        assert start == ("start", [column]), sql
    assert c.run(s, "show databases").table == [["commerce"]]
    assert c.run(s, "show vitess_keyspaces").table == [["commerce"]]
    assert c.run(s, "show vitess_shards").table == [["commerce/0"]]
    sink = c.run(s, "show vitess_tablets")
    assert sink.events[0] == (
        "start",
        [
            "Cell",
            "Keyspace",
            "Shard",
            "TabletType",
            "State",
            "Alias",
            "Hostname",
            "PrimaryTermStartTime",
        ],
    )
    assert [r[5] for r in sink.table] == ["zone1-100", "zone1-101", "zone1-102"]
    assert sink.table[0][:5] == ["zone1", "commerce", "0", "PRIMARY", "SERVING"]
    assert all(svc.calls == [] for svc in c.services.values())


def test_processlist_and_kill_query() -> None:
    c = cluster()
    victim = c.session()
    sink = RecordingSink()
    d = finished(victim.query(b"sleep 100", sink), sink)
    c.flush()
    admin = c.session()
    rows = c.run(admin, "show processlist").table
    assert rows[0][0] == str(victim.connection_id)
    assert rows[0][4] == "Query" and rows[0][7] == "sleep 100"
    assert rows[1][7] == "show processlist"
    assert c.run(admin, f"kill query {victim.connection_id}").events[0][0] == "ok"
    c.flush()
    assert d.called
    assert c.services["zone1-100"].cancelled  # the tablet was told to stop
    assert victim.command == "Sleep"


def test_kill_errors() -> None:
    c = cluster()
    other = c.session(user="other")
    s = c.session()
    assert c.run(s, "kill 999").error_code == 1094
    assert c.run(s, f"kill {other.connection_id}").error_code == 1095


def test_multi_statements() -> None:
    c = cluster()
    s = c.session()
    c.wait(s.set_multi_statements(True))
    sink = c.run(s, "select 1; insert into t values (1)")
    assert sink.events[2] == ("done", AUTOCOMMIT | MORE)
    assert sink.events[3] == ("ok", 1, 7, AUTOCOMMIT)


def test_prepare_and_execute() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    info = c.wait(s.prepare(b"select a from t where id = ?"))
    assert info.param_count == 1
    assert [col.name for col in info.columns] == ["tablet"]
    replica = c.services["zone1-101"]
    assert replica.sql() == ["SELECT * FROM (select a from t where id = NULL) AS vt_fields LIMIT 0"]
    sink = RecordingSink()
    c.wait(
        finished(
            s.execute(Statement(1, b"select a from t where id = ?", info), [42], sink, False), sink
        )
    )
    assert replica.sql()[-1] == "select a from t where id = 42"
    assert sink.table == [["zone1-101"]]
    insert = c.wait(s.prepare(b"insert into t values (?, ?)"))
    assert insert.param_count == 2 and list(insert.columns) == []


def _executed(c: Cluster, s: Any, stmt: Statement, params: list[object]) -> int | None:
    """Run a prepared ``stmt``: None, or the MySQL error code it failed with."""
    sink = RecordingSink()
    try:
        c.wait(finished(s.execute(stmt, params, sink, False), sink))
    except MySQLError as e:
        return e.code
    return sink.error_code


def test_executes_of_prepared_writes_locks_and_owned_statements_route_like_text() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    primary, replica = c.services["zone1-100"], c.services["zone1-101"]
    sql = b"update t set a = ? where id = 1"
    update = Statement(1, sql, c.wait(s.prepare(sql)))
    assert _executed(c, s, update, [7]) == 1290  # a write with a replica target
    c.run(s, "use commerce")
    assert _executed(c, s, update, [7]) is None
    assert primary.sql()[-1] == "update t set a = 7 where id = 1"
    c.run(s, "use commerce@replica")
    sql = b"select a from t where id = ? for update"
    locked = Statement(2, sql, c.wait(s.prepare(sql)))
    assert _executed(c, s, locked, [3]) is None
    assert primary.sql()[-1] == "select a from t where id = 3 for update"
    sql = b"select a from t where id = ?"
    read = Statement(3, sql, c.wait(s.prepare(sql)))
    assert _executed(c, s, read, [4]) is None
    assert replica.sql()[-1] == "select a from t where id = 4"
    sql = b"set autocommit = ?"
    owned = Statement(4, sql, c.wait(s.prepare(sql)))
    assert _executed(c, s, owned, [0]) is None
    assert not s.autocommit  # gate-owned once its value is bound: classified per execute


def test_kill_query_and_processlist_of_a_prepared_execute() -> None:
    c = cluster()
    victim = c.session()
    sql = b"select sleep(?)"
    stmt = Statement(1, sql, c.wait(victim.prepare(sql)))
    sink = RecordingSink()
    d = finished(victim.execute(stmt, [100], sink, False), sink)
    c.flush()
    admin = c.session()
    rows = c.run(admin, "show processlist").table
    assert rows[0][4] == "Query" and rows[0][7] == "select sleep(100)"
    assert c.gate.discovery.handles["zone1-100"].inflight == 1
    assert c.run(admin, f"kill query {victim.connection_id}").events[0][0] == "ok"
    c.flush()
    assert d.called and victim.command == "Sleep" and victim._inflight is None
    assert c.gate.discovery.handles["zone1-100"].inflight == 0
    assert c.services["zone1-100"].cancelled
    assert sink.error_code == 1317  # the tablet's "query execution was interrupted"


def test_redirecting_policy() -> None:
    c = cluster(policy=Reports(lambda n: 0))
    s = c.session()
    assert served_by(c.run(s, "select /* report */ count(*) from t")) == "zone1-101"
    assert served_by(c.run(s, "select 1")) == "zone1-100"
    c.run(s, "begin")
    assert served_by(c.run(s, "select /* report */ 1")) == "zone1-100"  # not in a transaction


def test_least_in_flight_and_metrics() -> None:
    from vtwist.gate.policies import LeastInFlightPolicy

    c = cluster(policy=LeastInFlightPolicy())
    c.add(tablet("zone1-103", ttype="replica"))
    s1 = c.session(database="commerce@replica")
    s1.query(b"select sleep(1)", RecordingSink())
    c.flush()
    busy = next(h for h in c.discovery.all() if h.inflight)
    s2 = c.session(database="commerce@replica")
    assert served_by(c.run(s2, "select 1")) != busy.alias
    assert c.gate.metrics.queries.value(("commerce", "replica", "select")) == 2


def test_lost_reservation_is_reserved_anew_with_settings() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "set @who = concat('m', 'e')")
    link = c.links["zone1-100"]
    link.set_connected(False)  # the tablet dropped everything this link held
    c.serve("zone1-100", "primary")
    c.run(s, "select 1")
    primary = c.services["zone1-100"]
    assert primary.ops() == ["reserve", "execute", "reserve", "execute"]
    assert primary.calls[2][1].settings == ["set @who = concat('m', 'e')"]


def test_lost_transaction_is_reported() -> None:
    c = cluster()
    s = c.session()
    c.run(s, "begin")
    c.run(s, "insert into t values (1)")
    c.links["zone1-100"].set_connected(False)
    c.serve("zone1-100", "primary")
    sink = c.run(s, "insert into t values (2)")
    assert sink.error_code == 1105 and "rolled back" in sink.events[-1][2]
    assert s.status() == AUTOCOMMIT


def test_change_user_resets_and_other_commands() -> None:
    from dataclasses import replace

    c = cluster()
    s = c.session()
    c.run(s, "set @a = rand()")
    c.wait(s.change_user(replace(s.info, user="other", database="commerce@replica")))
    assert c.services["zone1-100"].ops()[-1] == "release"
    assert s.info.user == "other" and str(s.target) == "commerce@replica"
    assert served_by(c.run(s, "select 1")) == "zone1-101"
    assert "Threads: 1" in c.wait(s.statistics())
    c.wait(s.ping())
    cols = c.wait(s.field_list("items", ""))
    assert [col.name for col in cols] == ["tablet"]
    assert c.services["zone1-101"].sql()[-1] == "SELECT * FROM `items` LIMIT 0"


def test_olap_workload_streams_selects() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    assert c.run(s, "set workload = 'olap'").events[0][0] == "ok"
    sink = c.run(s, "select rows 1000")
    replica = c.services["zone1-101"]
    assert replica.ops() == ["stream_execute"]
    assert [int(r[0] or 0) for r in sink.table] == list(range(1000))
    assert sink.events[0] == ("start", ["tablet"]) and sink.events[-1] == ("done", AUTOCOMMIT)
    c.run(s, "set workload = oltp")
    c.run(s, "select 1")
    assert replica.ops()[-1] == "execute"


def test_login_database_waits_for_the_first_topo_read() -> None:
    c = cluster()
    c.gate.topo_loading()
    s = c.gate.open_session(c.session(database="").info)
    d = s.init_db("commerce@replica")
    assert not d.called
    c.gate.topo_loaded()
    c.wait(d)
    assert str(s.target) == "commerce@replica"
    c.gate.topo_loading()
    d = s.init_db("nosuch")
    c.clock.advance(c.gate.settings.topo_wait)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert failures and failures[0].value.code == 1049


def test_a_failing_policy_falls_back() -> None:
    @implementer(IPlugin, IRoutingPolicy)
    class Broken:
        name = "broken"

        def choose(self, candidates: Any, query: Any) -> Any:
            raise RuntimeError("bug")

        def redirect(self, query: Any) -> str | None:
            raise RuntimeError("bug")

    c = cluster(policy=Broken())
    c.add(tablet("zone1-103", ttype="replica"))
    s = c.session(database="commerce@replica")
    assert served_by(c.run(s, "select 1")) in ("zone1-101", "zone1-103")


def test_a_client_leaving_mid_statement_stops_it_on_the_tablet() -> None:
    c = cluster()
    s = c.session()
    sink = RecordingSink()
    d = finished(s.query(b"sleep 100", sink), sink)
    c.flush()
    assert not d.called
    # The client went away: the server aborts the reply, then closes the session.
    sink.closed = True
    s.close()
    c.flush()
    assert s.command == "Sleep" and s._inflight is None
    assert c.gate.discovery.handles["zone1-100"].inflight == 0
    assert c.services["zone1-100"].cancelled
    assert sink.events == [] and sink.late_failures == []  # the 1317 is dropped quietly


def test_result_columns_are_one_tuple_per_distinct_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal field payloads (new bytes objects in every tablet reply) give the very same
    tuple of definitions, which the MySQL server then frames only once; the cache is
    bounded by MAX_COLUMN_CACHE."""
    from vtwist.gate import gate as gate_module
    from vtwist.protocols.mysql.constants import ColumnType
    from vtwist.protocols.mysql.messages import ColumnDefinition41

    g = cluster().gate
    a = ColumnDefinition41("a", ColumnType.LONG, 63, 11).encode()
    b = ColumnDefinition41("b", ColumnType.VAR_STRING, 45, 40).encode()
    first = g.columns([a, b])
    assert [c.name for c in first] == ["a", "b"] and type(first) is tuple
    assert g.columns([bytes(bytearray(a)), bytes(bytearray(b))]) is first
    assert g.columns([b, a]) is not first
    monkeypatch.setattr(gate_module, "MAX_COLUMN_CACHE", 2)
    g.columns([a])  # a third head: the cache was full, it starts again
    assert len(g._heads) == 1
    assert g.columns([a, b]) is not first and g.columns([a, b]) == first


def test_connection_id_and_autocommit_inside_statements_are_the_gate_values() -> None:
    """Only a bare ``SELECT CONNECTION_ID()`` is the gate's own answer; a statement that
    contains the call goes to a tablet with the gate's id written in (mysqld would answer
    with its pooled connection's id, which KILL must not be given); so does the session's
    ``@@autocommit``, which the gate keeps."""
    c = cluster()
    s = c.session(database="commerce")
    gid = s.connection_id
    c.run(s, "select connection_id() as id, 'connection_id()'")
    c.run(s, "set @c = CONNECTION_ID()")  # a literal once written in: the gate holds it
    primary = c.services["zone1-100"]
    assert primary.sql()[-1] == f"select {gid} as id, 'connection_id()'"
    assert s.user_vars == {b"c": str(gid).encode()}
    stmt = b"select ?, connection_id() from t"
    info = c.wait(s.prepare(stmt))
    sink = RecordingSink()
    c.wait(finished(s.execute(Statement(1, stmt, info), [5], sink, False), sink))
    assert primary.sql()[-1] == f"select 5, {gid} AS `connection_id()` from t"
    c.run(s, "set autocommit = 0")
    c.run(s, "select @@autocommit")
    assert primary.sql()[-1] == "select 0 AS `@@autocommit`"
