"""The client's login against a scripted mysqld: MariaDB and MySQL 8 greetings, every auth
path (native, caching_sha2 fast and full via RSA or TLS, switches, unsupported plugins),
TLS negotiation, and ``connect()`` with its connect timeout on a ``task.Clock``."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer

from tests.unit.client.scripted import (
    AUTOCOMMIT,
    MARIADB_CAPS,
    MARIADB_EXT_CAPS,
    MARIADB_VERSION,
    SCRAMBLE,
    Scripted,
    TLSStringTransport,
    error_of,
    result_of,
)
from vtwist.protocols.mysql.auth import (
    Account,
    Pbkdf2Verifier,
    RsaKey,
    ServerAuth,
    Sha2Cache,
    Success,
    generate_rsa_key,
    native_double_sha1,
    native_password_response,
    sha2_double_digest,
    sha2_fast_response,
)
from vtwist.protocols.mysql.client import MySQLClient, _endpoint, connect
from vtwist.protocols.mysql.client_protocol import MySQLClientProtocol
from vtwist.protocols.mysql.constants import (
    CACHING_SHA2_PASSWORD,
    NATIVE_PASSWORD,
    SERVER_CAPABILITIES,
    Capability,
)
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import PAUSED
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    ComQuery,
    Err,
    Ok,
    SSLRequest,
)

PASSWORD = "secret"


@pytest.fixture(scope="module")
def rsa_key() -> RsaKey:
    return generate_rsa_key()


def sha2_account(cached: bool = False) -> tuple[Account, Sha2Cache]:
    account = Account(
        "app",
        CACHING_SHA2_PASSWORD,
        sha2_verifier=Pbkdf2Verifier.create(PASSWORD, iterations=1000),
    )
    cache = Sha2Cache()
    if cached:
        cache.put(account, sha2_double_digest(PASSWORD))
    return account, cache


def server_auth(
    s: Scripted,
    account: Account,
    cache: Sha2Cache | None = None,
    secure: bool = False,
    rsa_key: RsaKey | None = None,
) -> ServerAuth:
    return ServerAuth(
        user="app",
        host="127.0.0.1",
        account=account,
        scramble=SCRAMBLE,
        secure=secure,
        rsa_key=rsa_key,
        cache=cache,
    )


# -- MariaDB ---------------------------------------------------------------------------------


def test_mariadb_greeting_sets_bit0_and_opts_into_no_mariadb_capability() -> None:
    s = Scripted(database="shop", attrs={"_client_name": "vtwist"})
    g = s.greeting(caps=MARIADB_CAPS, version=MARIADB_VERSION, ext=MARIADB_EXT_CAPS)
    response = s.start(g)
    raw = s.last_written[4:]  # the login payload, after the 4-byte header
    caps = int.from_bytes(raw[:4], "little")
    assert caps & 1  # CLIENT_MYSQL: "I am a MySQL client"
    assert raw[28:32] == b"\0\0\0\0"  # no MARIADB_CLIENT_* extended capability
    assert caps & Capability.DEPRECATE_EOF
    assert caps & Capability.CONNECT_WITH_DB and response.database == "shop"
    assert not caps & (Capability.SSL | Capability.SESSION_TRACK | Capability.COMPRESS)
    assert not caps & Capability.QUERY_ATTRIBUTES
    assert response.charset == 45
    assert response.auth_plugin_name == NATIVE_PASSWORD
    assert response.auth_response == native_password_response(PASSWORD, SCRAMBLE)
    assert dict(response.connect_attrs) == {"_client_name": "vtwist"}
    assert not s.proto.ready.called
    s.send(Ok(status=AUTOCOMMIT))
    assert result_of(s.proto.ready) is s.proto
    c = s.client
    assert c.server_version == "10.11.6-MariaDB-0+deb12u1"
    assert c.raw_server_version == MARIADB_VERSION
    assert c.is_mariadb and c.connection_id == 42 and c.deprecate_eof
    assert c.status_flags == AUTOCOMMIT and not c.in_transaction and not c.is_broken
    assert s.transport.nodelay  # TCP_NODELAY


def test_native_password_checked_by_server_auth() -> None:
    s = Scripted()
    s.start()
    account = Account("app", NATIVE_PASSWORD, native_double_sha1(PASSWORD))
    assert isinstance(s.serve_auth(server_auth(s, account)), Success)
    assert s.proto.logged_in


def test_classic_eof_when_the_server_does_not_offer_deprecate_eof() -> None:
    s = Scripted()
    s.login(s.greeting(caps=int(SERVER_CAPABILITIES) & ~Capability.DEPRECATE_EOF))
    assert not s.client.deprecate_eof
    assert not s.response or not s.response.capabilities & Capability.DEPRECATE_EOF


def test_no_attrs_no_connect_attrs_capability() -> None:
    s = Scripted(attrs={})
    response = s.start()
    assert not response.capabilities & Capability.CONNECT_ATTRS


# -- MySQL 8: caching_sha2_password ------------------------------------------------------------


def test_caching_sha2_fast_path() -> None:
    s = Scripted()
    response = s.start(s.greeting(plugin=CACHING_SHA2_PASSWORD))
    assert response.auth_plugin_name == CACHING_SHA2_PASSWORD
    assert response.auth_response == sha2_fast_response(PASSWORD, SCRAMBLE)
    account, cache = sha2_account(cached=True)
    step = s.serve_auth(server_auth(s, account, cache))
    assert isinstance(step, Success) and step.more_data == b"\x03"
    assert s.proto.logged_in


def test_auth_switch_to_caching_sha2_then_full_auth_by_rsa_key_request(rsa_key: RsaKey) -> None:
    s = Scripted()
    response = s.start(s.greeting(plugin=NATIVE_PASSWORD))
    assert response.auth_plugin_name == NATIVE_PASSWORD
    account, cache = sha2_account()
    auth = server_auth(s, account, cache, rsa_key=rsa_key)
    step = auth.start(response.auth_plugin_name, response.auth_response)
    # The server switches to caching_sha2; the cache is empty: full authentication.
    s.send(AuthSwitchRequest(step.plugin, step.data))  # type: ignore[union-attr]
    [fast] = s.received()
    assert isinstance(fast, AuthData) and len(fast.data) == 32
    s.send(AuthMoreData(auth.feed(fast.data).data))  # type: ignore[union-attr]  # 0x04
    [request] = s.received()
    assert request == AuthData(b"\x02")  # no TLS, no key configured: ask for it
    s.send(AuthMoreData(auth.feed(request.data).data))  # type: ignore[union-attr]  # the PEM
    [encrypted] = s.received()
    assert isinstance(encrypted, AuthData) and len(encrypted.data) == 256
    assert isinstance(auth.feed(encrypted.data), Success)
    s.send(Ok(status=AUTOCOMMIT))
    assert s.proto.logged_in
    assert cache.get(account) == sha2_double_digest(PASSWORD)


def test_full_auth_with_a_configured_public_key_sends_rsa_at_once(rsa_key: RsaKey) -> None:
    s = Scripted(server_public_key=rsa_key.public_pem)
    s.start(s.greeting(plugin=CACHING_SHA2_PASSWORD))
    account, cache = sha2_account()
    step = s.serve_auth(server_auth(s, account, cache, rsa_key=rsa_key))
    assert isinstance(step, Success)


def test_full_auth_over_tls_sends_the_password() -> None:
    options = object()
    s = Scripted(tls=options)
    s.send(s.greeting(plugin=CACHING_SHA2_PASSWORD))
    ssl_request, paused = s.received()
    assert isinstance(ssl_request, SSLRequest) and paused is PAUSED
    assert ssl_request.capabilities & Capability.SSL and ssl_request.capabilities & 1
    assert s.transport.tls_options == [options]
    [response] = s.server_tls()  # written after startTLS: encrypted by the real transport
    account, cache = sha2_account()
    auth = server_auth(s, account, cache, secure=True)
    step = auth.start(CACHING_SHA2_PASSWORD, response.auth_response)  # type: ignore[union-attr]
    s.send(AuthMoreData(step.data))  # type: ignore[union-attr]
    [password] = s.received()
    assert password == AuthData(b"secret\0")
    assert isinstance(auth.feed(password.data), Success)
    s.send(Ok(status=AUTOCOMMIT))
    assert s.proto.logged_in and s.client.tls


def test_unix_socket_counts_as_secure_for_full_auth() -> None:
    s = Scripted(secure_channel=True)
    s.start(s.greeting(plugin=CACHING_SHA2_PASSWORD))
    s.send(AuthMoreData(b"\x04"))
    assert s.received() == [AuthData(b"secret\0")]


# -- failures --------------------------------------------------------------------------------


def test_tls_requested_but_not_offered() -> None:
    s = Scripted(tls=object())
    s.send(s.greeting(caps=int(SERVER_CAPABILITIES)))
    err = error_of(s.proto.ready, MySQLError)
    assert err.code == 2026 and "does not offer TLS" in err.message
    assert s.transport.aborted and s.client.is_broken


def test_switch_to_an_unsupported_plugin_fails_with_1251_and_closes() -> None:
    s = Scripted()
    s.start(s.greeting(version=MARIADB_VERSION, caps=MARIADB_CAPS))
    s.send(AuthSwitchRequest("client_ed25519", b"x" * 32))
    err = error_of(s.proto.ready, MySQLError)
    assert err.code == 1251 and err.sqlstate == "08004"
    assert "client_ed25519" in err.message
    assert s.transport.aborted


def test_access_denied() -> None:
    s = Scripted()
    s.start()
    s.send(Err(1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)"))
    err = error_of(s.proto.ready, MySQLError)
    assert (err.code, err.sqlstate) == (1045, "28000")
    assert s.client.is_broken


def test_error_instead_of_a_greeting() -> None:
    s = Scripted()
    s.send(Err(1040, "Too many connections"))
    err = error_of(s.proto.ready, MySQLError)
    assert (err.code, err.sqlstate) == (1040, "08004")


def test_garbage_instead_of_a_greeting() -> None:
    s = Scripted()
    s.send_bytes(b"\x05\x00\x00\x00HTTP/")
    err = error_of(s.proto.ready, MySQLError)
    assert err.code == 1043 and "protocol error" in err.message
    assert s.transport.aborted


def test_connection_lost_during_login() -> None:
    s = Scripted()
    s.start()
    s.lose()
    err = error_of(s.proto.ready, MySQLError)
    assert err.code == 2013 and "during login" in err.message


def test_tls_handshake_failure_is_2026() -> None:
    s = Scripted(tls=object())
    s.send(s.greeting())
    s.received()  # the SSLRequest; then the TLS handshake fails
    s.lose()
    err = error_of(s.proto.ready, MySQLError)
    assert err.code == 2026 and "SSL connection error" in err.message


def test_no_command_runs_before_login() -> None:
    s = Scripted()
    d = s.proto.submit(_ping_handler())
    assert s.transport.value() == b""  # type: ignore[no-untyped-call]  # Twisted: unannotated
    s.login()
    assert s.received()[0].__class__.__name__ == "ComPing"
    s.send(Ok())
    assert result_of(d) is not None


def _ping_handler() -> Any:
    from vtwist.protocols.mysql.client_commands import SimpleHandler
    from vtwist.protocols.mysql.messages import ComPing

    return SimpleHandler(ComPing())


# -- connect() -------------------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects protocols to TLSStringTransports, fails, or never answers."""

    _host = "db1"
    _port = 3306

    def __init__(self, mode: str = "connect") -> None:
        self.mode = mode
        self.protocols: list[MySQLClientProtocol] = []
        self.cancelled = False

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        if self.mode == "refuse":
            return fail(ConnectionRefusedError("Connection refused"))  # type: ignore[no-untyped-call]  # Twisted: unannotated
        if self.mode == "hang":

            def cancel(d: Deferred[Any]) -> None:
                self.cancelled = True

            return Deferred(cancel)
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", self._port))
        assert isinstance(proto, MySQLClientProtocol)
        proto.makeConnection(TLSStringTransport())
        self.protocols.append(proto)
        d: Deferred[Any] = Deferred()
        d.callback(proto)
        return d


def test_connect_logs_in() -> None:
    clock = Clock()
    ep = FakeEndpoint()
    d = connect(clock, ep, "app", PASSWORD, "shop", attrs={})
    [proto] = ep.protocols
    server = Scripted()  # only for its greeting and server Connection
    server.proto = proto
    server.transport = proto.transport  # type: ignore[assignment]
    server.login()
    client = result_of(d)
    assert isinstance(client, MySQLClient) and client.connection_id == 42
    assert not clock.getDelayedCalls()  # the connect timer is gone
    q = client.query("SELECT 1")
    [cmd] = server.received()
    assert cmd == ComQuery(b"SELECT 1")
    server.send(Ok())
    assert result_of(q).affected_rows == 0


def test_connect_refused_is_2003_with_the_address() -> None:
    err = error_of(connect(Clock(), FakeEndpoint("refuse"), "app", PASSWORD), MySQLError)
    assert err.code == 2003 and "'db1:3306'" in err.message and "refused" in err.message


def test_connect_timeout_is_2003() -> None:
    clock = Clock()
    ep = FakeEndpoint("hang")
    d = connect(clock, ep, "app", PASSWORD, connect_timeout=2.0)
    clock.advance(1.9)
    assert not d.called
    clock.advance(0.2)
    err = error_of(d, MySQLError)
    assert err.code == 2003 and "timed out after 2.0s" in err.message and ep.cancelled


def test_login_timeout_is_2003_and_drops_the_socket() -> None:
    clock = Clock()
    ep = FakeEndpoint()
    d = connect(clock, ep, "app", PASSWORD, connect_timeout=3.0)
    [proto] = ep.protocols
    clock.advance(3.0)  # mysqld never sent its greeting
    err = error_of(d, MySQLError)
    assert err.code == 2003 and "no complete login" in err.message
    assert proto.transport.aborted  # type: ignore[union-attr]


def test_cancelling_connect() -> None:
    from twisted.internet.defer import CancelledError

    ep = FakeEndpoint("hang")
    d = connect(Clock(), ep, "app", PASSWORD)
    d.cancel()
    error_of(d, CancelledError)


def test_endpoint_targets() -> None:
    clock = MemoryReactorClock()  # type: ignore[no-untyped-call]  # Twisted: unannotated
    ep, address, unix = _endpoint(clock, ("127.0.0.1", 3306), 5)
    assert (type(ep).__name__, address, unix) == ("TCP4ClientEndpoint", "127.0.0.1:3306", False)
    ep, address, unix = _endpoint(clock, ("::1", 3306), 5)
    assert (type(ep).__name__, address, unix) == ("TCP6ClientEndpoint", "[::1]:3306", False)
    ep, address, unix = _endpoint(clock, ("db.example", 3306), 5)
    assert type(ep).__name__ == "HostnameEndpoint"
    ep, address, unix = _endpoint(clock, "/run/mysqld/mysqld.sock", 5)
    assert (type(ep).__name__, address, unix) == (
        "UNIXClientEndpoint",
        "/run/mysqld/mysqld.sock",
        True,
    )
    with pytest.raises(TypeError):
        _endpoint(clock, 3306, 5)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="charset"):
        connect(Clock(), FakeEndpoint(), "app", charset="klingon")
    with pytest.raises(ValueError, match="positive"):
        connect(Clock(), FakeEndpoint(), "app", read_timeout=0)
