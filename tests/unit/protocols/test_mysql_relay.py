"""Reference pitfall 8: a proxy joining a DEPRECATE_EOF backend to a classic-EOF client.

The proxy's client-side Connection reads the backend; its server-side Connection writes to
the application. Events pass through unchanged; each Connection writes its own wire shape.
"""

from __future__ import annotations

import pytest

from tests.unit.protocols.pair import AUTOCOMMIT, ConnectionPair, split_packets
from vtwist.protocols.mysql.constants import ColumnType, CursorType, ServerStatus, SetOption
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import (
    ColumnDefinition41,
    ComFieldList,
    ComQuery,
    ComSetOption,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    Err,
    Ok,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.wire import Message

MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
CURSOR = int(ServerStatus.CURSOR_EXISTS)
LAST_ROW = int(ServerStatus.LAST_ROW_SENT)
COL_A = ColumnDefinition41("a", ColumnType.LONGLONG, 63, 20, 0, 0, "db", "t", "t", "a")
COL_B = ColumnDefinition41("b", ColumnType.VAR_STRING, 45, 80, 0, 0, "db", "t", "t", "b")
PARAM = ColumnDefinition41("?", ColumnType.VAR_STRING, 63)


class Relay:
    """app (frontend.client) ⇄ proxy (frontend.server | backend.client) ⇄ backend.server."""

    def __init__(self, backend_deprecate: bool) -> None:
        self.backend = ConnectionPair(deprecate_eof=backend_deprecate)
        self.frontend = ConnectionPair(deprecate_eof=not backend_deprecate)
        self.backend.login()
        self.frontend.login()

    def command(self, cmd: Message) -> None:
        """The application's command reaches the backend through the proxy unchanged."""
        at_proxy = self.frontend.client_sends(cmd)
        assert at_proxy == [cmd]
        assert self.backend.client_sends(cmd) == [cmd]

    def reply(self, *events: Message) -> bytes:
        """The backend answers; the proxy relays; the app must see the same events."""
        at_proxy = [e for e in self.backend.server_sends(*events) if isinstance(e, Message)]
        assert at_proxy == list(events)
        at_app = self.frontend.server_sends(*at_proxy)
        assert at_app == list(events)
        assert self.frontend.client.state is self.backend.client.state
        return self.frontend.last_bytes


@pytest.fixture(params=[True, False], ids=["deprecate-backend", "classic-backend"])
def relay(request: pytest.FixtureRequest) -> Relay:
    return Relay(request.param)


def shape(data: bytes) -> list[int]:
    return [p[0] for _, p in split_packets(data)]


def test_modes_differ(relay: Relay) -> None:
    assert relay.backend.client.deprecate_eof is not relay.frontend.server.deprecate_eof


def test_text_result_set(relay: Relay) -> None:
    relay.command(ComQuery(b"SELECT a, b FROM t"))
    app = relay.reply(
        ResultSetStart(2),
        Column(COL_A),
        Column(COL_B),
        Row(b"\x011\x01x"),
        Row(b"\x012\xfb"),
        ResultSetDone(AUTOCOMMIT, 1, 0, 0, b""),
    )
    classic_app = not relay.frontend.server.deprecate_eof
    assert shape(app) == ([2, 3, 3, 0xFE, 1, 1, 0xFE] if classic_app else [2, 3, 3, 1, 1, 0xFE])
    end = split_packets(app)[-1][1]
    # Warnings and status land in the right places of each shape (ProxySQL #3698).
    assert end == (b"\xfe\x01\x00\x02\x00" if classic_app else b"\xfe\0\0\x02\x00\x01\x00")


def test_column_definitions_are_relayed_byte_for_byte(relay: Relay) -> None:
    relay.command(ComQuery(b"SELECT a FROM t"))
    at_proxy = relay.backend.server_sends(ResultSetStart(1), Column(COL_A))
    (start, col) = at_proxy
    assert isinstance(start, ResultSetStart)
    assert isinstance(col, Column) and col.definition.raw == COL_A.encode()
    assert relay.frontend.server.send_many([start, col]).endswith(col.definition.raw)


def test_empty_result_and_multi_results(relay: Relay) -> None:
    relay.command(ComQuery(b"SELECT a FROM t WHERE 0; UPDATE t SET a=1; CALL p()"))
    relay.reply(ResultSetStart(1), Column(COL_A), ResultSetDone(AUTOCOMMIT | MORE))
    relay.reply(Ok(4, 0, AUTOCOMMIT | MORE, 0, b"Rows matched: 4"))
    relay.reply(ResultSetStart(1), Column(COL_A), Row(b"\x017"), ResultSetDone(AUTOCOMMIT | MORE))
    relay.reply(Ok(0, 0, AUTOCOMMIT))
    assert relay.frontend.client.state.name == "IDLE"


def test_error_mid_result(relay: Relay) -> None:
    relay.command(ComQuery(b"SELECT a FROM t"))
    relay.reply(ResultSetStart(1), Column(COL_A), Row(b"\x011"), Err(1317, "interrupted"))


def test_prepare_execute_binary_rows(relay: Relay) -> None:
    relay.command(ComStmtPrepare(b"SELECT a, b FROM t WHERE a = ?"))
    app = relay.reply(StmtPrepareOK(1, 2, 1), Column(PARAM), Column(COL_A), Column(COL_B))
    classic_app = not relay.frontend.server.deprecate_eof
    assert shape(app) == ([0, 3, 0xFE, 3, 3, 0xFE] if classic_app else [0, 3, 3, 3])
    types = ((int(ColumnType.LONGLONG), False),)
    relay.command(ComStmtExecute(1, 0, 1, b"\x00", True, types, b"\x01" + b"\0" * 7))
    relay.reply(
        ResultSetStart(2),
        Column(COL_A),
        Column(COL_B),
        Row(b"\x00\x00\x01" + b"\0" * 7 + b"\x01x"),
        ResultSetDone(AUTOCOMMIT),
    )


def test_cursor_and_fetch(relay: Relay) -> None:
    relay.command(ComStmtPrepare(b"SELECT a FROM t"))
    relay.reply(StmtPrepareOK(3, 1, 0), Column(COL_A))
    relay.command(ComStmtExecute(3, CursorType.READ_ONLY, 1))
    app = relay.reply(ResultSetStart(1), Column(COL_A), ResultSetDone(AUTOCOMMIT | CURSOR))
    assert shape(app) == [1, 3, 0xFE]  # one terminator in both shapes
    relay.command(ComStmtFetch(3, 1))
    relay.reply(Row(b"\x00\x00\x01" + b"\0" * 7), ResultSetDone(AUTOCOMMIT | CURSOR))
    relay.command(ComStmtFetch(3, 1))
    relay.reply(ResultSetDone(AUTOCOMMIT | LAST_ROW))


def test_field_list_and_set_option(relay: Relay) -> None:
    relay.command(ComFieldList("t", "%"))
    with_default = ColumnDefinition41("a", ColumnType.LONG, has_default=True, default_value=b"0")
    relay.reply(Column(with_default), ResultSetDone(AUTOCOMMIT))
    relay.command(ComSetOption(SetOption.MULTI_STATEMENTS_ON))
    app = relay.reply(Ok(status=AUTOCOMMIT))
    classic_app = not relay.frontend.server.deprecate_eof
    assert split_packets(app)[0][1] == (b"\xfe\0\0\x02\0" if classic_app else b"\xfe\0\0\x02\0\0\0")
