"""Gate side of the gate <-> tablet RPC: many calls in flight on one connection.

``TabletRPCClient`` sends REQUESTs with fresh ids and matches REPLY/ERROR/CHUNK/HEALTH
frames to them. Each call has a deadline (absolute, in the injected clock's seconds);
when it passes, the call fails with ERROR 1317 and a CANCEL tells the tablet to stop.
Cancelling the returned Deferred does the same. Losing the connection fails every pending
call with CR_SERVER_LOST (2013). Streams return credit as their consumer finishes chunks.
An ``execute`` given an ``IInfileReader`` as its LOAD DATA LOCAL INFILE file sends it in
pieces as the tablet asks for them (INFILE_MORE, answered with INFILE_DATA), if the tablet
announced ``infile_stream`` in its HELLO.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.interfaces import IInfileReader
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, RemoteProtocolError
from vtwist.protocols.tabletrpc_codec import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    INFILE_DATA_OVERHEAD,
    MAX_FRAME_SIZE_LIMIT,
    MAX_TIMEOUT_MS,
    Cancel,
    Chunk,
    Credit,
    Error,
    Health,
    Hello,
    InfileMore,
    MalformedMessageError,
    Message,
    Reply,
    encode_infile_data,
    encode_message,
    encode_request,
)
from vtwist.protocols.tabletrpc_deadlines import DeadlineTimer
from vtwist.protocols.tabletrpc_framing import COALESCE_INFLIGHT, FramedRPCProtocol
from vtwist.protocols.tabletrpc_ops import (
    ER_NOT_SUPPORTED_YET,
    OP_BEGIN,
    OP_COMMIT,
    OP_EXECUTE,
    OP_KILL,
    OP_MANAGE,
    OP_RELEASE,
    OP_RESERVE,
    OP_ROLLBACK,
    OP_STREAM_EXECUTE,
    OP_STREAM_HEALTH,
    OpSpec,
    QueryResult,
    ReserveResult,
    Scalar,
    args_to_wire,
    interrupted,
    op_spec,
)

log = Logger()

DEFAULT_MAX_INFLIGHT = 1024
DEFAULT_TIMEOUT = 30.0
DEFAULT_STREAM_WINDOW = 8
MAX_STREAM_WINDOW = 1 << 20  # what the tablet accepts
MAX_WAITERS = 1024  # when_ready / when_closed callers per connection

ChunkConsumer = Callable[[Chunk], "Deferred[Any] | None"]
HealthListener = Callable[[dict[str, Any]], object]


class _InfileFeed:
    """The LOAD DATA LOCAL INFILE file of one call, read as the tablet asks for pieces.

    ``end`` is set once the reader gave the end of the file (``b""``) or failed (the error);
    later INFILE_MOREs get the same answer without asking the reader again.
    """

    __slots__ = ("end", "reader", "reading")

    def __init__(self, reader: IInfileReader) -> None:
        self.reader = reader
        self.reading = False  # a read is outstanding
        self.end: bytes | MySQLError | None = None


class _Call:
    """One call in flight, until its terminal frame, deadline or cancellation."""

    __slots__ = (
        "consumed",
        "deferred",
        "expires",
        "infile",
        "on_chunk",
        "on_health",
        "rid",
        "spec",
        "timeout",
        "window",
    )

    def __init__(
        self,
        rid: int,
        spec: OpSpec,
        deferred: Deferred[Any],
        timeout: float,
        on_chunk: ChunkConsumer | None,
        on_health: HealthListener | None,
        window: int,
    ) -> None:
        self.rid = rid
        self.spec = spec
        self.deferred = deferred
        self.timeout = timeout
        self.expires = math.inf  # the clock's time at the deadline (inf: none)
        self.on_chunk = on_chunk
        self.on_health = on_health
        self.window = window
        self.consumed = 0
        self.infile: _InfileFeed | None = None


class TabletRPCClient(FramedRPCProtocol):
    """One gate -> tablet connection. Build it with ``TabletRPCClientFactory``.

    Bounds: ``max_frame_size`` (largest frame accepted; requests larger than the tablet's
    announced limit fail locally with 1153), ``max_inflight`` (calls in flight; more fail
    at once with 1203), ``default_timeout`` (seconds, for calls without a deadline) and
    ``stream_window`` (chunks a stream may have in flight before the tablet pauses).
    """

    role = "gate"

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        default_timeout: float = DEFAULT_TIMEOUT,
        stream_window: int = DEFAULT_STREAM_WINDOW,
    ) -> None:
        super().__init__(clock, max_frame_size)
        if max_inflight <= 0 or default_timeout <= 0 or not 0 < stream_window <= MAX_STREAM_WINDOW:
            raise ValueError(
                "max_inflight and default_timeout must be > 0, "
                f"stream_window in [1, {MAX_STREAM_WINDOW}]"
            )
        self.max_inflight = max_inflight
        self.default_timeout = default_timeout
        self.stream_window = stream_window
        self.pending: dict[int, _Call] = {}
        self._next_id = 1
        self._ready_waiters: list[Deferred[dict[str, Any]]] = []
        self._close_waiters: list[Deferred[None]] = []
        self._connection_error: MySQLError | None = None
        self.closed = False
        self._deadlines = DeadlineTimer(clock, self._expire_due)

    # --- connection state -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the tablet's HELLO arrived (calls made before it are queued in order)."""
        return self.peer_hello is not None and not self.closing

    @property
    def infile_stream(self) -> bool:
        """True when the tablet's HELLO announced that it pulls LOAD DATA LOCAL INFILE
        files in pieces (``execute`` with an ``IInfileReader``)."""
        hello = self.peer_hello
        return hello is not None and hello.info.get("infile_stream") is True

    @property
    def inflight(self) -> int:
        """Calls waiting for their answer."""
        return len(self.pending)

    def when_ready(self) -> Deferred[dict[str, Any]]:
        """Fires with the tablet's HELLO info; fails if the connection ends first."""
        if self.closed:
            return fail(self._lost_error())
        if self.peer_hello is not None:
            return succeed(self.peer_hello.info)
        if len(self._ready_waiters) >= MAX_WAITERS:
            return fail(MySQLError(ErrorCode.TOO_MANY_USER_CONNECTIONS, "too many waiters"))
        d: Deferred[dict[str, Any]] = Deferred()
        self._ready_waiters.append(d)
        return d

    def when_closed(self) -> Deferred[None]:
        """Fires (with None) when the connection is gone."""
        if self.closed:
            return succeed(None)
        if len(self._close_waiters) >= MAX_WAITERS:
            return fail(MySQLError(ErrorCode.TOO_MANY_USER_CONNECTIONS, "too many waiters"))
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        return d

    def close(self) -> Deferred[None]:
        """Close the connection (pending calls fail with 2013); fires once it is closed."""
        d = self.when_closed()
        self.close_connection()
        return d

    @property
    def health_keepalive(self) -> float | None:
        """The seconds between the health frames the tablet sends even when nothing
        changed, as its HELLO announced (None: only on changes, a silent stream says
        nothing)."""
        hello = self.peer_hello
        value = hello.info.get("health_keepalive") if hello is not None else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None

    def abandon(self, error: MySQLError) -> None:
        """Drop the connection at once, queued bytes and all (a tablet that stopped reading
        would never let a graceful close finish): pending calls fail with ``error``."""
        if self._connection_error is None:
            self._connection_error = error
        self.closing = True
        transport = self.transport
        if transport is not None:
            abort = getattr(transport, "abortConnection", None)
            abort() if abort is not None else transport.loseConnection()

    def hello_received(self, hello: Hello) -> None:
        """The tablet is there: release ``when_ready`` waiters."""
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(hello.info)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fail every pending call with 2013 (or the error the tablet sent before closing)."""
        super().connectionLost(reason)
        self.closed = True
        error = self._connection_error or MySQLError(
            ErrorCode.CR_SERVER_LOST,
            f"Lost connection to tablet {self.peer} during an RPC "
            f"({reason.getErrorMessage()}); the statement may or may not have run",
        )
        self._connection_error = error
        pending, self.pending = self.pending, {}
        self._deadlines.stop()
        for call in pending.values():
            call.deferred.errback(error)
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.errback(error)
        closers, self._close_waiters = self._close_waiters, []
        for c in closers:
            c.callback(None)

    def _lost_error(self) -> MySQLError:
        return MySQLError(
            ErrorCode.CR_SERVER_GONE_ERROR,
            f"the RPC connection to tablet {self.peer} is closed"
            + (f" ({self._connection_error.message})" if self._connection_error else "")
            + "; retry on another connection",
        )

    # --- generic calls ----------------------------------------------------------------------

    def call(
        self,
        op: str,
        args: Mapping[str, Any] | NamedTuple | None = None,
        deadline: float | None = None,
    ) -> Deferred[Any]:
        """Run ``op`` with ``args`` (wire dict or an args tuple); fires with its typed result.

        ``deadline`` is absolute, in the client clock's ``seconds()``; None means now +
        ``default_timeout``. Failures are ``MySQLError``s.
        """
        return self._start(op, args, deadline, None, None)

    def stream(
        self,
        op: str,
        args: Mapping[str, Any] | NamedTuple | None,
        deadline: float | None,
        on_chunk: ChunkConsumer,
    ) -> Deferred[Any]:
        """Run streaming ``op``; ``on_chunk(chunk)`` gets each ``Chunk`` in order.

        The first chunk carries ``fields``. If ``on_chunk`` returns a Deferred, the chunk's
        credit goes back to the tablet only when it fires, so a slow consumer pauses the
        tablet's producer once ``stream_window`` chunks are outstanding. An exception from
        ``on_chunk`` cancels the stream and fails the call with it. Fires with the final
        result (for ``stream_execute``, a ``QueryResult`` with the OK part).
        """
        return self._start(op, args, deadline, on_chunk, None)

    def stream_health(self, on_health: HealthListener) -> Deferred[None]:
        """Subscribe to the tablet's health pushes, in order, until cancelled or closed.

        Cancelling the Deferred ends the subscription (it then fails with 1317).
        """
        return self._start(OP_STREAM_HEALTH, None, math.inf, None, on_health)

    def cancel(self, d: Deferred[Any]) -> None:
        """Cancel a call (same as ``d.cancel()``): it fails with 1317, the tablet stops it."""
        d.cancel()

    def coalescing(self) -> bool:
        """The tablet has more than ``COALESCE_INFLIGHT`` calls sent and not answered."""
        return len(self.pending) - len(self._out) > COALESCE_INFLIGHT

    def _start(
        self,
        op: str,
        args: Mapping[str, Any] | NamedTuple | None,
        deadline: float | None,
        on_chunk: ChunkConsumer | None,
        on_health: HealthListener | None,
        infile: IInfileReader | None = None,
    ) -> Deferred[Any]:
        if self.closing or self.closed or self.transport is None:
            return fail(self._lost_error())
        try:
            spec = op_spec(op)
        except MySQLError as e:
            return fail(e)
        if spec.streaming != (on_chunk is not None or on_health is not None):
            return fail(
                MySQLError(
                    ErrorCode.WRONG_ARGUMENTS, f"use call() for {op} and stream() for streams"
                )
            )
        if len(self.pending) >= self.max_inflight:
            return fail(
                MySQLError(
                    ErrorCode.TOO_MANY_USER_CONNECTIONS,
                    f"too many RPCs in flight to tablet {self.peer} (limit {self.max_inflight}); "
                    "lower the gate's concurrency or raise its tablet max_inflight",
                )
            )
        if args is None:
            wire: Mapping[str, Any] = {}
        elif isinstance(args, tuple):
            wire = args_to_wire(args)
        else:
            wire = args
        if on_chunk is not None:
            wire = {**wire, "window": self.stream_window}
        now = self._clock.seconds()
        if deadline is None:
            deadline = now + self.default_timeout
        remaining = deadline - now
        if remaining <= 0:
            return fail(interrupted("its deadline had passed before it was sent to the tablet"))
        timeout_ms = (
            0 if math.isinf(remaining) else min(math.ceil(remaining * 1000), MAX_TIMEOUT_MS)
        )
        rid = self._next_id
        self._next_id += 1
        try:
            try:
                frame = encode_request(rid, op, wire, timeout_ms)
            except UnicodeEncodeError:
                # SQL in bytes that are not UTF-8 (a latin1 client's): sent as bytes.
                frame = encode_request(rid, op, _raw_text(wire), timeout_ms)
        except (TypeError, ValueError, OverflowError) as e:
            return fail(MySQLError(ErrorCode.WRONG_ARGUMENTS, f"cannot send {op} arguments: {e}"))
        if len(frame) - HEADER_SIZE > self.peer_max_frame_size:
            return fail(self._too_large(op, len(frame)))
        d: Deferred[Any] = Deferred(lambda _: self._cancel_call(rid, "cancelled by the caller"))
        call = _Call(rid, spec, d, remaining, on_chunk, on_health, self.stream_window)
        self.pending[rid] = call
        if infile is not None:
            call.infile = _InfileFeed(infile)
        if timeout_ms:
            call.expires = deadline
            self._deadlines.add(deadline, now)
        self.write_frame(frame)
        return d

    # --- typed helpers ----------------------------------------------------------------------

    def execute(
        self,
        sql: str,
        bind_vars: Mapping[str, Any] | None = None,
        *,
        target: str | None = None,
        transaction_id: int = 0,
        reserved_id: int = 0,
        max_rows: int = 0,
        options: Mapping[str, Scalar] | None = None,
        deadline: float | None = None,
        settings: list[str] | None = None,
        infile: bytes | IInfileReader | None = None,
    ) -> Deferred[QueryResult]:
        """Run one statement; fires with its ``QueryResult`` (rows in MySQL wire encoding).

        ``infile``: the file of a LOAD DATA LOCAL INFILE statement (``ExecuteArgs``): its
        bytes, sent in the request, or an ``IInfileReader`` that the tablet reads in pieces
        as mysqld asks for them (at most one read at a time, each fitting in a frame to the
        tablet; a failed read fails the statement with the reader's ``MySQLError``). The
        reader is dropped when the call ends. A tablet that did not announce
        ``infile_stream`` cannot take a reader: the call fails at once with 1235.
        """
        wire = _execute_wire(sql, bind_vars, target, transaction_id, reserved_id, max_rows, options)
        if settings:
            wire["settings"] = settings
        if infile is None:
            return self._start(OP_EXECUTE, wire, deadline, None, None)
        if isinstance(infile, bytes):
            wire["infile"] = infile
            return self._start(OP_EXECUTE, wire, deadline, None, None)
        if not self.infile_stream:
            return fail(
                MySQLError(
                    ER_NOT_SUPPORTED_YET,
                    f"tablet {self.peer} does not take a streamed LOAD DATA LOCAL file "
                    "(an older vttablet): upgrade it",
                    "42000",
                )
            )
        wire["infile_stream"] = True
        return self._start(OP_EXECUTE, wire, deadline, None, None, infile)

    def stream_execute(
        self,
        sql: str,
        on_chunk: ChunkConsumer,
        bind_vars: Mapping[str, Any] | None = None,
        *,
        target: str | None = None,
        transaction_id: int = 0,
        reserved_id: int = 0,
        options: Mapping[str, Scalar] | None = None,
        deadline: float | None = None,
        settings: list[str] | None = None,
    ) -> Deferred[QueryResult]:
        """Run one statement streaming its rows to ``on_chunk`` (see ``stream``)."""
        wire = _execute_wire(sql, bind_vars, target, transaction_id, reserved_id, 0, options)
        if settings:
            wire["settings"] = settings
        return self._start(OP_STREAM_EXECUTE, wire, deadline, on_chunk, None)

    def begin(
        self,
        *,
        target: str | None = None,
        reserved_id: int = 0,
        options: Mapping[str, Scalar] | None = None,
        deadline: float | None = None,
        settings: list[str] | None = None,
    ) -> Deferred[int]:
        """Open a transaction (on ``reserved_id`` if given, else on a pooled connection
        that first runs ``settings``); fires with its id."""
        wire = _drop_empty(
            {"target": target, "rsv": reserved_id, "opts": options, "settings": settings}
        )
        return self._start(OP_BEGIN, wire, deadline, None, None)

    def commit(
        self, transaction_id: int, *, target: str | None = None, deadline: float | None = None
    ) -> Deferred[int]:
        """Commit; fires with the reserved id the connection stays under (0: none)."""
        wire = _drop_empty({"tx": transaction_id, "target": target})
        return self._start(OP_COMMIT, wire, deadline, None, None)

    def rollback(
        self, transaction_id: int, *, target: str | None = None, deadline: float | None = None
    ) -> Deferred[int]:
        """Roll back; fires with the reserved id the connection stays under (0: none)."""
        wire = _drop_empty({"tx": transaction_id, "target": target})
        return self._start(OP_ROLLBACK, wire, deadline, None, None)

    def reserve(
        self,
        settings: list[str] | None = None,
        *,
        begin: bool = False,
        transaction_id: int = 0,
        target: str | None = None,
        options: Mapping[str, Scalar] | None = None,
        deadline: float | None = None,
    ) -> Deferred[ReserveResult]:
        """Reserve a connection (running ``settings``; ``begin`` opens a transaction)."""
        wire = _drop_empty(
            {
                "settings": settings,
                "begin": begin,
                "tx": transaction_id,
                "target": target,
                "opts": options,
            }
        )
        return self._start(OP_RESERVE, wire, deadline, None, None)

    def release(
        self,
        *,
        transaction_id: int = 0,
        reserved_id: int = 0,
        target: str | None = None,
        deadline: float | None = None,
    ) -> Deferred[None]:
        """Release a reserved connection and/or transaction (rolled back)."""
        wire = _drop_empty({"tx": transaction_id, "rsv": reserved_id, "target": target})
        return self._start(OP_RELEASE, wire, deadline, None, None)

    def kill(
        self,
        *,
        request_id: int = 0,
        transaction_id: int = 0,
        reserved_id: int = 0,
        connection: bool = False,
        target: str | None = None,
        deadline: float | None = None,
    ) -> Deferred[bool]:
        """Kill a request of this connection or a transaction's/reservation's query."""
        wire = _drop_empty(
            {
                "req": request_id,
                "tx": transaction_id,
                "rsv": reserved_id,
                "conn": connection,
                "target": target,
            }
        )
        return self._start(OP_KILL, wire, deadline, None, None)

    def manage(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        deadline: float | None = None,
    ) -> Deferred[dict[str, Any]]:
        """Run a tablet-manager ``action`` (``vtwist.tablet.manager``); fires with its report."""
        wire = {"action": action, "params": dict(params or {})}
        return self._start(OP_MANAGE, wire, deadline, None, None)

    # --- input ------------------------------------------------------------------------------

    def message_received(self, msg: Message) -> None:
        """Match tablet frames to pending calls; frames for unknown ids are ignored."""
        if isinstance(msg, Reply):
            call = self._take(msg.request_id)
            if call is None:
                return
            try:
                value = call.spec.decode_result(msg.result)
            except MySQLError as e:
                call.deferred.errback(e)
                return
            call.deferred.callback(value)
        elif isinstance(msg, Chunk):
            self._on_chunk(msg)
        elif isinstance(msg, Error):
            if msg.request_id == 0:
                # The tablet is about to close; pending calls fail with its reason.
                self._connection_error = msg.to_exception()
                log.warn("tablet {peer} refused the connection: {e}", peer=self.peer, e=msg.message)
                return
            call = self._take(msg.request_id)
            if call is not None:
                call.deferred.errback(msg.to_exception())
        elif isinstance(msg, Health):
            hcall = self.pending.get(msg.request_id)
            if hcall is not None and hcall.on_health is not None:
                try:
                    hcall.on_health(msg.health)
                except Exception:
                    log.failure("tablet health listener failed")
        elif isinstance(msg, InfileMore):
            self._on_infile_more(msg)
        else:
            self.protocol_error(
                MalformedMessageError(f"a tablet may not send {type(msg).__name__}")
            )

    def _on_chunk(self, msg: Chunk) -> None:
        call = self.pending.get(msg.request_id)
        if call is None or call.on_chunk is None:
            return
        try:
            result = call.on_chunk(msg)
        except Exception as e:
            self._abort_stream(call, e)
            return
        if isinstance(result, Deferred):
            result.addCallbacks(
                self._chunk_done, self._chunk_failed, callbackArgs=(call,), errbackArgs=(call,)
            )
        else:
            self._chunk_done(None, call)

    def _chunk_done(self, _: object, call: _Call) -> None:
        if self.pending.get(call.rid) is not call:
            return
        call.consumed += 1
        # Return credit in batches of half a window: fewer frames, never a stall.
        if call.consumed >= max(1, call.window // 2):
            self.write_frame(encode_message(Credit(call.rid, call.consumed)))
            call.consumed = 0

    def _chunk_failed(self, failure: Failure, call: _Call) -> None:
        exc = failure.value
        assert exc is not None
        self._abort_stream(call, exc)

    def _abort_stream(self, call: _Call, failure: BaseException) -> None:
        if self._take(call.rid) is not call:
            return
        self.write_frame(encode_message(Cancel(call.rid)))
        call.deferred.errback(failure)

    # --- streamed LOAD DATA LOCAL INFILE files -----------------------------------------------

    def _on_infile_more(self, msg: InfileMore) -> None:
        call = self.pending.get(msg.request_id)
        if call is None:
            return  # it crossed the call's end
        feed = call.infile
        if feed is None or feed.reading:
            problem = (
                "INFILE_MORE for a request without a streamed file"
                if feed is None
                else "INFILE_MORE while the previous piece is being read"
            )
            log.warn(
                "tablet {peer} broke the RPC protocol on request {rid}: {problem}",
                peer=self.peer,
                rid=call.rid,
                problem=problem,
            )
            self.message_error(MalformedMessageError(problem, call.rid))
            return
        if isinstance(feed.end, MySQLError):
            self._send_infile_error(call, feed.end)
            return
        if feed.end is not None:
            self.write_frame(encode_infile_data(call.rid, b""))
            return
        fits = min(self.peer_max_frame_size, MAX_FRAME_SIZE_LIMIT) - INFILE_DATA_OVERHEAD
        max_bytes = max(1, min(msg.max_bytes, fits))
        feed.reading = True
        d: Deferred[bytes] = maybeDeferred(feed.reader.read, max_bytes)
        d.addCallbacks(
            self._infile_read,
            self._infile_failed,
            callbackArgs=(call, feed, max_bytes),
            errbackArgs=(call, feed),
        )

    def _infile_read(self, data: object, call: _Call, feed: _InfileFeed, max_bytes: int) -> None:
        feed.reading = False
        if self.pending.get(call.rid) is not call:
            return  # the call ended meanwhile: the piece has nowhere to go
        if type(data) is not bytes and isinstance(data, bytearray | memoryview):
            data = bytes(data)
        if type(data) is not bytes or len(data) > max_bytes:
            got = f"{len(data)} bytes" if type(data) is bytes else type(data).__name__
            error = MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"gate bug: its LOAD DATA LOCAL INFILE reader gave {got} when at most "
                f"{max_bytes} bytes were asked",
            )
            feed.end = error
            self._send_infile_error(call, error)
            return
        if not data:
            feed.end = b""
        self.write_frame(encode_infile_data(call.rid, data))

    def _infile_failed(self, failure: Failure, call: _Call, feed: _InfileFeed) -> None:
        feed.reading = False
        exc = failure.value
        if self.pending.get(call.rid) is not call:
            return  # the call ended meanwhile (its reader's error is moot)
        if isinstance(exc, MySQLError):
            error = exc
        elif isinstance(exc, CancelledError):
            error = interrupted("the read of the LOAD DATA LOCAL INFILE file was cancelled")
        else:
            log.failure(
                "LOAD DATA LOCAL INFILE reader failed (request {rid})", failure, rid=call.rid
            )
            error = MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"the gate failed to read the LOAD DATA LOCAL INFILE file: "
                f"{type(exc).__name__}; see the gate log",
            )
        feed.end = error
        self._send_infile_error(call, error)

    def _send_infile_error(self, call: _Call, error: MySQLError) -> None:
        frame = encode_infile_data(call.rid, b"", error)
        if not self.frame_fits(frame):  # a tiny max_frame: cut the message to fit
            keep = max(0, (self.peer_max_frame_size - INFILE_DATA_OVERHEAD) // 4)
            frame = encode_infile_data(
                call.rid, b"", MySQLError(error.code, error.message[:keep], error.sqlstate)
            )
        self.write_frame(frame)

    def message_error(self, error: MalformedMessageError) -> None:
        """A malformed frame about one call: fail that call, tell the tablet to stop it."""
        call = self._take(error.request_id)
        if call is None:
            return
        self.write_frame(encode_message(Cancel(call.rid)))
        call.deferred.errback(
            MySQLError(ErrorCode.CR_MALFORMED_PACKET, f"{error}; check gate and tablet versions")
        )

    def protocol_error(self, error: RemoteProtocolError) -> None:
        """The tablet broke the protocol: pending calls fail with 2027 and we close."""
        self._connection_error = MySQLError(
            ErrorCode.CR_MALFORMED_PACKET, f"tablet {self.peer} broke the RPC protocol: {error}"
        )
        self.close_connection()

    # --- deadlines and cancellation ---------------------------------------------------------

    def _take(self, rid: int) -> _Call | None:
        """Remove call ``rid`` from ``pending`` (the deadline timer goes with the last)."""
        call = self.pending.pop(rid, None)
        if not self.pending:
            self._deadlines.stop()
        return call

    def _expire_due(self, now: float) -> float:
        """Fail the calls whose deadline passed; the earliest deadline of the others."""
        for call in list(self.pending.values()):
            if call.expires <= now:
                self._expire(call)
        return min((call.expires for call in self.pending.values()), default=math.inf)

    def _expire(self, call: _Call) -> None:
        if self._take(call.rid) is not call:
            return
        self.write_frame(encode_message(Cancel(call.rid)))
        call.deferred.errback(
            interrupted(
                f"the tablet RPC deadline ({call.timeout:.3g} s) expired; raise the query "
                "timeout or make the query cheaper"
            )
        )

    def _too_large(self, op: str, size: int) -> MySQLError:
        """ERR 1153 for a request bigger than the tablet accepts, saying what can change."""
        limit = self.peer_max_frame_size
        hint = "send a smaller statement"
        if limit < DEFAULT_MAX_FRAME_SIZE:
            hint += f" or raise the tablets' rpc.max_frame_size (up to {DEFAULT_MAX_FRAME_SIZE})"
        return MySQLError(
            ErrorCode.NET_PACKET_TOO_LARGE,
            f"{op} request of {size} bytes exceeds the tablet's max_frame_size ({limit}); {hint}",
        )

    def _cancel_call(self, rid: int, why: str) -> None:
        call = self._take(rid)
        if call is None:
            return
        self.write_frame(encode_message(Cancel(rid)))
        call.deferred.errback(interrupted(why))


def _raw_text(wire: Mapping[str, Any]) -> dict[str, Any]:
    """``wire`` with its SQL text (``sql``, ``settings``) as the bytes it stands for: text
    from the MySQL side keeps bytes that are not UTF-8 as surrogates, which msgpack refuses
    to send as a string; the tablet takes either form."""
    out = dict(wire)
    sql = out.get("sql")
    if isinstance(sql, str):
        out["sql"] = sql.encode("utf-8", "surrogateescape")
    settings = out.get("settings")
    if isinstance(settings, list):
        out["settings"] = [
            s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s for s in settings
        ]
    return out


def _drop_empty(wire: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wire.items() if v}


def _execute_wire(
    sql: str,
    bind_vars: Mapping[str, Any] | None,
    target: str | None,
    transaction_id: int,
    reserved_id: int,
    max_rows: int,
    options: Mapping[str, Scalar] | None,
) -> dict[str, Any]:
    # Built by hand (not _drop_empty): this is the hot path.
    wire: dict[str, Any] = {"sql": sql}
    if bind_vars:
        wire["bind"] = bind_vars
    if target:
        wire["target"] = target
    if transaction_id:
        wire["tx"] = transaction_id
    if reserved_id:
        wire["rsv"] = reserved_id
    if max_rows:
        wire["max_rows"] = max_rows
    if options:
        wire["opts"] = options
    return wire


class TabletRPCClientFactory(Factory):
    """Builds ``TabletRPCClient``s with the given clock and bounds (see the client)."""

    noisy = False

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        default_timeout: float = DEFAULT_TIMEOUT,
        stream_window: int = DEFAULT_STREAM_WINDOW,
    ) -> None:
        self.clock = clock
        self.max_frame_size = max_frame_size
        self.max_inflight = max_inflight
        self.default_timeout = default_timeout
        self.stream_window = stream_window

    def buildProtocol(self, addr: object) -> TabletRPCClient:
        """A client protocol for one connection."""
        proto = TabletRPCClient(
            self.clock,
            max_frame_size=self.max_frame_size,
            max_inflight=self.max_inflight,
            default_timeout=self.default_timeout,
            stream_window=self.stream_window,
        )
        proto.factory = self
        return proto
