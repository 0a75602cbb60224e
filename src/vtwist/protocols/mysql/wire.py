"""Primitive MySQL wire types: a bounds-checked ``Reader`` and the matching writers.

Owns the encoding of fixed-width little-endian integers, length-encoded integers and
strings, NUL-terminated and rest-of-packet strings. Every read past the end of a payload
raises ``RemoteProtocolError`` with code ``MALFORMED_PACKET``: a truncated packet from a
peer must never surface as ``IndexError`` or ``struct.error``. These helpers sit on the hot
path (every row and column definition goes through them), so they avoid enum lookups and
intermediate objects. Also here, because ``messages`` and ``commands`` both need them: the
``Message`` base class, the lossless UTF-8 text helpers and connection-attribute coding.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

from vtwist.protocols.mysql.errors import ErrorCode, RemoteProtocolError

__all__ = [
    "NULL_LENGTH",
    "Message",
    "Reader",
    "decode_attrs",
    "encode_attrs",
    "from_text",
    "int1",
    "int2",
    "int3",
    "int4",
    "int8",
    "lenenc_int",
    "lenenc_int_size",
    "lenenc_str",
    "nul_str",
    "to_text",
]

_U16: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")
_U64: Final = struct.Struct("<Q")
_MALFORMED: Final = int(ErrorCode.MALFORMED_PACKET)

# The 0xFB marker of a length-encoded integer means SQL NULL in text rows.
NULL_LENGTH: Final = 0xFB


def _truncated(what: str, need: int, have: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"malformed packet: {what} needs {need} more byte(s), {have} left", _MALFORMED
    )


class Reader:
    """Sequential, bounds-checked reads from one packet payload.

    ``pos`` is public so decoders can peek or rewind; reads never go past ``len(buf)``.
    Strings come back as ``bytes`` (callers decide on a text encoding).
    """

    __slots__ = ("_buf", "_end", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0) -> None:
        self._buf = buf
        self._end = len(buf)
        self.pos = pos

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return self._end - self.pos

    def at_end(self) -> bool:
        """True when every byte has been read."""
        return self.pos >= self._end

    def peek(self) -> int:
        """The next byte, without consuming it."""
        if self.pos >= self._end:
            raise _truncated("a byte", 1, 0)
        return self._buf[self.pos]

    def int1(self) -> int:
        """A 1-byte unsigned integer."""
        pos = self.pos
        if pos >= self._end:
            raise _truncated("int<1>", 1, 0)
        self.pos = pos + 1
        return self._buf[pos]

    def int2(self) -> int:
        """A 2-byte little-endian unsigned integer."""
        pos = self.pos
        if pos + 2 > self._end:
            raise _truncated("int<2>", 2, self._end - pos)
        self.pos = pos + 2
        return _U16.unpack_from(self._buf, pos)[0]  # type: ignore[no-any-return]

    def int3(self) -> int:
        """A 3-byte little-endian unsigned integer."""
        pos = self.pos
        if pos + 3 > self._end:
            raise _truncated("int<3>", 3, self._end - pos)
        self.pos = pos + 3
        b = self._buf
        return b[pos] | (b[pos + 1] << 8) | (b[pos + 2] << 16)

    def int4(self) -> int:
        """A 4-byte little-endian unsigned integer."""
        pos = self.pos
        if pos + 4 > self._end:
            raise _truncated("int<4>", 4, self._end - pos)
        self.pos = pos + 4
        return _U32.unpack_from(self._buf, pos)[0]  # type: ignore[no-any-return]

    def int8(self) -> int:
        """An 8-byte little-endian unsigned integer."""
        pos = self.pos
        if pos + 8 > self._end:
            raise _truncated("int<8>", 8, self._end - pos)
        self.pos = pos + 8
        return _U64.unpack_from(self._buf, pos)[0]  # type: ignore[no-any-return]

    def lenenc_int(self) -> int:
        """A length-encoded integer; the NULL (0xFB) and 0xFF markers are malformed here."""
        pos = self.pos
        if pos >= self._end:
            raise _truncated("int<lenenc>", 1, 0)
        first = self._buf[pos]
        if first < 0xFB:
            self.pos = pos + 1
            return first
        self.pos = pos + 1
        if first == 0xFC:
            return self.int2()
        if first == 0xFD:
            return self.int3()
        if first == 0xFE:
            return self.int8()
        raise RemoteProtocolError(
            f"malformed packet: 0x{first:02X} is not a length-encoded integer", _MALFORMED
        )

    def lenenc_str(self) -> bytes:
        """A string prefixed by its length-encoded length."""
        n = self.lenenc_int()
        return self.fixed(n)

    def fixed(self, n: int) -> bytes:
        """Exactly ``n`` bytes."""
        pos = self.pos
        end = pos + n
        if end > self._end:
            raise _truncated("string", n, self._end - pos)
        self.pos = end
        return bytes(self._buf[pos:end])

    def nul_str(self) -> bytes:
        """A NUL-terminated string (the NUL is consumed, not returned)."""
        pos = self.pos
        buf = self._buf
        if isinstance(buf, memoryview):
            i = bytes(buf[pos:]).find(b"\0")
            i = -1 if i < 0 else i + pos
        else:
            i = buf.find(b"\0", pos)
        if i < 0:
            raise RemoteProtocolError(
                "malformed packet: NUL-terminated string has no NUL", _MALFORMED
            )
        self.pos = i + 1
        return bytes(buf[pos:i])

    def nul_str_or_rest(self) -> bytes:
        """A NUL-terminated string, or the rest of the packet when the NUL is missing.

        Some servers omit the final NUL of the auth plugin name (MySQL bug #59453).
        """
        pos = self.pos
        buf = self._buf
        rest = bytes(buf[pos:])
        i = rest.find(b"\0")
        if i < 0:
            self.pos = self._end
            return rest
        self.pos = pos + i + 1
        return rest[:i]

    def rest(self) -> bytes:
        """Every byte left (a ``string<EOF>``)."""
        pos = self.pos
        self.pos = self._end
        return bytes(self._buf[pos:])


def int1(n: int) -> bytes:
    """``n`` as 1 byte."""
    return bytes((n,))


def int2(n: int) -> bytes:
    """``n`` as 2 little-endian bytes."""
    return _U16.pack(n)


def int3(n: int) -> bytes:
    """``n`` as 3 little-endian bytes."""
    return _U32.pack(n)[:3]


def int4(n: int) -> bytes:
    """``n`` as 4 little-endian bytes."""
    return _U32.pack(n)


def int8(n: int) -> bytes:
    """``n`` as 8 little-endian bytes."""
    return _U64.pack(n)


_ONE_BYTE = [bytes((i,)) for i in range(256)]


def lenenc_int(n: int) -> bytes:
    """``n`` as a length-encoded integer (1, 3, 4 or 9 bytes)."""
    if n < 0xFB:
        return _ONE_BYTE[n]
    if n < 0x10000:
        return b"\xfc" + _U16.pack(n)
    if n < 0x1000000:
        return b"\xfd" + _U32.pack(n)[:3]
    return b"\xfe" + _U64.pack(n)


def lenenc_int_size(n: int) -> int:
    """How many bytes ``lenenc_int(n)`` takes."""
    if n < 0xFB:
        return 1
    if n < 0x10000:
        return 3
    if n < 0x1000000:
        return 4
    return 9


def lenenc_str(b: bytes) -> bytes:
    """``b`` prefixed by its length as a length-encoded integer."""
    n = len(b)
    if n < 0xFB:
        return bytes((n,)) + b
    return lenenc_int(n) + b


def nul_str(b: bytes) -> bytes:
    """``b`` followed by a NUL."""
    return b + b"\0"


class Message:
    """Base of every message and event a ``Connection`` sends or receives."""

    __slots__ = ()


def to_text(b: bytes) -> str:
    """Wire bytes as ``str``: UTF-8, with undecodable bytes kept (surrogateescape)."""
    return b.decode("utf-8", "surrogateescape")


def from_text(s: str) -> bytes:
    """The inverse of ``to_text``."""
    return s.encode("utf-8", "surrogateescape")


def encode_attrs(attrs: Mapping[str, str]) -> bytes:
    """Connection attributes: total length, then length-encoded key/value pairs."""
    body = b"".join(lenenc_str(from_text(k)) + lenenc_str(from_text(v)) for k, v in attrs.items())
    return lenenc_str(body)


def decode_attrs(r: Reader) -> dict[str, str]:
    """Read connection attributes written by ``encode_attrs``."""
    sub = Reader(r.lenenc_str())
    out: dict[str, str] = {}
    while not sub.at_end():
        k = to_text(sub.lenenc_str())
        out[k] = to_text(sub.lenenc_str())
    return out
