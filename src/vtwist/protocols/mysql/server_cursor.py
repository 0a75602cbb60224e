"""A COM_STMT_EXECUTE that opened a cursor, and the cursor itself (COM_STMT_FETCH).

``CursorSink`` is the ``IResultSink`` of an execute sent with CURSOR_TYPE_READ_ONLY. When
the handler starts a result set, the execute is answered at once with the column
definitions and an end marker carrying SERVER_STATUS_CURSOR_EXISTS; the rows (converted to
the binary protocol) then go to a bounded buffer, and the handler's producer is paused
while it is full. Each COM_STMT_FETCH(n) sends up to n rows, waiting for the handler when
the buffer runs dry, and ends with CURSOR_EXISTS, plus LAST_ROW_SENT once the result is
exhausted. An error after the cursor opened is reported by the next fetch. Closing the
cursor (statement closed or reset, re-executed, session reset, client gone) stops the
producer and cancels the handler's Deferred.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import IResultSink
from vtwist.protocols.mysql.constants import ServerStatus
from vtwist.protocols.mysql.errors import LocalProtocolError, MySQLError
from vtwist.protocols.mysql.events import ResultSetDone, Row
from vtwist.protocols.mysql.messages import ColumnDefinition41, Err, Ok
from vtwist.protocols.mysql.server_sink import (
    BUFFER_FULL,
    TRANSPORT,
    Output,
    SinkBase,
    SinkLimits,
    SinkState,
    internal_error,
    to_mysql_error,
)

__all__ = ["CursorSink"]

log = Logger()

_MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
_CURSOR = int(ServerStatus.CURSOR_EXISTS)
_LAST_ROW = int(ServerStatus.LAST_ROW_SENT)


@implementer(IResultSink)
class CursorSink(SinkBase):
    """A COM_STMT_EXECUTE that opens a cursor, and the cursor itself.

    ``when_replied`` fires when the execute's reply went out: the columns and an end
    marker with CURSOR_EXISTS (the cursor is open: ``is_open``), or an OK/ERR (no cursor).
    Rows are buffered up to ``cursor_buffer_rows`` / ``cursor_buffer_bytes``, beyond which
    the producer is paused; ``fetch`` sends them.
    """

    binary = True
    cursor = True

    def __init__(self, out: Output, limits: SinkLimits) -> None:
        super().__init__(out, limits)
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.opened = False  # the execute was answered with CURSOR_EXISTS
        self._final_status = 0
        self._error: MySQLError | None = None
        self._fetch_left = 0
        self._fetch_d: Deferred[None] | None = None
        self._overrun = 0

    @property
    def is_open(self) -> bool:
        """Whether the cursor is open (rows may still be fetched)."""
        return self._state in (SinkState.OPEN, SinkState.COMPLETE)

    @property
    def exhausted(self) -> bool:
        """Whether the cursor reported its last row (or its error): close it."""
        return self._state in (SinkState.ENDED, SinkState.ABORTED)

    # -- IResultSink -----------------------------------------------------------------------

    def ok(
        self,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        status: int = 0,
        warnings: int = 0,
        info: bytes = b"",
    ) -> None:
        """See ``IResultSink.ok``: the statement has no result set, so no cursor."""
        if self._writable(SinkState.RESULT):
            if status & _MORE:
                raise LocalProtocolError("a cursor serves one result (no MORE_RESULTS_EXISTS)")
            self.out.send_events([Ok(affected_rows, last_insert_id, status, warnings, info)])
            self._state = SinkState.ENDED
            self.flow.unregister()
            self._fire_replied()

    def start(self, columns: Sequence[ColumnDefinition41], binary: bool = False) -> None:
        """See ``IResultSink.start``: answer the execute, the cursor is open."""
        if self._writable(SinkState.RESULT):
            events = self._columns(columns, binary)
            status = self.out.session_status() & ~(_MORE | _LAST_ROW)
            events.append(ResultSetDone(status | _CURSOR))
            self._state = SinkState.OPEN
            self.opened = True
            self.out.send_events(events)
            self._fire_replied()

    def row(self, payload: bytes) -> None:
        """See ``IResultSink.row``."""
        self.rows((payload,))

    def rows(self, payloads: Iterable[bytes]) -> None:
        """See ``IResultSink.rows``: to a pending fetch, else into the buffer."""
        if not self._writable(SinkState.OPEN):
            return
        events = self._convert(payloads)
        if isinstance(events, MySQLError):
            self._fail(events)
            return
        i = 0
        if self._fetch_d is not None:
            i = min(self._fetch_left, len(events))
            if i:
                self._send_to_fetch(events[:i])
                if self._state is not SinkState.OPEN:
                    return  # the send failed the cursor
            if self._fetch_d is not None and self._fetch_left == 0:
                self._end_fetch()
        if i < len(events):
            self._buffer(events[i:])

    def result_set(
        self,
        columns: Sequence[ColumnDefinition41],
        rows: Sequence[bytes],
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
        binary: bool = False,
    ) -> None:
        """See ``IResultSink.result_set``."""
        self.start(columns, binary)
        self.rows(rows)
        self.done(status, warnings, affected_rows, last_insert_id, info)

    def done(
        self,
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
    ) -> None:
        """See ``IResultSink.done``."""
        if self._writable(SinkState.OPEN):
            if status & _MORE:
                raise LocalProtocolError("a cursor serves one result (no MORE_RESULTS_EXISTS)")
            self._final_status = status
            self._state = SinkState.COMPLETE
            self.flow.unregister()
            if self._fetch_d is not None and not self.queue:
                self._end_fetch()

    def error(self, error: MySQLError) -> None:
        """See ``IResultSink.error``: reported now, or by the next fetch."""
        if self._state is SinkState.RESULT:
            self.out.send_events([Err.from_error(error)])
            self._state = SinkState.ENDED
            self.flow.unregister()
            self._fire_replied()
        elif self._writable(SinkState.OPEN):
            self._fail(error)

    # -- the buffer and fetches ------------------------------------------------------------

    def _buffer(self, rows: list[Row]) -> None:
        limits = self.limits
        if self.flow.has(BUFFER_FULL) and self._overrun > limits.max_overrun_bytes:
            self._fail(
                internal_error(
                    "the cursor was closed because its query handler wrote more than "
                    f"{limits.max_overrun_bytes} bytes beyond the cursor buffer"
                )
            )
            return
        for ev in rows:
            self.queue.append(ev.payload)
            self.queued_bytes += len(ev.payload)
            if self.flow.has(BUFFER_FULL):
                self._overrun += len(ev.payload)
        if len(self.queue) >= limits.cursor_buffer_rows or (
            self.queued_bytes >= limits.cursor_buffer_bytes
        ):
            self.flow.pause(BUFFER_FULL)

    def _send_to_fetch(self, rows: list[Row]) -> None:
        if self.flow.has(TRANSPORT):
            if self._overrun > self.limits.max_overrun_bytes:
                self._fail(
                    internal_error(
                        "the cursor was closed because the server buffered more than "
                        f"{self.limits.max_overrun_bytes} bytes for a slow client"
                    )
                )
                return
            self._overrun += self.out.send_events(rows)
        else:
            self.out.send_events(rows)
        self._fetch_left -= len(rows)

    def fetch(self, num_rows: int) -> Deferred[None]:
        """COM_STMT_FETCH: send up to ``num_rows`` rows, then the end marker; the Deferred
        fires when the reply is complete (rows may have to come from the handler first)."""
        if self._fetch_d is not None:
            raise LocalProtocolError("a fetch is already in progress on this cursor")
        if self._error is not None:
            self._report_error()
            return succeed(None)
        n = min(num_rows, len(self.queue))
        if n:
            rows = [Row(self.queue.popleft()) for _ in range(n)]
            self.queued_bytes -= sum(len(r.payload) for r in rows)
            self.out.send_events(rows)
        if len(self.queue) < self.limits.cursor_buffer_rows and (
            self.queued_bytes < self.limits.cursor_buffer_bytes
        ):
            self._overrun = 0
            self.flow.resume(BUFFER_FULL)
        self._fetch_left = num_rows - n
        if self._fetch_left <= 0 or (self._state is SinkState.COMPLETE and not self.queue):
            self._send_fetch_end()
            return succeed(None)
        self._fetch_d = Deferred()
        self._overrun = 0
        return self._fetch_d

    def _send_fetch_end(self) -> None:
        if self._state is SinkState.COMPLETE and not self.queue:
            status = (self._final_status & ~_MORE) | _CURSOR | _LAST_ROW
            self._state = SinkState.ENDED
        else:
            status = (self.out.session_status() & ~(_MORE | _LAST_ROW)) | _CURSOR
        self.out.send_events([ResultSetDone(status)])

    def _end_fetch(self) -> None:
        d, self._fetch_d = self._fetch_d, None
        self._send_fetch_end()
        if d is not None:
            d.callback(None)

    def _fail(self, error: MySQLError) -> None:
        """The cursor broke: the next (or pending) fetch reports ``error``."""
        self._error = error
        self.queue.clear()
        self.queued_bytes = 0
        self._state = SinkState.ABORTED
        self.flow.stop()
        self._cancel_handler()
        if self._fetch_d is not None:
            self._report_error()

    def _report_error(self) -> None:
        error, self._error = self._error, None
        assert error is not None
        self.out.send_events([Err.from_error(error)])
        d, self._fetch_d = self._fetch_d, None
        if d is not None:
            d.callback(None)

    def abort(self, error: MySQLError | None = None) -> None:
        """Close the cursor (statement closed or reset, session reset, client gone)."""
        self.queue.clear()
        self.queued_bytes = 0
        super().abort(error)
        d, self._fetch_d = self._fetch_d, None
        if d is not None:
            d.callback(None)

    def _on_handler_result(self, failure: Failure | None) -> None:
        if self._state is SinkState.RESULT:
            if failure is None:
                log.error("query handler finished without replying to an execute")
                self.error(internal_error("the query handler did not complete its reply"))
            else:
                self.error(to_mysql_error(failure.value, failure=failure))
        elif self._state is SinkState.OPEN:
            if failure is None:
                log.error("query handler finished a cursor's result without done()")
                self._fail(internal_error("the query handler did not complete the result"))
            else:
                self._fail(to_mysql_error(failure.value, failure=failure))
        elif failure is not None and not isinstance(failure.value, CancelledError):
            log.failure("query handler failed after its cursor result was complete", failure)
