"""The Twisted glue of vtwist's MySQL client: one ``MySQLClientProtocol`` per mysqld connection.

This module owns the bytes-to-events loop around the sans-IO ``Connection`` (CLIENT role):
the login (greeting, optional SSLRequest + ``startTLS``, HandshakeResponse41, auth switch
and caching_sha2 exchanges through ``auth.ClientAuth``), the command queue, the read
timeout, back-pressure (``pause_reading``/``resume_reading``) and what happens when the
connection breaks. What a command collects is the business of ``client_commands``; the
public API and ``connect`` live in ``client``.

Rules:

* One command at a time on the wire. Further commands wait in a FIFO of at most
  ``max_queued`` entries (beyond that the call fails with ``LocalProtocolError``: the
  caller is misusing one connection); a command's Deferred fires when its whole reply was
  read, so the connection is idle and in step again.
* Errors: an ERR from mysqld fails that command only. Losing the connection fails the
  command in flight with 2013 (CR_SERVER_LOST, "Lost connection to MySQL server during
  query") and the queued ones with 2006 (CR_SERVER_GONE_ERROR); later calls fail with 2006
  at once. The read timeout (no byte from mysqld for ``read_timeout`` seconds while a reply
  is due; suspended while reading is paused and while a LOCAL INFILE file is streamed)
  closes the connection and fails with 2013. Bytes that break the protocol close it too
  (the error's own code, e.g. 1156).
* Cancelling a command's Deferred before it is sent drops it; cancelling it while mysqld
  runs it closes the connection (it cannot be taken back), so it is never reused by accident.
* LOAD DATA LOCAL INFILE from an ``IInfileReader`` (``client_commands``: the handler leaves
  it in ``infile_stream``): an ``_InfileFeeder`` reads the file ``INFILE_PIECE`` bytes at a
  time, one read in flight, and writes each piece as ``LocalInfileData`` packets, then the
  empty packet that ends the file; mysqld's reply is then read as usual. While it feeds it
  is the transport's registered streaming producer, so a congested socket to mysqld pauses
  the reads (memory: one piece plus the transport's buffer), and the read timeout is
  suspended (mysqld is silent while it waits for the file, which may come slowly); it is
  armed again once the end packet is written. If a read fails (the reader's ``MySQLError``,
  e.g. 1153, 1159 or 2013, or anything else) or the feed is cut short otherwise (cancel,
  ``close``, connection lost), mysqld never gets the end packet (it would load the file
  truncated and commit it): the connection is closed instead, which makes mysqld abort and
  roll back the statement; the command fails with the reader's error (2013 for a lost
  connection or ``close``; a cancelled Deferred with CancelledError), queued ones with
  2006. A read still pending then is cancelled and its late result ignored.
* Every socket sets TCP_NODELAY.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    ITLSTransport,
)
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.protocols.mysql.auth import ClientAuth
from vtwist.protocols.mysql.client_commands import CHARSETS, CommandHandler, infile_packets
from vtwist.protocols.mysql.connection import (
    DEFAULT_MAX_PACKET_SIZE,
    NEED_DATA,
    Connection,
    Role,
    State,
)
from vtwist.protocols.mysql.constants import (
    CLIENT_CAPABILITIES,
    NATIVE_PASSWORD,
    Capability,
    ServerStatus,
)
from vtwist.protocols.mysql.errors import (
    ErrorCode,
    LocalProtocolError,
    MySQLError,
    RemoteProtocolError,
)
from vtwist.protocols.mysql.events import Row, Signal
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    ComQuit,
    Err,
    HandshakeResponse41,
    HandshakeV10,
    LocalInfileData,
    Ok,
    SSLRequest,
)
from vtwist.protocols.mysql.output import reading, write_through
from vtwist.protocols.mysql.wire import Message

if TYPE_CHECKING:
    from vtwist.interfaces import IInfileReader

__all__ = [
    "DEFAULT_MAX_QUEUED",
    "DEFAULT_MAX_RESULT_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "INFILE_PIECE",
    "ClientConfig",
    "MySQLClientFactory",
    "MySQLClientProtocol",
]

log = Logger()

#: Rows handed to a handler that takes batches, per call, and the most a result set handed
#: whole may have (they are already in memory).
ROW_BATCH: Final = 256

#: Bytes asked of an ``IInfileReader`` per read while a LOCAL INFILE file is streamed.
INFILE_PIECE: Final = 1 << 20

DEFAULT_READ_TIMEOUT: Final = 600.0
DEFAULT_MAX_QUEUED: Final = 32
DEFAULT_MAX_RESULT_SIZE: Final = 256 * 1024 * 1024
CR_SSL_CONNECTION_ERROR: Final = 2026
MARIADB_VERSION_PREFIX: Final = "5.5.5-"

_LONG_PASSWORD: Final = int(Capability.LONG_PASSWORD)
_IN_TRANS: Final = int(ServerStatus.IN_TRANS)
_IDLE: Final = State.IDLE
_CLOSED: Final = State.CLOSED
_INFILE: Final = State.INFILE
_END_OF_FILE: Final = LocalInfileData(b"")


@dataclass(frozen=True)
class ClientConfig:
    """Everything one connection needs to log in and run (see ``client.connect``)."""

    user: str
    password: str | bytes = field(repr=False)
    database: str | None = None
    tls: IOpenSSLClientConnectionCreator | None = None
    server_public_key: bytes | None = field(default=None, repr=False)
    read_timeout: float | None = DEFAULT_READ_TIMEOUT
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    charset: str = "utf8mb4"
    attrs: dict[str, str] = field(default_factory=dict)
    address: str = "mysqld"
    secure_channel: bool = False  # a unix socket: caching_sha2 may send the password
    allow_cleartext: bool = False
    found_rows: bool = False
    local_files: bool = False  # offer CLIENT_LOCAL_FILES (files only come from ``infile``)
    multi_statements: bool = True
    max_queued: int = DEFAULT_MAX_QUEUED
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE

    def capabilities(self) -> int:
        """What the login packet asks for, before masking with the server's offer."""
        caps = int(CLIENT_CAPABILITIES)
        if self.database:
            caps |= Capability.CONNECT_WITH_DB
        if self.tls is not None:
            caps |= Capability.SSL
        if self.found_rows:
            caps |= Capability.FOUND_ROWS
        if self.local_files:
            caps |= Capability.LOCAL_FILES
        if not self.multi_statements:
            caps &= ~Capability.MULTI_STATEMENTS
        if not self.attrs:
            caps &= ~Capability.CONNECT_ATTRS
        return caps


class _Pending:
    """A submitted command: its handler and the Deferred of its caller."""

    __slots__ = ("cancelled", "deferred", "handler", "protocol")

    def __init__(self, handler: CommandHandler, protocol: MySQLClientProtocol) -> None:
        self.handler = handler
        self.protocol = protocol
        self.deferred: Deferred[Any] = Deferred(self._cancel)
        self.cancelled = False

    def _cancel(self, d: Deferred[Any]) -> None:
        self.protocol._cancel_command(self)

    def resolve(self, result: Any) -> None:
        """The command succeeded with ``result``."""
        self.deferred.callback(result)

    def reject(self, error: BaseException) -> None:
        """The command failed."""
        self.deferred.errback(error)


class _Notifying(_Pending):
    """A submitted command whose outcome goes to a function (``submit_notify``): no
    Deferred and no callback chain on the per-query path. It cannot be cancelled."""

    __slots__ = ("done",)

    def __init__(
        self, handler: CommandHandler, protocol: MySQLClientProtocol, done: Callable[[Any], object]
    ) -> None:
        self.handler = handler
        self.protocol = protocol
        self.done = done
        self.cancelled = False

    def resolve(self, result: Any) -> None:
        """Hand ``result`` to ``done``."""
        try:
            self.done(result)
        except Exception:  # like an errback nobody handles: say so, keep the connection
            log.failure("MySQL client: the completion function of a command failed")

    def reject(self, error: BaseException) -> None:
        """Hand the error, as a Failure, to ``done``."""
        self.resolve(Failure(error))  # type: ignore[no-untyped-call]


def _gone(reason: str) -> MySQLError:
    return MySQLError(
        ErrorCode.CR_SERVER_GONE_ERROR,
        f"MySQL server has gone away ({reason}); use another connection",
    )


@implementer(IPushProducer)
class _InfileFeeder:
    """Streams one LOAD DATA LOCAL INFILE file from an ``IInfileReader`` to mysqld (see the
    module docstring). It is the transport's streaming producer while it runs: the transport
    pauses it when its write buffer is full, and no further piece is read until it resumes.
    At most one read is in flight. The end packet is only written once the reader said
    ``b""``; a failed read breaks the connection instead (``_infile_failed``)."""

    __slots__ = ("_looping", "_reading", "_registered", "paused", "protocol", "reader", "stopped")

    def __init__(self, protocol: MySQLClientProtocol, reader: IInfileReader) -> None:
        self.protocol = protocol
        self.reader = reader
        self.paused = False
        self.stopped = False
        self._reading: Deferred[bytes] | None = None
        self._looping = False
        self._registered = False

    def start(self) -> None:
        """Register with the transport and read the first piece."""
        transport: Any = self.protocol.transport
        try:
            transport.registerProducer(self, True)
            self._registered = True
        except RuntimeError:  # another producer is registered: feed without back-pressure
            log.warn("MySQL client: LOCAL INFILE file fed without back-pressure")
        self._next()

    def _next(self) -> None:
        """Read pieces while allowed to: not paused, not stopped, none in flight (a loop, so
        that a reader answering at once does not recurse)."""
        if self._looping:
            return
        self._looping = True
        try:
            while not self.stopped and not self.paused and self._reading is None:
                try:
                    d = self.reader.read(INFILE_PIECE)
                except Exception as e:  # the reader's bug: same as a failed read
                    self._fail(e)
                    return
                self._reading = d
                d.addCallbacks(self._got, self._read_failed, callbackArgs=(d,), errbackArgs=(d,))
        finally:
            self._looping = False

    def _got(self, data: bytes, d: Deferred[bytes]) -> None:
        if self.stopped or d is not self._reading:
            return  # a late result after the feed stopped: dropped
        self._reading = None
        protocol = self.protocol
        try:
            if type(data) is not bytes:
                data = bytes(data)
            if data:
                protocol._write(infile_packets(data))
                if not self._looping:
                    self._next()
                return
            protocol._write(_END_OF_FILE)  # the whole file was sent: mysqld may load it
        except Exception as e:
            protocol._infile_bug(self, e)
            return
        self.stop()
        protocol._infile_sent(self)

    def _read_failed(self, failure: Failure, d: Deferred[bytes]) -> None:
        if self.stopped or d is not self._reading:
            return None  # cancelled by ``stop`` or late: dropped
        self._reading = None
        self._fail(failure.value)
        return None

    def _fail(self, e: BaseException | None) -> None:
        if isinstance(e, MySQLError):
            err = e  # the reader's own error (1153, 1159, 2013...), as it is
        else:
            err = MySQLError(
                ErrorCode.CR_UNKNOWN_ERROR,
                f"the LOAD DATA LOCAL INFILE file could not be read ({e!r}); the connection "
                "was closed so that mysqld does not load it truncated",
            )
        self.protocol._infile_failed(self, err)

    def stop(self) -> None:
        """No more reads or writes: unregister, and cancel a read in flight (its result,
        if it comes anyway, is dropped)."""
        if self.stopped:
            return
        self.stopped = True
        d, self._reading = self._reading, None
        if self._registered:
            self._registered = False
            transport: Any = self.protocol.transport
            if transport is not None:
                with suppress(RuntimeError):  # (a test transport that already forgot it)
                    transport.unregisterProducer()
        if d is not None:
            d.cancel()

    # -- IPushProducer (called by the transport to mysqld) -----------------------------------

    def pauseProducing(self) -> None:
        """The socket to mysqld is congested: read no further piece."""
        self.paused = True

    def resumeProducing(self) -> None:
        """The socket drained: read on."""
        self.paused = False
        if not self.stopped:
            self._next()

    def stopProducing(self) -> None:
        """The transport is going away (``connectionLost`` follows and fails the command)."""
        self._registered = False  # it forgets us itself
        self.stop()


class MySQLClientProtocol(Protocol):
    """One connection to mysqld (see the module docstring). ``ready`` fires with the
    protocol once logged in, or fails with a ``MySQLError``."""

    def __init__(self, config: ClientConfig, clock: IReactorTime) -> None:
        if config.charset not in CHARSETS:
            raise ValueError(f"unknown charset {config.charset!r}; use one of {sorted(CHARSETS)}")
        self.config = config
        self.clock = clock
        self.conn = Connection(Role.CLIENT, config.max_packet_size)
        self.ready: Deferred[MySQLClientProtocol] = Deferred(self._cancel_login)
        self.logged_in = False
        self.tls_started = False
        self.broken: MySQLError | None = None
        self.connected = False
        self._auth: ClientAuth | None = None
        self._current: _Pending | None = None
        self._queue: deque[_Pending] = deque()
        self._paused = False
        self._processing = False
        self._pumping = False
        self._timer: IDelayedCall | None = None
        self._feeder: _InfileFeeder | None = None
        self._closed = False
        self._close_waiters: list[Deferred[None]] = []

    # -- introspection ---------------------------------------------------------------------

    @property
    def greeting(self) -> HandshakeV10 | None:
        """The server's greeting."""
        return self.conn.handshake

    @property
    def status_flags(self) -> int:
        """Server status flags of the last OK/EOF seen."""
        return self.conn.status

    @property
    def in_transaction(self) -> bool:
        """Whether mysqld reported an open transaction (SERVER_STATUS_IN_TRANS)."""
        return bool(self.conn.status & _IN_TRANS)

    @property
    def is_broken(self) -> bool:
        """True once the connection cannot run commands any more."""
        return self.broken is not None or not self.connected or not self.logged_in

    @property
    def busy(self) -> bool:
        """True while a command runs or waits."""
        return self._current is not None or bool(self._queue)

    @property
    def paused(self) -> bool:
        """True while ``pause_reading`` is in effect."""
        return self._paused

    @property
    def producer(self) -> IPushProducer:
        """The transport, as the push producer of mysqld's bytes."""
        assert self.transport is not None
        return IPushProducer(self.transport)

    # -- Twisted hooks -----------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Set TCP_NODELAY and wait for the greeting."""
        self.connected = True
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)

    def dataReceived(self, data: bytes) -> None:
        """Bytes from mysqld."""
        if self._closed:
            return
        self.conn.receive_data(data)
        if self._current is not None and self.config.read_timeout is not None:
            self._arm_timer()
        # What this read makes others write goes out when it is handled (``reading.enter``
        # and ``leave``, inlined).
        reading.depth += 1
        try:
            self._process()
        finally:
            reading.depth -= 1
            if not reading.depth and reading.dirty:
                reading.flush_dirty()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """The socket is gone: fail what was pending (after delivering what was read)."""
        self.connected = False
        self._cancel_timer()
        self._stop_feed()
        if not self.logged_in:
            if self.tls_started:
                err = MySQLError(
                    CR_SSL_CONNECTION_ERROR,
                    f"SSL connection error with {self.config.address}: {reason.getErrorMessage()};"
                    " check the TLS options (CA, server name) against mysqld's certificate",
                )
            else:
                err = MySQLError(
                    ErrorCode.CR_SERVER_LOST,
                    f"Lost connection to MySQL server at {self.config.address} during login "
                    f"({reason.getErrorMessage()})",
                )
            self._break(err)
        else:
            self.conn.receive_data(b"")
            self._process()
            if self.broken is None and not self._paused:
                self._break(_gone("the connection was closed"))
        self._closed = True
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)

    # -- the event loop ----------------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            conn = self.conn
            while not self._paused and self.broken is None:
                p = self._current
                if p is not None and p.handler.takes_results:
                    # (never raises: what is malformed is left to next_event below)
                    whole = conn.next_result(ROW_BATCH)
                    if whole is not None:  # a result set received whole, in one call
                        try:
                            p.handler.result_set(*whole)
                        except Exception as e:
                            self._on_bug(e)
                            return
                        if conn.state is _IDLE:
                            self._pump()  # the reply is complete
                            if conn.drained:
                                return
                        continue
                if p is not None and p.handler.takes_row_batches:
                    rows = conn.next_rows(ROW_BATCH)
                    if rows:  # rows already received, to a collecting consumer in one call
                        try:
                            p.handler.rows(rows)
                        except Exception as e:
                            self._on_bug(e)
                            return
                        continue
                try:
                    ev = conn.next_event()
                except RemoteProtocolError as e:
                    self._on_remote_error(e)
                    return
                if ev is NEED_DATA:
                    # A swallowed EOF (the end of a classic prepare reply) may have ended
                    # the command without an event.
                    if self._current is not None and conn.state is _IDLE:
                        self._pump()
                    return
                if isinstance(ev, Signal):
                    # CLOSED: after COM_QUIT, an unsolicited ERR, or mysqld closing while idle.
                    self._break(_gone("mysqld closed the connection"))
                    return
                try:
                    p = self._current
                    if type(ev) is Row and p is not None:
                        # The hot path of a result: a row never ends the reply nor asks for
                        # an answer, so no state check.
                        p.handler.event(ev)
                        continue
                    if not self.logged_in:
                        self._login_event(ev)
                        continue
                    if p is None:
                        self._command_event(ev)  # unsolicited
                    else:  # (``_command_event``, inlined)
                        reply = p.handler.event(ev)
                        if reply is not None:
                            self._write(reply)
                        state = conn.state
                        if state is not _IDLE and state is not _CLOSED:
                            if state is _INFILE:  # mysqld waits for a file to be streamed
                                self._feed_infile(p)
                            continue  # more of the reply to come
                        self._pump()  # the reply (or one step of it) is complete
                    if conn.state is _IDLE and conn.drained:
                        return  # the reply is complete and nothing else was read
                except MySQLError as e:
                    self._break(e)
                    return
                except LocalProtocolError as e:  # a bug of ours: say so, keep the reactor alive
                    log.error("MySQL client state machine misuse: {error}", error=str(e))
                    self._break(MySQLError(ErrorCode.CR_COMMANDS_OUT_OF_SYNC, str(e)))
                    return
                except Exception as e:
                    self._on_bug(e)
                    return
        finally:
            self._processing = False

    def _on_bug(self, e: Exception) -> None:
        """A bug of ours while handling a reply: say so, never leave the command hanging."""
        log.error("MySQL client bug: {error!r}", error=e)
        self._break(MySQLError(ErrorCode.CR_UNKNOWN_ERROR, f"client error: {e!r}"))

    def _on_remote_error(self, e: RemoteProtocolError) -> None:
        if e.error_code == ErrorCode.CR_SERVER_LOST:
            err = MySQLError(
                ErrorCode.CR_SERVER_LOST,
                f"Lost connection to MySQL server during query ({self.config.address} "
                "closed the connection)",
            )
        else:
            err = MySQLError(
                e.error_code,
                f"protocol error from {self.config.address}: {e}; the connection was closed",
            )
        self._break(err)

    def _write(self, msg: Message | list[Message]) -> None:
        data = self.conn.send_many(msg) if isinstance(msg, list) else self.conn.send(msg)
        assert self.transport is not None
        write_through(self.transport, data)

    # -- login -------------------------------------------------------------------------------

    def _login_event(self, ev: Message) -> None:
        t = type(ev)
        if t is HandshakeV10:
            assert isinstance(ev, HandshakeV10)
            self._on_greeting(ev)
        elif t is AuthSwitchRequest:
            assert isinstance(ev, AuthSwitchRequest) and self._auth is not None
            self._write(AuthData(self._auth.feed_switch(ev.plugin_name, ev.data)))
        elif t is AuthMoreData:
            assert isinstance(ev, AuthMoreData) and self._auth is not None
            reply = self._auth.feed_more_data(ev.data)
            if reply is not None:
                self._write(AuthData(reply))
        elif t is Ok:
            self.logged_in = True
            log.debug(
                "logged in to {address} as {user}, connection id {conn_id}",
                address=self.config.address,
                user=self.config.user,
                conn_id=self.greeting.connection_id if self.greeting else 0,
            )
            self.ready.callback(self)
            self._pump()
        elif t is Err:
            assert isinstance(ev, Err)
            raise ev.to_error()

    def _on_greeting(self, g: HandshakeV10) -> None:
        cfg = self.config
        if not g.capabilities & Capability.PROTOCOL_41:
            raise MySQLError(
                ErrorCode.NOT_SUPPORTED_AUTH_MODE,
                f"{cfg.address} ({g.server_version}) does not speak protocol 4.1; "
                "vtwist needs MySQL 5.7+/8 or MariaDB 10.2+",
            )
        if cfg.tls is not None and not g.capabilities & Capability.SSL:
            raise MySQLError(
                CR_SSL_CONNECTION_ERROR,
                f"SSL connection error: {cfg.address} does not offer TLS; configure ssl on "
                "mysqld or connect without tls",
            )
        # Bit 0 is MariaDB's CLIENT_MYSQL: set it so that mysqld does not read MariaDB
        # extended capabilities from our login packet (we opt into none of them).
        caps = (cfg.capabilities() & g.capabilities) | _LONG_PASSWORD
        secure = cfg.tls is not None or cfg.secure_channel
        self._auth = ClientAuth(
            cfg.password,
            g.auth_plugin_data,
            g.auth_plugin_name or NATIVE_PASSWORD,
            secure,
            cfg.server_public_key,
            allow_cleartext=cfg.allow_cleartext,
        )
        charset = CHARSETS[cfg.charset]
        max_packet = min(cfg.max_packet_size, 0xFFFFFFFF)
        if cfg.tls is not None:
            self._write(SSLRequest(caps, max_packet, charset))
            if self.conn.take_buffered():
                raise MySQLError(
                    ErrorCode.CR_MALFORMED_PACKET,
                    f"{cfg.address} sent data before the TLS handshake",
                )
            transport = self.transport
            if not ITLSTransport.providedBy(transport):
                raise MySQLError(
                    CR_SSL_CONNECTION_ERROR, "SSL connection error: the transport cannot start TLS"
                )
            self.tls_started = True
            transport.startTLS(cfg.tls)
            self.conn.start_tls_done()
        response = HandshakeResponse41(
            capabilities=caps,
            max_packet_size=max_packet,
            charset=charset,
            user=cfg.user,
            auth_response=self._auth.initial_response(),
            database=cfg.database or "",
            auth_plugin_name=self._auth.plugin,
            connect_attrs=cfg.attrs,
        )
        self._write(response)

    def _cancel_login(self, d: Deferred[MySQLClientProtocol]) -> None:
        # connect()'s timeout: drop the socket; ``ready`` then fails with CancelledError
        # (Deferred.cancel does it), so _break finds it called and leaves it alone.
        self.broken = self.broken or MySQLError(ErrorCode.CR_SERVER_LOST, "login cancelled")
        if self.transport is not None and self.connected:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- commands ----------------------------------------------------------------------------

    def submit(self, handler: CommandHandler) -> Deferred[Any]:
        """Queue ``handler``'s command; the Deferred fires with ``handler.result()`` or fails."""
        refused = self._refusal()
        if refused is not None:
            return fail(refused)
        pending = _Pending(handler, self)
        self._start(pending)
        return pending.deferred

    def submit_notify(self, handler: CommandHandler, done: Callable[[Any], object]) -> None:
        """Like ``submit``, but call ``done`` once with ``handler.result()`` or a Failure
        (synchronously if the command is refused at once): no Deferred, no cancel."""
        pending = _Notifying(handler, self, done)
        refused = self._refusal()
        if refused is not None:
            pending.reject(refused)
            return
        self._start(pending)

    def _refusal(self) -> Exception | None:
        """Why a command cannot be submitted now, if it cannot."""
        if self.broken is not None:
            return _gone(f"the connection broke: {self.broken.message}")
        if not self.connected:
            return _gone("not connected")
        if len(self._queue) >= self.config.max_queued:
            return LocalProtocolError(
                f"{len(self._queue)} commands already queued on this MySQL connection "
                f"(max_queued={self.config.max_queued}); wait for them or use a pool"
            )
        return None

    def _start(self, pending: _Pending) -> None:
        if self._current is None and not self._queue and not self._pumping and self.logged_in:
            # Idle: send it now (what ``_pump`` would do, without its loop).
            self._current = pending
            self._send_step(pending, pending.handler.first())
            state = self.conn.state
            if state is _IDLE or state is _CLOSED:
                self._pump()  # no reply to wait for (or the send failed): finish it
            elif self.config.read_timeout is not None:
                self._arm_timer()
            return
        self._queue.append(pending)
        self._pump()

    def _cancel_command(self, pending: _Pending) -> None:
        pending.cancelled = True
        if pending in self._queue:
            self._queue.remove(pending)
        elif pending is self._current:
            self._break(
                MySQLError(
                    ErrorCode.CR_SERVER_LOST,
                    "Lost connection to MySQL server during query (the command was cancelled "
                    "while mysqld ran it; the connection was closed)",
                )
            )

    def _pump(self) -> None:
        """Send queued commands and finish those whose reply is complete."""
        if self._pumping or not self.logged_in:
            return
        self._pumping = True
        try:
            conn = self.conn
            while True:
                p = self._current
                if p is None:
                    if not self._queue or self.broken is not None:
                        break
                    p = self._current = self._queue.popleft()
                    self._send_step(p, p.handler.first())
                    continue
                state = conn.state
                if state is not _IDLE and state is not _CLOSED:
                    break  # the reply is still coming
                nxt = p.handler.complete() if state is _IDLE else None
                if nxt is not None:
                    self._send_step(p, nxt)
                    continue
                self._current = None
                self._finish(p)
                if state is _CLOSED:  # after COM_QUIT, or an ERR that ended the connection
                    err = p.handler.error
                    why = err if isinstance(err, MySQLError) else _gone("the connection was closed")
                    self._break(why, abort=False)
                    break
        finally:
            self._pumping = False
        if self._current is not None:
            if self.config.read_timeout is not None:
                self._arm_timer()
        elif self._timer is not None:
            self._cancel_timer()

    def _send_step(self, p: _Pending, msg: Message) -> None:
        try:
            self._write(msg)
        except LocalProtocolError as e:  # nothing was sent: the command fails alone
            p.handler.fail(e)

    def _finish(self, p: _Pending) -> None:
        if p.cancelled:
            return
        err = p.handler.error
        if err is None:
            try:
                result = p.handler.result()
            except Exception as e:
                p.reject(e)
                return
            p.resolve(result)
        else:
            p.reject(err)

    def _command_event(self, ev: Message) -> None:
        p = self._current
        if p is None:
            if isinstance(ev, Err):  # unsolicited: shutdown, idle timeout, KILL
                err = ev.to_error()
                log.info(
                    "mysqld {address} closed an idle connection: {error}",
                    address=self.config.address,
                    error=str(err),
                )
                self._break(err)
            return
        reply = p.handler.event(ev)
        if reply is not None:
            self._write(reply)
        state = self.conn.state
        if state is _INFILE:  # mysqld waits for a file to be streamed
            self._feed_infile(p)
        elif state is _IDLE or state is _CLOSED:  # the reply (or one step of it) is complete
            self._pump()

    # -- LOAD DATA LOCAL INFILE from a reader ----------------------------------------------

    def _feed_infile(self, p: _Pending) -> None:
        """mysqld waits for the file of ``p``'s LOAD DATA LOCAL INFILE: stream it from the
        handler's reader (see the module docstring). The read timeout waits meanwhile."""
        reader = p.handler.take_infile_stream()
        if reader is None:  # a handler left mysqld waiting for a file it never sends
            raise LocalProtocolError("mysqld waits for a LOCAL INFILE file that nobody sends")
        if not self.connected:
            return  # the socket is gone: reading on fails the command with 2013
        self._cancel_timer()
        feeder = self._feeder = _InfileFeeder(self, reader)
        feeder.start()

    def _infile_sent(self, feeder: _InfileFeeder) -> None:
        """The end packet was written: wait for mysqld's reply as for any other."""
        if self._feeder is not feeder:
            return
        self._feeder = None
        if self._current is not None:
            self._arm_timer()
        self._process()  # what mysqld sent meanwhile (if ever), unless already in it

    def _infile_failed(self, feeder: _InfileFeeder, err: MySQLError) -> None:
        """The file cannot be had: close the connection without the end packet, so that
        mysqld aborts the statement instead of loading a truncated file."""
        if self._feeder is not feeder or self.broken is not None:
            return
        log.info(
            "LOAD DATA LOCAL INFILE to {address} failed: {error}; closing the connection",
            address=self.config.address,
            error=str(err),
        )
        self._break(err)

    def _infile_bug(self, feeder: _InfileFeeder, e: Exception) -> None:
        """Sending a piece failed (a bug of ours): break, without the end packet."""
        if self._feeder is feeder and self.broken is None:
            self._on_bug(e)

    def _stop_feed(self) -> None:
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.stop()

    # -- breaking and closing ----------------------------------------------------------------

    def _break(self, err: MySQLError, abort: bool = True) -> None:
        """The connection is unusable: fail everything pending and drop the socket."""
        if self.broken is None:
            self.broken = err
        self._cancel_timer()
        self._stop_feed()  # (before closing: a registered producer holds a TLS close back)
        if not self.logged_in and not self.ready.called:
            self.ready.errback(err)
        cur, self._current = self._current, None
        if cur is not None and not cur.cancelled:
            cur.reject(err)
        queued, self._queue = self._queue, deque()
        gone = _gone(f"the connection broke: {err.message}")
        for p in queued:
            if not p.cancelled:
                p.reject(gone)
        if self.connected and self.transport is not None:
            if abort:
                self.transport.abortConnection()  # type: ignore[attr-defined]
            else:
                self.transport.loseConnection()

    def when_closed(self) -> Deferred[None]:
        """Fires once the socket is closed."""
        if self._closed or (not self.connected and self.transport is None):
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        return d

    def close(self) -> Deferred[None]:
        """Close now: COM_QUIT when idle, else drop the socket (pending commands fail)."""
        d = self.when_closed()
        if not self.connected or self.transport is None:
            return d
        if self.logged_in and self.broken is None and not self.busy and self.conn.state is _IDLE:
            self._write(ComQuit())
            self._break(_gone("the client closed the connection"), abort=False)
        else:
            self._break(
                MySQLError(
                    ErrorCode.CR_SERVER_LOST,
                    "Lost connection to MySQL server during query (the client closed the "
                    "connection)",
                )
            )
        return d

    # -- read timeout and back-pressure ------------------------------------------------------

    def _arm_timer(self) -> None:
        timeout = self.config.read_timeout
        if timeout is None or self._paused or not self.connected or self._feeder is not None:
            return
        t = self._timer
        if t is not None and t.active():
            t.reset(timeout)
        else:
            self._timer = self.clock.callLater(timeout, self._read_timed_out)

    def _cancel_timer(self) -> None:
        t, self._timer = self._timer, None
        if t is not None and t.active():
            t.cancel()

    def _read_timed_out(self) -> None:
        self._timer = None
        log.warn(
            "no reply from {address} for {timeout}s: closing the connection",
            address=self.config.address,
            timeout=self.config.read_timeout,
        )
        self._break(
            MySQLError(
                ErrorCode.CR_SERVER_LOST,
                "Lost connection to MySQL server during query (no data from "
                f"{self.config.address} for {self.config.read_timeout}s: read_timeout; "
                "the connection was closed, mysqld may still be running the statement)",
            )
        )

    def pause_reading(self) -> None:
        """Stop reading from mysqld (and delivering events) until ``resume_reading``."""
        if self._paused:
            return
        self._paused = True
        self._cancel_timer()
        if self.connected and self.transport is not None:
            IPushProducer(self.transport).pauseProducing()

    def resume_reading(self) -> None:
        """Deliver what was read meanwhile, then read again."""
        if not self._paused:
            return
        self._paused = False
        if self.connected and self.transport is not None:
            IPushProducer(self.transport).resumeProducing()
        if self._current is not None:
            self._arm_timer()
        self._process()
        if not self.connected and self.broken is None and not self._paused:
            self._break(_gone("the connection was closed"))


class MySQLClientFactory(ClientFactory):
    """Builds one ``MySQLClientProtocol`` per connection attempt with ``config``."""

    protocol = MySQLClientProtocol
    #: Pools open and close connections all day: no "Starting/Stopping factory" log lines.
    noisy = False

    def __init__(self, config: ClientConfig, clock: IReactorTime) -> None:
        self.config = config
        self.clock = clock

    def buildProtocol(self, addr: Any) -> MySQLClientProtocol:
        """A fresh protocol."""
        proto = MySQLClientProtocol(self.config, self.clock)
        proto.factory = self
        return proto
