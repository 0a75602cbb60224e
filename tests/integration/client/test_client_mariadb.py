"""vtwist's MySQL client against the session's real MariaDB 10.11 (from the launcher): login
and auth switches, errors, read timeout, results over 16 MiB, streaming with back-pressure,
prepared statements, COM_RESET_CONNECTION, a unix socket."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.integration.client.support import connect_to, reactor, sleep
from tests.support import servers
from vtwist.protocols.mysql.client import MySQLClient, connect
from vtwist.protocols.mysql.client_commands import column_specs
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import Row
from vtwist.protocols.mysql.values import decode_binary_row

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


class ClientTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.db = servers.shared_mariadb()

    async def _connect(self, **kw: Any) -> MySQLClient:
        client = await connect_to(self.db, **kw)
        self.addCleanup(client.close)
        return client

    async def _admin(self, *statements: str) -> None:
        client = await self._connect()
        for sql in statements:
            await client.query(sql)
        await client.quit()

    # -- login -------------------------------------------------------------------------------

    def test_native_login_and_session(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._native_login())

    async def _native_login(self) -> None:
        c = await self._connect()
        assert c.is_mariadb and c.server_version.startswith("10.11")
        assert c.raw_server_version.startswith("5.5.5-10.11")
        assert c.deprecate_eof and not c.tls and not c.is_broken
        r = await c.query(
            "SELECT CONNECTION_ID(), CURRENT_USER(), DATABASE(), @@character_set_client,"
            " @@autocommit"
        )
        assert r.rows == [
            [str(c.connection_id).encode(), b"vtwist@127.0.0.1", b"vtwist_test", b"utf8mb4", b"1"]
        ]
        sock = c.protocol.transport.getHandle()  # type: ignore[union-attr]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await c.query("BEGIN")
        assert c.in_transaction
        await c.query("ROLLBACK")
        assert not c.in_transaction

    def test_auth_switch_and_unsupported_plugin(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._auth_switch())

    async def _auth_switch(self) -> None:
        if not await self._has_ed25519():
            await self._admin("INSTALL SONAME 'auth_ed25519'")
        await self._admin(
            "DROP USER IF EXISTS sw@'127.0.0.1', nat@'127.0.0.1', ed@'127.0.0.1'",
            # unix_socket cannot succeed over TCP: mysqld switches to mysql_native_password.
            "CREATE USER sw@'127.0.0.1' IDENTIFIED VIA unix_socket OR mysql_native_password"
            " USING PASSWORD('sw-pw')",
            "CREATE USER nat@'127.0.0.1' IDENTIFIED VIA mysql_native_password"
            " USING PASSWORD('nat-pw')",
            "CREATE USER ed@'127.0.0.1' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pw')",
        )
        switched = await self._connect(user="sw", password="sw-pw", database=None)
        assert (await switched.query("SELECT CURRENT_USER()")).rows == [[b"sw@127.0.0.1"]]
        native = await self._connect(user="nat", password="nat-pw", database=None)
        assert (await native.query("SELECT CURRENT_USER()")).rows == [[b"nat@127.0.0.1"]]
        with pytest.raises(MySQLError) as info:
            await connect_to(self.db, user="sw", password="wrong", database=None)
        assert (info.value.code, info.value.sqlstate) == (1045, "28000")
        with pytest.raises(MySQLError) as info:
            await connect_to(self.db, user="ed", password="ed-pw", database=None)
        assert (info.value.code, info.value.sqlstate) == (1251, "08004")
        assert "client_ed25519" in info.value.message

    async def _has_ed25519(self) -> bool:
        c = await self._connect()
        r = await c.query(
            "SELECT COUNT(*) FROM information_schema.plugins WHERE plugin_name = 'ed25519'"
        )
        return bool(r.rows[0][0] != b"0")

    def test_unix_socket_and_unknown_database(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._unix_socket())

    async def _unix_socket(self) -> None:
        c = await connect(reactor, self.db.socket_path, self.db.user, self.db.password)
        self.addCleanup(c.close)
        assert (await c.query("SELECT CURRENT_USER()")).rows == [[b"vtwist@localhost"]]
        with pytest.raises(MySQLError) as info:
            await connect_to(self.db, database="no_such_db")
        assert (info.value.code, info.value.sqlstate) == (1049, "42000")

    def test_connect_refused(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._refused())

    async def _refused(self) -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with pytest.raises(MySQLError) as info:
            await connect(reactor, ("127.0.0.1", port), "x", "y", connect_timeout=5)
        assert info.value.code == 2003 and f"127.0.0.1:{port}" in info.value.message

    # -- errors and timeouts -----------------------------------------------------------------

    def test_errors_leave_the_connection_usable(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._errors())

    async def _errors(self) -> None:
        c = await self._connect()
        with pytest.raises(MySQLError) as info:
            await c.query("SELEC 1")
        assert (info.value.code, info.value.sqlstate) == (1064, "42000")
        with pytest.raises(MySQLError) as info:
            await c.query("SELECT * FROM no_such_table")
        assert (info.value.code, info.value.sqlstate) == (1146, "42S02")
        assert "no_such_table" in info.value.message
        with pytest.raises(MySQLError) as info:
            await c.prepare("SELECT * FROM no_such_table WHERE x = ?")
        assert info.value.code == 1146
        assert (await c.query("SELECT 1")).rows == [[b"1"]]
        await c.ping()
        await c.init_db("mysql")
        assert (await c.query("SELECT DATABASE()")).rows == [[b"mysql"]]

    def test_read_timeout_breaks_the_connection(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._read_timeout())

    async def _read_timeout(self) -> None:
        c = await self._connect(read_timeout=0.5)
        with pytest.raises(MySQLError) as info:
            await c.query("SELECT SLEEP(5)")
        assert (info.value.code, info.value.sqlstate) == (2013, "HY000")
        assert "read_timeout" in info.value.message
        assert c.is_broken
        with pytest.raises(MySQLError) as info:
            await c.ping()
        assert info.value.code == 2006
        # Do not leave the statement running for the other tests.
        admin = await self._connect()
        await admin.query(f"KILL QUERY {c.connection_id}")

    # -- big results and streaming -----------------------------------------------------------

    def test_results_over_16_mib(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._big())

    async def _big(self) -> None:
        c = await self._connect()
        size = 17 * MiB
        r = await c.query(f"SELECT REPEAT('x', {size}) AS big, 7")
        assert len(r.rows[0][0]) == size and r.rows[0][0][:3] == b"xxx" and r.rows[0][1] == b"7"
        events: list[Any] = []
        done = await c.stream_query(f"SELECT REPEAT('y', {size})", events.append)
        [row] = [e for e in events if isinstance(e, Row)]
        assert len(row.payload) > size and done.row_count == 1
        stmt = await c.prepare("SELECT REPEAT(?, ?)")
        r = await c.execute(stmt, [b"z", size])
        assert r.rows[0][0] == b"z" * size

    def test_stream_query_with_back_pressure_does_not_buffer(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._back_pressure())

    async def _back_pressure(self) -> None:
        c = await self._connect()
        received = [0]
        proto = c.protocol
        original = proto.dataReceived

        def counting(data: bytes) -> None:
            received[0] += len(data)
            original(data)

        proto.dataReceived = counting  # type: ignore[method-assign]
        rows = 65536
        state = {"rows": 0, "paused_at": -1}

        def consumer(ev: Any) -> None:
            if isinstance(ev, Row):
                state["rows"] += 1
                if state["rows"] == 10:
                    c.pause_reading()
                    state["paused_at"] = received[0]

        d = c.stream_query(f"SELECT seq, REPEAT('r', 1000) FROM seq_1_to_{rows}", consumer)
        while state["paused_at"] < 0:
            await sleep(0.01)
        await sleep(0.5)  # mysqld keeps writing until the socket buffers are full
        during_pause = received[0]
        assert not d.called and state["rows"] == 10
        assert during_pause < 16 * MiB, during_pause  # of a 63 MiB result
        c.resume_reading()
        result = await d
        assert result.row_count == rows == state["rows"] and result.rows == []
        assert received[0] > rows * 1000

    # -- prepared statements -----------------------------------------------------------------

    def test_prepared_statements(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._prepared())

    async def _prepared(self) -> None:
        c = await self._connect()
        await c.query("CREATE TEMPORARY TABLE ps (id INT PRIMARY KEY, v VARCHAR(20))")
        ins = await c.prepare("INSERT INTO ps VALUES (?, ?)")
        assert ins.num_params == 2 and ins.columns == []
        for i in range(5):
            r = await c.execute(ins, [i, f"v{i}" if i != 3 else None])
            assert r.affected_rows == 1
        sel = await c.prepare("SELECT id, v FROM ps WHERE id >= ? ORDER BY id")
        assert [col.name for col in sel.columns] == ["id", "v"]
        r = await c.execute(sel, [2])
        assert r.rows == [[2, b"v2"], [3, None], [4, b"v4"]]
        payloads: list[bytes] = []
        done = await c.stream_execute(
            sel, [4], lambda ev: payloads.append(ev.payload) if isinstance(ev, Row) else None
        )
        assert done.row_count == 1
        assert decode_binary_row(payloads[0], column_specs(done.columns)) == [4, b"v4"]
        with pytest.raises(MySQLError) as info:
            await c.execute(ins, [1, "dup"])
        assert (info.value.code, info.value.sqlstate) == (1062, "23000")
        await c.close_statement(sel)
        with pytest.raises(MySQLError) as info:
            await c.execute(sel, [0])
        assert info.value.code == 1243  # unknown prepared statement handler

    # -- COM_RESET_CONNECTION ----------------------------------------------------------------

    def test_reset_connection_clears_session_state(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._reset())

    async def _reset(self) -> None:
        c = await self._connect(charset="utf8mb4")
        stmt = await c.prepare("SELECT ?")
        await c.query("SET @x = 42, NAMES latin1")
        await c.query("BEGIN")
        assert c.in_transaction
        await c.reset_connection()
        assert not c.in_transaction
        r = await c.query("SELECT @x, @@character_set_client, @@character_set_results")
        assert r.rows == [[None, b"utf8mb4", b"utf8mb4"]]
        with pytest.raises(MySQLError) as info:
            await c.execute(stmt, [1])
        assert info.value.code == 1243
