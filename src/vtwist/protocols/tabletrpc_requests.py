"""Per-request state on the tablet side: the request context and the stream row sink.

``RequestContext`` is the ``ITabletRPCRequest`` a service receives; ``RowSink`` is the
``IRowSink`` of a ``stream_execute``: it cuts rows into chunks, spends the gate's credit and
pauses the service's producer when it cannot send. ``InfilePull`` is the tablet's side of a
streamed LOAD DATA LOCAL INFILE file (``read_infile``: one INFILE_MORE at a time, answered
by the gate's INFILE_DATA). ``Inflight`` is the server's record of a request until its
terminal frame is sent. Driven by ``TabletRPCServer``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from vtwist.interfaces import IRowSink, ITabletRPCRequest
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_codec import InfileData, encode_chunk
from vtwist.protocols.tabletrpc_ops import OpSpec, interrupted, sequence_of_bytes

if TYPE_CHECKING:
    from vtwist.protocols.tabletrpc_server import TabletRPCServer

log = Logger()

MAX_CANCEL_HOOKS = 16


class InfilePull:
    """The tablet's side of one request's streamed LOAD DATA LOCAL INFILE file.

    ``read`` asks the gate for a piece through ``ask(max_bytes)`` (which sends INFILE_MORE
    and returns the ``max_bytes`` it asked, bounded by the gate's frame size); ``received``
    takes the gate's INFILE_DATA. One piece is asked at a time. After the end of the file
    reads answer ``b""``; after an error (the gate's, a cancelled read, the request's end)
    they fail with it.
    """

    __slots__ = ("_ask", "_pending", "asked", "eof", "error")

    def __init__(self, ask: Callable[[int], int]) -> None:
        self._ask = ask
        self._pending: Deferred[bytes] | None = None
        self.asked = 0  # max_bytes of the INFILE_MORE not answered yet (0: none)
        self.eof = False
        self.error: MySQLError | None = None

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """The next piece (see ``ITabletRPCRequest.read_infile``)."""
        if self.error is not None:
            return fail(self.error)
        if self.eof:
            return succeed(b"")
        if self._pending is not None:
            return fail(
                MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    "tablet bug: read_infile called while a read of the LOAD DATA LOCAL "
                    "INFILE file is pending (one read at a time)",
                )
            )
        d: Deferred[bytes] = Deferred(self._cancelled)
        self._pending = d
        self.asked = self._ask(max_bytes)
        return d

    def _cancelled(self, d: Deferred[bytes]) -> None:
        # The piece asked for still comes; it is dropped (``asked`` stays set), and the
        # file cannot be read in order any more.
        if self._pending is d:
            self._pending = None
        if self.error is None:
            self.error = interrupted("the read of the LOAD DATA LOCAL INFILE file was cancelled")

    def received(self, msg: InfileData) -> str | None:
        """Take the gate's INFILE_DATA; the reason it breaks the protocol, or None."""
        asked = self.asked
        if not asked:
            return "INFILE_DATA that the tablet did not ask for"
        if len(msg.data) > asked:
            return f"INFILE_DATA of {len(msg.data)} bytes when the tablet asked for {asked}"
        self.asked = 0
        d, self._pending = self._pending, None
        if msg.error is not None:
            error = msg.error.to_exception()
            if self.error is None:
                self.error = error
            if d is not None:
                d.errback(error)
        elif not msg.data:
            self.eof = True
            if d is not None:
                d.callback(b"")
        elif d is not None:
            d.callback(msg.data)
        return None

    def fail(self, error: MySQLError) -> None:
        """The request ended or was cancelled: fail the pending read, and later ones
        (unless the whole file was read)."""
        if self.error is None and not self.eof:
            self.error = error
        d, self._pending = self._pending, None
        if d is not None:
            d.errback(error)


@implementer(ITabletRPCRequest)
class RequestContext:
    """The ``ITabletRPCRequest`` handed to the service with each request.

    ``infile`` is the request's streamed LOAD DATA LOCAL INFILE file, when its arguments
    had ``infile_stream`` (else ``read_infile`` fails).
    """

    __slots__ = (
        "_hooks",
        "cancel_reason",
        "cancelled",
        "deadline",
        "infile",
        "op",
        "peer",
        "request_id",
    )

    def __init__(
        self,
        request_id: int,
        op: str,
        deadline: float | None,
        peer: str,
        infile: InfilePull | None = None,
    ) -> None:
        self.request_id = request_id
        self.op = op
        self.deadline = deadline
        self.peer = peer
        self.cancelled = False
        self.cancel_reason: str | None = None
        self._hooks: list[Callable[[str], object]] | None = None
        self.infile = infile

    def read_infile(self, max_bytes: int) -> Deferred[bytes]:
        """See ``ITabletRPCRequest.read_infile``; ``max_bytes`` is also cut to what fits
        in one frame to the gate. ``ValueError`` unless ``max_bytes`` > 0."""
        if type(max_bytes) is not int or max_bytes <= 0:
            raise ValueError(f"read_infile needs max_bytes > 0, got {max_bytes!r}")
        if self.infile is None:
            return fail(
                MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    f"tablet bug: read_infile on a {self.op} request whose LOAD DATA LOCAL "
                    "INFILE file is not streamed (its arguments have no infile_stream)",
                )
            )
        return self.infile.read(max_bytes)

    def on_cancel(self, hook: Callable[[str], object]) -> None:
        """See ``ITabletRPCRequest.on_cancel``; at most ``MAX_CANCEL_HOOKS`` per request."""
        if self.cancelled:
            hook(self.cancel_reason or "cancelled")
            return
        if self._hooks is None:
            self._hooks = []
        if len(self._hooks) >= MAX_CANCEL_HOOKS:
            raise ValueError(f"more than {MAX_CANCEL_HOOKS} cancel hooks on one request")
        self._hooks.append(hook)

    def _finish(self) -> None:
        self._hooks = None
        if self.infile is not None:
            self.infile.fail(
                interrupted("the request ended before its LOAD DATA LOCAL INFILE file was read")
            )

    def _cancel(self, reason: str, error: MySQLError | None = None) -> None:
        """Run the cancel hooks; a pending ``read_infile`` fails with ``error`` (the one the
        gate gets) or, when the gate gets none (connection lost), with 1317."""
        if self.cancelled:
            return
        self.cancelled = True
        self.cancel_reason = reason
        hooks, self._hooks = self._hooks, None
        for hook in hooks or ():
            try:
                hook(reason)
            except Exception:
                log.failure("cancel hook of tablet RPC request {rid} failed", rid=self.request_id)
        if self.infile is not None:
            self.infile.fail(error or interrupted(f"the tablet RPC request ended ({reason})"))


class Inflight:
    """The server's record of one request until its terminal frame is sent."""

    __slots__ = ("ctx", "deferred", "sink", "spec", "timeout", "unsubscribe")

    def __init__(self, ctx: RequestContext, spec: OpSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.deferred: Deferred[Any] | None = None
        self.timeout = 0.0  # seconds from its start to ``ctx.deadline`` (for the message)
        self.sink: RowSink | None = None
        self.unsubscribe: Callable[[], None] | None = None


@implementer(IRowSink)
class RowSink:
    """``IRowSink`` of one ``stream_execute``: cuts chunks, spends credit, pauses the producer.

    Chunks that cannot be sent (no credit, congested connection) wait in ``_pending``; the
    producer is paused meanwhile. The final REPLY is sent after the last pending chunk.
    """

    def __init__(self, server: TabletRPCServer, entry: Inflight, window: int) -> None:
        self._server = server
        self._entry = entry
        self._rid = entry.ctx.request_id
        self._credit = window
        self._fields: list[bytes] | None = None
        self._fields_sent = False
        self._rows: list[bytes] = []
        self._rows_bytes = 0
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._final: bytes | None = None
        self._producer: IPushProducer | None = None
        self._producer_paused = False
        self.closed = False
        self.dirty = False
        self.producer_pauses = 0

    # --- IRowSink ---------------------------------------------------------------------------

    def send_fields(self, fields: Sequence[bytes]) -> None:
        """See ``IRowSink.send_fields``."""
        if self._fields is not None or self._fields_sent:
            raise ValueError("send_fields called twice on one stream")
        self._fields = sequence_of_bytes(fields, "fields")
        self._server.mark_dirty(self)

    def send_rows(self, rows: Sequence[bytes]) -> None:
        """See ``IRowSink.send_rows``."""
        if self.closed:
            return
        rows = sequence_of_bytes(rows, "rows")
        config = self._server.config
        for row in rows:
            self._rows.append(row)
            self._rows_bytes += len(row) + 5  # + msgpack bin header, roughly
            if (
                len(self._rows) >= config.stream_chunk_rows
                or self._rows_bytes >= config.stream_chunk_bytes
            ):
                self._cut()
                if self.closed:
                    return
        if self._rows:
            self._server.mark_dirty(self)

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """See ``IRowSink.registerProducer``; a pull producer is refused."""
        if not streaming:
            raise ValueError("the tablet RPC row sink needs a streaming (push) producer")
        self._producer = producer
        self._producer_paused = False
        self._update_producer()

    def unregisterProducer(self) -> None:
        """See ``IRowSink.unregisterProducer``."""
        self._producer = None

    # --- driven by the server ---------------------------------------------------------------

    def cut_partial(self, force: bool = False) -> None:
        """Emit what was built so far (end of a reactor turn).

        While the stream cannot send (no credit, congestion, chunks waiting) rows keep
        accumulating into full chunks instead: small chunks would waste credit.
        """
        if self.closed:
            return
        if not (self._rows or (self._fields is not None and not self._fields_sent)):
            return
        if force or (self._credit > 0 and not self._pending and not self._server.congested):
            self._cut()

    def add_credit(self, chunks: int) -> None:
        """The gate consumed ``chunks`` chunks."""
        self._credit = min(self._credit + chunks, 1 << 20)
        self.drain()

    def finish(self, final: bytes) -> None:
        """The service is done; ``final`` (the REPLY frame) follows the pending chunks."""
        self.cut_partial(force=True)
        if self.closed:  # the last chunk failed the request
            return
        self._final = final
        self._producer = None
        self.drain()

    def close(self, stop_producer: bool) -> None:
        """Forget everything; stop the producer when the request was cancelled."""
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        self._rows = []
        producer, self._producer = self._producer, None
        if stop_producer and producer is not None:
            try:
                producer.stopProducing()
            except Exception:
                log.failure("stopProducing of tablet RPC stream {rid} failed", rid=self._rid)

    def drain(self) -> None:
        """Send pending chunks while credit and the connection allow; then the final frame."""
        if self.closed:
            return
        server = self._server
        while self._pending and self._credit > 0 and not server.congested:
            frame = self._pending.popleft()
            self._pending_bytes -= len(frame)
            self._credit -= 1
            server.write_frame(frame)
        if not self._pending and self._final is not None:
            final, self._final = self._final, None
            server.write_frame(final)
            server.stream_done(self._entry)
            return
        if self._rows and not self._pending and self._credit > 0 and not server.congested:
            server.mark_dirty(self)  # rows that accumulated while blocked go out this turn
        self._update_producer()

    # --- internals --------------------------------------------------------------------------

    def _cut(self) -> None:
        fields = None
        if not self._fields_sent:
            fields = self._fields if self._fields is not None else []
            self._fields_sent = True
            self._fields = None
        rows, self._rows, self._rows_bytes = self._rows, [], 0
        frame = encode_chunk(self._rid, fields, rows)
        if not self._server.frame_fits(frame):
            self._server.fail_request(
                self._entry,
                MySQLError(
                    ErrorCode.NET_PACKET_TOO_LARGE,
                    "a stream chunk exceeds the gate's max_frame_size; lower the tablet's "
                    "stream_chunk_bytes or raise max_frame_size",
                ),
                "stream overflow",
            )
            return
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes > self._server.config.max_stream_buffer_bytes:
            self._server.fail_request(
                self._entry,
                MySQLError(
                    ErrorCode.UNKNOWN_ERROR,
                    "tablet stream buffer exceeded max_stream_buffer_bytes: the row producer "
                    "did not pause; report this tablet bug",
                ),
                "stream overflow",
            )
            return
        self.drain()

    def _update_producer(self) -> None:
        producer = self._producer
        if producer is None:
            return
        blocked = self._credit <= 0 or bool(self._pending) or self._server.congested
        if blocked and not self._producer_paused:
            self._producer_paused = True
            self.producer_pauses += 1
            producer.pauseProducing()
        elif not blocked and self._producer_paused:
            self._producer_paused = False
            producer.resumeProducing()
