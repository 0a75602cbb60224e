"""The MySQL server on 127.0.0.1 driven by real clients (no MariaDB behind it).

Clients: PyMySQL (native, caching_sha2 by RSA then fast path, TLS), mysqlclient (MySQLdb),
mysql-connector-python (pure; the C extension when it loads), the ``mariadb`` CLI in batch
mode, and a raw socket client that sends its SSLRequest and TLS ClientHello in one write.
The query handler is the tiny in-test ``EchoHandler``. Blocking clients run in the
reactor's thread pool while the server runs on the reactor.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pymysql
import pymysql.cursors
import pytest
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.integration.server.certs import ServerCerts, make_certs
from tests.integration.server.handler import VERSION_COMMENT, EchoHandlerFactory
from tests.support import fresh_python, servers
from vtwist.protocols.mysql.auth import RsaKey, generate_rsa_key, native_password_response
from vtwist.protocols.mysql.connection import NEED_DATA, Connection, Role
from vtwist.protocols.mysql.constants import CLIENT_CAPABILITIES, Capability
from vtwist.protocols.mysql.events import Row
from vtwist.protocols.mysql.messages import (
    ComQuery,
    HandshakeResponse41,
    HandshakeV10,
    Ok,
    SSLRequest,
)
from vtwist.protocols.mysql.server import MySQLServerFactory
from vtwist.users import StaticUsers, hash_password

pytestmark = [
    pytest.mark.integration,
    # Twisted's TLS options still hand pyOpenSSL objects to pyOpenSSL: not ours to fix.
    pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning"),
]

reactor = cast(Any, global_reactor)
T = TypeVar("T")
PASSWORD = "app-Pa55"
MARIADB_CLI = "/usr/bin/mariadb"

_rsa_key: RsaKey | None = None


def rsa_key() -> RsaKey:
    global _rsa_key
    if _rsa_key is None:
        _rsa_key = generate_rsa_key()
    return _rsa_key


def write_users(path: Path) -> None:
    lines = []
    for user, plugin in (
        ("app", "mysql_native_password"),
        ("app2", "mysql_native_password"),
        ("sha2", "caching_sha2_password"),
        ("clear", "mysql_clear_password"),
    ):
        entry = hash_password(PASSWORD, iterations=1000, plugin=plugin)
        lines.append(f"[users.{user}]")
        lines += [f'{k} = "{v}"' for k, v in entry.items()]
    path.write_text("\n".join(lines) + "\n")


def _connector_client(port: int, use_pure: bool) -> dict[str, Any]:
    """mysql-connector-python's session against the test server; what it read."""
    import mysql.connector

    out: dict[str, Any] = {}
    cnx: Any = mysql.connector.connect(
        host="127.0.0.1",
        port=port,
        user="app",
        password=PASSWORD,
        use_pure=use_pure,
        ssl_disabled=True,
    )
    try:
        cur = cnx.cursor()
        cur.execute("select 1")
        out["one"] = cur.fetchall()
        cur.close()
        prepared = cnx.cursor(prepared=True)
        prepared.execute("select ?, ?, ?", (5, "héllo", None))
        out["prepared"] = prepared.fetchall()
        prepared.execute("select ?, ?, ?", (6, "again", 1.5))
        out["prepared2"] = prepared.fetchall()
        prepared.close()
        cnx.ping()  # COM_PING (the C extension has no cmd_ping)
        cnx.cmd_init_db("shop")
        out["stat"] = cnx.cmd_statistics()
        cnx.cmd_reset_connection()
        cnx.cmd_change_user(username="app2", password=PASSWORD)
        cur = cnx.cursor()
        cur.execute("select current_user()")
        out["user"] = cur.fetchall()
        cur.close()
    finally:
        cnx.close()
    return out


class Server:
    """A listening MySQLServerFactory with the echo handler."""

    def __init__(self, factory: MySQLServerFactory, handlers: EchoHandlerFactory) -> None:
        self.factory = factory
        self.handlers = handlers
        self.port = 0


class RealClientTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = servers.scratch_dir("mysql-server")
        write_users(self.dir / "users.toml")
        self.users = StaticUsers(self.dir / "users.toml")
        self.certs: ServerCerts = make_certs(self.dir)

    def tls_options(self) -> Any:
        return PrivateCertificate.loadPEM(self.certs.cert_pem + self.certs.key_pem).options()  # type: ignore[no-untyped-call]  # Twisted: unannotated

    async def server(self, **kw: Any) -> Server:
        handlers = EchoHandlerFactory(cast(IReactorTime, reactor))
        kw.setdefault("tls", self.tls_options())
        kw.setdefault("rsa_key", rsa_key())
        factory = MySQLServerFactory(handlers, self.users, clock=reactor, **kw)
        endpoint = TCP4ServerEndpoint(cast(IReactorTCP, reactor), 0, interface="127.0.0.1")  # type: ignore[no-untyped-call]  # Twisted: unannotated
        port: IListeningPort = await endpoint.listen(factory)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.addCleanup(port.stopListening)
        # Clients close their connections; wait until the server saw every one go (their
        # timers are cancelled then), so the reactor is clean after the test.
        self.addCleanup(
            lambda: Deferred.fromCoroutine(self._wait_for(lambda: not factory.connections))
        )
        server = Server(factory, handlers)
        server.port = port.getHost().port  # type: ignore[attr-defined]
        return server

    def in_thread(self, fn: Callable[[], T]) -> Deferred[T]:
        return deferToThread(fn)

    def pymysql(self, server: Server, **kw: Any) -> pymysql.connections.Connection[Any]:
        kw.setdefault("user", "app")
        kw.setdefault("password", PASSWORD)
        return pymysql.connect(host="127.0.0.1", port=server.port, connect_timeout=10, **kw)

    # -- PyMySQL ---------------------------------------------------------------------------

    def test_pymysql_native(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._pymysql_native())

    async def _pymysql_native(self) -> None:
        server = await self.server()

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            conn = self.pymysql(server, ssl_disabled=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("select 1")
                    out["one"] = cur.fetchall()
                    cur.execute("select @@version_comment limit 1")
                    out["comment"] = cur.fetchall()
                    try:
                        cur.execute("select 1; select 2")
                    except pymysql.err.ProgrammingError as e:
                        out["multi"] = e.args
                    try:
                        cur.execute("select error")
                    except pymysql.err.ProgrammingError as e:
                        out["error"] = e.args
                    cur.execute("select 'still here'")
                    out["after"] = cur.fetchall()
                conn.ping(reconnect=False)
                conn.select_db("shop")
                with conn.cursor() as cur:
                    cur.execute("select database()")
                    out["db"] = cur.fetchall()
                out["version"] = conn.get_server_info()  # type: ignore[no-untyped-call]  # types-PyMySQL: unannotated
                out["autocommit"] = conn.get_autocommit()
            finally:
                conn.close()
            return out

        out = await self.in_thread(client)
        assert out["one"] == ((1,),)
        assert out["comment"] == ((VERSION_COMMENT.decode(),),)
        assert out["multi"][0] == 1064
        assert "CLIENT_MULTI_STATEMENTS" in out["multi"][1]
        assert out["error"] == (1146, "Table 'test.error' doesn't exist")
        assert out["after"] == (("select 'still here'",),)
        assert out["db"] == (("shop",),)
        assert out["version"] == server.factory.server_version
        assert not out["autocommit"]  # PyMySQL's default, set with SET AUTOCOMMIT = 0
        assert b"SET AUTOCOMMIT = 0" in server.handlers.queries
        assert not server.handlers.sessions[0].info.secure
        await self._wait_for(lambda: server.handlers.closed == 1)

    def test_pymysql_caching_sha2_by_rsa_then_fast_path(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._pymysql_sha2())

    async def _pymysql_sha2(self) -> None:
        server = await self.server(tls=None)

        def client() -> list[Any]:
            results = []
            for _ in range(2):  # full authentication (RSA), then the cache's fast path
                conn = self.pymysql(server, user="sha2")
                with conn.cursor() as cur:
                    cur.execute("select 1")
                    results.append(cur.fetchall())
                conn.close()
            try:
                self.pymysql(server, user="sha2", password="wrong")
            except pymysql.err.OperationalError as e:
                results.append(e.args[0])
            return results

        assert await self.in_thread(client) == [((1,),), ((1,),), 1045]
        assert not server.handlers.sessions[0].info.secure

    def test_pymysql_tls(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._pymysql_tls())

    async def _pymysql_tls(self) -> None:
        server = await self.server(require_secure_transport=True)
        ca = str(self.certs.ca_file)

        def client() -> list[Any]:
            results: list[Any] = []
            for user in ("app", "sha2", "clear"):
                conn = self.pymysql(server, user=user, ssl={"ca": ca})
                with conn.cursor() as cur:
                    cur.execute("select current_user()")
                    results.append(cur.fetchall())
                conn.close()
            try:
                self.pymysql(server, ssl_disabled=True)
            except pymysql.err.OperationalError as e:
                results.append(e.args)
            return results

        results = await self.in_thread(client)
        assert results[:3] == [(("app@%",),), (("sha2@%",),), (("clear@%",),)]
        assert results[3][0] == 3159
        assert all(s.info.secure for s in server.handlers.sessions)

    def test_large_result_is_streamed_with_back_pressure(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._back_pressure(tls=False))

    def test_large_result_is_streamed_with_back_pressure_over_tls(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._back_pressure(tls=True))

    async def _back_pressure(self, tls: bool) -> None:
        server = await self.server()
        rows = 20_000  # ~20 MB: more than the socket buffers hold

        def client() -> tuple[int, bool]:
            conn = self.pymysql(server, cursorclass=pymysql.cursors.SSCursor, ssl_disabled=not tls)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"select big {rows}")
                    time.sleep(0.5)  # a slow reader: the server must stop producing
                    count, ordered, expect = 0, True, rows
                    for n, pad in cur:
                        ordered = ordered and n == expect and len(pad) == 1000
                        expect -= 1
                        count += 1
                return count, ordered
            finally:
                conn.close()

        count, ordered = await self.in_thread(client)
        assert (count, ordered) == (rows, True)
        (stream,) = server.handlers.streams
        assert stream.pauses > 0
        assert server.handlers.sessions[0].info.secure == tls

    # -- mysqlclient -------------------------------------------------------------------------

    def test_mysqlclient(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._mysqlclient())

    async def _mysqlclient(self) -> None:
        import MySQLdb

        server = await self.server()
        ca = str(self.certs.ca_file)

        def client() -> dict[str, Any]:
            out: dict[str, Any] = {}
            conn = MySQLdb.connect(
                host="127.0.0.1", port=server.port, user="app", password=PASSWORD
            )
            try:
                cur = conn.cursor()
                cur.execute("select 1")
                out["one"] = cur.fetchall()
                cur.execute("select 'a'; select 'b'")  # multi-statements are on by default
                first = cur.fetchall()
                cur.nextset()
                out["multi"] = (first, cur.fetchall())
                cur.close()
                conn.ping()
                conn.select_db("shop")
                out["stat"] = conn.stat()
                out["thread_id"] = conn.thread_id()
            finally:
                conn.close()
            tls = MySQLdb.connect(
                host="127.0.0.1", port=server.port, user="app", password=PASSWORD, ssl={"ca": ca}
            )
            try:
                cur = tls.cursor()
                cur.execute("select @@version_comment limit 1")
                out["tls"] = cur.fetchall()
            finally:
                tls.close()
            return out

        out = await self.in_thread(client)
        assert out["one"] == ((1,),)
        assert out["multi"] == ((("select 'a'",),), (("select 'b'",),))
        assert out["stat"].startswith("Uptime:")
        assert out["thread_id"] == server.handlers.sessions[0].info.connection_id
        assert out["tls"] == ((VERSION_COMMENT.decode(),),)
        assert server.handlers.sessions[1].info.secure

    # -- mysql-connector-python --------------------------------------------------------------

    def test_connector_pure(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._connector(use_pure=True))

    def test_connector_c_extension(self) -> Deferred[None]:
        error = fresh_python.c_extension_error()
        if error is not None:
            raise unittest.SkipTest(f"mysql-connector C extension unavailable: {error}")
        return Deferred.fromCoroutine(self._connector(use_pure=False))

    async def _connector(self, use_pure: bool) -> None:
        server = await self.server()
        if use_pure:
            out = await self.in_thread(lambda: _connector_client(server.port, True))
        else:  # in a new process: see tests.support.fresh_python
            out = await self.in_thread(
                lambda: fresh_python.call(_connector_client, server.port, False)
            )
        assert out["one"] == [(1,)]
        # Parameters came back as text rows, sent to the client as binary rows.
        assert out["prepared"] == [("5", "héllo", None)]
        assert out["prepared2"] == [("6", "again", "1.5")]
        assert "Uptime" in str(out["stat"])
        assert out["user"] == [("app2@%",)]
        assert server.handlers.changed_users == ["app2"]
        assert server.handlers.resets >= 1
        executed = [e[1] for e in server.handlers.executes]
        assert executed == [[5, "héllo", None], [6, "again", 1.5]]

    # -- the mariadb CLI ---------------------------------------------------------------------

    def test_mariadb_cli(self) -> Deferred[None]:
        if not Path(MARIADB_CLI).exists():
            raise unittest.SkipTest("the mariadb client is not installed")
        return Deferred.fromCoroutine(self._mariadb_cli())

    async def _cli(self, server: Server, *args: str) -> tuple[bytes, bytes, int]:
        base = [
            "--no-defaults",
            "-h127.0.0.1",
            f"-P{server.port}",
            "--protocol=TCP",
            "-uapp",
            f"-p{PASSWORD}",
            "--batch",
            "--skip-column-names",
            "--connect-timeout=10",
        ]
        result = await getProcessOutputAndValue(  # type: ignore[no-untyped-call]  # Twisted: unannotated
            MARIADB_CLI, [*base, *args], env={}, reactor=reactor
        )
        return cast(tuple[bytes, bytes, int], result)

    async def _mariadb_cli(self) -> None:
        server = await self.server()
        out, err, code = await self._cli(server, "-e", "select 1")
        assert (out, code) == (b"1\n", 0), err
        out, err, code = await self._cli(server, "-e", "select @@version_comment limit 1")
        assert (out, code) == (VERSION_COMMENT + b"\n", 0), err
        out, err, code = await self._cli(server, "-Dshop", "-e", "select database(); use other")
        assert (out, code) == (b"shop\n", 0), err
        out, err, code = await self._cli(server, "-e", "select error")
        assert code == 1
        assert b"1146" in err
        ca = str(self.certs.ca_file)
        out, err, code = await self._cli(server, "--ssl", f"--ssl-ca={ca}", "-e", "select 1")
        assert (out, code) == (b"1\n", 0), err
        assert server.handlers.sessions[-1].info.secure

    # -- TLS: SSLRequest and ClientHello in one write ------------------------------------------

    def test_ssl_request_and_client_hello_in_one_write(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._one_write_tls())

    async def _one_write_tls(self) -> None:
        server = await self.server()
        ca = str(self.certs.ca_file)
        handed_over: list[int] = []
        take_buffered = Connection.take_buffered

        def recording(conn: Connection) -> bytes:
            data = take_buffered(conn)
            handed_over.append(len(data))
            return data

        self.patch(Connection, "take_buffered", recording)  # type: ignore[no-untyped-call]  # Twisted: unannotated
        assert await self.in_thread(lambda: raw_tls_select_1(server.port, ca)) == b"1"
        assert server.handlers.sessions[0].info.secure
        # The ClientHello arrived with the SSLRequest and went to the TLS layer.
        assert handed_over and handed_over[0] > 0

    # -- socket options ----------------------------------------------------------------------

    def test_tcp_nodelay(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._nodelay())

    async def _nodelay(self) -> None:
        server = await self.server()
        sock = socket.create_connection(("127.0.0.1", server.port))
        self.addCleanup(sock.close)
        await self._wait_for(lambda: bool(server.factory.connections))
        (proto,) = server.factory.connections.values()
        handle = proto.transport.getHandle()  # type: ignore[union-attr]
        assert handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1

    async def _wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = reactor.seconds() + timeout
        while not check():
            if reactor.seconds() > deadline:
                self.fail("condition not reached")
            d: Deferred[None] = Deferred()
            reactor.callLater(0.01, d.callback, None)
            await d


def raw_tls_select_1(port: int, ca: str) -> bytes:
    """Log in over TLS sending the SSLRequest and the ClientHello in ONE write, then run
    ``select 1``; the value of its row."""
    conn = Connection(Role.CLIENT)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:

        def read_events() -> list[Any]:
            while True:
                ev = conn.next_event()
                if ev is not NEED_DATA:
                    evs = [ev]
                    while (nxt := conn.next_event()) is not NEED_DATA:
                        evs.append(nxt)
                    return evs
                conn.receive_data(recv_plain())

        ctx = ssl.create_default_context(cafile=ca)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        secure = False

        def recv_plain() -> bytes:
            while True:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed")
                if not secure:
                    return data
                incoming.write(data)
                try:
                    return tls.read(65536)
                except ssl.SSLWantReadError:
                    continue

        (greeting,) = read_events()
        assert isinstance(greeting, HandshakeV10)
        caps = int(CLIENT_CAPABILITIES) | int(Capability.SSL)
        ssl_request = conn.send(SSLRequest(caps))
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()  # writes the ClientHello into ``outgoing``
        sock.sendall(ssl_request + outgoing.read())  # the point of this test: one write
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed during the TLS handshake")
            incoming.write(data)
        if outgoing.pending:
            sock.sendall(outgoing.read())
        conn.start_tls_done()
        secure = True

        def send(data: bytes) -> None:
            tls.write(data)
            sock.sendall(outgoing.read())

        auth = native_password_response(PASSWORD, greeting.auth_plugin_data)
        send(
            conn.send(
                HandshakeResponse41(caps, 1 << 24, 45, "app", auth, "", "mysql_native_password")
            )
        )
        (ok,) = read_events()
        assert isinstance(ok, Ok), ok
        send(conn.send(ComQuery(b"select 1")))
        events = read_events()
        while not any(type(e).__name__ == "ResultSetDone" for e in events):
            events += read_events()
        (row,) = [e for e in events if isinstance(e, Row)]
        return row.payload[1:]
    finally:
        sock.close()
