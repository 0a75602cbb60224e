"""Result sinks of the MySQL server: how a query handler's results reach the client.

``ResultSink`` streams the reply of one COM_QUERY / COM_STMT_EXECUTE to the client,
converting text rows to binary rows for an execute. ``server_cursor.CursorSink`` (an
execute that opened a cursor) builds on the same ``SinkBase``. Both implement
``IResultSink`` (see its docstring for the contract) and share ``Flow``, which pauses the
handler's push producer for every reason that applies (client socket congested, cursor
buffer full) and resumes it only when none is left.

The sinks write through an ``Output`` (the protocol's send path) and learn about the
handler's Deferred through ``attach`` (or, when the handler returned
``REPLY_ENDS_COMMAND``, ``attach_reply_end``: it is done when the reply is, and reports a
failure with ``fail``); the session module decides when a command is over from
``when_replied``. Every callback into the handler's producer is guarded: an exception
there is logged, never raised into the transport. ``local_infile`` hands the handler the
protocol's ``IClientFile`` (``Output.request_file``), the client's file read in pieces.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Final, Protocol, cast

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import REPLY_ENDS_COMMAND, IClientFile, IResultSink
from vtwist.protocols.mysql.constants import ColumnFlag, ServerStatus
from vtwist.protocols.mysql.errors import (
    ErrorCode,
    LocalProtocolError,
    MySQLError,
    RemoteProtocolError,
)
from vtwist.protocols.mysql.events import Column, ResultSetStart, Row
from vtwist.protocols.mysql.messages import ColumnDefinition41, Err, Ok
from vtwist.protocols.mysql.values import ColumnSpec, text_to_binary_converter
from vtwist.protocols.mysql.wire import Message

__all__ = [
    "BUFFER_FULL",
    "CLOSED_STATES",
    "TRANSPORT",
    "Flow",
    "Output",
    "ResultSink",
    "SinkBase",
    "SinkLimits",
    "SinkState",
    "as_deferred",
    "call_handler",
    "internal_error",
    "to_mysql_error",
]

log = Logger()

_MORE = int(ServerStatus.MORE_RESULTS_EXISTS)
_CURSOR = int(ServerStatus.CURSOR_EXISTS)
_LAST_ROW = int(ServerStatus.LAST_ROW_SENT)
_UNSIGNED = int(ColumnFlag.UNSIGNED)

TRANSPORT = "transport"  # pause reason: the client's socket is congested
BUFFER_FULL = "buffer full"  # pause reason: a cursor's buffer is full


class Output(Protocol):
    """What a sink needs from the protocol."""

    def send_events(self, events: Sequence[Message]) -> int:
        """Frame and write ``events``; the number of bytes written (0 once closed)."""

    def send_columns(self, columns: Sequence[ColumnDefinition41]) -> int:
        """``send_events`` of ResultSetStart and one Column per definition."""

    def send_row(self, payload: bytes) -> int:
        """``send_events`` of one Row."""

    def send_done(
        self, status: int, warnings: int, affected_rows: int, last_insert_id: int, info: bytes
    ) -> int:
        """``send_events`` of one ResultSetDone."""

    def send_result_set(
        self,
        columns: Sequence[ColumnDefinition41],
        rows: Sequence[bytes],
        status: int,
        warnings: int,
        affected_rows: int,
        last_insert_id: int,
        info: bytes,
    ) -> int:
        """``send_columns``, ``send_row`` of each row and ``send_done`` in one write."""

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in a later reactor turn (never inside the caller's stack)."""

    def request_file(self, filename: str, max_bytes: int) -> IClientFile:
        """Ask the client for a LOCAL INFILE file, to be read in pieces
        (``IResultSink.local_infile``)."""

    def session_status(self) -> int:
        """The handler's current status flags."""


class SinkLimits:
    """The memory bounds of sinks (factory options, see ``MySQLServerFactory``)."""

    __slots__ = ("cursor_buffer_bytes", "cursor_buffer_rows", "max_overrun_bytes")

    def __init__(
        self, max_overrun_bytes: int, cursor_buffer_rows: int, cursor_buffer_bytes: int
    ) -> None:
        for name, value in (
            ("max_overrun_bytes", max_overrun_bytes),
            ("cursor_buffer_rows", cursor_buffer_rows),
            ("cursor_buffer_bytes", cursor_buffer_bytes),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.max_overrun_bytes = max_overrun_bytes
        self.cursor_buffer_rows = cursor_buffer_rows
        self.cursor_buffer_bytes = cursor_buffer_bytes


def call_handler(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """Call a handler method; its result (Deferred, coroutine or value) as a Deferred.

    ``REPLY_ENDS_COMMAND`` is refused (an internal error): only the session's reply path
    for queries and non-cursor executes accepts it."""
    try:
        result = fn(*args)
    except Exception:
        return fail()
    return as_deferred(result, fn)


def as_deferred(result: object, fn: Callable[..., Any]) -> Deferred[Any]:
    """The result ``fn`` returned (Deferred, coroutine or value) as a Deferred;
    ``REPLY_ENDS_COMMAND`` as a failure (see ``call_handler``)."""
    if isinstance(result, Deferred):
        return result
    if isinstance(result, Coroutine):
        return Deferred.fromCoroutine(result)
    if result is REPLY_ENDS_COMMAND:
        return fail(
            internal_error(
                f"the query handler's {getattr(fn, '__name__', fn)}() returned "
                "REPLY_ENDS_COMMAND where it is not allowed"
            )
        )
    return succeed(result)


def internal_error(what: str) -> MySQLError:
    """ERR 1105 for a failure that is not the client's."""
    return MySQLError(ErrorCode.UNKNOWN_ERROR, f"internal error: {what}")


def to_mysql_error(
    error: BaseException | None, what: str = "query handler", failure: Failure | None = None
) -> MySQLError:
    """The error to send for a handler failure; anything but MySQLError is logged (with
    ``failure``, or the exception being handled)."""
    if isinstance(error, MySQLError):
        return error
    log.failure("{what} failed", failure, what=what)
    return internal_error(f"{type(error).__name__}: {error}")


class Flow:
    """A handler's push producer and the reasons it must be paused.

    Its state starts as the class defaults (no ``__init__`` to run: a flow is made per
    query); ``_reasons`` is replaced, never changed in place.
    """

    producer: IPushProducer | None = None
    _reasons: frozenset[str] = frozenset()
    _producer_paused = False

    @property
    def paused(self) -> bool:
        """Whether any pause reason holds."""
        return bool(self._reasons)

    def has(self, reason: str) -> bool:
        """Whether ``reason`` holds."""
        return reason in self._reasons

    def register(self, producer: IPushProducer) -> None:
        """Attach ``producer`` (paused at once if a reason holds)."""
        if self.producer is not None:
            raise LocalProtocolError("a producer is already registered on this result")
        self.producer = producer
        if self._reasons:
            self._call("pauseProducing")

    def unregister(self) -> None:
        """Forget the producer, resuming it first if this flow paused it."""
        if self.producer is not None and self._producer_paused:
            self._call("resumeProducing")
        self.producer = None
        self._producer_paused = False

    def stop(self) -> None:
        """Forget the producer after ``stopProducing`` (the reply was aborted)."""
        if self.producer is not None:
            self._call("stopProducing")
        self.producer = None
        self._producer_paused = False

    def pause(self, reason: str) -> None:
        """Add a reason to pause."""
        self._reasons = self._reasons | {reason}
        if self.producer is not None and not self._producer_paused:
            self._call("pauseProducing")

    def resume(self, reason: str) -> None:
        """Remove a reason; resume the producer when none is left."""
        self._reasons = self._reasons - {reason}
        if not self._reasons and self._producer_paused:
            self._call("resumeProducing")

    def _call(self, method: str) -> None:
        producer = self.producer
        assert producer is not None
        self._producer_paused = method == "pauseProducing"
        try:
            getattr(producer, method)()
        except Exception:
            log.failure("result producer {method} failed", method=method)


class SinkState(enum.Enum):
    """Where a sink's reply is. Members hash by identity, in C (``enum.Enum``'s own
    ``__hash__`` is Python code, and ``closed`` looks states up per query)."""

    __hash__ = object.__hash__

    RESULT = "result"  # expecting ok / start / error
    ROWS = "rows"  # expecting rows / done / error
    OPEN = "open"  # (cursor) columns sent; rows buffered for fetches
    COMPLETE = "complete"  # (cursor) done() received; rows may still be buffered
    ENDED = "ended"  # reply complete
    ABORTED = "aborted"  # client gone, cursor closed, overrun


CLOSED_STATES = frozenset({SinkState.ENDED, SinkState.ABORTED, SinkState.COMPLETE})
# Members as module constants (read faster than enum class attributes).
_SS_ABORTED: Final = SinkState.ABORTED
_SS_ENDED: Final = SinkState.ENDED
_SS_RESULT: Final = SinkState.RESULT
_SS_ROWS: Final = SinkState.ROWS


# Converters of text rows to binary rows by the tuple of definitions they were made for
# (the same tuple comes back for the same query: the gate's ``Gate.columns``, the client's
# known heads). Keyed by id, the tuple kept in the entry so that its id is not reused.
# Bounded: cleared when full.
_CONVERTERS: dict[int, tuple[tuple[ColumnDefinition41, ...], Callable[[bytes], bytes]]] = {}
_CONVERTERS_ENTRIES: Final = 256


class SinkBase:
    """What ``ResultSink`` and ``server_cursor.CursorSink`` share: state checks, row
    conversion, the handler's Deferred."""

    binary: bool
    cursor: bool
    # Per-reply state, starting as these class defaults (a sink is made per query).
    _state: SinkState = _SS_RESULT
    # Set when text rows answer an execute: re-encodes each row in the binary protocol.
    _types: Callable[[bytes], bytes] | None = None
    _handler_d: Deferred[Any] | None = None
    _handler_done = False
    _replied: Deferred[None] | None = None  # made by ``when_replied``
    _replied_fired = False
    # Called (before ``when_replied`` fires) when the session may go on: the session's hot
    # path uses it instead of a Deferred.
    on_replied: Callable[[], None] | None = None

    def __init__(self, out: Output, limits: SinkLimits) -> None:
        self.out = out
        self.limits = limits
        self.flow = Flow()

    # -- IResultSink attributes --------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """See ``IResultSink.closed``."""
        return self._state in CLOSED_STATES

    @property
    def paused(self) -> bool:
        """See ``IResultSink.paused``."""
        return self.flow.paused

    def local_infile(self, filename: str, max_bytes: int) -> IClientFile:
        """See ``IResultSink.local_infile``; raises LocalProtocolError when something of
        the reply was already sent (or the reply is over)."""
        if self._state is not _SS_RESULT:
            raise LocalProtocolError("local_infile() comes before anything else of the reply")
        return self.out.request_file(filename, max_bytes)

    def register_producer(self, producer: IPushProducer) -> None:
        """See ``IResultSink.register_producer``."""
        if self._state is _SS_ABORTED:
            try:
                producer.stopProducing()
            except Exception:
                log.failure("stopProducing of a late producer failed")
            return
        if not self.closed:
            self.flow.register(producer)

    def unregister_producer(self) -> None:
        """See ``IResultSink.unregister_producer``."""
        self.flow.unregister()

    # -- plumbing --------------------------------------------------------------------------

    def when_replied(self) -> Deferred[None]:
        """Fires when the session may dispatch the next command (see subclasses)."""
        if self._replied is None:
            self._replied = succeed(None) if self._replied_fired else Deferred()
        return self._replied

    def _maybe_replied(self) -> None:
        """Fire ``when_replied`` if the reply ended and the handler's Deferred fired."""
        if self._state is _SS_ENDED and self._handler_done:
            self._fire_replied()

    def _fire_replied(self) -> None:
        if not self._replied_fired:
            self._replied_fired = True
            if self.on_replied is not None:
                self.on_replied()
            if self._replied is not None:
                self._replied.callback(None)

    def _writable(self, *states: SinkState) -> bool:
        """True if a write is allowed now; False if it must be ignored (closed)."""
        if self._state in states:
            return True
        if self.closed:
            return False
        raise LocalProtocolError(f"result sink: not allowed while {self._state.value}")

    def _check_columns(self, columns: Sequence[ColumnDefinition41], binary: bool) -> None:
        if not columns:
            raise LocalProtocolError("a result set needs at least one column (use ok())")
        if binary and not self.binary:
            raise LocalProtocolError("binary rows are only for COM_STMT_EXECUTE")
        # Text rows of an execute are re-encoded in the binary protocol.
        self._types = None
        if self.binary and not binary:
            known = _CONVERTERS.get(id(columns))
            if known is not None and known[0] is columns:
                self._types = known[1]
                return
            convert = text_to_binary_converter(
                [cast(ColumnSpec, (c.column_type, bool(c.flags & _UNSIGNED))) for c in columns]
            )
            self._types = convert
            if type(columns) is tuple:
                if len(_CONVERTERS) >= _CONVERTERS_ENTRIES:
                    _CONVERTERS.clear()
                _CONVERTERS[id(columns)] = (columns, convert)

    def _columns(self, columns: Sequence[ColumnDefinition41], binary: bool) -> list[Message]:
        self._check_columns(columns, binary)
        return [ResultSetStart(len(columns)), *(Column(c) for c in columns)]

    def _convert(self, payloads: Iterable[bytes]) -> list[Row] | MySQLError:
        convert = self._types
        if convert is None:
            return [Row(p) for p in payloads]
        try:
            return [Row(convert(p)) for p in payloads]
        except (ValueError, TypeError, RemoteProtocolError) as e:
            return internal_error(f"a row cannot be converted to the binary protocol: {e}")

    def attach(self, d: Deferred[Any]) -> None:
        """Watch the handler's Deferred for this reply (cancelled if the reply is aborted)."""
        self._handler_d = d
        d.addBoth(self._handler_finished)
        if self._state is _SS_ABORTED:
            self._cancel_handler()  # aborted while the handler was still in its call

    def attach_reply_end(self) -> None:
        """The handler returned ``REPLY_ENDS_COMMAND``: it is done once the reply is."""
        self._handler_done = True
        self._maybe_replied()

    def fail(self, reason: BaseException | Failure) -> None:
        """See ``IResultSink.fail``."""
        failure = reason if isinstance(reason, Failure) else Failure(reason)  # type: ignore[no-untyped-call]
        cancelled = isinstance(failure.value, CancelledError)
        if cancelled and self._state in (_SS_ABORTED, _SS_ENDED):
            self._on_handler_result(None)  # we cancelled it
        else:
            self._on_handler_result(failure)

    def _handler_finished(self, result: object) -> None:
        self._handler_done = True
        if isinstance(result, Failure):
            self.fail(result)
        else:
            self._on_handler_result(None)

    def _on_handler_result(self, failure: Failure | None) -> None:
        raise NotImplementedError

    def _cancel_handler(self) -> None:
        d = self._handler_d
        if d is not None and not self._handler_done:
            # Later: cancelling runs the handler's errbacks, which must not re-enter the
            # handler from inside its own call into this sink.
            self.out.call_soon(d.cancel)

    def abort(self, error: MySQLError | None = None) -> None:
        """End the reply now: send ``error`` if given and possible, stop the producer,
        cancel the handler's Deferred. Used when the client is gone, the cursor is
        closed, or the handler wrote too much while paused."""
        if self._state is _SS_ABORTED:
            return
        if error is not None and self._state in (_SS_RESULT, _SS_ROWS):
            self.out.send_events([Err.from_error(error)])
        self._state = _SS_ABORTED
        self.flow.stop()
        self._cancel_handler()
        self._fire_replied()


@implementer(IResultSink)
class ResultSink(SinkBase):
    """Streams one reply to the client (see the module docstring).

    ``when_replied`` fires once the reply is complete *and* the handler's Deferred fired,
    or when the reply was aborted.
    """

    cursor = False

    _overrun = 0  # bytes written while paused

    def __init__(self, out: Output, limits: SinkLimits, binary: bool) -> None:
        # (``SinkBase.__init__``, inlined: a sink is made per query.)
        self.out = out
        self.limits = limits
        self.flow = Flow()
        self.binary = binary

    def ok(
        self,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        status: int = 0,
        warnings: int = 0,
        info: bytes = b"",
    ) -> None:
        """See ``IResultSink.ok``."""
        if self._writable(_SS_RESULT):
            self.out.send_events([Ok(affected_rows, last_insert_id, status, warnings, info)])
            if not status & _MORE:
                self._end()

    def start(self, columns: Sequence[ColumnDefinition41], binary: bool = False) -> None:
        """See ``IResultSink.start``."""
        if self._state is _SS_RESULT or self._writable(_SS_RESULT):
            self._check_columns(columns, binary)
            self._state = _SS_ROWS
            if TRANSPORT not in self.flow._reasons:  # the hot path (see ``_write``)
                self._overrun = 0
                self.out.send_columns(columns)
            else:
                self._write([ResultSetStart(len(columns)), *(Column(c) for c in columns)])

    def row(self, payload: bytes) -> None:
        """See ``IResultSink.row``."""
        if self._state is _SS_ROWS and self._types is None:
            # The hot path: a row relayed as it is.
            if TRANSPORT not in self.flow._reasons:
                self._overrun = 0
                self.out.send_row(payload)
            else:
                self._write([Row(payload)])
        else:
            self.rows((payload,))

    def rows(self, payloads: Iterable[bytes]) -> None:
        """See ``IResultSink.rows``."""
        if not self._writable(_SS_ROWS):
            return
        events = self._convert(payloads)
        if isinstance(events, MySQLError):
            self.abort(events)
        elif events:
            self._write(events)

    def done(
        self,
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
    ) -> None:
        """See ``IResultSink.done``."""
        if self._state is _SS_ROWS or self._writable(_SS_ROWS):
            self.out.send_done(status, warnings, affected_rows, last_insert_id, info)
            if status & _MORE:
                self._state = _SS_RESULT
            else:
                self._end()

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
        if self._state is _SS_RESULT and TRANSPORT not in self.flow._reasons:
            self._check_columns(columns, binary)
            convert = self._types
            try:
                payloads = rows if convert is None else [convert(p) for p in rows]
            except (ValueError, TypeError, RemoteProtocolError):
                pass  # start/rows/done below send the columns, then the error
            else:
                self._overrun = 0
                self.out.send_result_set(
                    columns, payloads, status, warnings, affected_rows, last_insert_id, info
                )
                if status & _MORE:
                    self._state = _SS_RESULT
                else:
                    self._end()
                return
        self.start(columns, binary)
        self.rows(rows)
        self.done(status, warnings, affected_rows, last_insert_id, info)

    def error(self, error: MySQLError) -> None:
        """See ``IResultSink.error``."""
        if self._writable(_SS_RESULT, _SS_ROWS):
            self.out.send_events([Err.from_error(error)])
            self._end()

    def _write(self, events: Sequence[Message]) -> None:
        if TRANSPORT not in self.flow._reasons:  # (inlined ``Flow.has``: every write)
            self._overrun = 0
            self.out.send_events(events)
            return
        # Congested: a producer should be paused; bound what a handler writes regardless.
        if self._overrun > self.limits.max_overrun_bytes:
            log.warn(
                "query handler wrote {bytes} bytes while the client was congested; "
                "aborting the result",
                bytes=self._overrun,
            )
            self.abort(
                internal_error(
                    "the result was aborted because the server buffered more than "
                    f"{self.limits.max_overrun_bytes} bytes for a slow client"
                )
            )
            return
        self._overrun += self.out.send_events(events)

    def _end(self) -> None:
        self._state = _SS_ENDED
        self.flow.unregister()
        self._maybe_replied()

    def _on_handler_result(self, failure: Failure | None) -> None:
        if self._state in (_SS_RESULT, _SS_ROWS):
            if failure is None:
                log.error("query handler finished without completing its reply")
                self.error(internal_error("the query handler did not complete its reply"))
            else:
                self.error(to_mysql_error(failure.value, failure=failure))
        elif failure is not None and not isinstance(failure.value, CancelledError):
            log.failure("query handler failed after its reply was complete", failure)
        self._maybe_replied()
