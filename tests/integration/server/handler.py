"""A tiny query handler for driving the MySQL server with real clients (no MariaDB).

It answers what the clients send at connect (``SET ...``, ``SELECT @@...``), ``SELECT 1``,
``select @@version_comment limit 1``, echoes other ``SELECT``s, fails on demand, streams a
big result through a push producer (``select big N``), and runs prepared statements by
echoing their parameters (text rows, which the server sends as binary rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from zope.interface import implementer

from vtwist.interfaces import IQueryHandler, IQueryHandlerFactory, IResultSink
from vtwist.protocols.mysql.constants import ColumnType, ServerStatus
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.literals import count_placeholders
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.server_types import ClientInfo, PrepareInfo, Statement
from vtwist.protocols.mysql.splitter import split_statements
from vtwist.protocols.mysql.values import encode_text_row, text_value

AUTOCOMMIT = int(ServerStatus.AUTOCOMMIT)
IN_TRANS = int(ServerStatus.IN_TRANS)
MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
VERSION_COMMENT = b"vtwist test handler"


def column(name: str, ctype: int = ColumnType.VAR_STRING, charset: int = 45) -> ColumnDefinition41:
    return ColumnDefinition41(name, ctype, charset, 1024)


def one_row(sink: IResultSink, name: str, value: bytes | None, status: int) -> None:
    sink.start([column(name)])
    sink.row(encode_text_row([value]))
    sink.done(status)


@implementer(IPushProducer)
class RowStream:
    """Writes ``count`` rows into a sink a chunk per reactor turn, honouring pauses."""

    def __init__(self, sink: IResultSink, clock: IReactorTime, count: int, status: int) -> None:
        self.sink = sink
        self.clock = clock
        self.left = count
        self.status = status
        self.paused = False
        self.pauses = 0
        self.stopped = False
        self.done: Deferred[None] = Deferred()
        self._scheduled = False
        sink.register_producer(self)
        sink.start([column("n", ColumnType.LONGLONG, 63), column("pad")])
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and not self.paused and not self.stopped:
            self._scheduled = True
            self.clock.callLater(0, self._step)

    def _step(self) -> None:
        self._scheduled = False
        if self.paused or self.stopped or self.left == 0:
            return
        chunk = min(self.left, 200)
        base = self.left
        self.sink.rows(encode_text_row([str(base - i).encode(), b"x" * 1000]) for i in range(chunk))
        self.left -= chunk
        if self.left == 0:
            self.sink.done(self.status)
            self.done.callback(None)
        else:
            self._schedule()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self.stopped = True


@implementer(IQueryHandler)
class EchoHandler:
    """One session of the test handler."""

    def __init__(self, factory: EchoHandlerFactory, info: ClientInfo) -> None:
        self.factory = factory
        self.info = info
        self.autocommit = True
        self.in_trans = False

    def status(self) -> int:
        return (AUTOCOMMIT if self.autocommit else 0) | (IN_TRANS if self.in_trans else 0)

    def query(self, sql: bytes, sink: IResultSink) -> Deferred[None]:
        self.factory.queries.append(sql)
        # The server only lets several statements through when multi-statements are on.
        statements = split_statements(sql) or [sql]
        for i, statement in enumerate(statements):
            more = MORE if i < len(statements) - 1 else 0
            try:
                d = self._one(statement.strip(), sink, more)
            except MySQLError as e:
                sink.error(e)
                break
            if d is not None:
                return d
        return succeed(None)

    def _one(self, text: bytes, sink: IResultSink, more: int) -> Deferred[None] | None:
        low = text.lower()
        status = self.status() | more
        if low.startswith(b"set autocommit") or low.startswith(b"set @@session.autocommit"):
            self.autocommit = low.endswith((b"1", b"on", b"true"))
            sink.ok(status=self.status() | more)
        elif low.startswith(b"set ") or low.startswith(b"use "):
            sink.ok(status=status)
        elif low in (b"begin", b"start transaction"):
            self.in_trans = True
            sink.ok(status=self.status() | more)
        elif low in (b"commit", b"rollback"):
            self.in_trans = False
            sink.ok(status=self.status() | more)
        elif low == b"select 1":
            sink.start([column("1", ColumnType.LONGLONG, 63)])
            sink.row(encode_text_row([b"1"]))
            sink.done(status)
        elif low == b"select @@version_comment limit 1":
            one_row(sink, "@@version_comment", VERSION_COMMENT, status)
        elif low.startswith(b"select @@") or low.startswith(b"show "):
            one_row(sink, text.decode(errors="replace"), b"1", status)
        elif low == b"select database()":
            one_row(sink, "DATABASE()", self.info.database.encode() or None, status)
        elif low == b"select connection_id()":
            one_row(sink, "CONNECTION_ID()", str(self.info.connection_id).encode(), status)
        elif low == b"select current_user()":
            one_row(sink, "CURRENT_USER()", f"{self.info.user}@%".encode(), status)
        elif low.startswith(b"select error"):
            raise MySQLError(1146, "Table 'test.error' doesn't exist", "42S02")
        elif low.startswith(b"select big "):
            stream = RowStream(sink, self.factory.clock, int(low.split()[-1]), status)
            self.factory.streams.append(stream)
            return stream.done
        else:
            one_row(sink, "echo", text, status)
        return None

    def init_db(self, schema: str) -> Deferred[None]:
        if schema == "nosuch":
            raise MySQLError(1049, f"Unknown database '{schema}'")
        self.info = replace(self.info, database=schema)
        return succeed(None)

    def field_list(self, table: str, wildcard: str) -> Deferred[Sequence[ColumnDefinition41]]:
        return succeed([column("a"), column("b")])

    def prepare(self, sql: bytes) -> Deferred[PrepareInfo]:
        n = count_placeholders(sql)
        columns = [column(f"p{i}") for i in range(n)] or [column("echo")]
        return succeed(PrepareInfo(n, columns=columns))

    def execute(
        self, statement: Statement, params: Sequence[object], sink: IResultSink, cursor: bool
    ) -> Deferred[None]:
        self.factory.executes.append((statement.sql, list(params), cursor))
        if statement.sql.lower().startswith(b"insert"):
            sink.ok(1, 7, self.status())
            return succeed(None)
        values: list[Any] = [text_value(p) for p in params] or [statement.sql]
        sink.start([column(f"p{i}") for i in range(len(values))])
        sink.row(encode_text_row(values))
        sink.done(self.status())
        return succeed(None)

    def close_statement(self, statement: Statement) -> Deferred[None]:
        return succeed(None)

    def reset_connection(self) -> Deferred[None]:
        self.factory.resets += 1
        self.autocommit, self.in_trans = True, False
        return succeed(None)

    def change_user(self, info: ClientInfo) -> Deferred[None]:
        self.info = info
        self.factory.changed_users.append(info.user)
        return succeed(None)

    def ping(self) -> Deferred[None]:
        return succeed(None)

    def statistics(self) -> Deferred[str]:
        return succeed("Uptime: 1  Threads: 1  Questions: 1  Slow queries: 0")

    def set_multi_statements(self, on: bool) -> Deferred[None]:
        return succeed(None)

    def close(self) -> None:
        self.factory.closed += 1


@implementer(IQueryHandlerFactory)
class EchoHandlerFactory:
    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.queries: list[bytes] = []
        self.executes: list[tuple[bytes, list[object], bool]] = []
        self.streams: list[RowStream] = []
        self.sessions: list[EchoHandler] = []
        self.changed_users: list[str] = []
        self.resets = 0
        self.closed = 0

    def open_session(self, info: ClientInfo) -> EchoHandler:
        handler = EchoHandler(self, info)
        self.sessions.append(handler)
        return handler
