"""``REPLY_ENDS_COMMAND``: a handler that completes its reply (or calls ``sink.fail``) later,
without a Deferred; the command is over when the reply is, and nothing is dispatched before.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import CancelledError, succeed

from tests.unit.server.harness import AUTOCOMMIT, COL_ONE, Client, Harness, text_row
from tests.unit.server.test_statements import READ_ONLY, execute, prepare
from vtwist.interfaces import REPLY_ENDS_COMMAND, IResultSink
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import ComPing, ComQuery, Err, Ok


def _later(c: Client, sql: bytes = b"SELECT later") -> list[IResultSink]:
    """Script ``sql`` to return REPLY_ENDS_COMMAND and keep its sink for the test."""
    sinks: list[IResultSink] = []

    def answer(sink: IResultSink) -> object:
        sinks.append(sink)
        return REPLY_ENDS_COMMAND

    c.handler.scripts[sql] = answer
    return sinks


def test_the_command_ends_with_its_reply_and_not_before() -> None:
    c = Harness().connect().logged_in()
    sinks = _later(c)
    c.send_pipelined(ComQuery(b"SELECT later"), ComQuery(b"SELECT 1"))
    (sink,) = sinks
    assert [call[1] for call in c.handler.calls] == [b"SELECT later"]
    assert c.events() == []  # nothing written, the second query not dispatched
    sink.result_set([COL_ONE], [text_row(b"7")], AUTOCOMMIT)
    replies = c.pipelined_replies()
    assert [type(e) for e in replies[0]] == [ResultSetStart, Column, Row, ResultSetDone]
    assert [type(e) for e in replies[1]] == [ResultSetStart, Column, Row, ResultSetDone]
    assert [call[1] for call in c.handler.calls] == [b"SELECT later", b"SELECT 1"]


def test_an_execute_may_end_with_its_reply() -> None:
    c = Harness().connect().logged_in()
    sinks = _later(c)
    stmt = prepare(c, b"SELECT later")
    c.send(execute(stmt.statement_id, []))
    (sink,) = sinks
    assert c.events() == []
    sink.ok(1, 0, AUTOCOMMIT)
    (ok,) = c.events()
    assert isinstance(ok, Ok) and ok.affected_rows == 1
    assert c.query(b"SELECT 1")  # the session goes on


def test_a_reply_completed_before_returning_ends_the_command_at_once() -> None:
    c = Harness().connect().logged_in()

    def answer(sink: IResultSink) -> object:
        sink.ok(0, 0, AUTOCOMMIT)
        return REPLY_ENDS_COMMAND

    c.handler.scripts[b"SELECT now"] = answer
    (ok,) = c.query(b"SELECT now")
    assert isinstance(ok, Ok)
    assert c.query(b"SELECT 1")


@pytest.mark.parametrize(
    ("reason", "code"),
    [(MySQLError(1146, "Table 't' doesn't exist", "42S02"), 1146), (RuntimeError("bug"), 1105)],
)
def test_fail_ends_the_reply_with_an_err(reason: BaseException, code: int) -> None:
    c = Harness().connect().logged_in()
    sinks = _later(c)
    c.send(ComQuery(b"SELECT later"))
    (sink,) = sinks
    sink.fail(reason)
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == code
    assert c.query(b"SELECT 1")


def test_fail_mid_result_ends_it_with_an_err() -> None:
    c = Harness().connect().logged_in()
    sinks = _later(c)
    c.send(ComQuery(b"SELECT later"))
    (sink,) = sinks
    sink.start([COL_ONE])
    sink.row(text_row(b"1"))
    sink.fail(MySQLError(2013, "Lost connection to MySQL server during query", "HY000"))
    events = c.events()
    assert [type(e) for e in events] == [ResultSetStart, Column, Row, Err]
    assert isinstance(events[-1], Err) and events[-1].code == 2013


def test_fail_after_the_reply_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    c = Harness().connect().logged_in()
    sinks = _later(c)
    c.send(ComQuery(b"SELECT later"))
    (sink,) = sinks
    sink.ok(0, 0, AUTOCOMMIT)
    c.events()
    sink.fail(RuntimeError("late"))  # logged, nothing written, no exception
    sink.fail(CancelledError())  # nothing at all
    assert c.raw_out() == b""
    assert c.query(b"SELECT 1")


def test_a_lost_client_stops_the_producer_and_the_session_is_over() -> None:
    c = Harness().connect().logged_in()
    sinks = _later(c)
    stopped: list[str] = []

    class Producer:
        def pauseProducing(self) -> None:
            stopped.append("pause")

        def resumeProducing(self) -> None:
            stopped.append("resume")

        def stopProducing(self) -> None:
            stopped.append("stop")

    c.send(ComQuery(b"SELECT later"))
    (sink,) = sinks
    sink.register_producer(Producer())  # type: ignore[arg-type]
    c.lose()
    assert stopped == ["stop"] and sink.closed
    sink.result_set([COL_ONE], [text_row(b"1")], AUTOCOMMIT)  # ignored: the reply is closed
    sink.fail(RuntimeError("late"))  # logged only


def test_not_allowed_for_a_cursor_or_another_command() -> None:
    c = Harness().connect().logged_in()
    _later(c)
    stmt = prepare(c, b"SELECT later")
    c.send(execute(stmt.statement_id, [], READ_ONLY))
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1105 and "REPLY_ENDS_COMMAND" in err.message
    c.handler.ping = lambda: REPLY_ENDS_COMMAND  # type: ignore[method-assign,assignment,return-value]
    c.send(ComPing())
    (err,) = c.events()
    assert isinstance(err, Err) and err.code == 1105
    c.handler.ping = lambda: succeed(None)  # type: ignore[method-assign]
    assert c.query(b"SELECT 1")
