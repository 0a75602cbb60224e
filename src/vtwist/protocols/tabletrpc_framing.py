"""Twisted base of both tablet RPC peers: framing, HELLO, write coalescing, TCP_NODELAY.

``FramedRPCProtocol`` turns bytes into ``tabletrpc_codec`` messages and back. Frames made
while one read is handled are joined into one write, sent when that read is done: this
protocol's own ``dataReceived`` (replies to a batch of requests), or another protocol's
read inside ``mysql.output.reading`` (the request a gate makes from one client's command,
the reply a tablet makes from one mysqld answer). Frames made outside any read (timers)
go out by a ``callLater(0)``. Nothing waits for later reads while the peer may be idle:
holding a gate's requests until every client of the reactor turn was read would make the
tablet idle meanwhile, and the two processes would take turns instead of working together.
Once more than ``COALESCE_INFLIGHT`` calls are in flight (``coalescing()``: the tablet has
work queued, or more of its replies are on their way), frames made in other reads wait for
the end of the turn instead, which saves a system call per frame where it costs no idle
time (a loopback ``send`` costs about as much as the rest of a call). The write goes straight to
the socket when nothing is queued on the transport (``write_through``), saving the
reactor's extra turn and the two epoll updates of a buffered ``transport.write``. Input is
handled inside ``mysql.output.reading``, so the MySQL replies a gate builds from a tablet's
answer (written while this protocol reads) go out as one write per reply too.
Subclasses (``TabletRPCClient``, ``TabletRPCServer``) implement ``message_received``.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.protocols.mysql.errors import ErrorCode, RemoteProtocolError
from vtwist.protocols.mysql.output import reading, write_through
from vtwist.protocols.tabletrpc_codec import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameTooLargeError,
    Hello,
    MalformedMessageError,
    Message,
    check_max_frame_size,
    decode_message,
    encode_message,
)

log = Logger()

#: Calls in flight on a connection above which frames wait for the end of the reactor turn.
COALESCE_INFLIGHT: Final = 3


def set_tcp_nodelay(transport: object) -> bool:
    """Turn on TCP_NODELAY when ``transport`` (or the TCP under its TLS layer) has it."""
    setter = getattr(transport, "setTcpNoDelay", None)
    if setter is None:
        return False
    try:
        setter(True)
    except OSError:  # e.g. a UNIX socket behind a wrapper
        return False
    return True


class FramedRPCProtocol(Protocol):
    """Shared machinery of the tablet RPC client and server protocols.

    ``max_frame_size`` bounds what this side accepts (and is announced in HELLO);
    ``peer_max_frame_size`` is what the peer announced, which bounds what we send.
    """

    role = "peer"

    def __init__(self, clock: IReactorTime, max_frame_size: int) -> None:
        self._clock = clock
        self.max_frame_size = check_max_frame_size(max_frame_size)
        # Until the peer's HELLO says otherwise, assume it accepts what we accept.
        self.peer_max_frame_size = self.max_frame_size
        self.peer_hello: Hello | None = None
        self._decoder = FrameDecoder(self.max_frame_size)
        self._out: list[bytes] = []
        self.out_bytes = 0
        self._flush_call: IDelayedCall | None = None
        # True while a flush is certain to follow (handling input, or flushing itself).
        self._batching = False
        # True while this protocol waits in ``reading.dirty`` for another read's end.
        self._flush_on_read = False
        self.closing = False
        self.peer = "?"

    # --- hooks for subclasses ---------------------------------------------------------------

    def hello_info(self) -> dict[str, Any]:
        """What this side announces in its HELLO."""
        return {"max_frame": self.max_frame_size, "role": self.role}

    def message_received(self, msg: Message) -> None:
        """Handle one decoded message other than HELLO."""
        raise NotImplementedError

    def hello_received(self, hello: Hello) -> None:
        """The peer's HELLO arrived (version already checked)."""

    def message_error(self, error: MalformedMessageError) -> None:
        """A message about one request was malformed; the connection goes on."""

    def protocol_error(self, error: RemoteProtocolError) -> None:
        """The peer broke the protocol; the default closes the connection."""
        self.close_connection()

    def before_flush(self) -> None:
        """Called before the coalesced writes go out (the server emits partial chunks)."""

    def coalescing(self) -> bool:
        """True when frames made outside this protocol's reads should wait for the end of
        the reactor turn, not just for the end of the read that made them."""
        return False

    # --- Twisted hooks ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Set TCP_NODELAY and send HELLO."""
        assert self.transport is not None
        set_tcp_nodelay(self.transport)
        self.peer = str(self.transport.getPeer())
        self.write_frame(encode_message(Hello(PROTOCOL_VERSION, self.hello_info())))

    def dataReceived(self, data: bytes) -> None:
        """Decode complete frames and dispatch them; flush replies in one write at the end."""
        if self.closing:
            return
        self._batching = True
        reading.enter()  # MySQL replies written meanwhile go out whole, at the end
        try:
            self._receive(data)
        finally:
            self._batching = False
            try:
                self.flush()
            finally:
                reading.leave()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Drop buffered output; subclasses fail or cancel what was in flight."""
        self.closing = True
        self._out.clear()
        self.out_bytes = 0
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None

    # --- input ------------------------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        try:
            payloads = self._decoder.feed(data)
        except FrameTooLargeError as e:
            log.warn("tablet RPC peer {peer} sent an oversized frame: {e}", peer=self.peer, e=e)
            self.protocol_error(e)
            return
        for payload in payloads:
            try:
                msg = decode_message(payload)
            except MalformedMessageError as e:
                if e.request_id and self.peer_hello is not None:
                    self.message_error(e)
                    continue
                log.warn("tablet RPC peer {peer} broke the protocol: {e}", peer=self.peer, e=e)
                self.protocol_error(e)
                return
            if self.peer_hello is None:
                if not self._check_hello(msg):
                    return
                continue
            if type(msg) is Hello:
                self.protocol_error(MalformedMessageError("second HELLO"))
                return
            self.message_received(msg)
            if self.closing:
                return

    def _check_hello(self, msg: Message) -> bool:
        if type(msg) is not Hello:
            self.protocol_error(MalformedMessageError("the first message must be HELLO"))
            return False
        if msg.version != PROTOCOL_VERSION:
            self.protocol_error(
                RemoteProtocolError(
                    f"tablet RPC protocol version {msg.version} is not supported (this side "
                    f"speaks {PROTOCOL_VERSION}); run the same vtwist version on gate and tablet",
                    ErrorCode.HANDSHAKE_ERROR,
                )
            )
            return False
        self.peer_hello = msg
        peer_max = msg.info.get("max_frame")
        if type(peer_max) is int and peer_max >= 64:
            self.peer_max_frame_size = peer_max
        self.hello_received(msg)
        return True

    # --- output -----------------------------------------------------------------------------

    def frame_fits(self, frame: bytes) -> bool:
        """True when the peer accepts ``frame`` (a complete frame, header included)."""
        return len(frame) - HEADER_SIZE <= self.peer_max_frame_size

    def write_frame(self, frame: bytes) -> None:
        """Queue ``frame``; it goes out with the others of this reactor turn."""
        if self.closing:
            return
        self._out.append(frame)
        self.out_bytes += len(frame)
        if self._batching:
            return  # this protocol's read (or flush) is in progress: it flushes at its end
        if self.coalescing():
            self.schedule_flush()
            return
        if reading.depth:
            if not self._flush_on_read:  # another protocol's read: out when it is handled
                self._flush_on_read = True
                reading.dirty.append(self)
            return
        self.schedule_flush()

    def schedule_flush(self) -> None:
        """Make sure ``flush`` runs at the end of this reactor turn."""
        if not self._batching and self._flush_call is None and not self.closing:
            self._flush_call = self._clock.callLater(0, self._flush_later)

    def _flush_later(self) -> None:
        self._flush_call = None
        self.flush()

    def flush(self) -> None:
        """Send everything queued now, as one write."""
        self._flush_on_read = False
        batching, self._batching = self._batching, True  # writes below join this flush
        try:
            self.before_flush()
        finally:
            self._batching = batching
        if not self._out or self.transport is None:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self.out_bytes = 0
        write_through(self.transport, data)

    def close_connection(self) -> None:
        """Flush what is queued (e.g. a final ERROR), then close."""
        if self.closing:
            return
        self.flush()
        self.closing = True
        if self.transport is not None:
            self.transport.loseConnection()
