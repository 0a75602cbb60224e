"""Greeting, TLS upgrade and authentication of MySQLServerProtocol (no sockets)."""

from __future__ import annotations

import pytest

from tests.unit.auth.exchange import PyMySQLClient
from tests.unit.server.harness import (
    AUTOCOMMIT,
    CAPS,
    PASSWORD,
    FakeTLSCreator,
    FakeTLSTransport,
    Harness,
)
from vtwist.protocols.mysql.auth import ClientAuth, RsaKey, generate_rsa_key
from vtwist.protocols.mysql.connection import CLOSED
from vtwist.protocols.mysql.constants import (
    CACHING_SHA2_PASSWORD,
    CLEAR_PASSWORD,
    NATIVE_PASSWORD,
    Capability,
)
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    ComChangeUser,
    ComQuery,
    Err,
    HandshakeResponse41,
    Ok,
    SSLRequest,
)
from vtwist.protocols.mysql.packets import encode_packets
from vtwist.protocols.mysql.server import DEFAULT_SERVER_VERSION, MySQLServerFactory

SSL = int(Capability.SSL)


@pytest.fixture(scope="module")
def rsa_key() -> RsaKey:
    return generate_rsa_key()


def test_greeting() -> None:
    h = Harness(server_version="8.0.36-vtwist")
    first, second = h.connect().greeting(), h.connect().greeting()
    assert first.server_version == "8.0.36-vtwist"
    assert (first.connection_id, second.connection_id) == (1, 2)
    assert len(first.auth_plugin_data) == 20 and b"\0" not in first.auth_plugin_data
    assert first.auth_plugin_data != second.auth_plugin_data
    assert first.auth_plugin_name == NATIVE_PASSWORD
    assert first.status == AUTOCOMMIT
    caps = first.capabilities
    assert caps & Capability.LONG_PASSWORD and caps & Capability.DEPRECATE_EOF
    assert not caps & (Capability.SSL | Capability.COMPRESS | Capability.SESSION_TRACK)
    assert not caps & Capability.QUERY_ATTRIBUTES
    assert Harness(tls=FakeTLSCreator()).connect().greeting().capabilities & SSL
    assert DEFAULT_SERVER_VERSION[0].isdigit()


def test_factory_validates_its_options() -> None:
    h = Harness()
    with pytest.raises(ValueError, match="require_secure_transport"):
        MySQLServerFactory(h.handlers, h.users, clock=h.clock, require_secure_transport=True)
    with pytest.raises(ValueError, match="max_packet_size"):
        MySQLServerFactory(h.handlers, h.users, clock=h.clock, max_packet_size=0)
    with pytest.raises(ValueError, match="digit"):
        MySQLServerFactory(h.handlers, h.users, clock=h.clock, server_version="vtwist")


def test_native_login_and_client_info() -> None:
    h = Harness()
    c = h.connect(host="10.1.2.3")
    ok = c.login(attrs={"_client_name": "test"})
    assert ok == Ok(status=AUTOCOMMIT)
    info = c.handler.info
    assert (info.user, info.host, info.port, info.database) == ("app", "10.1.2.3", 40001, "")
    assert info.connection_id == c.proto.connection_id == 1
    assert info.attrs == {"_client_name": "test"}
    assert info.auth_plugin == NATIVE_PASSWORD and not info.secure
    assert info.capabilities & Capability.DEPRECATE_EOF and info.multi_statements
    assert h.factory.connections == {1: c.proto}
    assert ("auth", True, NATIVE_PASSWORD) in h.metrics.events


@pytest.mark.parametrize(("user", "password"), [("app", "wrong"), ("nobody", PASSWORD)])
def test_wrong_password_and_unknown_user_get_the_same_error(user: str, password: str) -> None:
    h = Harness()
    failures: list[tuple[str, str]] = []
    h.factory.on_auth_failure = lambda host, user: failures.append((host, user))  # type: ignore[method-assign]
    c = h.connect()
    err = c.login(user=user, password=password)
    assert err == Err(1045, f"Access denied for user '{user}'@'127.0.0.1' (using password: YES)")
    assert err.sqlstate == "28000"
    assert c.transport.disconnecting
    assert failures == [("127.0.0.1", user)]
    assert not h.handlers.handlers


def test_empty_password() -> None:
    h = Harness()
    assert isinstance(h.connect().login(user="nopw", password=""), Ok)
    err = h.connect().login(user="nopw", password="x")
    assert isinstance(err, Err) and err.code == 1045


def test_auth_switch_when_the_client_starts_with_another_plugin() -> None:
    h = Harness()
    c = h.connect()
    greeting = c.greeting()
    auth = ClientAuth(PASSWORD, greeting.auth_plugin_data, CACHING_SHA2_PASSWORD, False)
    c.send(HandshakeResponse41(CAPS, 1 << 24, 45, "app", auth.initial_response(), "", auth.plugin))
    evs = c.events()
    assert isinstance(evs[0], AuthSwitchRequest) and evs[0].plugin_name == NATIVE_PASSWORD
    assert evs[0].data == greeting.auth_plugin_data + b"\0"
    c.send(AuthData(auth.feed_switch(evs[0].plugin_name, evs[0].data)))
    assert c.events() == [Ok(status=AUTOCOMMIT)]


def test_caching_sha2_without_tls_or_rsa_is_refused() -> None:
    c = Harness().connect()
    err = c.login(user="sha2")
    assert isinstance(err, Err) and err.code == 3159


@pytest.mark.parametrize("client", ["vtwist", "pymysql"])
def test_caching_sha2_full_auth_by_rsa_then_fast_path(rsa_key: RsaKey, client: str) -> None:
    h = Harness(rsa_key=rsa_key)
    c = h.connect()
    greeting = c.greeting()
    auth: ClientAuth | PyMySQLClient
    if client == "vtwist":
        auth = ClientAuth(PASSWORD, greeting.auth_plugin_data, CACHING_SHA2_PASSWORD, False)
    else:
        auth = PyMySQLClient(
            PASSWORD.encode(), greeting.auth_plugin_data, CACHING_SHA2_PASSWORD, False
        )
    resp = HandshakeResponse41(
        CAPS, 1 << 24, 45, "sha2", auth.initial_response(), "", CACHING_SHA2_PASSWORD
    )
    c.send(resp)
    assert c.events() == [AuthMoreData(b"\x04")]  # perform full authentication
    c.send(AuthData(b"\x02"))  # request the public key
    (key,) = c.events()
    assert isinstance(key, AuthMoreData) and key.data == rsa_key.public_pem
    reply = auth.feed_more_data(b"\x04") if client == "vtwist" else None
    if client == "vtwist":
        assert reply == b"\x02"
    else:
        assert auth.feed_more_data(b"\x04") == b"\x02"
    encrypted = auth.feed_more_data(key.data)
    assert encrypted is not None
    c.send(AuthData(encrypted))
    assert c.events() == [Ok(status=AUTOCOMMIT)]
    # The cache now serves the fast path.
    c2 = h.connect()
    g2 = c2.greeting()
    auth2 = ClientAuth(PASSWORD, g2.auth_plugin_data, CACHING_SHA2_PASSWORD, False)
    c2.send(
        HandshakeResponse41(
            CAPS, 1 << 24, 45, "sha2", auth2.initial_response(), "", CACHING_SHA2_PASSWORD
        )
    )
    assert c2.events() == [AuthMoreData(b"\x03"), Ok(status=AUTOCOMMIT)]


def test_ssl_request_hands_the_bytes_after_it_to_the_tls_layer() -> None:
    creator = FakeTLSCreator()
    h = Harness(tls=creator)
    c = h.connect(tls_transport=True)
    c.greeting()
    hello = b"\x16\x03\x01\x00\x05hello"
    c.send_raw(c.conn.send(SSLRequest(CAPS | SSL)) + hello)
    transport = c.transport
    assert isinstance(transport, FakeTLSTransport)
    assert transport.tls_started == [creator]
    assert transport.tls_layer.received == [hello]
    assert c.proto.conn.tls
    assert transport.nodelay  # set on every accepted TCP connection


def test_clear_password_and_sha2_full_auth_over_tls() -> None:
    h = Harness(tls=FakeTLSCreator())
    ok = h.connect(tls_transport=True).login(user="clear", ssl_request=True)
    assert ok == Ok(status=AUTOCOMMIT)
    assert h.handlers.handlers[-1].info.secure
    assert h.handlers.handlers[-1].info.auth_plugin == CLEAR_PASSWORD
    assert isinstance(h.connect(tls_transport=True).login(user="sha2", ssl_request=True), Ok)
    err = h.connect().login(user="clear")
    assert isinstance(err, Err) and err.code == 3159


def test_require_secure_transport() -> None:
    h = Harness(tls=FakeTLSCreator(), require_secure_transport=True)
    c = h.connect()
    assert c.login() == Err(
        3159,
        "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
        "HY000",
    )
    assert c.transport.disconnecting
    assert isinstance(h.connect(tls_transport=True).login(ssl_request=True), Ok)


def test_ssl_request_without_tls_configured_gets_an_error() -> None:
    h = Harness()
    c = h.connect()
    c.greeting()
    packet, _ = encode_packets(SSLRequest(CAPS | SSL).encode(), 1)
    c.send_raw(packet + b"\x16\x03\x01")
    data = c.raw_out()
    assert data[4] == 0xFF  # ERR
    err = Err.decode(data[4:])
    assert err.code == 1043
    assert c.transport.disconnecting


def test_login_with_a_database() -> None:
    h = Harness()
    c = h.connect()
    assert isinstance(c.login(database="shop"), Ok)
    assert c.handler.info.database == "shop"
    assert ("init_db", "shop") in c.handler.calls
    c2 = h.connect()
    err = c2.login(database="nosuch")
    assert isinstance(err, Err) and err.code == 1049
    assert c2.transport.disconnecting


def test_open_session_refusal_is_sent_and_closes() -> None:
    h = Harness()
    h.handlers.refuse = MySQLError(1203, "User app already has more than 'max_user_connections'")
    c = h.connect()
    err = c.login()
    assert isinstance(err, Err) and err.code == 1203
    assert c.transport.disconnecting


def test_max_connections_and_accept_client_refuse_before_the_greeting() -> None:
    h = Harness(max_connections=1)
    h.connect().greeting()
    c = h.connect()
    (err, closed) = c.events()
    assert isinstance(err, Err) and err.code == 1040 and closed is CLOSED
    assert c.transport.disconnecting
    assert ("rejected", "max_connections") in h.metrics.events

    h2 = Harness()
    h2.factory.accept_client = lambda host: MySQLError(1129, f"Host '{host}' is blocked")  # type: ignore[method-assign]
    (err2, _) = h2.connect().events()
    assert isinstance(err2, Err) and err2.code == 1129


def test_connection_table_and_metrics_follow_the_connection() -> None:
    h = Harness()
    c = h.connect().logged_in()
    assert list(h.factory.connections) == [1]
    c.lose()
    assert h.factory.connections == {}
    assert c.handler.calls[-1] == ("close",) and c.handler.closed == 1
    assert h.metrics.events[0] == ("opened",) and h.metrics.events[-1] == ("closed",)


def test_change_user_success_and_failure() -> None:
    h = Harness()
    c = h.connect().logged_in()
    scramble = c.proto.scramble
    auth = ClientAuth(PASSWORD, scramble, NATIVE_PASSWORD, False)
    c.send(ComChangeUser("nopw", b"", "other", 45, NATIVE_PASSWORD))
    assert c.events() == [Ok(status=AUTOCOMMIT)]
    assert c.handler.calls[-1] == ("change_user", "nopw", "other")
    assert c.proto.info is not None and c.proto.info.user == "nopw"
    # A wrong password: ERR, and the session goes on as before.
    c.send(ComChangeUser("app", b"\x01" * 20, "", 45, NATIVE_PASSWORD))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1045
    assert not c.transport.disconnecting
    c.send(ComQuery(b"SELECT 1"))
    assert len(c.events()) == 4
    # Back to app with the right password (answered for the greeting's scramble).
    c.send(ComChangeUser("app", auth.initial_response(), "", 45, NATIVE_PASSWORD))
    assert c.events() == [Ok(status=AUTOCOMMIT)]


def test_handshake_timeout_closes() -> None:
    h = Harness(handshake_timeout=5)
    c = h.connect()
    c.greeting()
    h.clock.advance(4.9)
    assert not c.transport.disconnecting
    h.clock.advance(0.2)
    assert c.transport.disconnecting
    # A logged-in client is not affected by it.
    c2 = h.connect().logged_in()
    h.clock.advance(10)
    assert not c2.transport.disconnecting
