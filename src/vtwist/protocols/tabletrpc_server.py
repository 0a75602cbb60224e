"""Tablet side of the gate <-> tablet RPC: dispatch to an ``ITabletService``, streams, deadlines.

``TabletRPCServer`` is one gate connection. Each REQUEST becomes a call on the service with
a ``RequestContext``; results, errors and stream chunks go back tagged with the request id.
A request is cancelled (hooks run, the service's Deferred is cancelled, the gate gets ERROR
1317) on its deadline, on CANCEL, on ``kill`` of its id and, silently, when the connection
is lost. Streams are credit based (see ``tabletrpc_codec``); the server is also registered
as a push producer on its transport, so a congested gate pauses every row producer.
The LOAD DATA LOCAL INFILE file of an ``execute`` with ``infile_stream`` is pulled from the
gate as the service reads it (``RequestContext.read_infile``: INFILE_MORE, answered by
INFILE_DATA), one piece at a time; the server announces this with ``infile_stream`` in its
HELLO.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import ITabletService
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, RemoteProtocolError
from vtwist.protocols.tabletrpc_codec import (
    DEFAULT_MAX_FRAME_SIZE,
    INFILE_DATA_OVERHEAD,
    MAX_FRAME_SIZE_LIMIT,
    Cancel,
    Credit,
    Health,
    InfileData,
    InfileMore,
    MalformedMessageError,
    Message,
    Request,
    check_max_frame_size,
    encode_error,
    encode_message,
    encode_reply,
)
from vtwist.protocols.tabletrpc_deadlines import DeadlineTimer
from vtwist.protocols.tabletrpc_framing import COALESCE_INFLIGHT, FramedRPCProtocol
from vtwist.protocols.tabletrpc_ops import (
    OP_KILL,
    OP_STREAM_EXECUTE,
    OP_STREAM_HEALTH,
    ExecuteArgs,
    KillArgs,
    check_health,
    interrupted,
    op_spec,
)
from vtwist.protocols.tabletrpc_requests import InfilePull, Inflight, RequestContext, RowSink

log = Logger()

DEFAULT_MAX_INFLIGHT = 1024
DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024
DEFAULT_STREAM_CHUNK_ROWS = 1024
DEFAULT_STREAM_CHUNK_BYTES = 64 * 1024
DEFAULT_STREAM_WINDOW = 8
DEFAULT_MAX_STREAM_BUFFER_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_TIMEOUT = 3600.0
DEFAULT_HEALTH_KEEPALIVE = 1.0


class ServerConfig:
    """The bounds of a ``TabletRPCServerFactory`` (see its docstring)."""

    __slots__ = (
        "default_timeout",
        "health_keepalive",
        "max_frame_size",
        "max_inflight",
        "max_queued_bytes",
        "max_stream_buffer_bytes",
        "max_timeout",
        "stream_chunk_bytes",
        "stream_chunk_rows",
        "stream_window",
    )

    def __init__(
        self,
        max_frame_size: int,
        max_inflight: int,
        max_queued_bytes: int,
        stream_chunk_rows: int,
        stream_chunk_bytes: int,
        stream_window: int,
        max_stream_buffer_bytes: int,
        default_timeout: float,
        max_timeout: float,
        health_keepalive: float | None = DEFAULT_HEALTH_KEEPALIVE,
    ) -> None:
        for name, value in (
            ("max_inflight", max_inflight),
            ("max_queued_bytes", max_queued_bytes),
            ("stream_chunk_rows", stream_chunk_rows),
            ("stream_chunk_bytes", stream_chunk_bytes),
            ("stream_window", stream_window),
            ("max_stream_buffer_bytes", max_stream_buffer_bytes),
            ("default_timeout", default_timeout),
            ("max_timeout", max_timeout),
            ("health_keepalive", health_keepalive or 1.0),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        check_max_frame_size(max_frame_size)
        if stream_chunk_bytes >= max_frame_size:
            raise ValueError("stream_chunk_bytes must be smaller than max_frame_size")
        self.max_frame_size = max_frame_size
        self.max_inflight = max_inflight
        self.max_queued_bytes = max_queued_bytes
        self.stream_chunk_rows = stream_chunk_rows
        self.stream_chunk_bytes = stream_chunk_bytes
        self.stream_window = stream_window
        self.max_stream_buffer_bytes = max_stream_buffer_bytes
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self.health_keepalive = health_keepalive


@implementer(IPushProducer)
class TabletRPCServer(FramedRPCProtocol):
    """One gate connection on the tablet; built by ``TabletRPCServerFactory``."""

    role = "tablet"

    def __init__(self, service: ITabletService, clock: IReactorTime, config: ServerConfig) -> None:
        super().__init__(clock, config.max_frame_size)
        self.service = service
        self.config = config
        self.inflight: dict[int, Inflight] = {}
        self._dirty: list[RowSink] = []
        self.transport_paused = False
        self._deadlines = DeadlineTimer(clock, self._expire_due)

    @property
    def congested(self) -> bool:
        """True while stream chunks must wait: the transport has ``max_queued_bytes`` queued."""
        # Our own per-turn buffer needs no check: credit bounds what streams add to it.
        return self.transport_paused

    def hello_info(self) -> dict[str, Any]:
        """Announce our frame and in-flight bounds, that we pull LOAD DATA files, and how
        often a health stream hears from us when nothing changes."""
        info = super().hello_info()
        info["max_inflight"] = self.config.max_inflight
        info["infile_stream"] = True
        if self.config.health_keepalive is not None:
            info["health_keepalive"] = self.config.health_keepalive
        return info

    def connectionMade(self) -> None:
        """Register as the transport's producer so a congested gate pauses our streams."""
        super().connectionMade()
        assert self.transport is not None
        if isinstance(self.transport, FileDescriptor):
            # Make the transport's own pause threshold our named bound.
            self.transport.bufferSize = self.config.max_queued_bytes
        register = getattr(self.transport, "registerProducer", None)
        if register is not None:
            register(self, True)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Cancel every request of this gate (its answers have nowhere to go)."""
        super().connectionLost(reason)
        for entry in list(self.inflight.values()):
            self._cancel(entry, "connection lost", None)

    # --- IPushProducer (the transport pauses us when the gate does not read) -----------------

    def pauseProducing(self) -> None:
        """The gate's connection is congested: pause every row producer."""
        self.transport_paused = True
        for entry in list(self.inflight.values()):
            if entry.sink is not None:
                entry.sink.drain()

    def resumeProducing(self) -> None:
        """The gate's connection drained: send pending chunks, resume producers."""
        self.transport_paused = False
        for entry in list(self.inflight.values()):
            if entry.sink is not None:
                entry.sink.drain()

    def stopProducing(self) -> None:
        """The transport is going away; ``connectionLost`` cancels the requests."""

    # --- input ------------------------------------------------------------------------------

    def protocol_error(self, error: RemoteProtocolError) -> None:
        """Tell the gate why (ERROR with id 0), then close."""
        self.write_frame(encode_error(0, MySQLError(error.error_code, str(error))))
        self.close_connection()

    def message_error(self, error: MalformedMessageError) -> None:
        """A malformed REQUEST (or CANCEL/CREDIT/INFILE_DATA) about one id, or an
        INFILE_DATA not asked for: fail that request only."""
        entry = self.inflight.get(error.request_id)
        exc = MySQLError(error.error_code, str(error))
        if entry is not None:
            self.fail_request(entry, exc, "malformed message")
        else:
            self.write_frame(encode_error(error.request_id, exc))

    def message_received(self, msg: Message) -> None:
        """Dispatch REQUEST, CANCEL, CREDIT and INFILE_DATA; anything else is a protocol
        error."""
        if isinstance(msg, Request):
            self._on_request(msg)
        elif isinstance(msg, Credit):
            entry = self.inflight.get(msg.request_id)
            if entry is not None and entry.sink is not None:
                entry.sink.add_credit(msg.chunks)
        elif isinstance(msg, Cancel):
            entry = self.inflight.get(msg.request_id)
            if entry is not None:
                self._cancel(entry, "cancelled", interrupted("cancelled by the gate"))
        elif isinstance(msg, InfileData):
            self._on_infile_data(msg)
        else:
            self.protocol_error(MalformedMessageError(f"a gate may not send {type(msg).__name__}"))

    def _on_infile_data(self, msg: InfileData) -> None:
        entry = self.inflight.get(msg.request_id)
        if entry is None:
            return  # it crossed the request's end
        pull = entry.ctx.infile
        if pull is None:
            problem: str | None = "INFILE_DATA for a request without a streamed file"
        else:
            problem = pull.received(msg)
        if problem is not None:
            log.warn(
                "tablet RPC gate {peer} broke the protocol on request {rid}: {problem}",
                peer=self.peer,
                rid=msg.request_id,
                problem=problem,
            )
            self.message_error(MalformedMessageError(problem, msg.request_id))

    def _ask_infile(self, rid: int, max_bytes: int) -> int:
        """Send INFILE_MORE for request ``rid``, cut to what fits in a frame to the gate;
        return the ``max_bytes`` asked."""
        fits = max(1, min(self.peer_max_frame_size, MAX_FRAME_SIZE_LIMIT) - INFILE_DATA_OVERHEAD)
        max_bytes = min(max_bytes, fits)
        self.write_frame(encode_message(InfileMore(rid, max_bytes)))
        return max_bytes

    def _on_request(self, msg: Request) -> None:
        rid = msg.request_id
        if rid in self.inflight:
            self.protocol_error(MalformedMessageError(f"request id {rid} is already in flight"))
            return
        try:
            spec = op_spec(msg.op)
            args = spec.parse_args(msg.op, msg.args)
        except MySQLError as e:
            self.write_frame(encode_error(rid, e))
            return
        config = self.config
        if len(self.inflight) >= config.max_inflight:
            self.write_frame(
                encode_error(
                    rid,
                    MySQLError(
                        ErrorCode.TOO_MANY_USER_CONNECTIONS,
                        f"too many requests in flight on this tablet RPC connection (limit "
                        f"{config.max_inflight}); lower the gate's concurrency per tablet or "
                        "raise the tablet's rpc max_inflight",
                    ),
                )
            )
            return
        if msg.timeout_ms:
            timeout: float | None = min(msg.timeout_ms / 1000.0, config.max_timeout)
        elif spec.name == OP_STREAM_HEALTH:
            timeout = None  # a subscription lasts until cancelled
        else:
            timeout = config.default_timeout
        now = self._clock.seconds()
        infile = None
        if type(args) is ExecuteArgs and args.infile_stream:
            infile = InfilePull(lambda max_bytes: self._ask_infile(rid, max_bytes))
        ctx = RequestContext(
            rid, spec.name, None if timeout is None else now + timeout, self.peer, infile
        )
        entry = Inflight(ctx, spec)
        self.inflight[rid] = entry
        if timeout is not None:
            entry.timeout = timeout
            self._deadlines.add(now + timeout, now)
        try:
            result = self._dispatch(entry, args)
        except Exception as e:
            self._on_exception(e, None, entry)
            return
        if isinstance(result, Deferred):
            entry.deferred = result
            result.addCallbacks(
                self._on_result, self._on_failure, callbackArgs=(entry,), errbackArgs=(entry,)
            )
        elif result is not _SUBSCRIBED:
            self._on_result(result, entry)

    def _dispatch(self, entry: Inflight, args: Any) -> Any:
        op = entry.spec.name
        service = self.service
        ctx = entry.ctx
        if op == OP_STREAM_EXECUTE:
            assert isinstance(args, ExecuteArgs)
            entry.sink = RowSink(self, entry, args.window or self.config.stream_window)
            return service.stream_execute(ctx, args, entry.sink)
        if op == OP_STREAM_HEALTH:
            self._push_health(entry, service.health())
            if ctx.request_id in self.inflight:
                unsubscribe = service.subscribe_health(
                    lambda snapshot: self._push_health(entry, snapshot)
                )
                entry.unsubscribe = self._keep_health(entry, unsubscribe)
            return _SUBSCRIBED
        if op == OP_KILL and args.request_id:
            assert isinstance(args, KillArgs)
            return self._kill_request(args.request_id)
        method: Callable[[RequestContext, Any], Any] = getattr(service, op)
        return method(ctx, args)

    def _kill_request(self, rid: int) -> bool:
        victim = self.inflight.get(rid)
        if victim is None:
            return False
        self._cancel(victim, "killed", interrupted("killed by the gate"))
        return True

    def _keep_health(self, entry: Inflight, unsubscribe: Callable[[], None]) -> Callable[[], None]:
        """Send the health snapshot again every ``health_keepalive`` seconds, changed or not
        (a gate takes a silent stream for a stalled tablet); returns ``unsubscribe`` that
        also stops that."""
        every = self.config.health_keepalive
        if every is None:
            return unsubscribe
        loop = LoopingCall(lambda: self._push_health(entry, self.service.health()))
        loop.clock = self._clock
        loop.start(every, now=False)

        def stop() -> None:
            if loop.running:
                loop.stop()
            unsubscribe()

        return stop

    def _push_health(self, entry: Inflight, snapshot: Mapping[str, Any]) -> None:
        if self.inflight.get(entry.ctx.request_id) is not entry:
            return
        try:
            frame = encode_message(Health(entry.ctx.request_id, check_health(snapshot)))
        except (TypeError, ValueError) as e:
            log.error("tablet health snapshot cannot be sent: {e}", e=e)
            return
        self.write_frame(frame)

    # --- completion -------------------------------------------------------------------------

    def _current(self, entry: Inflight) -> bool:
        return not entry.ctx.cancelled and self.inflight.get(entry.ctx.request_id) is entry

    def _on_result(self, value: Any, entry: Inflight) -> None:
        if not self._current(entry):
            return
        rid = entry.ctx.request_id
        try:
            frame = encode_reply(rid, entry.spec.encode_result(value))
        except (TypeError, ValueError) as e:
            log.error("tablet service returned a bad {op} result: {e}", op=entry.spec.name, e=e)
            self.fail_request(
                entry,
                MySQLError(ErrorCode.UNKNOWN_ERROR, f"tablet bug: bad {entry.spec.name} result"),
                "bad result",
            )
            return
        if not self.frame_fits(frame):
            self.fail_request(
                entry,
                MySQLError(
                    ErrorCode.NET_PACKET_TOO_LARGE,
                    f"result of {len(frame)} bytes exceeds the tablet RPC max_frame_size "
                    f"({self.peer_max_frame_size}); lower max rows or use streaming",
                ),
                "result too large",
            )
            return
        if entry.sink is not None:
            entry.sink.finish(frame)  # the sink sends it after its last chunk
            return
        self._done(entry)
        self.write_frame(frame)

    def _on_failure(self, failure: Failure, entry: Inflight) -> None:
        exc = failure.value
        assert exc is not None
        self._on_exception(exc, failure, entry)

    def _on_exception(self, exc: BaseException, failure: Failure | None, entry: Inflight) -> None:
        if not self._current(entry):
            return
        if isinstance(exc, MySQLError):
            error = exc
        elif isinstance(exc, CancelledError):
            error = interrupted("cancelled by the tablet")
        else:
            # With failure=None, log.failure captures the exception being handled.
            log.failure(
                "tablet service failed {op} (request {rid})",
                failure,
                op=entry.spec.name,
                rid=entry.ctx.request_id,
            )
            error = MySQLError(
                ErrorCode.UNKNOWN_ERROR,
                f"tablet internal error in {entry.spec.name}: {type(exc).__name__}; "
                "see the tablet log",
            )
        self.fail_request(entry, error, None)

    def fail_request(self, entry: Inflight, error: MySQLError, cancel_reason: str | None) -> None:
        """End ``entry`` with ``error``; with ``cancel_reason`` also cancel the service's work."""
        if self.inflight.get(entry.ctx.request_id) is not entry:
            return
        if cancel_reason is not None:
            self._cancel(entry, cancel_reason, error)
            return
        self._done(entry)
        self.write_frame(encode_error(entry.ctx.request_id, error))

    def stream_done(self, entry: Inflight) -> None:
        """The sink sent the final frame of a stream."""
        self._done(entry)

    def _done(self, entry: Inflight) -> None:
        self._forget(entry.ctx.request_id)
        entry.ctx._finish()
        if entry.sink is not None:
            entry.sink.close(stop_producer=False)
        if entry.unsubscribe is not None:
            entry.unsubscribe()
            entry.unsubscribe = None

    def _forget(self, rid: int) -> None:
        """Remove request ``rid`` from ``inflight`` (the deadline timer goes with the last)."""
        self.inflight.pop(rid, None)
        if not self.inflight:
            self._deadlines.stop()

    def _expire_due(self, now: float) -> float:
        """Cancel the requests whose deadline passed; the earliest deadline of the rest."""
        for entry in list(self.inflight.values()):
            at = entry.ctx.deadline
            if at is not None and at <= now:
                self._expire(entry)
        return min(
            (e.ctx.deadline for e in self.inflight.values() if e.ctx.deadline is not None),
            default=math.inf,
        )

    def _expire(self, entry: Inflight) -> None:
        self._cancel(
            entry,
            "deadline",
            interrupted(
                f"the tablet RPC deadline ({entry.timeout:g} s) expired; raise the query "
                "timeout or make the query cheaper"
            ),
        )

    def _cancel(self, entry: Inflight, reason: str, error: MySQLError | None) -> None:
        rid = entry.ctx.request_id
        if self.inflight.get(rid) is not entry:
            return
        self._forget(rid)
        if entry.unsubscribe is not None:
            entry.unsubscribe()
            entry.unsubscribe = None
        if entry.sink is not None:
            entry.sink.close(stop_producer=True)
        entry.ctx._cancel(reason, error)
        d = entry.deferred
        if d is not None and not d.called:
            d.cancel()  # the errback sees a cancelled context and stays silent
        if error is not None:
            self.write_frame(encode_error(rid, error))

    # --- output -----------------------------------------------------------------------------

    def mark_dirty(self, sink: RowSink) -> None:
        """``sink`` holds rows to emit at the end of this reactor turn."""
        if not sink.dirty:
            sink.dirty = True
            self._dirty.append(sink)
        self.schedule_flush()

    def coalescing(self) -> bool:
        """More than ``COALESCE_INFLIGHT`` requests are still running: more replies follow."""
        return len(self.inflight) > COALESCE_INFLIGHT

    def before_flush(self) -> None:
        """Emit the partial chunks of streams that got rows during this turn."""
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            for sink in dirty:
                sink.dirty = False
                sink.cut_partial()


_SUBSCRIBED = object()


class TabletRPCServerFactory(Factory):
    """Builds ``TabletRPCServer``s for one ``ITabletService``.

    Bounds (all per connection):

    - ``max_frame_size``: the largest frame accepted and sent (bytes); an oversized frame
      from the gate closes the connection after ERROR 1153.
    - ``max_inflight``: requests in flight; beyond it a request gets ERROR 1203.
    - ``max_queued_bytes``: outgoing bytes buffered before stream producers are paused (it
      also becomes the TCP transport's ``bufferSize``).
    - ``stream_chunk_rows`` / ``stream_chunk_bytes``: a stream chunk is cut at either.
    - ``stream_window``: chunks in flight per stream when the gate does not say.
    - ``max_stream_buffer_bytes``: chunks held for one stream while its producer is paused;
      a producer that ignores pausing past it fails the request.
    - ``default_timeout``: deadline (s) of a request sent without one (health streams have
      none); ``max_timeout``: the longest deadline accepted (longer ones are cut to it).
    - ``health_keepalive``: a health stream gets the snapshot at least this often (seconds),
      changed or not; announced in HELLO (None: only changes are sent).
    """

    def __init__(
        self,
        service: ITabletService,
        clock: IReactorTime,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        stream_chunk_rows: int = DEFAULT_STREAM_CHUNK_ROWS,
        stream_chunk_bytes: int = DEFAULT_STREAM_CHUNK_BYTES,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        max_stream_buffer_bytes: int = DEFAULT_MAX_STREAM_BUFFER_BYTES,
        default_timeout: float = DEFAULT_TIMEOUT,
        max_timeout: float = DEFAULT_MAX_TIMEOUT,
        health_keepalive: float | None = DEFAULT_HEALTH_KEEPALIVE,
    ) -> None:
        self.service = service
        self.clock = clock
        self.config = ServerConfig(
            max_frame_size,
            max_inflight,
            max_queued_bytes,
            stream_chunk_rows,
            stream_chunk_bytes,
            stream_window,
            max_stream_buffer_bytes,
            default_timeout,
            max_timeout,
            health_keepalive,
        )

    def buildProtocol(self, addr: object) -> TabletRPCServer:
        """A server protocol for one gate connection."""
        proto = TabletRPCServer(self.service, self.clock, self.config)
        proto.factory = self
        return proto
