"""``IResultSink.result_set``: a whole result set in one call reaches the client exactly as
``start`` + ``rows`` + ``done`` would, for queries, executes (binary rows given or
converted from text), multi-results, a congested client and a cursor."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from twisted.internet.defer import Deferred, succeed

from tests.unit.server.harness import AUTOCOMMIT, CAPS, NO_EOF_CAPS, Client, Harness, text_row
from tests.unit.server.test_statements import READ_ONLY, T, col, execute, fetch, prepare
from vtwist.interfaces import IResultSink
from vtwist.protocols.mysql.constants import ServerStatus
from vtwist.protocols.mysql.messages import ColumnDefinition41, ComQuery, Err
from vtwist.protocols.mysql.values import encode_binary_row

MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
COLS = [col("i", T.LONGLONG), col("s", T.VAR_STRING, charset=45)]
TEXT_ROWS = [text_row(b"1", b"one"), text_row(b"-2", None), text_row(b"3", b"x" * 300)]
BINARY_ROWS = [encode_binary_row([1, b"one"], [(T.LONGLONG, False), (T.VAR_STRING, False)])]

Answer = Callable[[IResultSink], object]


def whole(columns: list[ColumnDefinition41], rows: list[bytes], binary: bool = False) -> Answer:
    def answer(sink: IResultSink) -> object:
        sink.result_set(columns, rows, AUTOCOMMIT | MORE, 1, 0, 0, b"", binary)
        sink.result_set(columns[:1], [], AUTOCOMMIT, 2, 5, 6, b"info", binary)
        return succeed(None)

    return answer


def in_three(columns: list[ColumnDefinition41], rows: list[bytes], binary: bool = False) -> Answer:
    def answer(sink: IResultSink) -> object:
        sink.start(columns, binary)
        sink.rows(rows)
        sink.done(AUTOCOMMIT | MORE, 1, 0, 0, b"")
        sink.start(columns[:1], binary)
        sink.done(AUTOCOMMIT, 2, 5, 6, b"info")
        return succeed(None)

    return answer


def reply(caps: int, answer: Answer, execute_it: bool, congested: bool = False) -> bytes:
    c = Harness().connect().logged_in(caps=caps)
    c.handler.scripts[b"SELECT x"] = answer
    if execute_it:
        stmt = prepare(c, b"SELECT x")
        c.raw_out()
        if congested:
            c.proto.pauseProducing()
        c.send(execute(stmt.statement_id, []))
    else:
        if congested:
            c.proto.pauseProducing()
        c.send(ComQuery(b"SELECT x"))
    (sink,) = c.handler.sinks
    assert sink.closed
    return c.raw_out()


@pytest.mark.parametrize("caps", [CAPS, NO_EOF_CAPS], ids=["deprecate", "classic"])
@pytest.mark.parametrize("congested", [False, True])
@pytest.mark.parametrize(
    ("execute_it", "rows", "binary"),
    [
        (False, TEXT_ROWS, False),
        (True, BINARY_ROWS, True),
        (True, TEXT_ROWS, False),
        (True, [TEXT_ROWS[0], text_row(b"not a number", b"s")], False),
    ],
    ids=["query", "execute-binary", "execute-converted", "execute-unconvertible"],
)
def test_result_set_writes_what_start_rows_done_write(
    caps: int, congested: bool, execute_it: bool, rows: list[bytes], binary: bool
) -> None:
    got = reply(caps, whole(COLS, rows, binary), execute_it, congested)
    assert got == reply(caps, in_three(COLS, rows, binary), execute_it, congested)
    assert got  # and something was written


def test_result_set_checks_what_start_checks() -> None:
    c = Harness().connect().logged_in()
    c.handler.scripts[b"SELECT x"] = whole(COLS, BINARY_ROWS, True)  # binary on a query
    c.send(ComQuery(b"SELECT x"))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1105


def test_result_set_after_the_reply_ended_is_ignored() -> None:
    c = Harness().connect().logged_in()
    sinks: list[IResultSink] = []

    def late(sink: IResultSink) -> object:
        sinks.append(sink)
        sink.ok(0, 0, AUTOCOMMIT)
        return Deferred()

    c.handler.scripts[b"SELECT x"] = late
    c.send(ComQuery(b"SELECT x"))
    c.events()
    sinks[0].result_set(COLS, TEXT_ROWS, AUTOCOMMIT)  # closed: ignored, no exception
    assert c.raw_out() == b""


def _cursor(c: Client, answer: Answer) -> int:
    c.handler.scripts[b"SELECT x"] = answer
    stmt = prepare(c, b"SELECT x")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    c.events()
    return stmt.statement_id


def test_a_cursor_buffers_a_result_set_given_whole() -> None:
    rows = [text_row(str(i).encode()) for i in range(3)]
    one_col = [col("i", T.LONGLONG)]

    def once(sink: IResultSink) -> object:
        sink.result_set(one_col, rows, AUTOCOMMIT)
        return succeed(None)

    c = Harness().connect().logged_in()
    stmt_id = _cursor(c, once)
    got = fetch(c, stmt_id, 5)
    assert got[:3] == [0, 1, 2]
