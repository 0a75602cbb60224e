"""Local misuse, remote garbage, and a fuzzer: next_event only ever raises RemoteProtocolError."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.protocols.pair import AUTOCOMMIT, SCRAMBLE, ConnectionPair
from vtwist.protocols.mysql.connection import CLOSED, NEED_DATA, PAUSED, Connection, Role, State
from vtwist.protocols.mysql.constants import SERVER_CAPABILITIES, ColumnType
from vtwist.protocols.mysql.errors import (
    ErrorCode,
    LocalProtocolError,
    PacketTooLargeError,
    RemoteProtocolError,
)
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    AuthData,
    ColumnDefinition41,
    ComPing,
    ComQuery,
    ComStmtPrepare,
    Err,
    HandshakeV10,
    Ok,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.packets import encode_packets
from vtwist.protocols.mysql.wire import Message

COL = ColumnDefinition41("a", ColumnType.LONG)


def logged_in(deprecate_eof: bool = True, max_packet_size: int = 1 << 24) -> ConnectionPair:
    pair = ConnectionPair(deprecate_eof, max_packet_size=max_packet_size)
    pair.login()
    return pair


def packet(payload: bytes, seq: int) -> bytes:
    return encode_packets(payload, seq)[0]


# -- remote errors ---------------------------------------------------------------------------


def test_out_of_sequence_command() -> None:
    pair = logged_in()
    pair.server.receive_data(packet(b"\x0e", 1))
    with pytest.raises(RemoteProtocolError) as e:
        pair.server.next_event()
    assert e.value.error_code == ErrorCode.NET_PACKETS_OUT_OF_ORDER
    assert pair.server.state is State.ERROR and pair.server.error is e.value
    with pytest.raises(RemoteProtocolError) as again:
        pair.server.next_event()
    assert again.value is e.value
    # The server may still tell the client, once.
    assert pair.server.send(Err(1156, "Got packets out of order"))[4] == 0xFF
    assert cast(State, pair.server.state) is State.CLOSED  # cast: mypy keeps the narrowing above
    with pytest.raises(LocalProtocolError):
        pair.server.send(Err(1156, "again"))


def test_out_of_sequence_reply() -> None:
    pair = logged_in()
    pair.client_sends(ComPing())
    pair.client.receive_data(packet(Ok().encode(), 2))
    with pytest.raises(RemoteProtocolError) as e:
        pair.client.next_event()
    assert e.value.error_code == ErrorCode.NET_PACKETS_OUT_OF_ORDER
    with pytest.raises(LocalProtocolError):
        pair.client.send(ComPing())


@pytest.mark.parametrize(
    "payload",
    [b"\x00", b"\x00\x01", b"\xff\x01", b"\x03abc"],
    ids=["ok-truncated", "ok-no-status", "err-truncated", "column-count-then-junk"],
)
def test_truncated_reply(payload: bytes) -> None:
    pair = logged_in(deprecate_eof=False)
    pair.client_sends(ComPing())
    pair.client.receive_data(packet(payload, 1))
    with pytest.raises(RemoteProtocolError) as e:
        pair.client.next_event()
    assert e.value.error_code == ErrorCode.MALFORMED_PACKET


def test_truncated_column_definition() -> None:
    pair = logged_in()
    pair.client_sends(ComQuery(b"SELECT 1"))
    pair.client.receive_data(packet(b"\x01", 1) + packet(b"\x03def\x02", 2))
    assert pair.client.next_event() == ResultSetStart(1)
    with pytest.raises(RemoteProtocolError):
        pair.client.next_event()


def test_oversized_packet_refused_before_it_arrives() -> None:
    pair = logged_in(max_packet_size=1000)
    pair.server.receive_data(b"\xd0\x07\x00\x00\x03SEL")  # declares 2000 bytes
    with pytest.raises(PacketTooLargeError) as e:
        pair.server.next_event()
    assert e.value.error_code == ErrorCode.NET_PACKET_TOO_LARGE
    pair.server.receive_data(b"x" * 5000)  # ignored once failed: nothing is buffered
    assert pair.server._reader.buffered <= 8


def test_garbage_instead_of_greeting() -> None:
    client = Connection(Role.CLIENT)
    client.receive_data(packet(b"\x05not a greeting", 0))
    with pytest.raises(RemoteProtocolError) as e:
        client.next_event()
    assert e.value.error_code == ErrorCode.HANDSHAKE_ERROR
    # Unframed garbage ("HTTP" declares a 5 MiB packet) stops at the size limit.
    client = Connection(Role.CLIENT, max_packet_size=4096)
    client.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_garbage_auth_reply() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    pair.client_sends(pair.response())
    pair.client.receive_data(packet(b"\x07whatever", 2))
    with pytest.raises(RemoteProtocolError):
        pair.client.next_event()


def test_garbage_in_rows() -> None:
    pair = logged_in(deprecate_eof=False)
    pair.client_sends(ComQuery(b"SELECT a"))
    pair.client.receive_data(pair.server.send_many([ResultSetStart(1), Column(COL)]))
    pair.client.receive_data(packet(b"\x01", 3))  # not the EOF that must follow the columns
    assert pair.client.next_event() == ResultSetStart(1)
    assert isinstance(pair.client.next_event(), Column)
    with pytest.raises(RemoteProtocolError):
        pair.client.next_event()


def test_auth_data_out_of_turn() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    pair.client_sends(pair.response())
    pair.server.receive_data(packet(b"unrequested", 2))
    # Not the client's turn: the bytes wait (the server must answer the login first).
    assert pair.server.next_event() is NEED_DATA


def test_flood_while_not_the_peers_turn_is_bounded() -> None:
    pair = logged_in(max_packet_size=1000)
    pair.client_sends(ComQuery(b"SELECT SLEEP(1)"))
    pair.server.receive_data(b"z" * 600)
    assert pair.server.next_event() is NEED_DATA
    pair.server.receive_data(b"z" * 600)
    with pytest.raises(RemoteProtocolError):
        pair.server.next_event()


def test_pipelined_command_waits_for_the_reply() -> None:
    pair = logged_in()
    data = pair.client.send(ComQuery(b"SELECT 1"))
    pair.server.receive_data(data + packet(b"\x0e", 0))
    assert pair.server.next_event() == ComQuery(b"SELECT 1")
    assert pair.server.next_event() is NEED_DATA
    pair.server.send(Ok())
    assert pair.server.next_event() == ComPing()


def test_client_close_during_login_is_just_closed_for_a_server() -> None:
    server = Connection(Role.SERVER)
    server.send(HandshakeV10("8.0", 1, SCRAMBLE, int(SERVER_CAPABILITIES)))
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def test_server_close_during_handshake_is_lost_connection() -> None:
    client = Connection(Role.CLIENT)
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as e:
        client.next_event()
    assert e.value.error_code == ErrorCode.CR_SERVER_LOST


# -- local errors ----------------------------------------------------------------------------

LOCAL_MISUSE: list[tuple[str, Callable[[ConnectionPair], Message], str]] = [
    ("ok-while-idle", lambda p: Ok(), "server"),
    ("row-before-result-set", lambda p: Row(b"\x01x"), "server"),
    ("greeting-twice", lambda p: p.greeting(), "server"),
    ("client-sends-row", lambda p: Row(b"\x01x"), "client"),
    ("server-sends-command", lambda p: ComPing(), "server"),
    ("auth-data-after-login", lambda p: AuthData(b"x"), "client"),
    ("prepare-ok-while-idle", lambda p: StmtPrepareOK(1, 0, 0), "server"),
]


@pytest.mark.parametrize("name,make,side", LOCAL_MISUSE, ids=[m[0] for m in LOCAL_MISUSE])
def test_sending_what_is_not_due(
    name: str, make: Callable[[ConnectionPair], Message], side: str
) -> None:
    pair = logged_in()
    conn = pair.server if side == "server" else pair.client
    before = conn.state
    with pytest.raises(LocalProtocolError):
        conn.send(make(pair))
    assert conn.state is before
    # Nothing was consumed: the conversation still works.
    pair.client_sends(ComPing())
    assert pair.server_sends(Ok(status=AUTOCOMMIT)) == [Ok(status=AUTOCOMMIT)]


def test_command_while_a_reply_is_due() -> None:
    pair = logged_in()
    pair.client_sends(ComQuery(b"SELECT 1"))
    with pytest.raises(LocalProtocolError):
        pair.client.send(ComPing())
    with pytest.raises(LocalProtocolError):
        pair.server.send(ResultSetStart(0))
    with pytest.raises(LocalProtocolError):
        pair.server.send(ResultSetDone())
    assert pair.server.state is State.RESULT


def test_auth_data_before_the_server_asks() -> None:
    pair = ConnectionPair()
    pair.server_sends(pair.greeting())
    pair.client_sends(pair.response())
    with pytest.raises(LocalProtocolError):
        pair.client.send(AuthData(b"x"))


def test_too_many_columns_and_prepare_definitions() -> None:
    pair = logged_in()
    pair.client_sends(ComStmtPrepare(b"SELECT 1"))
    pair.server_sends(StmtPrepareOK(1, 1, 0), Column(COL))
    with pytest.raises(LocalProtocolError):
        pair.server.send(Column(COL))


def test_misc_local_misuse() -> None:
    pair = logged_in()
    with pytest.raises(LocalProtocolError):
        pair.server.start_tls_done()
    pair.server.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        pair.server.receive_data(b"more")


# -- fuzzing ---------------------------------------------------------------------------------


def setups() -> list[Callable[[], tuple[ConnectionPair, Connection]]]:
    def greeting_client() -> tuple[ConnectionPair, Connection]:
        pair = ConnectionPair()
        return pair, pair.client

    def login_server() -> tuple[ConnectionPair, Connection]:
        pair = ConnectionPair()
        pair.server_sends(pair.greeting())
        return pair, pair.server

    def auth_client() -> tuple[ConnectionPair, Connection]:
        pair = ConnectionPair()
        pair.server_sends(pair.greeting())
        pair.client_sends(pair.response())
        return pair, pair.client

    def idle_server() -> tuple[ConnectionPair, Connection]:
        pair = logged_in()
        return pair, pair.server

    def result_client(deprecate: bool) -> Callable[[], tuple[ConnectionPair, Connection]]:
        def make() -> tuple[ConnectionPair, Connection]:
            pair = logged_in(deprecate)
            pair.client_sends(ComQuery(b"SELECT 1"))
            return pair, pair.client

        return make

    def prepare_client() -> tuple[ConnectionPair, Connection]:
        pair = logged_in(False)
        pair.client_sends(ComStmtPrepare(b"SELECT ?"))
        return pair, pair.client

    return [
        greeting_client,
        login_server,
        auth_client,
        idle_server,
        result_client(True),
        result_client(False),
        prepare_client,
    ]


SETUPS = setups()
PAYLOAD_HEADS = st.sampled_from(
    [
        b"",
        b"\x00",
        b"\x01",
        b"\x02",
        b"\x03def",
        b"\x0a",
        b"\x17",
        b"\xfb",
        b"\xfc",
        b"\xfe",
        b"\xff",
    ]
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.integers(0, len(SETUPS) - 1),
    st.lists(st.tuples(PAYLOAD_HEADS, st.binary(max_size=40)), max_size=8),
    st.booleans(),
    st.binary(max_size=20),
)
def test_fuzz_next_event_only_raises_remote_errors(
    which: int, payloads: list[tuple[bytes, bytes]], well_sequenced: bool, tail: bytes
) -> None:
    _pair, conn = SETUPS[which]()
    seq = conn._seq
    data = b""
    for head, body in payloads:
        framed, nxt = encode_packets(head + body, seq)
        data += framed
        seq = nxt if well_sequenced else (seq + 7) & 0xFF
    conn.receive_data(data + tail)
    for _ in range(len(payloads) + 5):
        try:
            ev = conn.next_event()
        except RemoteProtocolError:
            assert conn.state is State.ERROR
            return
        if ev in (NEED_DATA, CLOSED, PAUSED):
            return
    raise AssertionError("next_event kept producing events from a bounded input")
