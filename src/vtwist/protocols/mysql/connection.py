"""The sans-IO MySQL protocol state machine, one table for both ends (h11 style).

Usage: ``conn = Connection(Role.SERVER)`` (or ``Role.CLIENT``); feed received bytes with
``receive_data(data)`` (``b""`` = the peer closed), then call ``next_event()`` until it
returns ``NEED_DATA``; turn events into bytes with ``send(event)`` / ``send_many(events)``.
Result sets also have shortcuts without an event per packet, with the same checks, bytes and
transitions: on the client ``next_rows`` (rows already received) and ``next_result`` (a
whole result set already received); on the server ``send_columns``, ``send_row``,
``send_done`` and ``send_result_set`` (all three in one).

Events are the dataclasses of ``messages``/``commands`` plus the abstract result-set events
of ``events``. The states and the single transition table (run for every event, sent or
received, so both ends obey the same rules) live in ``machine``; this module adds framing,
sequence ids, encoding and decoding. Who sends what:

=================  =========================================================================
state              allowed events (S = server sends, C = client sends)
=================  =========================================================================
GREETING           S: HandshakeV10 → LOGIN; Err (e.g. too many connections) → CLOSED
LOGIN              C: SSLRequest → TLS (only if the greeting offered SSL, once);
                   HandshakeResponse41 → AUTH
TLS                nothing: ``next_event`` returns PAUSED. The glue takes ``take_buffered()``
                   (bytes after the SSLRequest, i.e. TLS), upgrades, calls ``start_tls_done()``
AUTH               S: AuthSwitchRequest, AuthMoreData (the client may then answer),
                   Ok → IDLE, Err → CLOSED (→ IDLE after COM_CHANGE_USER); C: AuthData
IDLE               C: any command (sequence ids restart at 0); S: Err (unsolicited, e.g.
                   shutdown or idle timeout) → CLOSED. ComQuit → CLOSED; ComStmtClose and
                   ComStmtSendLongData → IDLE (no response); ComChangeUser → AUTH
RESULT             (COM_QUERY, COM_STMT_EXECUTE) S: Ok, Err, ResultSetStart, LocalInfileRequest
                   (→ INFILE: C sends LocalInfileData packets, an empty one ends the file)
COLUMNS → ROWS     S: Column x column_count, then Row*, then ResultSetDone (or Err)
PREPARE            S: StmtPrepareOK then Column x num_params then Column x num_columns; Err
FIELDS             (COM_FIELD_LIST) S: Column* (definitions with defaults), ResultSetDone; Err
ROWS (fetch)       (COM_STMT_FETCH) S: Row*, ResultSetDone; Err
SIMPLE             (PING, INIT_DB, RESET_CONNECTION, STMT_RESET, unknown) S: Ok | Err
SET_OPTION         S: Ok | Err       STATISTICS  S: StatisticsResponse | Err
=================  =========================================================================

An Ok or ResultSetDone with MORE_RESULTS_EXISTS after COM_QUERY/COM_STMT_EXECUTE goes back
to RESULT for the next result; otherwise the command is over (IDLE). COM_STMT_FETCH replies
are Row* then ResultSetDone (CURSOR_EXISTS or LAST_ROW_SENT). An execute that opens a cursor
is answered ResultSetStart, Column*, ResultSetDone(CURSOR_EXISTS) with no rows.

Wire shapes are chosen per connection from the negotiated CLIENT_DEPRECATE_EOF:

* classic: an EOF follows the last column of a result set (written lazily, with the next
  event, so that a cursor's single EOF carrying CURSOR_EXISTS can replace it), the
  parameter and column lists of a prepare reply, and ResultSetDone *is* an EOF (``Ok``
  answering COM_SET_OPTION is sent as an EOF too, as mysqld does);
* DEPRECATE_EOF: no intermediate EOF; ResultSetDone (and SET_OPTION's Ok) is an OK packet
  with header 0xFE, which also carries affected rows, insert id and info.

This follows mysqld, where every such end goes through ``Protocol_classic::send_eof``: the
COM_FIELD_LIST terminator, the cursor-open marker (``Materialized_cursor::open``), the end
of a fetch, and the reply to COM_SET_OPTION are all EOF, or OK-with-0xFE under
DEPRECATE_EOF. Checked against MariaDB 10.11 in ``tests/unit/protocols/test_mysql_mariadb``.

On receive, intermediate EOFs are swallowed and terminators become ResultSetDone, so the
events of a DEPRECATE_EOF backend re-send unchanged to a classic client and vice versa.

Sequence ids: strictly checked on receive (out of order → RemoteProtocolError 1156),
restarted at each command, continued through TLS and auth switches, wrapping at 256.

Prepared statements: every StmtPrepareOK (sent or received) registers the statement's
parameter and column counts (``statements``). A server decodes COM_STMT_EXECUTE with that
count, fills ``param_types`` from the last execute that bound types when
``new_params_bound`` is 0, and attaches the data of COM_STMT_SEND_LONG_DATA (at most
``max_packet_size`` per statement) as ``long_data``; long data is dropped on execute, reset
and close; RESET_CONNECTION and CHANGE_USER forget every statement.

Errors: misuse (sending what the state does not allow) raises ``LocalProtocolError`` and
changes nothing. Bytes that break the protocol make ``next_event`` raise
``RemoteProtocolError`` (its ``error_code`` is the MySQL error to report); the connection is
then in ERROR, every later ``next_event`` raises the same error, and a server may still
``send`` one Err to tell the client. ``next_event`` raises nothing else, always returns, and
buffers at most one packet of ``max_packet_size`` plus what the peer sent out of turn (also
capped at ``max_packet_size``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Final, cast

from vtwist.protocols.mysql.commands import (
    ComChangeUser,
    ComQuery,
    ComStmtExecute,
    ParamType,
    decode_command,
)
from vtwist.protocols.mysql.constants import Capability, ServerStatus
from vtwist.protocols.mysql.errors import (
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
)
from vtwist.protocols.mysql.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Column,
    ResultSetDone,
    ResultSetStart,
    Role,
    Row,
    Signal,
)
from vtwist.protocols.mysql.machine import (
    CLIENT_EVENTS,
    CLIENT_STATES,
    SERVER_EVENTS,
    SERVER_STATES,
    TABLE,
    Machine,
    PreparedStatement,
    RuleError,
    State,
)
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    ColumnDefinition41,
    Eof,
    Err,
    HandshakeResponse41,
    HandshakeV10,
    LocalInfileData,
    LocalInfileRequest,
    Ok,
    SSLRequest,
    StatisticsResponse,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.packets import MAX_CHUNK, PacketReader, frame_into
from vtwist.protocols.mysql.wire import Message, Reader, lenenc_int

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_PACKET_SIZE",
    "NEED_DATA",
    "PAUSED",
    "Connection",
    "PreparedStatement",
    "Role",
    "Signal",
    "State",
    "WholeResult",
]

DEFAULT_MAX_PACKET_SIZE: Final = 64 * 1024 * 1024
WholeResult = tuple[tuple[ColumnDefinition41, ...], list[bytes], ResultSetDone]
"""``Connection.next_result``: the column definitions, the row payloads, the end."""

_PROTOCOL_41: Final = int(Capability.PROTOCOL_41)
_SSL_BYTE1: Final = int(Capability.SSL) >> 8  # the SSL bit, in the 2nd byte of the caps
_CURSOR: Final = int(ServerStatus.CURSOR_EXISTS)
# Flags that belong to one reply and must not leak into a synthesized intermediate EOF.
_MORE: Final = int(ServerStatus.MORE_RESULTS_EXISTS)
_SESSION_TRACK: Final = int(Capability.SESSION_TRACK)
_STATUS_WARNINGS: Final = struct.Struct("<HH")
_U32: Final = struct.Struct("<I")
_PER_REPLY: Final = (
    int(ServerStatus.MORE_RESULTS_EXISTS) | _CURSOR | int(ServerStatus.LAST_ROW_SENT)
)
_EXECUTE: Final = 0x17
_QUERY: Final = 0x03
_COLUMNS_END: Final = State.COLUMNS_END
# ResultSetStart events are immutable: the usual ones are made once.
_SMALL_COUNTS: Final = 64
_RESULT_STARTS: Final = [ResultSetStart(max(n, 1)) for n in range(_SMALL_COUNTS)]
_IDLE: Final = State.IDLE
_MALFORMED: Final = int(ErrorCode.MALFORMED_PACKET)
_ROWS: Final = State.ROWS
# Members as module constants: a global is read faster than an enum class attribute.
_S_LOGIN: Final = State.LOGIN
_S_TLS: Final = State.TLS
_S_AUTH: Final = State.AUTH
_S_IDLE: Final = State.IDLE
_S_RESULT: Final = State.RESULT
_S_COLUMNS_END: Final = State.COLUMNS_END
_S_ROWS: Final = State.ROWS
_S_PARAMS_END: Final = State.PARAMS_END
_S_PREPARE_COLUMNS_END: Final = State.PREPARE_COLUMNS_END
_S_SET_OPTION: Final = State.SET_OPTION
_S_CLOSED: Final = State.CLOSED
_S_ERROR: Final = State.ERROR
# Decoded column definitions kept per connection (see ``_d_column``): entries, and the
# largest payload kept.
_COLUMN_CACHE_ENTRIES: Final = 256
_COLUMN_CACHE_MAX_PAYLOAD: Final = 1024
# Decoded result-set ends kept per connection (see ``_done``): entries, largest payload.
_DONE_CACHE_ENTRIES: Final = 32
_DONE_CACHE_MAX_PAYLOAD: Final = 64
# The largest result-set head (column count, definitions, EOF) ``next_result`` keeps to
# match the next result against.
_KNOWN_HEAD_MAX_BYTES: Final = 4096
# (first sequence id, no-rows mask, head bytes, its packets, columns)
_KnownHead = tuple[int, int, bytes, int, tuple[ColumnDefinition41, ...]]
# Encoded column definitions kept per connection (see ``send_columns``).
_ENCODED_COLUMNS_ENTRIES: Final = 256

_Decoder = Callable[["Connection", bytes], "Message | None"]
_BYTES: Final = [bytes((i,)) for i in range(256)]  # one-byte payloads (column counts)
_EOF_PACK: Final = struct.Struct("<BHH").pack
# The packet header of a classic EOF (5 bytes) by sequence id.
_EOF_HEADERS: Final = [(5 | (seq << 24)).to_bytes(4, "little") for seq in range(256)]


def _eof(warnings: int, status: int) -> bytes:
    """A classic EOF payload (``Eof(warnings, status).encode()`` without the object: it is
    written after the columns and at the end of every result set)."""
    return _EOF_PACK(0xFE, warnings, status)


class Connection(Machine):
    """One end of a MySQL connection (see the module docstring for the protocol rules)."""

    def __init__(self, role: Role, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        super().__init__(role is Role.SERVER, max_packet_size)
        self.role = role
        self._sendable = SERVER_EVENTS if self._server else CLIENT_EVENTS
        self._decoders = _CLIENT_DECODERS if self._server else _SERVER_DECODERS
        self._reader = PacketReader(max_packet_size)
        self._peer_closed = False
        self._error: RemoteProtocolError | None = None
        self._columns_seen: dict[bytes, Column] = {}
        # id(definition) -> (definition, its payload); the definition is kept so that its
        # id cannot be reused while the entry exists.
        self._columns_encoded: dict[int, tuple[ColumnDefinition41, bytes]] = {}
        # ``next_result``: the last result set's head, to match the next one against.
        # ``send_result_set``: the last head framed for a tuple of definitions (the tuple,
        # first sequence id, EOF status or -1, bytes, next sequence id).
        self._framed_head: tuple[tuple[ColumnDefinition41, ...], int, int, bytes, int] | None = None
        self._known_head: _KnownHead | None = None
        self._done_seen: dict[bytes, ResultSetDone] = {}

    # -- introspection ---------------------------------------------------------------------

    @property
    def capabilities(self) -> int:
        """The negotiated capabilities (server's & client's), 0 before the login packet."""
        return self._caps

    @property
    def server_capabilities(self) -> int:
        """What the greeting advertised."""
        return self._server_caps

    @property
    def client_capabilities(self) -> int:
        """What the login packet asked for."""
        return self._client_caps

    @property
    def deprecate_eof(self) -> bool:
        """True when CLIENT_DEPRECATE_EOF was negotiated."""
        return self._deprecate_eof

    @property
    def tls(self) -> bool:
        """True once ``start_tls_done()`` has been called."""
        return self._tls

    @property
    def status(self) -> int:
        """The server status flags of the last OK/EOF/ResultSetDone exchanged."""
        return self._status

    @property
    def statements(self) -> Mapping[int, PreparedStatement]:
        """Prepared statements by id (registered from StmtPrepareOK)."""
        return self._stmts

    @property
    def error(self) -> RemoteProtocolError | None:
        """The error that put the connection in ERROR, if any."""
        return self._error

    @property
    def our_turn(self) -> bool:
        """True when this end may send something now."""
        s = self.state
        if self._server:
            return s in SERVER_STATES and s is not _S_IDLE
        return s in CLIENT_STATES and (s is not _S_AUTH or self._auth_client_turn)

    # -- receiving -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means the peer closed the connection."""
        if not data:
            self._peer_closed = True
            return
        if self._peer_closed:
            raise LocalProtocolError("receive_data() after the peer closed the connection")
        if self.state is _S_CLOSED or self.state is _S_ERROR:
            return  # nothing more will be parsed: don't keep the bytes
        self._reader.feed(data)

    @property
    def drained(self) -> bool:
        """True when every byte received was parsed, the peer has not closed and nothing
        failed: ``next_event`` would only say NEED_DATA (in IDLE) or wait for our turn."""
        r = self._reader  # (``r.empty``, inlined: this runs after every command)
        return (
            r._pos >= len(r._buf)
            and not r._more_len
            and not r._parts
            and not self._peer_closed
            and self._error is None
        )

    def take_buffered(self) -> bytes:
        """Remove and return the received bytes not parsed yet (the TLS handshake, after an
        SSLRequest)."""
        return self._reader.take_buffered()

    def start_tls_done(self) -> None:
        """The glue finished the TLS upgrade that followed an SSLRequest."""
        if self.state is not _S_TLS:
            raise LocalProtocolError(f"start_tls_done() in state {self.state.name}")
        self._tls = True
        self.state = _S_LOGIN

    def next_rows(self, limit: int) -> list[bytes]:
        """Client side, while a result's rows arrive: up to ``limit`` row payloads already
        buffered (maybe none), what ``next_event`` would give as that many ``Row`` events,
        without an event each. Anything else (the end of the result, NEED_DATA, an error)
        is left to ``next_event``."""
        if self.state is not _ROWS or self._server or self._error is not None:
            return []
        rows, self._seq = self._reader.take_rows(self._seq, limit)
        return rows

    def next_result(self, max_rows: int) -> WholeResult | None:
        """Client side, when a result is due: a whole result set already received, with at
        most ``max_rows`` rows, in one piece; what ``next_event`` would give as its
        ``ResultSetStart``, ``Column``, ``Row`` and ``ResultSetDone`` events, with the same
        checks and the same state after it. None (nothing consumed) when that is not all
        buffered or is anything else (OK, ERR, LOCAL INFILE, a cursor, a split packet, a
        malformed packet...): ``next_event`` then goes event by event.

        The definitions come as a tuple; a result set whose head (count, definitions, EOF)
        repeats the last one's bytes gets the very tuple it got then, which a server
        ``Connection`` relaying it frames only once (``send_result_set``)."""
        if self.state is not _S_RESULT or self._server or self._error is not None:
            return None
        deprecate = self._deprecate_eof
        reader = self._reader
        no_rows = _CURSOR if self._cmd == _EXECUTE else 0
        # The head (count, definitions, EOF) of the last result set, matched as bytes.
        known = self._known_head
        first = self._seq
        if known is not None and (known[0] != first or known[1] != no_rows):
            known = None
        got = reader.peek_result_set(
            first,
            not deprecate,
            0xFFFFFF if deprecate else 9,
            no_rows,
            max_rows,
            b"" if known is None else known[2],
            0 if known is None else known[3],
        )
        if got is None:
            return None
        payloads, eof, rows, end, seq, pos, head = got
        try:
            if payloads is None:
                assert known is not None
                columns = known[4]  # the same (immutable) tuple as last time
            else:
                if eof is not None:
                    Eof.decode(eof)
                columns = tuple([cast(Column, self._d_column(p)).definition for p in payloads])
                if len(head) <= _KNOWN_HEAD_MAX_BYTES:
                    packets = 1 + len(payloads) + (eof is not None)
                    self._known_head = (first, no_rows, head, packets, columns)
            done = self._done(end)
        except Exception:
            return None  # malformed: next_event fails the connection where it is
        reader.skip_to(pos)
        self._seq = seq
        self._remaining = 0
        self._t_done(done)
        return columns, rows, done

    def next_event(self) -> Message | Signal:
        """The next event from the peer, or NEED_DATA / PAUSED / CLOSED."""
        if self._error is not None:
            raise self._error
        try:
            while True:
                state = self.state
                # Rows (client side) are always the peer's turn: skip the checks.
                if state is not _ROWS or self._server:
                    if state is _S_CLOSED:
                        return CLOSED
                    if state is _S_TLS:
                        return PAUSED
                    # Is it the peer's turn? (inlined: this runs for every packet)
                    if not (
                        state in CLIENT_STATES and (state is not _S_AUTH or self._auth_client_turn)
                        if self._server
                        else state in SERVER_STATES
                    ):
                        if self._peer_closed:
                            return self._on_peer_closed()
                        if self._reader.buffered > self.max_packet_size:
                            raise RemoteProtocolError(
                                "the peer sent too much data while it was not its turn",
                                ErrorCode.NET_PACKETS_OUT_OF_ORDER,
                            )
                        return NEED_DATA
                pkt = self._reader.next_packet()
                if pkt is None:
                    if self._peer_closed:
                        return self._on_peer_closed()
                    return NEED_DATA
                first, last, payload = pkt
                if first != self._seq:
                    ev = self._out_of_sequence(first, payload)
                    if ev is not None:
                        return ev
                self._seq = (last + 1) & 0xFF
                if state is _ROWS and payload and payload[0] < 0xFE:
                    return Row(payload)  # the hot path: rows need no transition
                ev = self._decoders[state](self, payload)
                if ev is None:
                    continue  # an intermediate EOF was consumed
                handler = TABLE[state].get(type(ev))
                if handler is None:  # pragma: no cover - decoders only build allowed events
                    raise RemoteProtocolError(f"unexpected {type(ev).__name__} in {state.name}")
                handler(self, ev)
                return ev
        except RemoteProtocolError as e:
            self._fail(e)
            raise
        except RuleError as e:
            err = RemoteProtocolError(str(e), e.code)
            self._fail(err)
            raise err from None
        except Exception as e:  # a decoder bug must not escape as anything else
            err = RemoteProtocolError(f"malformed packet: {e!r}", _MALFORMED)
            self._fail(err)
            raise err from e

    def _fail(self, e: RemoteProtocolError) -> None:
        self._error = e
        self.state = _S_ERROR

    def _out_of_sequence(self, first: int, payload: bytes) -> Message | None:
        # An ERR the server sends on its own (shutdown, idle timeout, KILL): MariaDB numbers
        # it 0 whatever the conversation; the connection is over after it.
        if (
            not self._server
            and payload
            and payload[0] == 0xFF
            and (self.state is _S_IDLE or first == 0)
        ):
            ev = Err.decode(payload)
            self.state = _S_CLOSED
            return ev
        raise RemoteProtocolError(
            f"packets out of order: got sequence id {first}, expected {self._seq}",
            ErrorCode.NET_PACKETS_OUT_OF_ORDER,
        )

    def _on_peer_closed(self) -> Signal:
        if self._server or self.state is _S_IDLE:
            self.state = _S_CLOSED
            return CLOSED
        raise RemoteProtocolError(
            f"Lost connection to MySQL server (closed in state {self.state.name})",
            ErrorCode.CR_SERVER_LOST,
        )

    # -- sending ---------------------------------------------------------------------------

    def send(self, event: Message) -> bytes:
        """Validate ``event`` against the state and return it framed for the wire."""
        t = type(event)
        if (t is ComStmtExecute or t is ComQuery) and self.state is _IDLE and not self._server:
            # A client's hot paths: the same transitions and bytes as ``_send_into``.
            payload: bytes
            if t is ComQuery:
                self._t_query(event)  # type: ignore[arg-type]
                payload = b"\x03" + event.sql  # type: ignore[attr-defined]  # (its encode)
            else:
                self._t_execute(event)  # type: ignore[arg-type]
                payload = event.encode()  # type: ignore[attr-defined]
            if len(payload) < MAX_CHUNK:
                self._seq = 1
                return len(payload).to_bytes(3, "little") + b"\x00" + payload
            out_: list[bytes] = []
            self._seq = frame_into(out_, payload, 0)
            return b"".join(out_)
        out: list[bytes] = []
        self._send_into(out, event)
        return b"".join(out)

    def send_many(self, events: Iterable[Message]) -> bytes:
        """Like ``send`` for several events, framed in one join (e.g. a whole result set).

        If one event is refused, LocalProtocolError is raised and the events before it
        have already moved the state on: callers must treat that as a bug.
        """
        out: list[bytes] = []
        for ev in events:
            if type(ev) is Row and self.state is _S_ROWS and self._server:
                payload = ev.payload  # the hot path
                if len(payload) < 0xFFFFFF:
                    seq = self._seq
                    out.append((len(payload) | (seq << 24)).to_bytes(4, "little"))
                    out.append(payload)
                    self._seq = (seq + 1) & 0xFF
                    continue
            self._send_into(out, ev)
        return b"".join(out)

    # The server's result-set hot path: the same bytes and transitions as ``send_many`` with
    # ResultSetStart/Column/Row/ResultSetDone events, without building the events. Anything
    # off the common path (wrong role or state, cursors, huge rows) goes to ``send_many``,
    # which also raises the LocalProtocolError a misuse deserves.

    def send_columns(self, columns: Sequence[ColumnDefinition41]) -> bytes:
        """``send_many([ResultSetStart(len(columns)), *(Column(c) for c in columns)])``."""
        n = len(columns)
        if not (n and self._server and self.state is _S_RESULT):
            return self.send_many([ResultSetStart(n), *(Column(c) for c in columns)])
        out: list[bytes] = []
        self._seq = self._columns_into(out, columns)
        self._remaining = 0
        self.state = _ROWS if self._deprecate_eof else _COLUMNS_END
        return b"".join(out)

    def _columns_into(self, out: list[bytes], columns: Sequence[ColumnDefinition41]) -> int:
        """Frame the column count and definitions into ``out``; the next sequence id."""
        cache = self._columns_encoded
        seq = self._seq
        n = len(columns)
        if n < 0xFB:  # the column count in one byte: framed inline (as below)
            out.append((1 | (seq << 24)).to_bytes(4, "little"))
            out.append(_BYTES[n])
            seq = (seq + 1) & 0xFF
        else:
            seq = frame_into(out, lenenc_int(n), seq)
        for c in columns:
            hit = cache.get(id(c))
            if hit is not None and hit[0] is c:
                payload = hit[1]
            else:
                payload = c.encode()
                if len(cache) >= _ENCODED_COLUMNS_ENTRIES:
                    cache.clear()
                cache[id(c)] = (c, payload)
            size = len(payload)
            if size < MAX_CHUNK:  # ``frame_into``, inlined: one small packet
                out.append((size | (seq << 24)).to_bytes(4, "little"))
                out.append(payload)
                seq = (seq + 1) & 0xFF
            else:
                seq = frame_into(out, payload, seq)
        return seq

    def send_row(self, payload: bytes) -> bytes:
        """``send_many([Row(payload)])``."""
        state = self.state
        n = len(payload)
        if self._server and n < MAX_CHUNK:
            seq = self._seq
            if state is _ROWS:
                self._seq = (seq + 1) & 0xFF
                return (n | (seq << 24)).to_bytes(4, "little") + payload
            if state is _COLUMNS_END:  # the EOF owed after the columns comes first
                out: list[bytes] = []
                seq = frame_into(out, _eof(0, self._status & ~_PER_REPLY), seq)
                seq = frame_into(out, payload, seq)
                self._seq = seq
                self.state = _ROWS
                return b"".join(out)
        return self.send_many([Row(payload)])

    def send_done(
        self,
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
    ) -> bytes:
        """``send_many([ResultSetDone(status, warnings, affected_rows, ...)])``."""
        state = self.state
        if not self._server or not (
            state is _ROWS
            or (state is _COLUMNS_END and not (self._cmd == _EXECUTE and status & _CURSOR))
        ):
            return self.send_many(
                [ResultSetDone(status, warnings, affected_rows, last_insert_id, info)]
            )
        out: list[bytes] = []
        seq = self._seq
        if state is _COLUMNS_END:
            seq = frame_into(out, _eof(0, status & ~_PER_REPLY), seq)
        return self._end_into(out, seq, status, warnings, affected_rows, last_insert_id, info)

    def send_result_set(
        self,
        columns: Sequence[ColumnDefinition41],
        rows: Sequence[bytes],
        status: int = 0,
        warnings: int = 0,
        affected_rows: int = 0,
        last_insert_id: int = 0,
        info: bytes = b"",
    ) -> bytes:
        """``send_columns(columns)``, ``send_row`` of each row, then ``send_done(...)``:
        the same bytes and transitions, framed in one join."""
        if not (self._server and self.state is _S_RESULT and columns) or (
            self._cmd == _EXECUTE and status & _CURSOR
        ):
            return b"".join(
                [
                    self.send_columns(columns),
                    *map(self.send_row, rows),
                    self.send_done(status, warnings, affected_rows, last_insert_id, info),
                ]
            )
        # As send_row (or send_done, without rows) writes the EOF owed after the columns.
        owed = -1 if self._deprecate_eof else (self._status if rows else status) & ~_PER_REPLY
        start = self._seq
        framed = self._framed_head
        if framed is not None and framed[0] is columns and framed[1] == start and framed[2] == owed:
            out = [framed[3]]  # the same (immutable) definitions as last time, framed then
            seq = framed[4]
        else:
            out = []
            seq = self._columns_into(out, columns)
            if owed >= 0:
                out.append(_EOF_HEADERS[seq])  # (``_eof`` and ``frame_into``, inlined)
                out.append(_EOF_PACK(0xFE, 0, owed))
                seq = (seq + 1) & 0xFF
            if type(columns) is tuple:
                self._framed_head = (columns, start, owed, b"".join(out), seq)
        self._remaining = 0
        append = out.append
        for payload in rows:
            n = len(payload)
            if n < MAX_CHUNK:
                append((n | (seq << 24)).to_bytes(4, "little"))
                append(payload)
                seq = (seq + 1) & 0xFF
            else:
                seq = frame_into(out, payload, seq)
        return self._end_into(out, seq, status, warnings, affected_rows, last_insert_id, info)

    def _end_into(
        self,
        out: list[bytes],
        seq: int,
        status: int,
        warnings: int,
        affected_rows: int,
        last_insert_id: int,
        info: bytes,
    ) -> bytes:
        """Frame the end of a result set (after its rows) into ``out``, move on, and return
        ``out`` joined."""
        if self._deprecate_eof:
            end = Ok(affected_rows, last_insert_id, status, warnings, info).encode(self._caps, 0xFE)
            seq = frame_into(out, end, seq)
        else:  # a classic EOF: ``_eof`` and ``frame_into``, inlined
            out.append(_EOF_HEADERS[seq])
            out.append(_EOF_PACK(0xFE, warnings, status))
            seq = (seq + 1) & 0xFF
        self._status = status
        cmd = self._cmd
        if status & _MORE and cmd in (_QUERY, _EXECUTE):
            self.state = _S_RESULT
            self._seq = seq
        else:
            self.state = _IDLE
            self._seq = 0
        return b"".join(out)

    def _send_into(self, out: list[bytes], ev: Message) -> None:
        state = self.state
        t = type(ev)
        if state is _S_ERROR:
            if self._server and isinstance(ev, Err):
                self._seq = frame_into(out, ev.encode(), self._seq)
                self.state = _S_CLOSED
                return
            raise LocalProtocolError(f"cannot send {t.__name__}: the connection failed")
        if t not in self._sendable:
            raise LocalProtocolError(f"a {self.role.value} cannot send {t.__name__}")
        handler = TABLE[state].get(t)
        if handler is None:
            raise LocalProtocolError(f"cannot send {t.__name__} in state {state.name}")
        if t is AuthData and not self._auth_client_turn:
            raise LocalProtocolError("cannot send AuthData before the server asked for it")
        seq = self._seq
        try:
            handler(self, ev)
        except RuleError as e:
            raise LocalProtocolError(str(e)) from None
        if state is _S_COLUMNS_END:
            # The EOF after the columns, owed since the last Column; a cursor's
            # ResultSetDone *is* that EOF.
            done = ev if isinstance(ev, ResultSetDone) else None
            if done is None or not (self._cmd == _EXECUTE and done.status & _CURSOR):
                status = (self._status if done is None else done.status) & ~_PER_REPLY
                seq = frame_into(out, _eof(0, status), seq)
        seq = frame_into(out, self._encode(ev, state), seq)
        state = self.state
        if state is _S_PARAMS_END or state is _S_PREPARE_COLUMNS_END:
            seq = frame_into(out, _eof(0, self._status & ~_PER_REPLY), seq)
            self._eof_done()
        self._seq = 0 if self.state is _S_IDLE else seq

    def _encode(self, ev: Message, state: State) -> bytes:
        t = type(ev)
        if t is Row:
            return ev.payload  # type: ignore[attr-defined, no-any-return]
        if t is Column:
            return ev.definition.encode()  # type: ignore[attr-defined, no-any-return]
        if t is ResultSetDone:
            assert isinstance(ev, ResultSetDone)
            if self._deprecate_eof:
                ok = Ok(ev.affected_rows, ev.last_insert_id, ev.status, ev.warnings, ev.info)
                return ok.encode(self._caps, 0xFE)
            return _eof(ev.warnings, ev.status)
        if t is Ok:
            assert isinstance(ev, Ok)
            if state is _S_SET_OPTION:
                if self._deprecate_eof:
                    return ev.encode(self._caps, 0xFE)
                return _eof(ev.warnings, ev.status)
            return ev.encode(self._caps or _PROTOCOL_41)
        if t is ResultSetStart:
            return lenenc_int(ev.column_count)  # type: ignore[attr-defined]
        if t is ComChangeUser:
            assert isinstance(ev, ComChangeUser)
            return ev.encode(self._caps)
        return ev.encode()  # type: ignore[attr-defined, no-any-return]

    # -- decoders (receive side: one per state, building the event the peer sent) ----------

    def _params_for(self, stmt_id: int) -> tuple[int, tuple[ParamType, ...]]:
        st = self._stmts.get(stmt_id)
        if st is None:
            return 0, ()
        return st.num_params, st.param_types

    def _d_command(self, p: bytes) -> Message:
        if len(p) >= 5 and p[0] == _EXECUTE:
            # The hot path (``decode_command`` would do the same, through ``_params_for``).
            st = self._stmts.get(_U32.unpack_from(p, 1)[0])
            if st is None:
                return ComStmtExecute.decode(p, 0)
            ev = ComStmtExecute.decode(p, st.num_params, st.param_types)
            if st.long_data:
                ev = replace(ev, long_data={k: bytes(v) for k, v in st.long_data.items()})
            return ev
        return decode_command(p, self._caps, self._params_for)

    def _d_login(self, p: bytes) -> Message:
        if len(p) == SSLRequest.LENGTH and not self._tls and p[1] & _SSL_BYTE1:
            return SSLRequest.decode(p)
        return HandshakeResponse41.decode(p)

    def _d_auth_data(self, p: bytes) -> Message:
        return AuthData(p)

    def _d_infile_data(self, p: bytes) -> Message:
        return LocalInfileData(p)

    def _d_greeting(self, p: bytes) -> Message:
        b0 = p[0] if p else -1
        if b0 == 0x0A:
            return HandshakeV10.decode(p)
        if b0 == 0xFF:
            return Err.decode(p)
        raise RemoteProtocolError(
            f"not a MySQL server greeting (first byte {b0})", ErrorCode.HANDSHAKE_ERROR
        )

    def _d_auth_reply(self, p: bytes) -> Message:
        b0 = p[0] if p else -1
        if b0 == 0x00:
            return Ok.decode(p, self._caps)
        if b0 == 0xFF:
            return Err.decode(p)
        if b0 == 0xFE:
            return AuthSwitchRequest.decode(p)
        if b0 == 0x01:
            return AuthMoreData.decode(p)
        raise RuleError(f"unexpected auth reply (first byte {b0})")

    def _d_unsolicited(self, p: bytes) -> Message:
        if p and p[0] == 0xFF:
            return Err.decode(p)
        raise RuleError("the server sent a packet while the client was idle")

    def _d_result(self, p: bytes) -> Message:
        b0 = p[0] if p else -1
        if b0 == 0x00:
            return Ok.decode(p, self._caps)
        if b0 == 0xFF:
            return Err.decode(p)
        if b0 == 0xFB:
            return LocalInfileRequest.decode(p)
        if b0 < 0:
            raise RuleError("empty packet where a result was expected")
        if len(p) == 1 and b0 < _SMALL_COUNTS:
            return _RESULT_STARTS[b0]  # one-byte column count (0 is refused below)
        r = Reader(p)
        n = r.lenenc_int()
        if n == 0:
            raise RuleError("result set with zero columns")
        return ResultSetStart(n)

    def _d_column(self, p: bytes) -> Message:
        # The same definitions come back query after query (a prepared statement's on every
        # execute): decode each distinct payload once. Events are immutable.
        cache = self._columns_seen
        ev = cache.get(p)
        if ev is None:
            ev = Column(ColumnDefinition41.decode(p))
            if len(p) <= _COLUMN_CACHE_MAX_PAYLOAD:
                if len(cache) >= _COLUMN_CACHE_ENTRIES:
                    cache.clear()
                cache[p] = ev
        return ev

    def _is_end(self, p: bytes) -> bool:
        return bool(p) and p[0] == 0xFE and len(p) < (0xFFFFFF if self._deprecate_eof else 9)

    def _done(self, p: bytes) -> ResultSetDone:
        # The same few ends come back result after result: decode each once (immutable).
        seen = self._done_seen
        ev = seen.get(p)
        if ev is not None:
            return ev
        ev = self._decode_done(p)
        if len(p) <= _DONE_CACHE_MAX_PAYLOAD:
            if len(seen) >= _DONE_CACHE_ENTRIES:
                seen.clear()
            seen[p] = ev
        return ev

    def _decode_done(self, p: bytes) -> ResultSetDone:
        if self._deprecate_eof:
            if len(p) >= 7 and p[1] < 0xFB and p[2] < 0xFB and not self._caps & _SESSION_TRACK:
                # The usual end (as ``Ok.decode``'s own fast path, without the Ok).
                status, warnings = _STATUS_WARNINGS.unpack_from(p, 3)
                return ResultSetDone(status, warnings, p[1], p[2], p[7:])
            ok = Ok.decode(p, self._caps)
            return ResultSetDone(
                ok.status, ok.warnings, ok.affected_rows, ok.last_insert_id, ok.info
            )
        eof = Eof.decode(p)
        return ResultSetDone(eof.status, eof.warnings)

    def _d_columns_end(self, p: bytes) -> Message | None:
        if p and p[0] == 0xFF:
            return Err.decode(p)
        if not p or p[0] != 0xFE or len(p) >= 9:
            raise RuleError("expected the EOF packet after the column definitions")
        eof = Eof.decode(p)
        if self._cmd == _EXECUTE and eof.status & _CURSOR:
            return ResultSetDone(eof.status, eof.warnings)  # a cursor was opened: no rows
        self._eof_done()
        return None

    def _d_rows(self, p: bytes) -> Message:
        if not p:
            raise RuleError("empty row packet")
        if p[0] == 0xFF:
            return Err.decode(p)
        if self._is_end(p):
            return self._done(p)
        return Row(p)

    def _d_params_end(self, p: bytes) -> None:
        if not p or p[0] != 0xFE or len(p) >= 9:
            raise RuleError("expected the EOF packet after the prepare definitions")
        self._status = Eof.decode(p).status
        self._eof_done()
        return None

    def _d_prepare(self, p: bytes) -> Message:
        b0 = p[0] if p else -1
        if b0 == 0x00:
            return StmtPrepareOK.decode(p)
        if b0 == 0xFF:
            return Err.decode(p)
        raise RuleError(f"unexpected COM_STMT_PREPARE reply (first byte {b0})")

    def _d_fields(self, p: bytes) -> Message:
        if p and p[0] == 0xFF:
            return Err.decode(p)
        if self._is_end(p):
            return self._done(p)
        return Column(ColumnDefinition41.decode(p))

    def _d_ok_or_err(self, p: bytes) -> Message:
        b0 = p[0] if p else -1
        if b0 == 0x00:
            return Ok.decode(p, self._caps)
        if b0 == 0xFF:
            return Err.decode(p)
        if b0 == 0xFE:  # an EOF (COM_SET_OPTION, COM_DEBUG) or its DEPRECATE_EOF form
            if self._deprecate_eof and len(p) >= 7:
                return Ok.decode(p, self._caps)
            eof = Eof.decode(p)
            return Ok(status=eof.status, warnings=eof.warnings)
        raise RuleError(f"expected OK or ERR (first byte {b0})")

    def _d_statistics(self, p: bytes) -> Message:
        if p and p[0] == 0xFF:
            return Err.decode(p)
        return StatisticsResponse.decode(p)


_C = Connection

# What a server reads (the client's packets), by state.
_CLIENT_DECODERS: Final[dict[State, _Decoder]] = {
    State.LOGIN: _C._d_login,
    State.AUTH: _C._d_auth_data,
    State.IDLE: _C._d_command,
    State.INFILE: _C._d_infile_data,
}
# What a client reads (the server's packets), by state.
_SERVER_DECODERS: Final[dict[State, _Decoder]] = {
    State.GREETING: _C._d_greeting,
    State.AUTH: _C._d_auth_reply,
    State.IDLE: _C._d_unsolicited,
    State.RESULT: _C._d_result,
    State.COLUMNS: _C._d_column,
    State.COLUMNS_END: _C._d_columns_end,
    State.ROWS: _C._d_rows,
    State.PREPARE: _C._d_prepare,
    State.PREPARE_PARAMS: _C._d_column,
    State.PARAMS_END: _C._d_params_end,
    State.PREPARE_COLUMNS: _C._d_column,
    State.PREPARE_COLUMNS_END: _C._d_params_end,
    State.FIELDS: _C._d_fields,
    State.SIMPLE: _C._d_ok_or_err,
    State.SET_OPTION: _C._d_ok_or_err,
    State.STATISTICS: _C._d_statistics,
}
