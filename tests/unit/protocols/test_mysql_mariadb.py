"""The sans-IO client Connection against a real MariaDB, over a plain blocking socket.

Checks what golden bytes cannot: that the decoders agree with what mysqld really sends in
both EOF modes (result sets, multi-results, prepared statements, cursors, COM_FIELD_LIST,
COM_SET_OPTION, COM_STATISTICS...). Auth crypto is not this module's job; the test computes
mysql_native_password itself.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from typing import cast

import pytest

from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.connection import NEED_DATA, Connection, Role, State
from vtwist.protocols.mysql.constants import (
    CLIENT_CAPABILITIES,
    Capability,
    ColumnType,
    CursorType,
    ServerStatus,
    SetOption,
)
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row, Signal
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthSwitchRequest,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    Err,
    HandshakeResponse41,
    HandshakeV10,
    Ok,
    StatisticsResponse,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.wire import Message

pytestmark = pytest.mark.integration

CURSOR = int(ServerStatus.CURSOR_EXISTS)
LAST_ROW = int(ServerStatus.LAST_ROW_SENT)
MORE = int(ServerStatus.MORE_RESULTS_EXISTS)


def native_password(password: str, scramble: bytes) -> bytes:
    h1 = hashlib.sha1(password.encode()).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(scramble + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3, strict=True))


class Wire:
    """A client Connection on a blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.conn = Connection(Role.CLIENT, max_packet_size=1 << 24)

    def read(self) -> list[Message | Signal]:
        """Events until the server's reply is complete (or the connection ends)."""
        out: list[Message | Signal] = []
        while True:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                if self.conn.our_turn:
                    return out
                data = self.sock.recv(65536)
                self.conn.receive_data(data)
                continue
            out.append(ev)
            if isinstance(ev, Signal):
                return out

    def send(self, *events: Message) -> None:
        self.sock.sendall(self.conn.send_many(events))

    def ask(self, *events: Message) -> list[Message | Signal]:
        self.send(*events)
        return self.read()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(mariadb: MariaDB) -> Iterator[Wire]:
    w = Wire(mariadb.port)
    yield w
    w.close()


def login(w: Wire, mariadb: MariaDB, deprecate_eof: bool) -> HandshakeV10:
    (greeting,) = w.read()
    assert isinstance(greeting, HandshakeV10)
    caps = int(CLIENT_CAPABILITIES | Capability.CONNECT_WITH_DB)
    if not deprecate_eof:
        caps &= ~int(Capability.DEPRECATE_EOF)
    auth = native_password(mariadb.password, greeting.auth_plugin_data)
    events = w.ask(
        HandshakeResponse41(
            caps, 1 << 24, 45, mariadb.user, auth, "vtwist_test", "mysql_native_password"
        )
    )
    if events and isinstance(events[0], AuthSwitchRequest):
        events = w.ask(AuthData(native_password(mariadb.password, events[0].data[:20])))
    assert events and isinstance(events[-1], Ok), events
    assert w.conn.state is State.IDLE and w.conn.deprecate_eof is deprecate_eof
    return greeting


def test_greeting_and_bad_login(wire: Wire, mariadb: MariaDB) -> None:
    (greeting,) = wire.read()
    assert isinstance(greeting, HandshakeV10)
    assert greeting.server_version.startswith("5.5.5-10.11")
    assert len(greeting.auth_plugin_data) == 20
    assert greeting.capabilities & Capability.DEPRECATE_EOF
    assert greeting.capabilities & Capability.PROTOCOL_41
    wrong = bytes(20)
    events = wire.ask(
        HandshakeResponse41(
            int(CLIENT_CAPABILITIES), 1 << 24, 45, mariadb.user, wrong, "",
            "mysql_native_password",
        )
    )  # fmt: skip
    assert len(events) == 2
    err, closed = events
    assert isinstance(err, Err)
    assert (err.code, err.sqlstate) == (1045, "28000")
    assert mariadb.user in err.message
    assert closed is Signal.CLOSED


@pytest.fixture
def table(mariadb: MariaDB) -> Iterator[str]:
    name = f"wire_{os.getpid()}"
    admin = mariadb.connect(database="vtwist_test")
    with admin.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, name VARCHAR(20) DEFAULT 'x')")
        cur.execute(f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b'), (3, NULL)")
    yield name
    with admin.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    admin.close()


@pytest.mark.parametrize("deprecate_eof", [True, False], ids=["deprecate", "classic"])
def test_command_phase_against_mariadb(
    wire: Wire, mariadb: MariaDB, table: str, deprecate_eof: bool
) -> None:
    login(wire, mariadb, deprecate_eof)

    # Text result set.
    events = wire.ask(ComQuery(f"SELECT id, name FROM {table} ORDER BY id".encode()))
    assert events[0] == ResultSetStart(2)
    cols = [e.definition for e in events[1:3] if isinstance(e, Column)]
    assert [c.name for c in cols] == ["id", "name"] and cols[0].table == table
    assert cols[0].column_type == ColumnType.LONGLONG
    assert events[3:6] == [Row(b"\x011\x01a"), Row(b"\x012\x01b"), Row(b"\x013\xfb")]
    assert isinstance(events[6], ResultSetDone) and len(events) == 7

    # Multi-statements: a result set, an OK, a result set.
    events = wire.ask(ComQuery(b"SELECT 1; DO 1; SELECT 2"))
    dones = [e for e in events if isinstance(e, ResultSetDone | Ok)]
    assert [bool(d.status & MORE) for d in dones] == [True, True, False]
    assert [e for e in events if isinstance(e, Row)] == [Row(b"\x011"), Row(b"\x012")]

    # An error.
    (err,) = wire.ask(ComQuery(b"SELECT nope FROM nowhere"))
    assert isinstance(err, Err) and err.code == 1146 and err.sqlstate == "42S02"

    assert wire.ask(ComPing()) == [Ok(status=wire.conn.status)]
    assert isinstance(wire.ask(ComInitDB("vtwist_test"))[0], Ok)

    # COM_FIELD_LIST: definitions with defaults, then the terminator.
    events = wire.ask(ComFieldList(table, ""))
    cols = [e.definition for e in events if isinstance(e, Column)]
    assert [c.name for c in cols] == ["id", "name"]
    assert cols[1].has_default and cols[1].default_value == b"x"
    assert isinstance(events[-1], ResultSetDone)

    (stats,) = wire.ask(ComStatistics())
    assert isinstance(stats, StatisticsResponse) and stats.text.startswith("Uptime:")

    (opt,) = wire.ask(ComSetOption(SetOption.MULTI_STATEMENTS_OFF))
    assert isinstance(opt, Ok)
    (err,) = wire.ask(ComQuery(b"SELECT 1; SELECT 2"))
    assert isinstance(err, Err) and err.code == 1064
    assert isinstance(wire.ask(ComSetOption(SetOption.MULTI_STATEMENTS_ON))[0], Ok)

    # Prepared statement: parameter and column definitions, binary rows.
    events = wire.ask(ComStmtPrepare(f"SELECT id, name FROM {table} WHERE id > ?".encode()))
    ok = events[0]
    assert isinstance(ok, StmtPrepareOK) and (ok.num_params, ok.num_columns) == (1, 2)
    assert len(events) == 4 and all(isinstance(e, Column) for e in events[1:])
    stmt = ok.statement_id
    longlong = ((int(ColumnType.LONGLONG), False),)
    one = (1).to_bytes(8, "little")
    events = wire.ask(ComStmtExecute(stmt, 0, 1, b"\x00", True, longlong, one))
    rows = [e for e in events if isinstance(e, Row)]
    assert rows == [
        Row(b"\x00\x00" + (2).to_bytes(8, "little") + b"\x01b"),
        Row(b"\x00\x08" + (3).to_bytes(8, "little")),  # name is NULL: bit 1 (+2 offset)
    ]
    # Types sent only once (libmariadb does this): MariaDB reuses them.
    events = wire.ask(ComStmtExecute(stmt, 0, 1, b"\x00", False, (), (2).to_bytes(8, "little")))
    assert [e for e in events if isinstance(e, Row)] == rows[1:]

    # A cursor: the columns, one terminator with CURSOR_EXISTS, then COM_STMT_FETCH.
    events = wire.ask(
        ComStmtExecute(stmt, CursorType.READ_ONLY, 1, b"\x00", True, longlong, bytes(8))
    )
    assert events[0] == ResultSetStart(2) and len(events) == 4
    assert isinstance(events[3], ResultSetDone) and events[3].status & CURSOR
    events = wire.ask(ComStmtFetch(stmt, 2))
    assert len([e for e in events if isinstance(e, Row)]) == 2
    assert isinstance(events[-1], ResultSetDone) and events[-1].status & CURSOR
    events = wire.ask(ComStmtFetch(stmt, 5))
    assert len([e for e in events if isinstance(e, Row)]) == 1
    assert isinstance(events[-1], ResultSetDone) and events[-1].status & LAST_ROW

    assert isinstance(wire.ask(ComStmtReset(stmt))[0], Ok)
    wire.send(ComStmtClose(stmt))  # no reply
    assert wire.conn.state is State.IDLE
    (err,) = wire.ask(ComStmtExecute(stmt, 0, 1, b"\x00", True, longlong, one))
    assert isinstance(err, Err) and err.code == 1243

    assert isinstance(wire.ask(ComResetConnection())[0], Ok)
    wire.send(ComQuit())
    assert cast(State, wire.conn.state) is State.CLOSED  # cast: mypy keeps the narrowing above
    assert wire.sock.recv(100) == b""
