"""One authenticated client session of the MySQL server: what each command does.

``ServerSession`` sits between the protocol (``server.MySQLServerProtocol``: bytes,
handshake, auth, queueing) and the gate's ``IQueryHandler``. It owns the per-session state
the wire protocol needs: prepared statements (ids allocated here), open cursors, and the
multi-statement option. ``run(command)`` handles one command and finishes when its reply
went out and the handler is done with it (the protocol then dispatches the next one).

Handler failures become ERR packets: ``MySQLError`` as it is, anything else ERR 1105
(logged); the session goes on. Statement and cursor errors use mysqld's codes (1243
unknown statement, 1421 no open cursor, 1461 too many statements, 1210 bad arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final, Protocol

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.interfaces import REPLY_ENDS_COMMAND, IQueryHandler
from vtwist.protocols.mysql.commands import (
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
    UnknownCommand,
)
from vtwist.protocols.mysql.constants import CursorType, ServerStatus, SetOption
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, RemoteProtocolError
from vtwist.protocols.mysql.events import Column, ResultSetDone
from vtwist.protocols.mysql.messages import Err, Ok, StatisticsResponse, StmtPrepareOK
from vtwist.protocols.mysql.server_cursor import CursorSink
from vtwist.protocols.mysql.server_sink import (
    Flow,
    Output,
    ResultSink,
    SinkLimits,
    as_deferred,
    call_handler,
    internal_error,
    to_mysql_error,
)
from vtwist.protocols.mysql.server_types import ClientInfo, PrepareInfo, Statement
from vtwist.protocols.mysql.splitter import multi_statement_error_text, second_statement
from vtwist.protocols.mysql.values import decode_execute_params
from vtwist.protocols.mysql.wire import Message

__all__ = ["ServerSession", "SessionIO"]

log = Logger()

_AUTOCOMMIT: Final = int(ServerStatus.AUTOCOMMIT)
_NO_BACKSLASH: Final = int(ServerStatus.NO_BACKSLASH_ESCAPES)
_READ_ONLY: Final = int(CursorType.READ_ONLY)
_MAX_STMT_ID: Final = 0xFFFFFFFF
ER_STMT_HAS_NO_OPEN_CURSOR: Final = 1421
ER_MAX_PREPARED_STMT_COUNT_REACHED: Final = 1461


class SessionIO(Output, Protocol):
    """What a session needs from its protocol, beyond a sink's ``Output``."""

    def set_active_flow(self, flow: Flow | None) -> None:
        """Route client-socket congestion to ``flow`` (the reply being written)."""

    def command_done(self) -> None:
        """The command ``run`` returned None for is over: dispatch the next one."""


def _log_failure(failure: Failure, what: str) -> None:
    if not isinstance(failure.value, CancelledError):
        log.failure("{what}", failure, what=what)


def _unknown_statement(stmt_id: int, where: str) -> MySQLError:
    return MySQLError(
        ErrorCode.UNKNOWN_STMT_HANDLER,
        f"Unknown prepared statement handler ({stmt_id}) given to {where}",
    )


def _bad_arguments(what: str) -> MySQLError:
    return MySQLError(
        ErrorCode.WRONG_ARGUMENTS, f"Incorrect arguments to mysqld_stmt_execute: {what}"
    )


class ServerSession:
    """The commands of one authenticated session (see the module docstring)."""

    def __init__(
        self,
        handler: IQueryHandler,
        info: ClientInfo,
        io: SessionIO,
        limits: SinkLimits,
        *,
        max_prepared_statements: int,
        param_string_encoding: str | None,
    ) -> None:
        self.handler = handler
        self.info = info
        self.io = io
        self.limits = limits
        self.max_prepared_statements = max_prepared_statements
        self.param_string_encoding = param_string_encoding
        self.multi_statements = info.multi_statements
        self.statements: dict[int, Statement] = {}
        self.cursors: dict[int, CursorSink] = {}
        self._next_id = 1
        self._current: ResultSink | CursorSink | None = None
        self._closed = False
        self._handler_closed = False
        self._commands: dict[type[Message], Callable[[Any], Any]] = {
            ComQuery: self._query,
            ComStmtExecute: self._execute_cursor,  # (``run`` handles executes without one)
            ComStmtFetch: self._fetch,
            ComStmtPrepare: self._prepare,
            ComStmtClose: self._stmt_close,
            ComStmtReset: self._stmt_reset,
            ComStmtSendLongData: self._long_data,
            ComPing: self._ping,
            ComInitDB: self._init_db,
            ComFieldList: self._field_list,
            ComSetOption: self._set_option,
            ComStatistics: self._statistics,
            ComResetConnection: self._reset_connection,
        }

    # -- helpers ---------------------------------------------------------------------------

    def status(self) -> int:
        """The handler's status flags (AUTOCOMMIT if it fails to say)."""
        try:
            return int(self.handler.status())
        except Exception:
            log.failure("query handler status() failed")
            return _AUTOCOMMIT

    def _send(self, *events: Message) -> None:
        self.io.send_events(events)

    def _ok(self) -> None:
        self._send(Ok(status=self.status()))

    def _err(self, error: MySQLError) -> None:
        self._send(Err.from_error(error))

    async def _call(
        self, what: str, fn: Callable[..., Any], *args: Any
    ) -> tuple[Any, MySQLError | None]:
        """Call a handler method: ``(result, None)`` or ``(None, the error to send)``."""
        try:
            return await call_handler(fn, *args), None
        except CancelledError:
            raise
        except Exception as e:
            return None, to_mysql_error(e, what)

    async def _simple(self, what: str, fn: Callable[..., Any], *args: Any) -> bool:
        """A command answered OK or ERR; whether it succeeded."""
        _, err = await self._call(what, fn, *args)
        if err is not None:
            self._err(err)
            return False
        self._ok()
        return True

    def _with_sink(
        self, sink: ResultSink | CursorSink, fn: Callable[..., Any], *args: Any
    ) -> Deferred[None]:
        """Call the handler with ``sink``; fires once the reply went out (the hot path of
        every query: plain callbacks, no coroutine)."""
        self._current = sink
        self.io.set_active_flow(sink.flow)

        def ended(result: object) -> object:
            self._current = None
            self.io.set_active_flow(None)
            return result

        try:
            sink.attach(call_handler(fn, *args))
        except BaseException:
            ended(None)
            raise
        return sink.when_replied().addBoth(ended)

    def _reply_with(self, sink: ResultSink, fn: Callable[..., Any], *args: Any) -> None:
        """``_with_sink`` for ``run``'s hot path: the protocol learns that the command is
        over from ``io.command_done`` (no Deferred, no callbacks). A handler returning
        ``REPLY_ENDS_COMMAND`` is done when its reply is."""
        self._current = sink
        io = self.io
        io.set_active_flow(sink.flow)
        sink.on_replied = self._replied
        try:
            try:
                result = fn(*args)
            except Exception:
                result = fail()
            if result is REPLY_ENDS_COMMAND:
                sink.attach_reply_end()
            else:
                sink.attach(as_deferred(result, fn))
        except BaseException:
            sink.on_replied = None
            self._current = None
            io.set_active_flow(None)
            raise

    def _replied(self) -> None:
        self._current = None
        io = self.io
        io.set_active_flow(None)
        io.command_done()

    # -- dispatch --------------------------------------------------------------------------

    def run(self, command: Message) -> Deferred[None] | None:
        """Handle one command; fires when the next one may be dispatched. None: the
        session calls ``io.command_done()`` then (maybe before returning)."""
        t = type(command)
        # Queries and executes skip the coroutine machinery: it costs more than the rest of
        # the session's work for a one-row result.
        try:
            if t is ComQuery:
                return self._query(command)  # type: ignore[arg-type]
            if t is ComStmtExecute and not command.flags & _READ_ONLY:  # type: ignore[attr-defined]
                return self._execute(command)  # type: ignore[arg-type]
        except Exception:
            return fail()
        return Deferred.fromCoroutine(self._run(command))

    async def _run(self, command: Message) -> None:
        fn = self._commands.get(type(command))
        if fn is None:
            code = command.code if isinstance(command, UnknownCommand) else -1
            log.debug("unknown command {code}", code=code)
            self._err(MySQLError(ErrorCode.UNKNOWN_COM, "Unknown command"))
            return
        await fn(command)

    # -- text protocol ---------------------------------------------------------------------

    def _query(self, ev: ComQuery) -> Deferred[None] | None:
        sql = ev.sql
        if not self.multi_statements:
            offset = second_statement(sql, bool(self.status() & _NO_BACKSLASH))
            if offset is not None:
                self._err(
                    MySQLError(ErrorCode.PARSE_ERROR, multi_statement_error_text(sql, offset))
                )
                return succeed(None)
        if not sql.strip():
            self._err(MySQLError(ErrorCode.EMPTY_QUERY, "Query was empty"))
            return succeed(None)
        sink = ResultSink(self.io, self.limits, binary=False)
        self._reply_with(sink, self.handler.query, sql, sink)
        return None

    async def _ping(self, ev: ComPing) -> None:
        await self._simple("ping", self.handler.ping)

    async def _init_db(self, ev: ComInitDB) -> None:
        if await self._simple("init_db", self.handler.init_db, ev.database):
            self.info = replace(self.info, database=ev.database)

    async def init_db_at_login(self, database: str) -> MySQLError | None:
        """The database of the login packet; the error to refuse the login with, if any."""
        _, err = await self._call("init_db", self.handler.init_db, database)
        return err

    async def _field_list(self, ev: ComFieldList) -> None:
        columns, err = await self._call(
            "field_list", self.handler.field_list, ev.table, ev.wildcard
        )
        if err is not None:
            self._err(err)
            return
        # COM_FIELD_LIST definitions carry a default value; clients read it.
        events: list[Message] = [
            Column(c if c.has_default else replace(c, has_default=True, default_value=None))
            for c in columns
        ]
        events.append(ResultSetDone(self.status()))
        self._send(*events)

    async def _set_option(self, ev: ComSetOption) -> None:
        if ev.option not in (SetOption.MULTI_STATEMENTS_ON, SetOption.MULTI_STATEMENTS_OFF):
            self._err(MySQLError(ErrorCode.UNKNOWN_COM, "Unknown command"))
            return
        on = ev.option == SetOption.MULTI_STATEMENTS_ON
        if await self._simple("set_multi_statements", self.handler.set_multi_statements, on):
            self.multi_statements = on

    async def _statistics(self, ev: ComStatistics) -> None:
        text, err = await self._call("statistics", self.handler.statistics)
        if err is not None:
            self._err(err)
        else:
            self._send(StatisticsResponse(str(text)))

    async def _reset_connection(self, ev: ComResetConnection) -> None:
        self._forget_statements()
        self.multi_statements = self.info.multi_statements
        await self._simple("reset_connection", self.handler.reset_connection)

    async def change_user(self, info: ClientInfo) -> None:
        """COM_CHANGE_USER authenticated ``info.user``: reset, tell the handler, answer."""
        self._forget_statements()
        self.multi_statements = info.multi_statements
        if await self._simple("change_user", self.handler.change_user, info):
            self.info = info

    # -- prepared statements ---------------------------------------------------------------

    def _allocate_id(self) -> int:
        while True:
            stmt_id = self._next_id
            self._next_id = stmt_id % _MAX_STMT_ID + 1
            if stmt_id not in self.statements:
                return stmt_id

    async def _prepare(self, ev: ComStmtPrepare) -> None:
        if len(self.statements) >= self.max_prepared_statements:
            self._err(
                MySQLError(
                    ER_MAX_PREPARED_STMT_COUNT_REACHED,
                    "Can't create more than max_prepared_stmt_count statements (current "
                    f"value: {self.max_prepared_statements}); close statements you no "
                    "longer use",
                    "42000",
                )
            )
            return
        info, err = await self._call("prepare", self.handler.prepare, ev.sql)
        if err is None and not isinstance(info, PrepareInfo):
            log.error("query handler prepare() returned {value!r}", value=info)
            err = internal_error("the query handler's prepare() did not return a PrepareInfo")
        if err is not None:
            self._err(err)
            return
        stmt = Statement(self._allocate_id(), ev.sql, info)
        self.statements[stmt.statement_id] = stmt
        events: list[Message] = [
            StmtPrepareOK(stmt.statement_id, len(info.columns), info.param_count, info.warnings)
        ]
        events += [Column(p) for p in info.param_definitions()]
        events += [Column(c) for c in info.columns]
        self._send(*events)

    def _params(self, stmt: Statement, ev: ComStmtExecute) -> list[object]:
        n = stmt.prepared.param_count  # (``stmt.param_count`` without the property call)
        if n == 0:
            return []
        if len(ev.param_types) != n:
            raise _bad_arguments(
                f"statement {stmt.statement_id} has {n} parameters but no types were bound; "
                "the first execute must send them (new-params-bound = 1)"
            )
        try:
            return decode_execute_params(
                n,
                ev.null_bitmap,
                ev.param_types,
                ev.values,
                ev.long_data,
                string_encoding=self.param_string_encoding,
            )
        except RemoteProtocolError as e:
            raise _bad_arguments(str(e)) from None

    def _execute(self, ev: ComStmtExecute) -> Deferred[None] | None:
        """COM_STMT_EXECUTE without a cursor (``_execute_cursor`` opens one)."""
        stmt = self._execute_statement(ev)
        if stmt is None:
            return succeed(None)
        try:
            params = self._params(stmt, ev)
        except MySQLError as e:
            self._err(e)
            return succeed(None)
        sink = ResultSink(self.io, self.limits, binary=True)
        self._reply_with(sink, self.handler.execute, stmt, params, sink, False)
        return None

    def _execute_statement(self, ev: ComStmtExecute) -> Statement | None:
        stmt = self.statements.get(ev.stmt_id)
        if stmt is None:
            self._err(_unknown_statement(ev.stmt_id, "mysqld_stmt_execute"))
            return None
        if self.cursors:
            self._close_cursor(stmt.statement_id)  # a new execute closes the previous cursor
        return stmt

    async def _execute_cursor(self, ev: ComStmtExecute) -> None:
        stmt = self._execute_statement(ev)
        if stmt is None:
            return
        try:
            params = self._params(stmt, ev)
        except MySQLError as e:
            self._err(e)
            return
        cursor = CursorSink(self.io, self.limits)
        await self._with_sink(cursor, self.handler.execute, stmt, params, cursor, True)
        if cursor.opened and not self._closed:
            self.cursors[stmt.statement_id] = cursor

    async def _fetch(self, ev: ComStmtFetch) -> None:
        if ev.stmt_id not in self.statements:
            self._err(_unknown_statement(ev.stmt_id, "mysqld_stmt_fetch"))
            return
        cursor = self.cursors.get(ev.stmt_id)
        if cursor is None:
            self._err(
                MySQLError(
                    ER_STMT_HAS_NO_OPEN_CURSOR,
                    f"The statement ({ev.stmt_id}) has no open cursor; execute it with "
                    "CURSOR_TYPE_READ_ONLY first",
                )
            )
            return
        self._current = cursor
        self.io.set_active_flow(cursor.flow)
        try:
            await cursor.fetch(ev.num_rows)
        finally:
            self._current = None
            self.io.set_active_flow(None)
        if cursor.exhausted:
            self.cursors.pop(ev.stmt_id, None)

    async def _stmt_reset(self, ev: ComStmtReset) -> None:
        if ev.stmt_id not in self.statements:
            self._err(_unknown_statement(ev.stmt_id, "mysqld_stmt_reset"))
            return
        self._close_cursor(ev.stmt_id)
        self._ok()

    async def _stmt_close(self, ev: ComStmtClose) -> None:
        self._close_cursor(ev.stmt_id)
        stmt = self.statements.pop(ev.stmt_id, None)
        if stmt is not None:
            # No reply: the client does not wait, so neither do we.
            d = call_handler(self.handler.close_statement, stmt)
            d.addErrback(_log_failure, "query handler close_statement failed")

    async def _long_data(self, ev: ComStmtSendLongData) -> None:
        pass  # the connection collects it; it arrives with the execute's parameters

    def _close_cursor(self, stmt_id: int) -> None:
        cursor = self.cursors.pop(stmt_id, None)
        if cursor is not None:
            cursor.abort()

    def _forget_statements(self) -> None:
        for cursor in self.cursors.values():
            cursor.abort()
        self.cursors.clear()
        self.statements.clear()

    # -- end of the session ----------------------------------------------------------------

    def abort(self) -> None:
        """The client is gone: abort the reply in progress and every cursor."""
        self._closed = True
        if self._current is not None:
            self._current.abort()
        for cursor in self.cursors.values():
            cursor.abort()
        self.cursors.clear()

    def close(self) -> None:
        """Release the handler (after ``abort``); once."""
        if self._handler_closed:
            return
        self._handler_closed = True
        close: Callable[[], object] = self.handler.close
        try:
            result = close()
        except Exception:
            log.failure("query handler close() failed")
            return
        if isinstance(result, Deferred):
            result.addErrback(_log_failure, "query handler close() failed")
