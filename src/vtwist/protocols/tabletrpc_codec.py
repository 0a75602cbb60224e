"""Sans-IO codec of the gate <-> tablet RPC: frames and messages, and their validation.

This module owns the bytes on the wire and their validation; it imports nothing from
Twisted, so both peers (and fuzzers) can drive it directly. The Twisted protocols live in
``vtwist.protocols.tabletrpc``.

Wire format (protocol version 3)
--------------------------------
Each frame is a 4-byte big-endian payload length followed by one msgpack value (bytes as
``bin``, text as ``str``). A receiver refuses a length above its ``max_frame_size`` before
buffering the payload. Every message is a msgpack array whose first item is its kind:

=============  ===================================================  =========================
kind           array                                                 direction
=============  ===================================================  =========================
0 HELLO        ``[0, version, info{str: any}]``                      both, first frame
1 REQUEST      ``[1, id, op, args{str: any}, timeout_ms]``           gate -> tablet
2 CANCEL       ``[2, id]``                                           gate -> tablet
3 CREDIT       ``[3, id, chunks]``                                   gate -> tablet
4 REPLY        ``[4, id, result]``                                   tablet -> gate, terminal
5 ERROR        ``[5, id, mysql_code, sqlstate, message]``            tablet -> gate, terminal
6 CHUNK        ``[6, id, fields[bin] | nil, rows[bin]]``             tablet -> gate
7 HEALTH       ``[7, id, health{str: any}]``                         tablet -> gate
8 INFILE_MORE  ``[8, id, max_bytes]``                                tablet -> gate
9 INFILE_DATA  ``[9, id, data(bin), nil | [code, sqlstate, msg]]``   gate -> tablet
=============  ===================================================  =========================

* Request ids are chosen by the gate, positive, never reused on one connection. Every
  REQUEST gets exactly one terminal frame (REPLY or ERROR), also after a CANCEL; frames for
  an id the gate no longer tracks are ignored. ERROR with id 0 is about the connection
  (bad version, malformed frame) and is followed by a close.
* The first frame of each side is HELLO; ``info`` carries ``max_frame`` (the largest frame
  that side accepts: the peer never sends more), ``role``, and for the tablet
  ``max_inflight``, ``infile_stream`` (true: it pulls LOAD DATA files with kinds 8/9) and
  ``health_keepalive`` (seconds: a ``stream_health`` gets a HEALTH frame at least that
  often, changed or not, so a silent one means a stalled tablet).
* ``timeout_ms`` is the time left until the request's deadline when it was sent (relative,
  so the peers' clocks need not agree); 0 asks for the tablet's default (none for
  ``stream_health``). The tablet enforces it too (ERROR 1317, and the request is stopped).
* Streaming ops (``stream_execute``) send CHUNKs, then a REPLY with the OK part of the
  result. Back-pressure is credit based: the request's ``window`` argument is how many
  CHUNKs the tablet may send before it must wait; the gate returns credit with CREDIT frames
  as its consumer finishes chunks. A tablet out of credit pauses its row producer.
* ``stream_health`` answers with HEALTH frames (the current snapshot first, then every
  change) until cancelled.
* LOAD DATA LOCAL INFILE files are pulled by the tablet, one piece at a time, for an
  ``execute`` whose ``infile_stream`` argument is true (the gate sends it only to a tablet
  whose HELLO info has ``"infile_stream": true``, so older peers never see kinds 8 and 9).
  INFILE_MORE asks for the next piece of request ``id``'s file, at most ``max_bytes``
  (1 to ``MAX_FRAME_SIZE_LIMIT``; the tablet keeps it below the gate's ``max_frame``); the
  tablet sends it only when the previous piece has arrived. INFILE_DATA answers it: ``data``
  (1 to ``max_bytes`` bytes) with error nil is the next piece; ``b""`` with error nil is the
  end of the file; an error ``[code, sqlstate, message]`` (with ``data`` empty) means the
  file failed (the gate's client went away or stalled, or sent more than the gate takes),
  and the statement fails with that error. The gate answers every INFILE_MORE of a request
  it still tracks once (after the end or an error, with the same end or error again).
  The rules of other frames apply: an INFILE_MORE or INFILE_DATA for an id the receiver no
  longer tracks is ignored (it crossed the request's end); one that is malformed, or that
  comes when none was asked for (an INFILE_MORE while a piece is being read, for a request
  without a streamed file; an INFILE_DATA without an INFILE_MORE, or longer than it asked),
  fails its request only (the gate cancels it with 2027, the tablet ends it with 1835).
* Versioning: HELLO carries the version; a peer speaking another major version gets
  ERROR 1043 and a close. Unknown argument keys are ignored (newer gates may add some);
  an unknown op gets ERROR 1235; an unknown message kind is a protocol error (close).
* Errors: a message that cannot be read at all, or an oversized frame, is a protocol error
  (ERROR id 0, then close); a readable message with bad content fails only its request.

Operations, their arguments and results are defined in ``tabletrpc_ops``. Rows and column
definitions stay in the MySQL wire encoding: each field is the raw ColumnDefinition41
payload, each row the raw text-row payload, so the gate relays them without decoding.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeAlias

import msgpack

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, RemoteProtocolError

# 2: QueryResult carries notes (SHOW WARNINGS rows); 3: and ``more`` result sets (CALL).
PROTOCOL_VERSION = 3

# Large enough for a statement as large as the gate's MySQL packets may be (64 MiB, the
# local cluster's max_allowed_packet: a client's 30 MB BLOB insert, written in hex by
# PyMySQL, must reach mysqld) with the request around it, and for a non-streamed result at
# the tablet's row limit; it bounds what one connection can make its peer buffer.
DEFAULT_MAX_FRAME_SIZE = 65 * 1024 * 1024
# The header is 32 bits; configurations above this are refused as a likely mistake.
MAX_FRAME_SIZE_LIMIT = 1024 * 1024 * 1024

MAX_REQUEST_ID = 2**63 - 1
# A day: beyond that a timeout is a configuration error, not a deadline.
MAX_TIMEOUT_MS = 86_400_000

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size

HELLO, REQUEST, CANCEL, CREDIT, REPLY, ERROR, CHUNK, HEALTH, INFILE_MORE, INFILE_DATA = range(10)

#: Bytes of an INFILE_DATA frame besides its data (array, kind, id, bin header, nil): a
#: piece of at most ``max_frame - INFILE_DATA_OVERHEAD`` bytes fits in a ``max_frame`` frame.
INFILE_DATA_OVERHEAD = 32


# --- errors ---------------------------------------------------------------------------------


class FrameTooLargeError(RemoteProtocolError):
    """A frame header announced more than ``max_frame_size`` bytes: answer, then close."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"tablet RPC frame of {size} bytes exceeds max_frame_size ({limit} bytes); "
            "raise max_frame_size on both gate and tablet, lower max rows, "
            "or use stream_execute for large results",
            ErrorCode.NET_PACKET_TOO_LARGE,
        )
        self.size = size
        self.limit = limit


class MalformedMessageError(RemoteProtocolError):
    """A frame did not hold a valid message.

    ``request_id`` is the request the message was about when that much could be read
    (then only that request fails); 0 means the connection itself is unusable.
    """

    def __init__(self, message: str, request_id: int = 0) -> None:
        super().__init__(f"malformed tablet RPC message: {message}", ErrorCode.MALFORMED_PACKET)
        self.request_id = request_id


# --- framing --------------------------------------------------------------------------------


def check_max_frame_size(size: int) -> int:
    """Validate a configured frame-size bound; return it."""
    if not 64 <= size <= MAX_FRAME_SIZE_LIMIT:
        raise ValueError(f"max_frame_size must be in [64, {MAX_FRAME_SIZE_LIMIT}], got {size}")
    return size


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frame payloads, buffering at most one frame.

    ``feed`` raises ``FrameTooLargeError`` as soon as a header announces more than
    ``max_frame_size``, so a peer cannot make us buffer an oversized frame.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._max = check_max_frame_size(max_frame_size)
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the payloads of every frame now complete, in order."""
        if self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            # Common case: nothing pending, so parse ``data`` without copying it first.
            buf = data
        frames: list[bytes] = []
        pos = 0
        end_of_data = len(buf)
        limit = self._max
        unpack = _HEADER.unpack_from
        while end_of_data - pos >= HEADER_SIZE:
            (size,) = unpack(buf, pos)
            if size > limit:
                self._buf = bytearray()
                raise FrameTooLargeError(size, limit)
            end = pos + HEADER_SIZE + size
            if end > end_of_data:
                break
            frames.append(bytes(buf[pos + HEADER_SIZE : end]))
            pos = end
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < end_of_data:
            self._buf = bytearray(buf[pos:])
        return frames


# --- messages -------------------------------------------------------------------------------


class Hello(NamedTuple):
    """First frame of each side: protocol version and facts such as ``max_frame``."""

    version: int
    info: dict[str, Any]


class Request(NamedTuple):
    """One operation sent by the gate; ``args`` is validated per op by ``parse_args``."""

    request_id: int
    op: str
    args: dict[str, Any]
    timeout_ms: int


class Cancel(NamedTuple):
    """The gate gave up on a request; the tablet stops it and answers ERROR 1317."""

    request_id: int


class Credit(NamedTuple):
    """The gate consumed ``chunks`` more chunks of a stream."""

    request_id: int
    chunks: int


class Reply(NamedTuple):
    """The successful end of a request; ``result`` is in wire form (see ``decode_result``)."""

    request_id: int
    result: Any


class Error(NamedTuple):
    """The failed end of a request (id 0: of the connection), as a MySQL error."""

    request_id: int
    code: int
    sqlstate: str
    message: str

    def to_exception(self) -> MySQLError:
        """The ``MySQLError`` the caller sees."""
        return MySQLError(self.code, self.message, self.sqlstate)


class Chunk(NamedTuple):
    """Part of a streamed result: column definitions once (first chunk), then rows."""

    request_id: int
    fields: list[bytes] | None
    rows: list[bytes]


class Health(NamedTuple):
    """A health snapshot pushed on a ``stream_health`` request."""

    request_id: int
    health: dict[str, Any]


class InfileMore(NamedTuple):
    """The tablet asks for the next piece of a request's LOAD DATA LOCAL INFILE file."""

    request_id: int
    max_bytes: int


class InfileError(NamedTuple):
    """Why a streamed LOAD DATA LOCAL INFILE file failed, as a MySQL error."""

    code: int
    sqlstate: str
    message: str

    def to_exception(self) -> MySQLError:
        """The ``MySQLError`` the tablet's service sees."""
        return MySQLError(self.code, self.message, self.sqlstate)


class InfileData(NamedTuple):
    """The gate's answer to an ``InfileMore``: a piece, the end (``b""``), or an error."""

    request_id: int
    data: bytes
    error: InfileError | None = None


Message: TypeAlias = (
    Hello | Request | Cancel | Credit | Reply | Error | Chunk | Health | InfileMore | InfileData
)

_KIND_OF: dict[type, int] = {
    Hello: HELLO,
    Request: REQUEST,
    Cancel: CANCEL,
    Credit: CREDIT,
    Reply: REPLY,
    Error: ERROR,
    Chunk: CHUNK,
    Health: HEALTH,
    InfileMore: INFILE_MORE,
    InfileData: INFILE_DATA,
}


def encode_message(msg: Message) -> bytes:
    """Encode ``msg`` as one complete frame (header included)."""
    payload = msgpack.packb([_KIND_OF[type(msg)], *msg], use_bin_type=True)
    return _HEADER.pack(len(payload)) + payload


def encode_request(request_id: int, op: str, args: Mapping[str, Any], timeout_ms: int) -> bytes:
    """Fast path of ``encode_message(Request(...))``."""
    payload = msgpack.packb([REQUEST, request_id, op, args, timeout_ms], use_bin_type=True)
    return _HEADER.pack(len(payload)) + payload


def encode_reply(request_id: int, result: Any) -> bytes:
    """Fast path of ``encode_message(Reply(...))``; ``result`` must be in wire form."""
    payload = msgpack.packb([REPLY, request_id, result], use_bin_type=True)
    return _HEADER.pack(len(payload)) + payload


def encode_chunk(request_id: int, fields: list[bytes] | None, rows: list[bytes]) -> bytes:
    """Fast path of ``encode_message(Chunk(...))``."""
    payload = msgpack.packb([CHUNK, request_id, fields, rows], use_bin_type=True)
    return _HEADER.pack(len(payload)) + payload


def encode_error(request_id: int, exc: MySQLError) -> bytes:
    """An ERROR frame carrying ``exc``. A message that quotes bytes that are not UTF-8
    (mysqld quoting a latin1 statement, kept as surrogates) has them replaced."""
    message = exc.message
    try:
        return encode_message(Error(request_id, exc.code, exc.sqlstate, message))
    except UnicodeEncodeError:
        message = message.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return encode_message(Error(request_id, exc.code, exc.sqlstate, message))


def encode_infile_data(request_id: int, data: bytes, error: MySQLError | None = None) -> bytes:
    """An INFILE_DATA frame: a piece of the file, ``b""`` for its end, or ``error`` (then
    ``data`` must be empty). The error's message is cut to 1000 characters and, like
    ``encode_error``'s, has bytes that are not UTF-8 replaced; a code or SQLSTATE the wire
    does not allow becomes 1105/HY000."""
    if error is None:
        payload = msgpack.packb([INFILE_DATA, request_id, data, None], use_bin_type=True)
        return _HEADER.pack(len(payload)) + payload
    if data:
        raise ValueError("an INFILE_DATA frame with an error carries no data")
    code, sqlstate = error.code, error.sqlstate
    if not 0 < code < 65536 or type(sqlstate) is not str or len(sqlstate) != 5:
        code, sqlstate = ErrorCode.UNKNOWN_ERROR, "HY000"
    message = error.message[:1000]
    message = message.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return encode_message(InfileData(request_id, b"", InfileError(int(code), sqlstate, message)))


def _is_id(value: object) -> bool:
    return type(value) is int and 0 < value <= MAX_REQUEST_ID


_ONLY_BYTES = frozenset((bytes,))


def is_bytes_list(value: object) -> bool:
    # set(map(type, ...)) runs in C: about twice as fast as a generator on big results.
    return type(value) is list and set(map(type, value)) <= _ONLY_BYTES


_ONLY_STR = frozenset((str,))


def is_str_dict(value: object) -> bool:
    return type(value) is dict and set(map(type, value)) <= _ONLY_STR


def decode_message(payload: bytes) -> Message:
    """Decode one frame payload; raise ``MalformedMessageError`` if it is not a message."""
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise MalformedMessageError(f"not msgpack ({type(e).__name__}: {e})") from None
    if type(obj) is not list or not obj or type(obj[0]) is not int:
        raise MalformedMessageError("not an array starting with a message kind")
    kind = obj[0]
    n = len(obj)
    if kind == HELLO:
        if n != 3 or type(obj[1]) is not int or not is_str_dict(obj[2]):
            raise MalformedMessageError("bad HELLO")
        return Hello(obj[1], obj[2])
    if not 0 < kind <= INFILE_DATA:
        raise MalformedMessageError(f"unknown message kind {kind!r}")
    if n < 2 or type(obj[1]) is not int or not 0 <= obj[1] <= MAX_REQUEST_ID:
        raise MalformedMessageError("bad request id")
    rid: int = obj[1]
    if kind == ERROR:
        if n != 5 or type(obj[2]) is not int or type(obj[3]) is not str or type(obj[4]) is not str:
            raise MalformedMessageError("bad ERROR", rid)
        if not 0 < obj[2] < 65536 or len(obj[3]) != 5:
            raise MalformedMessageError("bad error code or SQLSTATE", rid)
        return Error(rid, obj[2], obj[3], obj[4])
    if rid == 0:
        raise MalformedMessageError("request id 0 is reserved for connection errors")
    if kind == REQUEST:
        if n != 5 or type(obj[2]) is not str or not is_str_dict(obj[3]):
            raise MalformedMessageError("bad REQUEST", rid)
        timeout = obj[4]
        if type(timeout) is not int or not 0 <= timeout <= MAX_TIMEOUT_MS:
            raise MalformedMessageError("bad REQUEST timeout", rid)
        return Request(rid, obj[2], obj[3], timeout)
    if kind == REPLY:
        if n != 3:
            raise MalformedMessageError("bad REPLY", rid)
        return Reply(rid, obj[2])
    if kind == CHUNK:
        if n != 4 or not (obj[2] is None or is_bytes_list(obj[2])) or not is_bytes_list(obj[3]):
            raise MalformedMessageError("bad CHUNK", rid)
        return Chunk(rid, obj[2], obj[3])
    if kind == HEALTH:
        if n != 3 or not is_str_dict(obj[2]):
            raise MalformedMessageError("bad HEALTH", rid)
        return Health(rid, obj[2])
    if kind == INFILE_DATA:
        return _decode_infile_data(obj, rid)
    if kind == INFILE_MORE:
        if n != 3 or type(obj[2]) is not int or not 0 < obj[2] <= MAX_FRAME_SIZE_LIMIT:
            raise MalformedMessageError("bad INFILE_MORE", rid)
        return InfileMore(rid, obj[2])
    if kind == CANCEL:
        if n != 2:
            raise MalformedMessageError("bad CANCEL", rid)
        return Cancel(rid)
    # CREDIT
    if n != 3 or type(obj[2]) is not int or not 0 < obj[2] <= 1 << 20:
        raise MalformedMessageError("bad CREDIT", rid)
    return Credit(rid, obj[2])


def _decode_infile_data(obj: list[Any], rid: int) -> InfileData:
    if len(obj) != 4 or type(obj[2]) is not bytes:
        raise MalformedMessageError("bad INFILE_DATA", rid)
    err = obj[3]
    if err is None:
        return InfileData(rid, obj[2], None)
    if (
        type(err) is not list
        or len(err) != 3
        or type(err[0]) is not int
        or not 0 < err[0] < 65536
        or type(err[1]) is not str
        or len(err[1]) != 5
        or type(err[2]) is not str
        or obj[2]
    ):
        raise MalformedMessageError("bad INFILE_DATA error", rid)
    return InfileData(rid, b"", InfileError(err[0], err[1], err[2]))
