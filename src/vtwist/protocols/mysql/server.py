"""The MySQL server as a Twisted protocol: the gate's listener.

``MySQLServerFactory`` (give it to any stream server endpoint) builds one
``MySQLServerProtocol`` per client. The protocol owns the bytes and the connection phase:
greeting (connection id, 20-byte scramble), TLS upgrade by ``startTLS`` after an
SSLRequest (bytes the client sent after it, i.e. the start of its TLS handshake, are handed
to the TLS layer: none is lost), timeouts, limits, command ordering and back-pressure.
Authentication (login and COM_CHANGE_USER) is ``server_login.Authenticator``'s; commands go
to a ``server_session.ServerSession`` and from there to the gate's ``IQueryHandler``; this
package never imports the gate.

Ordering: one command at a time. Bytes that arrive while a command is in progress wait,
unparsed, in a buffer of at most ``max_pipeline_bytes`` (then reading from the socket is
paused), so pipelined commands are answered in order with bounded memory. The exception:
the packets of a LOAD DATA LOCAL INFILE file that the handler asked for (``request_file``,
through its sink's ``local_infile``) are parsed as they come into a ``ClientFile``, the
``IClientFile`` the handler reads the file from in pieces: at most
``max_infile_buffer_bytes`` of it wait there (then reading from the socket is paused until
the handler reads), the file is bounded in size (ERR 1153) and the client in time (it may
not stall while the server waits for its bytes).

Output: a reply made while bytes are being read (the passthrough's, made while reading its
backend) goes out with one ``send`` when it is complete or the read is handled
(``output``); other writes go to the transport at once.

Back-pressure: the protocol is its transport's streaming producer; when the client's
socket is congested it pauses the producer the current reply's handler registered on its
sink, and resumes it later (see ``IResultSink``).

Failure handling: a peer that breaks the protocol gets an ERR (when it can still read one)
and the connection is closed; handler failures become ERR packets and the session goes
on; no exception escapes into the reactor (our own bugs are logged and close the
connection).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLServerConnectionCreator,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    ITLSTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import IAuthServer, IClientFile, IQueryHandlerFactory
from vtwist.protocols.mysql.auth import (
    RsaKey,
    make_scramble,
)
from vtwist.protocols.mysql.commands import ComChangeUser, ComQuery, ComQuit, ComStmtExecute
from vtwist.protocols.mysql.connection import (
    CLOSED,
    DEFAULT_MAX_PACKET_SIZE,
    NEED_DATA,
    PAUSED,
    Connection,
    Role,
    State,
)
from vtwist.protocols.mysql.constants import (
    CHARSET_UTF8MB4_GENERAL_CI,
    SERVER_CAPABILITIES,
    Capability,
    ServerStatus,
)
from vtwist.protocols.mysql.errors import (
    ErrorCode,
    LocalProtocolError,
    MySQLError,
    RemoteProtocolError,
)
from vtwist.protocols.mysql.messages import (
    AuthData,
    ColumnDefinition41,
    Err,
    HandshakeResponse41,
    HandshakeV10,
    LocalInfileData,
    LocalInfileRequest,
    SSLRequest,
)
from vtwist.protocols.mysql.output import OutputBuffer, reading
from vtwist.protocols.mysql.server_login import Authenticator
from vtwist.protocols.mysql.server_session import ServerSession
from vtwist.protocols.mysql.server_sink import (
    TRANSPORT,
    Flow,
    SinkLimits,
)
from vtwist.protocols.mysql.server_types import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_CURSOR_BUFFER_BYTES,
    DEFAULT_CURSOR_BUFFER_ROWS,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_OVERRUN_BYTES,
    DEFAULT_MAX_PIPELINE_BYTES,
    DEFAULT_MAX_PREPARED_STATEMENTS,
    DEFAULT_SERVER_VERSION,
    DEFAULT_WRITE_BUFFER_BYTES,
    ClientInfo,
    ServerMetrics,
)
from vtwist.protocols.mysql.wire import Message

__all__ = [
    "DEFAULT_MAX_INFILE_BUFFER_BYTES",
    "DEFAULT_SERVER_VERSION",
    "ClientFile",
    "MySQLServerFactory",
    "MySQLServerProtocol",
    "ServerMetrics",
]

log = Logger()

ER_CLIENT_INTERACTION_TIMEOUT: Final = 4031
_AUTOCOMMIT: Final = int(ServerStatus.AUTOCOMMIT)
# Members as module constants (read faster than enum class attributes).
_S_CLOSED: Final = State.CLOSED
_S_IDLE: Final = State.IDLE
# States in which the server is in the middle of a reply: its bytes wait in the output
# buffer for the rest (written together at the end of the reply or of the current read).
# The hot commands: handed to the session before the login and COM_QUIT checks.
_SESSION_COMMANDS: Final = frozenset({ComStmtExecute, ComQuery})
_MID_REPLY: Final = frozenset({State.RESULT, State.COLUMNS, State.COLUMNS_END, State.ROWS})


DEFAULT_MAX_INFILE_BUFFER_BYTES: Final = 1 << 20


@implementer(IClientFile)
class ClientFile:
    """A LOAD DATA LOCAL INFILE file a client is sending, read in pieces
    (``MySQLServerProtocol.request_file``; see ``IClientFile``).

    The protocol routes the client's bytes here while the file is *attached* (until its
    empty packet, or until it fails for good). Packets are parsed only while at most
    ``buffer_limit`` bytes wait in the buffer: beyond, reading from the socket is paused
    (the client is then not stalling) and resumed when a ``read`` takes the buffer back
    to the limit. While attached and reading, the client may pause ``idle_timeout``
    seconds between packets at most. Past ``max_bytes`` in all, the file fails with ERR
    1153 and the rest is read and dropped, as after ``finish``, until the empty packet.
    """

    def __init__(
        self,
        proto: MySQLServerProtocol | None,
        max_bytes: int,
        buffer_limit: int,
        error: MySQLError | None = None,
    ) -> None:
        self._proto = proto  # None once detached: the file ended, or failed for good
        self.max_bytes = max_bytes
        self._limit = buffer_limit
        self._pieces: deque[bytes] = deque()
        self._head = 0  # what ``read`` already took of ``_pieces[0]``
        self._buffered = 0
        self.received = 0  # bytes the client sent so far (kept or dropped)
        self.consumed = 0
        self._ended = proto is None  # the client's empty packet came
        self._discarding = False  # drop what comes (``finish`` was called, or too large)
        self._finishing = False
        self._error = error  # ``read`` fails with it
        self._fatal = error  # the client went away / stalled / broke the protocol
        self._read_d: Deferred[bytes] | None = None
        self._read_want = 0
        self._finish_ds: list[Deferred[None]] = []
        self._timer: IDelayedCall | None = None
        self._pumping = False
        self._again = False

    # -- IClientFile -------------------------------------------------------------------------

    def read(self, max_bytes: int) -> Deferred[bytes]:
        """See ``IInfileReader.read``."""
        if max_bytes <= 0:
            return fail(ValueError(f"read() needs max_bytes > 0, got {max_bytes}"))
        if self._read_d is not None:
            return fail(LocalProtocolError("a LOCAL INFILE read is already in progress"))
        if self._error is not None:
            return fail(self._error)
        if self._buffered:
            data = self._take(max_bytes)
            self._pump()  # below the limit again: parse what waits, resume reading
            return succeed(data)
        if self._ended or self._finishing:
            return succeed(b"")
        d: Deferred[bytes] = Deferred(self._cancel_read)
        self._read_d = d
        self._read_want = max_bytes
        return d

    def finish(self) -> Deferred[None]:
        """See ``IClientFile.finish``."""
        self._finishing = True
        self._drop()
        if self._fatal is not None:
            return fail(self._fatal)
        if self._ended:
            return succeed(None)
        self._discarding = True
        d: Deferred[None] = Deferred(self._cancel_finish)
        self._finish_ds.append(d)
        self._pump()
        return d

    # -- the protocol's side ---------------------------------------------------------------

    @property
    def attached(self) -> bool:
        """Whether the client's packets still come here."""
        return self._proto is not None

    def data_received(self) -> None:
        """The protocol fed the client's bytes to its connection: the client is alive."""
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(self._timeout())
        self._pump()

    def lose(self, error: MySQLError) -> None:
        """The file cannot be had (the connection is closed or closing): fail what waits."""
        self._set_fatal(error)
        self._deliver()

    # -- internals ---------------------------------------------------------------------------

    def _timeout(self) -> float:
        proto = self._proto
        assert proto is not None
        return float(proto.factory.idle_timeout)

    def _cancel_read(self, d: Deferred[bytes]) -> None:
        if self._read_d is d:
            self._read_d = None

    def _cancel_finish(self, d: Deferred[None]) -> None:
        if d in self._finish_ds:
            self._finish_ds.remove(d)

    def _take(self, n: int) -> bytes:
        """Up to ``n`` (> 0) buffered bytes (some are buffered)."""
        pieces = self._pieces
        first = pieces[0]
        pos = self._head
        avail = len(first) - pos
        if avail > n:
            out = first[pos : pos + n]
            self._head = pos + n
        else:
            pieces.popleft()
            self._head = 0
            out = first[pos:] if pos else first
            if avail < n and pieces:
                parts = [out]
                got = avail
                while pieces and got < n:
                    piece = pieces[0]
                    if got + len(piece) <= n:
                        pieces.popleft()
                        parts.append(piece)
                        got += len(piece)
                    else:
                        self._head = n - got
                        parts.append(piece[: n - got])
                        got = n
                out = b"".join(parts)
        self._buffered -= len(out)
        self.consumed += len(out)
        return out

    def _drop(self) -> None:
        self._pieces.clear()
        self._head = 0
        self._buffered = 0

    def _pump(self) -> None:
        """Parse what the client sent (as far as the buffer allows), set the socket's
        reading and the stall timer to match, then answer what waits."""
        if self._pumping:
            self._again = True  # re-entered: the outer loop parses again
            return
        self._pumping = True
        try:
            while True:
                self._again = False
                self._parse()
                self._settle()
                if not self._again:
                    break
        finally:
            self._pumping = False
        self._deliver()

    def _parse(self) -> None:
        proto = self._proto
        if proto is None:
            return
        conn = proto.conn
        limit = self._limit
        while self._discarding or self._buffered <= limit:
            try:
                ev = conn.next_event()
            except RemoteProtocolError as e:
                # The client gets the ERR, then the reader learns (its handler's reply is
                # dropped: nothing is written once the connection is closing).
                self._set_fatal(MySQLError(ErrorCode.CR_SERVER_LOST, str(e)))
                proto._protocol_error(e)
                return
            if ev is NEED_DATA:
                return
            if type(ev) is not LocalInfileData:
                self._set_fatal(MySQLError(ErrorCode.CR_SERVER_LOST, "the client closed"))
                proto.close()
                return
            assert isinstance(ev, LocalInfileData)
            data = ev.data
            if not data:  # the end of the file: the reply is due
                self._ended = True
                self._detach()
                return
            self.received += len(data)
            if self._discarding:
                continue
            if self.received > self.max_bytes:
                self._error = MySQLError(
                    ErrorCode.NET_PACKET_TOO_LARGE,
                    f"the LOAD DATA LOCAL INFILE file has more than {self.max_bytes} bytes "
                    f"({self.received} so far), the most the server takes; split it",
                )
                self._discarding = True
                self._drop()
                continue
            self._pieces.append(data)
            self._buffered += len(data)

    def _settle(self) -> None:
        """Pause reading from the client while the buffer is over its limit; time the
        client out while reading is on (the server waits for its bytes)."""
        proto = self._proto
        if proto is None:
            return
        pause = not self._discarding and self._buffered > self._limit
        proto._set_reading_paused(pause)
        timer = self._timer
        if pause:
            if timer is not None:
                if timer.active():
                    timer.cancel()
                self._timer = None
        elif timer is None:
            self._timer = proto.clock.callLater(self._timeout(), proto._guard(self._stalled))

    def _detach(self) -> None:
        proto, self._proto = self._proto, None
        if proto is None:
            return
        if proto._infile is self:
            proto._infile = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._fatal is None:
            # Back to the command's reading (``dataReceived`` holds what comes next).
            proto._set_reading_paused(False)

    def _set_fatal(self, error: MySQLError) -> None:
        if self._fatal is None:
            self._fatal = error
        if self._error is None:
            self._error = error
        self._drop()
        self._detach()

    def _stalled(self) -> None:
        self._timer = None
        proto = self._proto
        if proto is None:
            return
        log.info(
            "MySQL client {host} sent no LOCAL INFILE data for {timeout}s: closing",
            host=proto.peer_host,
            timeout=proto.factory.idle_timeout,
        )
        self._set_fatal(MySQLError(ErrorCode.NET_READ_INTERRUPTED, "the client stalled"))
        proto.close()
        self._deliver()

    def _deliver(self) -> None:
        """Answer the waiting read and finishes that can be answered (last: their
        callbacks may call back in)."""
        d = self._read_d
        if d is not None:
            if self._error is not None:
                self._read_d = None
                d.errback(self._error)
            elif self._buffered:
                self._read_d = None
                data = self._take(self._read_want)
                self._pump()
                d.callback(data)
            elif self._ended or self._finishing:
                self._read_d = None
                d.callback(b"")
        if self._finish_ds and (self._fatal is not None or self._ended):
            ds, self._finish_ds = self._finish_ds, []
            for fd in ds:
                if self._fatal is not None:
                    fd.errback(self._fatal)
                else:
                    fd.callback(None)


@implementer(IPushProducer)
class MySQLServerProtocol(Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, factory: MySQLServerFactory) -> None:
        self.factory = factory
        self.clock = factory.clock
        self.conn = Connection(Role.SERVER, factory.max_packet_size)
        self.connection_id = 0
        self.scramble = b""
        self.peer_host = "localhost"
        self.peer_port = 0
        self.session: ServerSession | None = None
        self._login = Authenticator(self)
        self._busy = False
        self._processing = False
        self._inbox: list[bytes] = []
        self._inbox_bytes = 0
        self._reading_paused = False
        self._congested = False
        self._active_flow: Flow | None = None
        self._command_d: Deferred[None] | None = None
        self._may_close: Callable[[], bool] | None = None  # ``close_when_idle``
        self._greeted = False
        self._closing = False
        self._lost = False
        self._handshake_timer: IDelayedCall | None = None
        self._idle_timer: IDelayedCall | None = None
        self._last_activity = 0.0
        self._close_timer: IDelayedCall | None = None
        self._out = OutputBuffer()
        self._infile: ClientFile | None = None

    def _transport(self) -> Any:
        """The transport, with the producer/consumer and TCP methods Twisted's give."""
        assert self.transport is not None
        return self.transport

    @property
    def info(self) -> ClientInfo | None:
        """The authenticated session's client, or None before login."""
        return self.session.info if self.session is not None else None

    # -- connection lifecycle --------------------------------------------------------------

    def connectionMade(self) -> None:
        """Greet the client (or refuse it)."""
        try:
            self._connection_made()
        except Exception:
            log.failure("MySQL server: error greeting a client")
            self._abort()

    def _connection_made(self) -> None:
        transport = self.transport
        assert transport is not None
        self._out.transport = transport
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        if isinstance(transport, FileDescriptor):
            # Make the transport's pause threshold our named bound.
            transport.bufferSize = self.factory.write_buffer_bytes
        peer = transport.getPeer()
        self.peer_host = str(getattr(peer, "host", "localhost"))
        self.peer_port = int(getattr(peer, "port", 0) or 0)
        refusal = self.factory.admit(self)
        if refusal is not None:
            self._write([Err.from_error(refusal)])
            self.close()
            return
        self._transport().registerProducer(self, True)
        self._greeted = True
        self.connection_id = self.factory.register(self)
        self.scramble = make_scramble()
        caps = int(SERVER_CAPABILITIES)
        if self.factory.tls is not None:
            caps |= int(Capability.SSL)
        self._write(
            [
                HandshakeV10(
                    self.factory.server_version,
                    self.connection_id,
                    self.scramble,
                    caps,
                    self.factory.charset,
                    _AUTOCOMMIT,
                    self.factory.auth.default_plugin(),
                )
            ]
        )
        self._handshake_timer = self.clock.callLater(
            self.factory.handshake_timeout, self._guard(self._handshake_timed_out)
        )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Abort what is in progress and release the session."""
        self._lost = True
        self._out.discard()
        try:
            self._cancel_timers(close=True)
            self._inbox.clear()
            self._end_infile(MySQLError(ErrorCode.CR_SERVER_LOST, "the client went away"))
            if self.session is not None:
                self.session.abort()
            if self._command_d is not None:
                self._command_d.cancel()
            if self.session is not None:
                self.session.close()
        except Exception:
            log.failure("MySQL server: error cleaning up a connection")
        finally:
            if self._greeted:
                self.factory.unregister(self)

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        """``fn`` for a timer: exceptions are logged and close the connection."""

        def guarded() -> None:
            try:
                fn()
            except Exception:
                log.failure(
                    "MySQL server: error in a timer of connection {id}", id=self.connection_id
                )
                self._abort()

        return guarded

    def _cancel_timers(self, close: bool = False) -> None:
        timers = [self._handshake_timer, self._idle_timer]
        if close:
            timers.append(self._close_timer)
        for timer in timers:
            if timer is not None and timer.active():
                timer.cancel()
        self._handshake_timer = self._idle_timer = None

    def close(self) -> None:
        """Close cleanly (pending writes are flushed); abort if that takes too long."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._cancel_timers()
        transport = self.transport
        assert transport is not None
        self._out.flush()
        if self._greeted:
            # A registered producer would hold a TLS shutdown back.
            self._transport().unregisterProducer()
        transport.loseConnection()
        self._close_timer = self.clock.callLater(
            self.factory.close_timeout, self._guard(self._abort)
        )

    def close_when_idle(self, may_close: Callable[[], bool]) -> None:
        """Shutting down: close as soon as no command runs and ``may_close()`` says so
        (asked now and after each command; the gate says no while a transaction is open).
        A command the client sent meanwhile is not run (its connection is lost)."""
        self._may_close = may_close
        self._close_if_idle()

    def _close_if_idle(self) -> bool:
        may_close = self._may_close
        if (
            may_close is None
            or self._busy
            or self._closing
            or self._lost
            or self.conn.state is not _S_IDLE
            or not may_close()
        ):
            return False
        self.close()
        return True

    def _abort(self) -> None:
        if self._lost or self.transport is None:
            return
        self._closing = True
        self._out.discard()
        self._transport().abortConnection()

    def handshake_done(self) -> None:
        """The client logged in: the handshake timeout no longer applies."""
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None

    def _handshake_timed_out(self) -> None:
        log.info(
            "MySQL client {host} did not log in within {timeout}s: closing",
            host=self.peer_host,
            timeout=self.factory.handshake_timeout,
        )
        self.close()

    def _idle_timed_out(self) -> None:
        self._idle_timer = None
        if self._busy or self.conn.state is not _S_IDLE:
            self._arm_idle()  # a command is running: not idle
            return
        left = self.factory.idle_timeout - (self.clock.seconds() - self._last_activity)
        if left > 0:
            self._arm_idle(left)  # there was activity since the timer was set
            return
        log.info(
            "MySQL connection {id} idle for {timeout}s: closing",
            id=self.connection_id,
            timeout=self.factory.idle_timeout,
        )
        self._write(
            [
                Err(
                    ER_CLIENT_INTERACTION_TIMEOUT,
                    "The client was disconnected by the server because of inactivity "
                    f"(idle_timeout is {self.factory.idle_timeout:g}s); reconnect, or raise "
                    "the server's idle_timeout",
                    "HY000",
                )
            ]
        )
        self.close()

    def _arm_idle(self, delay: float | None = None) -> None:
        # One lazy timer, re-armed from the last activity when it fires: cheaper than
        # re-scheduling a timer for every command.
        if self._idle_timer is None and not self._closing and not self._lost:
            self._idle_timer = self.clock.callLater(
                self.factory.idle_timeout if delay is None else delay,
                self._guard(self._idle_timed_out),
            )

    # -- bytes in --------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Bytes from the client: parse them now, or keep them until the command ends."""
        if self._closing or self._lost or not data:
            return
        # Replies made while handling these bytes go out together (``reading.enter`` and
        # ``leave``, inlined).
        reading.depth += 1
        try:
            self._last_activity = self.clock.seconds()
            infile = self._infile
            if infile is not None:
                self.conn.receive_data(data)
                infile.data_received()
                return
            if self._busy:
                self._inbox.append(data)
                self._inbox_bytes += len(data)
                if self._inbox_bytes > self.factory.max_pipeline_bytes and not (
                    self._reading_paused
                ):
                    self._reading_paused = True
                    self._transport().pauseProducing()
                return
            self.conn.receive_data(data)
            self._process()
        except Exception:
            log.failure("MySQL server: error handling client data")
            self._abort()
        finally:
            reading.depth -= 1
            if not reading.depth and reading.dirty:
                reading.flush_dirty()

    def _process(self) -> None:
        """Handle every complete event while no command is in progress."""
        if self._processing:
            return  # re-entered (TLS delivering decrypted bytes): the outer loop goes on
        self._processing = True
        try:
            while not self._busy and not self._closing and not self._lost:
                try:
                    ev = self.conn.next_event()
                except RemoteProtocolError as e:
                    self._protocol_error(e)
                    return
                if ev is NEED_DATA:
                    if self.conn.state is _S_IDLE and self.session is not None:
                        self._arm_idle()
                    return
                if ev is PAUSED:
                    self._start_tls()
                elif ev is CLOSED:
                    self.close()
                    return
                elif type(ev) in _SESSION_COMMANDS:  # the usual case (``_handle``, inlined)
                    self._run(ev)  # type: ignore[arg-type]
                else:
                    assert isinstance(ev, Message)
                    self._handle(ev)
        finally:
            self._processing = False

    def _protocol_error(self, e: RemoteProtocolError) -> None:
        log.info(
            "MySQL client {host} broke the protocol: {error}",
            host=self.peer_host,
            error=str(e),
            code=e.error_code,
        )
        self._write([Err(e.error_code, str(e))])
        self.close()

    def _handle(self, ev: Message) -> None:
        t = type(ev)
        if t in _SESSION_COMMANDS:  # the usual case, tested first
            self._run(ev)
        elif t is HandshakeResponse41:
            assert isinstance(ev, HandshakeResponse41)
            self._login.login(ev)
        elif t is AuthData:
            assert isinstance(ev, AuthData)
            self._login.auth_data(ev)
        elif t is SSLRequest:
            pass  # next_event() now says PAUSED: the TLS upgrade follows
        elif t is ComQuit:
            self.close()
        elif t is ComChangeUser:
            assert isinstance(ev, ComChangeUser)
            self._login.change_user(ev)
        else:
            self._run(ev)

    def _run(self, ev: Message) -> None:
        assert self.session is not None  # commands only arrive after login
        if self.factory.counts_commands:
            self.factory.metrics.command(type(ev).__name__)
        self._busy = True
        d = self.session.run(ev)  # None: it calls command_done() when it is over
        if d is not None:
            self.begin(d)

    # -- commands in progress ----------------------------------------------------------------

    def begin(self, d: Deferred[None]) -> None:
        """``d`` is the command now in progress: nothing else is parsed until it fires."""
        self._busy = True
        self._command_d = d
        d.addBoth(self._command_ended)

    def command_done(self) -> None:
        """The command in progress is over (``ServerSession.run`` returned None)."""
        if self._busy:
            self._command_ended(None)

    def _command_ended(self, result: object) -> None:
        self._busy = False
        self._command_d = None
        if isinstance(result, Failure):
            if isinstance(result.value, CancelledError) and (self._lost or self._closing):
                return
            log.failure(
                "MySQL server: command failed on connection {id}", result, id=self.connection_id
            )
            self._abort()
            return
        if self._lost or self._closing:
            return
        self._last_activity = self.clock.seconds()
        if self._may_close is not None and self._close_if_idle():
            return
        try:
            if self.conn.state is _S_CLOSED:
                self.close()
                return
            if self._inbox:
                data = b"".join(self._inbox)
                self._inbox.clear()
                self._inbox_bytes = 0
                self.conn.receive_data(data)
            if self._reading_paused:
                self._reading_paused = False
                self._transport().resumeProducing()
            conn = self.conn
            if conn.state is _S_IDLE and conn.drained and self.session is not None:
                self._arm_idle()  # nothing to parse (what ``_process`` would find out)
                return
            self._process()
        except Exception:
            log.failure(
                "MySQL server: error after a command on connection {id}", id=self.connection_id
            )
            self._abort()

    # -- TLS ------------------------------------------------------------------------------

    def _start_tls(self) -> None:
        transport = self.transport
        creator = self.factory.tls
        if creator is None or not ITLSTransport.providedBy(transport):
            # The greeting offers SSL only with TLS configured: this is a bug.
            raise RuntimeError("TLS was requested but the transport cannot start it")
        # Bytes after the SSLRequest are the client's TLS handshake: keep them for TLS.
        leftover = self.conn.take_buffered()
        self._out.flush()
        ITLSTransport(transport).startTLS(creator)
        self.conn.start_tls_done()
        if leftover:
            tls_protocol = getattr(transport, "protocol", None)
            if tls_protocol is None or tls_protocol is self:
                raise RuntimeError("cannot hand the buffered TLS bytes to the TLS layer")
            tls_protocol.dataReceived(leftover)

    # -- LOAD DATA LOCAL INFILE -----------------------------------------------------------

    def request_file(self, filename: str, max_bytes: int) -> ClientFile:
        """Ask the client for a LOCAL INFILE file, although a command is in progress: the
        ``ClientFile`` it is read from, in pieces (see its docstring and ``IClientFile``).
        Its reads fail with MySQLError 1153 once it has more than ``max_bytes``; with
        1159 when the client stalls, 2013 when it goes away or breaks the protocol (the
        connection is then closed). The reply goes out once the client's empty packet
        ended the file (``ClientFile.finish``)."""
        if self._lost or self._closing:
            return ClientFile(
                None,
                max_bytes,
                self.factory.max_infile_buffer_bytes,
                MySQLError(ErrorCode.CR_SERVER_LOST, "the client connection is closing"),
            )
        if self._infile is not None:
            raise LocalProtocolError("a LOCAL INFILE file is already being read")
        self._write([LocalInfileRequest(filename)])
        infile = ClientFile(self, max_bytes, self.factory.max_infile_buffer_bytes)
        self._infile = infile
        if self._inbox:  # bytes that came while the command ran: the file's start
            data = b"".join(self._inbox)
            self._inbox.clear()
            self._inbox_bytes = 0
            self.conn.receive_data(data)
        # (Parses what came, resumes reading if the pipeline had paused it, arms the timer.)
        infile.data_received()
        return infile

    def _set_reading_paused(self, paused: bool) -> None:
        """Pause or resume reading from the client's socket (the pipeline's and the LOCAL
        INFILE file's bound; never both at once: while a file is read nothing waits in
        the pipeline)."""
        if paused is self._reading_paused or self._closing or self._lost:
            return
        self._reading_paused = paused
        if paused:
            self._transport().pauseProducing()
        else:
            self._transport().resumeProducing()

    def _end_infile(self, error: MySQLError) -> None:
        infile = self._infile
        if infile is not None:
            infile.lose(error)

    def _reply_during_infile(self) -> None:
        """The handler wrote its reply while the client was still sending the file (it
        must wait for ``ClientFile.finish``): the two ends are out of step, close."""
        log.error(
            "MySQL connection {id}: the query handler replied before the LOCAL INFILE file "
            "was finished; closing",
            id=self.connection_id,
        )
        self._end_infile(
            MySQLError(ErrorCode.CR_SERVER_LOST, "the reply came before the file's end")
        )
        self.close()

    # -- output (the sinks' and session's ``SessionIO``) ------------------------------------

    def _write(self, events: Sequence[Message]) -> int:
        if self._lost or self._closing or self.transport is None:
            return 0
        if self._infile is not None:
            self._reply_during_infile()
            return 0
        conn = self.conn
        data = conn.send_many(events)
        # Not in the middle of a reply: the reply (or the greeting, an auth step...) is
        # complete and goes out now.
        self._out.write(data, conn.state not in _MID_REPLY)
        return len(data)

    def send_events(self, events: Sequence[Message]) -> int:
        """Frame and write ``events`` (nothing once the connection is closing or lost)."""
        return self._write(events)

    # The result-set hot path (``Connection.send_columns`` and co.): no event objects.

    def send_columns(self, columns: Sequence[ColumnDefinition41]) -> int:
        """``send_events`` of ResultSetStart and a Column per definition."""
        if self._lost or self._closing or self.transport is None:
            return 0
        if self._infile is not None:
            self._reply_during_infile()
            return 0
        data = self.conn.send_columns(columns)
        self._out.write(data, False)  # the rows and the end follow
        return len(data)

    def send_row(self, payload: bytes) -> int:
        """``send_events`` of one Row."""
        if self._lost or self._closing or self.transport is None:
            return 0
        data = self.conn.send_row(payload)
        self._out.write(data, False)
        return len(data)

    def send_done(
        self, status: int, warnings: int, affected_rows: int, last_insert_id: int, info: bytes
    ) -> int:
        """``send_events`` of one ResultSetDone."""
        if self._lost or self._closing or self.transport is None:
            return 0
        if self._infile is not None:
            self._reply_during_infile()
            return 0
        conn = self.conn
        data = conn.send_done(status, warnings, affected_rows, last_insert_id, info)
        self._out.write(data, conn.state not in _MID_REPLY)
        return len(data)

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
        """``send_columns``, ``send_row`` of each row and ``send_done``, in one write."""
        if self._lost or self._closing or self.transport is None:
            return 0
        if self._infile is not None:
            self._reply_during_infile()
            return 0
        conn = self.conn
        data = conn.send_result_set(
            columns, rows, status, warnings, affected_rows, last_insert_id, info
        )
        self._out.write(data, conn.state not in _MID_REPLY)
        return len(data)

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in a later reactor turn, errors logged."""

        def run() -> None:
            try:
                fn()
            except Exception:
                log.failure("MySQL server: deferred call failed")

        self.clock.callLater(0, run)

    def session_status(self) -> int:
        """The session's status flags."""
        return self.session.status() if self.session is not None else _AUTOCOMMIT

    def set_active_flow(self, flow: Flow | None) -> None:
        """Route socket congestion to ``flow`` (the reply being written), or to nothing."""
        old = self._active_flow
        if old is flow:
            return
        if old is not None and self._congested:
            # (Only while congested can the active flow hold TRANSPORT: ``resumeProducing``
            # takes it back when the socket drains.)
            old.resume(TRANSPORT)
        self._active_flow = flow
        if flow is not None and self._congested:
            flow.pause(TRANSPORT)

    # -- IPushProducer (the transport tells us about congestion) ----------------------------

    def pauseProducing(self) -> None:
        """The client's socket is congested: pause the current reply's producer."""
        self._congested = True
        if self._active_flow is not None:
            self._active_flow.pause(TRANSPORT)

    def resumeProducing(self) -> None:
        """The socket drained: resume the current reply's producer."""
        self._congested = False
        if self._active_flow is not None:
            self._active_flow.resume(TRANSPORT)

    def stopProducing(self) -> None:
        """The connection is going away; ``connectionLost`` cleans up."""


class MySQLServerFactory(Factory):
    """Builds ``MySQLServerProtocol``s; holds the configuration and the connection table.

    ``handler_factory`` opens an ``IQueryHandler`` per authenticated client; ``auth`` finds
    users. ``tls`` (e.g. ``twisted.internet.ssl.CertificateOptions``) enables TLS;
    ``require_secure_transport`` refuses logins without it (ERR 3159). ``rsa_key`` enables
    caching_sha2_password full authentication over plain TCP. Bounds: ``max_packet_size``
    (ERR 1153 then close), ``handshake_timeout`` and ``idle_timeout`` (seconds),
    ``max_connections`` (ERR 1040), ``max_pipeline_bytes`` (client bytes held while a
    command runs), ``max_overrun_bytes`` (what a handler may write after being paused),
    ``cursor_buffer_rows``/``cursor_buffer_bytes`` (per open cursor),
    ``max_prepared_statements`` (per session, ERR 1461), ``write_buffer_bytes`` (socket
    buffer before back-pressure), ``close_timeout`` (a close that does not complete is
    aborted). ``param_string_encoding``: character-string execute parameters are decoded
    to ``str`` with it (surrogateescape; ``None`` keeps bytes). ``max_infile_buffer_bytes``:
    the most of a LOAD DATA LOCAL INFILE file's bytes held per connection until the
    handler reads them (then reading from the client pauses).

    Hooks for the gate: ``admit`` (refuse a client before the greeting),
    ``on_auth_failure``/``on_auth_success`` (throttling), ``metrics``; ``connections``
    maps connection ids to live protocols (SHOW PROCESSLIST, KILL).
    """

    protocol = MySQLServerProtocol

    def __init__(
        self,
        handler_factory: IQueryHandlerFactory,
        auth: IAuthServer,
        *,
        clock: IReactorTime,
        tls: IOpenSSLServerConnectionCreator | None = None,
        require_secure_transport: bool = False,
        server_version: str = DEFAULT_SERVER_VERSION,
        rsa_key: RsaKey | None = None,
        charset: int = CHARSET_UTF8MB4_GENERAL_CI,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_pipeline_bytes: int = DEFAULT_MAX_PIPELINE_BYTES,
        max_overrun_bytes: int = DEFAULT_MAX_OVERRUN_BYTES,
        cursor_buffer_rows: int = DEFAULT_CURSOR_BUFFER_ROWS,
        cursor_buffer_bytes: int = DEFAULT_CURSOR_BUFFER_BYTES,
        max_prepared_statements: int = DEFAULT_MAX_PREPARED_STATEMENTS,
        write_buffer_bytes: int = DEFAULT_WRITE_BUFFER_BYTES,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        param_string_encoding: str | None = "utf-8",
        max_infile_buffer_bytes: int = DEFAULT_MAX_INFILE_BUFFER_BYTES,
        metrics: ServerMetrics | None = None,
        first_connection_id: int = 1,
    ) -> None:
        for name, value in (
            ("max_packet_size", max_packet_size),
            ("handshake_timeout", handshake_timeout),
            ("idle_timeout", idle_timeout),
            ("max_connections", max_connections),
            ("max_pipeline_bytes", max_pipeline_bytes),
            ("max_prepared_statements", max_prepared_statements),
            ("write_buffer_bytes", write_buffer_bytes),
            ("close_timeout", close_timeout),
            ("max_infile_buffer_bytes", max_infile_buffer_bytes),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if require_secure_transport and tls is None:
            raise ValueError("require_secure_transport needs a TLS configuration (tls=...)")
        if not server_version[:1].isdigit():
            raise ValueError("server_version must start with a digit (clients parse it)")
        if not 0 < first_connection_id <= 0xFFFFFFFF:
            raise ValueError("first_connection_id must fit in 32 bits and be > 0")
        self.handler_factory = handler_factory
        self.auth = auth
        self.clock = clock
        self.tls = tls
        self.require_secure_transport = require_secure_transport
        self.server_version = server_version
        self.rsa_key = rsa_key
        self.charset = charset
        self.max_packet_size = max_packet_size
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_pipeline_bytes = max_pipeline_bytes
        self.sink_limits = SinkLimits(max_overrun_bytes, cursor_buffer_rows, cursor_buffer_bytes)
        self.max_prepared_statements = max_prepared_statements
        self.write_buffer_bytes = write_buffer_bytes
        self.close_timeout = close_timeout
        self.param_string_encoding = param_string_encoding
        self.max_infile_buffer_bytes = max_infile_buffer_bytes
        self.metrics = metrics if metrics is not None else ServerMetrics()
        # Whether ``metrics`` counts commands (the base class's hook does nothing: not
        # called then, on every command's path).
        self.counts_commands = type(self.metrics).command is not ServerMetrics.command
        self.connections: dict[int, MySQLServerProtocol] = {}
        self._next_id = first_connection_id

    def buildProtocol(self, addr: Any) -> MySQLServerProtocol:
        """A protocol for one client."""
        return MySQLServerProtocol(self)

    # -- connection table ------------------------------------------------------------------

    def admit(self, proto: MySQLServerProtocol) -> MySQLError | None:
        """The error to send instead of the greeting, or None to greet the client.

        Refuses beyond ``max_connections``, then asks ``accept_client``.
        """
        if len(self.connections) >= self.max_connections:
            self.metrics.connection_rejected("max_connections")
            log.warn(
                "refusing MySQL client {host}: {count} connections (max_connections)",
                host=proto.peer_host,
                count=len(self.connections),
            )
            return MySQLError(
                ErrorCode.CON_COUNT_ERROR,
                "Too many connections; retry later, or raise the server's max_connections",
            )
        refusal = self.accept_client(proto.peer_host)
        if refusal is not None:
            self.metrics.connection_rejected("blocked")
        return refusal

    def accept_client(self, host: str) -> MySQLError | None:
        """Hook: an error to refuse ``host`` with (e.g. after repeated auth failures)."""
        return None

    def on_auth_failure(self, host: str, user: str) -> None:
        """Hook: an authentication from ``host`` as ``user`` failed."""

    def on_auth_success(self, host: str, user: str) -> None:
        """Hook: an authentication from ``host`` as ``user`` succeeded."""

    def register(self, proto: MySQLServerProtocol) -> int:
        """Give ``proto`` a connection id (unique among live connections)."""
        while True:
            conn_id = self._next_id
            self._next_id = conn_id % 0xFFFFFFFF + 1
            if conn_id not in self.connections:
                break
        self.connections[conn_id] = proto
        self.metrics.connection_opened()
        return conn_id

    def unregister(self, proto: MySQLServerProtocol) -> None:
        """``proto``'s connection ended."""
        if self.connections.get(proto.connection_id) is proto:
            del self.connections[proto.connection_id]
            self.metrics.connection_closed()
