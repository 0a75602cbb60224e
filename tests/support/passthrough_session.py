"""The passthrough's session: one client session relayed to its own backend connection.

``PassthroughSession`` is the ``IQueryHandler`` of ``tests.support.passthrough`` (see that
module's docstring for what is relayed and how); ``Relay`` streams one backend reply into
the server's result sink and is the sink's push producer; ``FieldListCommand`` and
``StatisticsCommand`` run the backend commands vtwist's client has no method for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import REPLY_ENDS_COMMAND, IQueryHandler, IResultSink, ReplyEndsCommand
from vtwist.protocols.mysql.client import MySQLClient, PreparedStatement, StreamEvent
from vtwist.protocols.mysql.client_commands import CommandHandler, SimpleHandler
from vtwist.protocols.mysql.commands import ComFieldList, ComSetOption, ComStatistics
from vtwist.protocols.mysql.constants import ColumnType, ServerStatus, SetOption
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.events import Column, ResultSetDone, ResultSetStart, Row
from vtwist.protocols.mysql.messages import ColumnDefinition41, Ok, StatisticsResponse
from vtwist.protocols.mysql.server_types import ClientInfo, PrepareInfo, Statement
from vtwist.protocols.mysql.values import encode_text_row
from vtwist.protocols.mysql.wire import Message

if TYPE_CHECKING:
    from tests.support.passthrough import PassthroughFactory

__all__ = [
    "VERSION_COMMENT",
    "FieldListCommand",
    "PassthroughSession",
    "Relay",
    "StatisticsCommand",
]

T = TypeVar("T")

VERSION_COMMENT: Final = b"vtwist passthrough"
_VERSION_COMMENT_SQL: Final = b"select @@version_comment limit 1"
# Flags that describe the session (for the OKs the server writes itself); the others
# (more results, cursor, index usage...) belong to one reply.
_SESSION_STATUS: Final = int(
    ServerStatus.IN_TRANS
    | ServerStatus.AUTOCOMMIT
    | ServerStatus.NO_BACKSLASH_ESCAPES
    | ServerStatus.IN_TRANS_READONLY
)


def _is_version_comment(sql: bytes) -> bool:
    return len(sql) < 80 and b" ".join(sql.lower().split()) == _VERSION_COMMENT_SQL


# -- backend commands the vtwist client has no method for (``client.protocol.submit``) ---------


class FieldListCommand(CommandHandler):
    """COM_FIELD_LIST: fires with the column definitions (with their defaults)."""

    def __init__(self, table: str, wildcard: str) -> None:
        self.message = ComFieldList(table, wildcard)
        self.columns: list[ColumnDefinition41] = []

    def first(self) -> Message:
        return self.message

    def event(self, ev: Message) -> Message | list[Message] | None:
        if isinstance(ev, Column):
            self.columns.append(ev.definition)
        return super().event(ev)

    def result(self) -> list[ColumnDefinition41]:
        return self.columns


class StatisticsCommand(CommandHandler):
    """COM_STATISTICS: fires with the status line."""

    text = ""

    def first(self) -> Message:
        return ComStatistics()

    def event(self, ev: Message) -> Message | list[Message] | None:
        if isinstance(ev, StatisticsResponse):
            self.text = ev.text
        return super().event(ev)

    def result(self) -> str:
        return self.text


def _shielded(d: Deferred[T], on_cancel: Callable[[], None]) -> Deferred[T]:
    """A Deferred following ``d`` whose cancellation calls ``on_cancel`` instead of
    cancelling ``d``: cancelling a backend command that mysqld is running would close the
    backend connection, so the command runs to its end and its outcome is dropped."""
    out: Deferred[T] = Deferred(lambda _: on_cancel())

    def done(result: object) -> None:
        if out.called:
            return None  # cancelled meanwhile: drop the outcome (and any failure)
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(cast(T, result))
        return None

    d.addBoth(done)
    return out


@implementer(IPushProducer)
class Relay:
    """Hands one backend reply to a server ``IResultSink``, event by event.

    Called with each ``StreamEvent`` (it is the client's stream consumer) and registered
    on the sink as its push producer: pausing it pauses reading from the backend socket.
    ``stopProducing`` (the sink aborted: client gone, cursor closed) drops the rest of the
    reply but keeps reading it; for a cursor the session also keeps the backend command
    from being cancelled (``_shielded``), so the backend connection stays usable.
    """

    # The state starts as these class defaults (a relay is made per query).
    dropping = False
    paused = False
    _columns: list[ColumnDefinition41]  # set by ResultSetStart, which comes first
    _expected = 0

    def __init__(
        self, sink: IResultSink, client: MySQLClient, binary: bool, factory: PassthroughFactory
    ) -> None:
        self.sink = sink
        self.client = client
        self.factory = factory
        self.binary = binary

    def __call__(self, ev: StreamEvent) -> None:
        """One backend event."""
        if self.dropping:
            return
        t = type(ev)
        if t is Row:
            self.sink.row(ev.payload)  # type: ignore[union-attr]
        elif t is Column:
            self._columns.append(ev.definition)  # type: ignore[union-attr]
            if len(self._columns) == self._expected:
                columns, self._columns = self._columns, []
                self.sink.start(columns, binary=self.binary)
        elif t is ResultSetStart:
            self._expected = ev.column_count  # type: ignore[union-attr]
            self._columns = []
        elif t is ResultSetDone:
            assert isinstance(ev, ResultSetDone)
            self.sink.done(ev.status, ev.warnings, ev.affected_rows, ev.last_insert_id, ev.info)
        elif t is Ok:
            assert isinstance(ev, Ok)
            self.sink.ok(ev.affected_rows, ev.last_insert_id, ev.status, ev.warnings, ev.info)

    def result_set(
        self, columns: Sequence[ColumnDefinition41], rows: list[bytes], done: ResultSetDone
    ) -> None:
        """A whole backend result set (what ``__call__`` does with its events)."""
        if not self.dropping:
            self.sink.result_set(
                columns,
                rows,
                done.status,
                done.warnings,
                done.affected_rows,
                done.last_insert_id,
                done.info,
                self.binary,
            )

    def finished(self, result: object) -> None:
        """The completion function of the relayed command: a failure goes to
        ``sink.fail`` (a MySQLError with the backend's code, anything else as 1105)."""
        if isinstance(result, Failure):
            self.sink.fail(result)

    def _transport(self) -> IPushProducer | None:
        proto = self.client.protocol
        if proto.transport is None or not proto.connected:
            return None
        return IPushProducer(proto.transport)

    def pauseProducing(self) -> None:
        """The client is congested (or the cursor buffer is full): stop reading mysqld."""
        if not self.paused:
            self.paused = True
            self.factory.pauses += 1
            producer = self._transport()
            if producer is not None:
                producer.pauseProducing()

    def resumeProducing(self) -> None:
        """Read from mysqld again."""
        if self.paused:
            self.paused = False
            producer = self._transport()
            if producer is not None:
                producer.resumeProducing()

    def stopProducing(self) -> None:
        """The reply was aborted: drop the rest (still read, to keep the connection)."""
        self.dropping = True
        self.resumeProducing()


@implementer(IQueryHandler)
class PassthroughSession:
    """One client session relayed to its own backend connection (module docstring)."""

    def __init__(self, factory: PassthroughFactory, info: ClientInfo, client: MySQLClient) -> None:
        self.factory = factory
        self.info = info
        self.client = client
        self._login_db: str | None = info.database or None
        self._cursor_relay: Relay | None = None  # a cursor's backend result still running

    def status(self) -> int:
        """The backend's session flags (autocommit, in transaction...)."""
        return self.client.status_flags & _SESSION_STATUS

    def _end_cursor(self) -> None:
        """The backend is needed by another command: close a cursor still streaming."""
        relay, self._cursor_relay = self._cursor_relay, None
        if relay is None or relay.dropping:
            return
        if not relay.sink.closed:
            relay.sink.error(
                MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    "the passthrough closed this cursor because another command needed the "
                    "backend connection before every row was fetched; fetch all rows of a "
                    "cursor before running other statements",
                    "HY000",
                )
            )
        relay.stopProducing()

    def _relay(
        self, sink: IResultSink, binary: bool, run: Callable[..., None], *args: Any
    ) -> ReplyEndsCommand:
        """``run(*args, relay, done)`` (a streaming client call with a completion function),
        relayed into ``sink``; the command is over when the reply is (every query's path:
        no Deferred)."""
        if self._cursor_relay is not None:
            self._end_cursor()
        relay = Relay(sink, self.client, binary, self.factory)
        sink.register_producer(relay)
        # A failed command ends the reply through the sink: a MySQLError with the backend's
        # code and SQLSTATE, anything else as ERR 1105 (logged). An aborted reply (client
        # gone) stops the relay, which drops the rest; the backend connection closes with
        # the session.
        run(*args, relay, relay.finished, summary=False)
        return REPLY_ENDS_COMMAND

    def _relay_cursor(
        self, sink: IResultSink, stmt: PreparedStatement, params: Sequence[object]
    ) -> Deferred[None]:
        """An execute streamed into a cursor's sink (the backend stays busy until the last
        row was read: a later command closes the cursor, see ``_end_cursor``)."""
        if self._cursor_relay is not None:
            self._end_cursor()
        relay = Relay(sink, self.client, True, self.factory)
        sink.register_producer(relay)
        self._cursor_relay = relay
        d = self.client.stream_execute(stmt, params, relay)

        def ended(result: object) -> Failure | None:
            if self._cursor_relay is relay:
                self._cursor_relay = None
            if isinstance(result, Failure):
                if isinstance(result.value, MySQLError):
                    if not sink.closed:
                        sink.error(result.value)  # the backend's code and SQLSTATE
                    return None
                return result
            return None

        # A cursor closed before its last row aborts the sink, which cancels this Deferred:
        # the backend connection must survive that (the rest is dropped).
        return _shielded(d, relay.stopProducing).addBoth(ended)

    def query(self, sql: bytes, sink: IResultSink) -> Deferred[None] | ReplyEndsCommand:
        """COM_QUERY, streamed from the backend (or ``@@version_comment`` answered here)."""
        if _is_version_comment(sql):
            column = ColumnDefinition41(
                "@@version_comment", ColumnType.VAR_STRING, 45, 4 * len(VERSION_COMMENT)
            )
            sink.start([column])
            sink.row(encode_text_row([VERSION_COMMENT]))
            sink.done(self.status())
            return succeed(None)
        return self._relay(sink, False, self.client.stream_query_notify, sql)

    def init_db(self, schema: str) -> Deferred[None]:
        """COM_INIT_DB (the login database is already the backend's: nothing to do)."""
        login_db, self._login_db = self._login_db, None
        if schema == login_db:
            return succeed(None)
        self._end_cursor()
        return self.client.init_db(schema)

    def field_list(self, table: str, wildcard: str) -> Deferred[Sequence[ColumnDefinition41]]:
        """COM_FIELD_LIST, asked of the backend."""
        self._end_cursor()
        return self.client.protocol.submit(FieldListCommand(table, wildcard))

    def prepare(self, sql: bytes) -> Deferred[PrepareInfo]:
        """COM_STMT_PREPARE on the backend; its statement rides in ``PrepareInfo.state``."""
        self._end_cursor()
        client = self.client

        def prepared(stmt: PreparedStatement) -> PrepareInfo:
            return PrepareInfo(
                len(stmt.params), stmt.params, stmt.columns, stmt.warnings, state=(client, stmt)
            )

        return client.prepare(sql).addCallback(prepared)

    def execute(
        self, statement: Statement, params: Sequence[object], sink: IResultSink, cursor: bool
    ) -> Deferred[None] | ReplyEndsCommand:
        """COM_STMT_EXECUTE of the backend statement; binary rows relayed raw."""
        state: tuple[MySQLClient, PreparedStatement] = statement.prepared.state  # type: ignore[assignment]
        client, stmt = state
        if client is not self.client:  # pragma: no cover - the server forgets them first
            return fail(
                MySQLError(
                    ErrorCode.UNKNOWN_STMT_HANDLER,
                    f"Unknown prepared statement handler ({statement.statement_id}) given to "
                    "mysqld_stmt_execute; prepare it again",
                )
            )
        if cursor:
            return self._relay_cursor(sink, stmt, params)
        return self._relay(sink, True, client.stream_execute_notify, stmt, params)

    def close_statement(self, statement: Statement) -> Deferred[None]:
        """COM_STMT_CLOSE of the backend statement (no reply)."""
        client, stmt = cast(tuple[MySQLClient, PreparedStatement], statement.prepared.state)
        if client is self.client and not client.is_broken:
            return client.close_statement(stmt)
        return succeed(None)

    def reset_connection(self) -> Deferred[None]:
        """COM_RESET_CONNECTION on the backend (it drops its statements too)."""
        self._end_cursor()
        return self.client.reset_connection()

    def change_user(self, info: ClientInfo) -> Deferred[None]:
        """COM_CHANGE_USER: a fresh backend connection for the new user's session."""
        self._end_cursor()

        def connected(new: MySQLClient) -> None:
            self.factory.logins.append(info)
            old, self.client, self.info = self.client, new, info
            self._login_db = None
            self.factory.retire(old)

        return self.factory.connect_backend(info).addCallback(connected)

    def ping(self) -> Deferred[None]:
        """COM_PING, relayed."""
        self._end_cursor()
        return self.client.ping()

    def statistics(self) -> Deferred[str]:
        """COM_STATISTICS, relayed."""
        self._end_cursor()
        return self.client.protocol.submit(StatisticsCommand())

    def set_multi_statements(self, on: bool) -> Deferred[None]:
        """COM_SET_OPTION, relayed (the server itself enforces the option on its side)."""
        self._end_cursor()
        option = SetOption.MULTI_STATEMENTS_ON if on else SetOption.MULTI_STATEMENTS_OFF
        d = self.client.protocol.submit(SimpleHandler(ComSetOption(int(option))))
        return d.addCallback(lambda _: None)

    def close(self) -> None:
        """The client left: close the backend connection."""
        self.factory.session_closed(self)
