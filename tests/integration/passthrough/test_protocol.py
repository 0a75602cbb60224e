"""Byte-level checks of the passthrough with vtwist's own client and a raw protocol client.

* The same typed table read directly from MariaDB and through the passthrough gives the
  same column definitions and the same row payloads, in the text protocol (COM_QUERY) and
  in the binary protocol (COM_STMT_EXECUTE, parameters of every type).
* COM_FIELD_LIST, COM_STATISTICS, COM_SET_OPTION, COM_INIT_DB, COM_RESET_CONNECTION and
  errors are relayed.
* Cursors (COM_STMT_EXECUTE with CURSOR_TYPE_READ_ONLY, COM_STMT_FETCH), driven by a raw
  sans-IO client over a blocking socket: a result larger than the cursor buffer, a cursor
  closed early, and a command that needs the backend while a cursor is still open.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred

from tests.integration.client.alltypes import CREATE, NAMES, ROWS, SESSION, insert_sql
from tests.integration.passthrough.harness import DB, PASSWORD, PassthroughCase, reactor
from tests.support.passthrough import FieldListCommand, StatisticsCommand
from vtwist.protocols.mysql.auth import native_password_response
from vtwist.protocols.mysql.client import MySQLClient, StreamEvent, connect
from vtwist.protocols.mysql.client_commands import SimpleHandler, column_specs
from vtwist.protocols.mysql.commands import (
    ComQuery,
    ComSetOption,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
)
from vtwist.protocols.mysql.connection import NEED_DATA, Connection, Role
from vtwist.protocols.mysql.constants import (
    CLIENT_CAPABILITIES,
    Capability,
    CursorType,
    ServerStatus,
    SetOption,
)
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import Column, ResultSetDone, Row
from vtwist.protocols.mysql.messages import Err, HandshakeResponse41, HandshakeV10, Ok
from vtwist.protocols.mysql.values import decode_binary_row

pytestmark = [pytest.mark.integration]

SELECT_ALL = f"SELECT id, {', '.join(NAMES)} FROM all_types ORDER BY id"
CURSOR_SQL = b"SELECT seq, repeat('c', 100) FROM seq_1_to_3000"


async def _rows(client: MySQLClient, run: Any) -> tuple[list[Any], list[bytes]]:
    """Stream a reply: its column definitions and raw row payloads."""
    columns: list[Any] = []
    rows: list[bytes] = []

    def consume(ev: StreamEvent) -> None:
        if isinstance(ev, Column):
            columns.append(ev.definition)
        elif isinstance(ev, Row):
            rows.append(ev.payload)

    await run(consume)
    return columns, rows


class ProtocolTests(PassthroughCase):
    async def _clients(self) -> tuple[MySQLClient, MySQLClient]:
        ref = await connect(
            reactor, ("127.0.0.1", self.db.port), self.db.user, self.db.password, DB
        )
        self.addCleanup(ref.close)
        via = await connect(reactor, ("127.0.0.1", self.port), "app", PASSWORD, DB)
        self.addCleanup(via.close)
        for c in (ref, via):
            for sql in SESSION:
                await c.query(sql)
        return ref, via

    def test_text_and_binary_results_equal_direct(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._equal())

    async def _equal(self) -> None:
        ref, via = await self._clients()
        await ref.query("DROP TABLE IF EXISTS all_types")
        await ref.query(CREATE)
        for row_id in ROWS:
            await ref.query(insert_sql(row_id))
        # Text protocol.
        expected = await _rows(ref, lambda f: ref.stream_query(SELECT_ALL, f))
        got = await _rows(via, lambda f: via.stream_query(SELECT_ALL, f))
        assert len(expected[1]) == len(ROWS)
        assert got == expected
        # Binary protocol: the table's rows, then every value sent back as a parameter.
        results = []
        for c in (ref, via):
            stmt = await c.prepare(SELECT_ALL)
            results.append(await _rows(c, lambda f, c=c, s=stmt: c.stream_execute(s, [], f)))
            decoded = (await c.execute(stmt)).rows
            values = [row[1:] for row in decoded]
            echo = await c.prepare("SELECT " + ", ".join(["?"] * len(NAMES)))
            for row in values:
                params: Sequence[Any] = row
                results.append(
                    await _rows(c, lambda f, c=c, e=echo, p=params: c.stream_execute(e, p, f))
                )
            await c.close_statement(stmt)
            await c.close_statement(echo)
        half = len(results) // 2
        assert results[half:] == results[:half]
        assert len(results[0][1]) == len(ROWS)

    def test_commands_and_errors_are_relayed(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._commands())

    async def _commands(self) -> None:
        ref, via = await self._clients()
        await ref.query("CREATE TABLE IF NOT EXISTS fl (a INT DEFAULT 7, dd VARCHAR(5), db BLOB)")
        fields = []
        for c in (ref, via):
            fields.append(await c.protocol.submit(FieldListCommand("fl", "")))
            fields.append(await c.protocol.submit(FieldListCommand("fl", "d%")))
        assert fields[2:] == fields[:2]
        assert [f.name for f in fields[0]] == ["a", "dd", "db"]
        assert [f.name for f in fields[1]] == ["dd", "db"]
        assert fields[0][0].default_value == b"7"
        with pytest.raises(MySQLError) as info:
            await via.protocol.submit(FieldListCommand("nosuch", ""))
        assert (info.value.code, info.value.sqlstate) == (1146, "42S02")
        stats = await via.protocol.submit(StatisticsCommand())
        assert stats.startswith("Uptime:")
        # COM_SET_OPTION: multi-statements off, then on again.
        await via.protocol.submit(SimpleHandler(ComSetOption(int(SetOption.MULTI_STATEMENTS_OFF))))
        with pytest.raises(MySQLError) as info:
            await via.query("select 1; select 2")
        assert info.value.code == 1064
        await via.protocol.submit(SimpleHandler(ComSetOption(int(SetOption.MULTI_STATEMENTS_ON))))
        both = await via.query("select 1; select 2")
        assert [r.rows for r in both.all_results()] == [[[b"1"]], [[b"2"]]]
        # COM_INIT_DB and COM_RESET_CONNECTION.
        await via.query("set @x = 5")
        await via.init_db("vtwist_test")
        assert (await via.query("select database(), @x")).rows == [[b"vtwist_test", b"5"]]
        await via.reset_connection()
        assert (await via.query("select @x")).rows == [[None]]
        with pytest.raises(MySQLError) as info:
            await via.init_db("no_such_db")
        assert (info.value.code, info.value.sqlstate) == (1049, "42000")
        with pytest.raises(MySQLError) as info:
            await via.query("select * from vtwist_pt.nosuch")
        assert (info.value.code, info.value.sqlstate) == (1146, "42S02")
        await via.ping()
        assert self.metrics.commands["ComFieldList"] == 3
        assert self.metrics.commands["ComStatistics"] == 1
        assert self.metrics.commands["ComSetOption"] == 2

    def test_cursors(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._cursors())

    async def _cursors(self) -> None:
        out = await self.in_thread(lambda: cursor_session(self.port))
        assert out["all"] == list(range(1, 3001))
        assert out["opened_with"] & ServerStatus.CURSOR_EXISTS
        assert out["last"] & ServerStatus.LAST_ROW_SENT
        assert out["partial"] == list(range(1, 11))
        assert out["query_while_open"] == [b"\x01x"]
        err = out["fetch_after_query"]
        assert isinstance(err, Err) and err.code == 1105 and "fetch all rows" in err.message
        assert out["query_after_close"] == [b"\x01y"]
        assert out["plain_execute_rows"] == 3000
        # 3000 rows are more than the cursor buffer holds: the backend had to pause.
        assert self.pt.handlers.pauses > 0


class RawClient:
    """A blocking MySQL client built on the sans-IO ``Connection`` (classic EOF mode)."""

    def __init__(self, port: int, user: str, password: str, database: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.conn = Connection(Role.CLIENT)
        (greeting,) = self._reply()
        assert isinstance(greeting, HandshakeV10)
        caps = (int(CLIENT_CAPABILITIES) | int(Capability.CONNECT_WITH_DB)) & ~int(
            Capability.DEPRECATE_EOF | Capability.CONNECT_ATTRS
        )
        auth = native_password_response(password, greeting.auth_plugin_data)
        login = HandshakeResponse41(
            caps, 1 << 24, 45, user, auth, database, "mysql_native_password"
        )
        self.sock.sendall(self.conn.send(login))
        (ok,) = self._reply()
        assert isinstance(ok, Ok), ok

    def _reply(self) -> list[Any]:
        """Events until it is our turn again."""
        events: list[Any] = []
        while True:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                if events and self.conn.our_turn:
                    return events
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self.conn.receive_data(data)
                continue
            events.append(ev)

    def command(self, msg: Any) -> list[Any]:
        """Send a command and read its whole reply."""
        self.sock.sendall(self.conn.send(msg))
        return self._reply()

    def send(self, msg: Any) -> None:
        """Send a command that has no reply."""
        self.sock.sendall(self.conn.send(msg))

    def close(self) -> None:
        self.sock.close()


def cursor_session(port: int) -> dict[str, Any]:
    """Cursor scenarios through the passthrough (see the module docstring)."""
    out: dict[str, Any] = {}
    c = RawClient(port, "app", PASSWORD, DB)
    try:
        prep = c.command(ComStmtPrepare(CURSOR_SQL))
        stmt_id = prep[0].statement_id
        specs = column_specs([ev.definition for ev in prep[1:]])

        def open_cursor() -> int:
            reply = c.command(ComStmtExecute(stmt_id, flags=int(CursorType.READ_ONLY)))
            assert isinstance(reply[-1], ResultSetDone), reply
            assert not any(isinstance(ev, Row) for ev in reply)
            return reply[-1].status

        def fetch(n: int) -> tuple[list[int], Any]:
            reply = c.command(ComStmtFetch(stmt_id, n))
            seqs = [decode_binary_row(ev.payload, specs)[0] for ev in reply if isinstance(ev, Row)]
            return cast(list[int], seqs), reply[-1]

        # A whole cursor, in fetches of 700 rows.
        out["opened_with"] = open_cursor()
        seen: list[int] = []
        while True:
            seqs, end = fetch(700)
            seen += seqs
            assert isinstance(end, ResultSetDone), end
            if end.status & ServerStatus.LAST_ROW_SENT:
                out["last"] = end.status
                break
        out["all"] = seen
        # Another command while the cursor is open: it closes the cursor.
        open_cursor()
        out["partial"], _ = fetch(10)
        reply = c.command(ComQuery(b"select 'x'"))
        out["query_while_open"] = [ev.payload for ev in reply if isinstance(ev, Row)]
        out["fetch_after_query"] = c.command(ComStmtFetch(stmt_id, 10))[-1]
        # A cursor closed early: the rest of its backend result is dropped.
        open_cursor()
        fetch(5)
        c.send(ComStmtClose(stmt_id))
        reply = c.command(ComQuery(b"select 'y'"))
        out["query_after_close"] = [ev.payload for ev in reply if isinstance(ev, Row)]
        # The same SQL without a cursor: all rows at once.
        prep = c.command(ComStmtPrepare(CURSOR_SQL))
        reply = c.command(ComStmtExecute(prep[0].statement_id))
        out["plain_execute_rows"] = sum(isinstance(ev, Row) for ev in reply)
    finally:
        c.close()
    return out
