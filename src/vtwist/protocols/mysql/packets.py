"""MySQL packet framing: 3-byte length + 1-byte sequence id, 16 MiB splitting, size limits.

``encode_packets`` / ``frame_into`` turn one logical payload into wire bytes; a payload of
0xFFFFFF bytes or more is split into 0xFFFFFF-byte packets, and a payload that is an exact
multiple of 0xFFFFFF ends with an empty packet so the reader knows it is complete.
``PacketReader`` does the reverse incrementally: it reassembles split payloads, checks that
the sequence ids inside one payload are consecutive, and refuses (``PacketTooLargeError``)
as soon as a header shows the payload would exceed ``max_packet_size``, so it never buffers
more than the limit plus one header for a partial packet.

Buffering avoids quadratic copies: complete packets are sliced straight out of the bytes
handed to ``feed``; a partial packet collects its chunks in a list and joins them once, when
the header says enough has arrived.
"""

from __future__ import annotations

import struct
from typing import Final

from vtwist.protocols.mysql.errors import (
    ErrorCode,
    PacketTooLargeError,
    RemoteProtocolError,
)

__all__ = ["MAX_CHUNK", "PacketReader", "ResultSetPackets", "encode_packets", "frame_into"]

MAX_CHUNK: Final = 0xFFFFFF
ResultSetPackets = tuple[list[bytes] | None, bytes | None, list[bytes], bytes, int, int, bytes]
"""``PacketReader.peek_result_set``: definitions (None: the known head), EOF after them
(classic), rows, the end payload, the sequence id and the buffer position after them, and
the head's packets as received (empty when it was the known head)."""
_HDR: Final = struct.Struct("<I")
_pack_hdr: Final = _HDR.pack
_unpack_hdr: Final = _HDR.unpack_from


def frame_into(out: list[bytes], payload: bytes, seq: int) -> int:
    """Append the packets carrying ``payload`` (first sequence id ``seq``) to ``out``.

    Returns the sequence id of the next packet (mod 256). The hot path: callers framing many
    payloads join ``out`` once.
    """
    n = len(payload)
    if n < MAX_CHUNK:
        out.append(_pack_hdr(n | (seq << 24)))
        out.append(payload)
        return (seq + 1) & 0xFF
    view = memoryview(payload)
    start = 0
    while True:
        chunk = min(MAX_CHUNK, n - start)
        out.append(_pack_hdr(chunk | (seq << 24)))
        out.append(bytes(view[start : start + chunk]))
        seq = (seq + 1) & 0xFF
        start += chunk
        if chunk < MAX_CHUNK:
            return seq


def encode_packets(payload: bytes, seq: int) -> tuple[bytes, int]:
    """``payload`` framed as one or more packets starting at ``seq``; also the next seq."""
    n = len(payload)
    if n < MAX_CHUNK:
        return _pack_hdr(n | (seq << 24)) + payload, (seq + 1) & 0xFF
    out: list[bytes] = []
    nxt = frame_into(out, payload, seq)
    return b"".join(out), nxt


class PacketReader:
    """Incremental packet parser: ``feed`` bytes, then call ``next_packet`` until ``None``.

    ``max_packet_size`` bounds one reassembled payload. Bytes fed but not consumed by
    ``next_packet`` stay buffered; ``take_buffered`` hands them over (TLS upgrade).
    """

    __slots__ = (
        "_buf",
        "_first_seq",
        "_more",
        "_more_len",
        "_need",
        "_parts",
        "_parts_len",
        "_pos",
        "_prev_seq",
        "max_packet_size",
    )

    def __init__(self, max_packet_size: int) -> None:
        if max_packet_size < 0:
            raise ValueError("max_packet_size must not be negative")
        self.max_packet_size = max_packet_size
        self._buf: bytes = b""
        self._pos = 0
        # Chunks fed while a partial packet waits for ``_need`` bytes (counted from _pos).
        self._more: list[bytes] = []
        self._more_len = 0
        self._need = 0
        # Pieces of a payload split over several 0xFFFFFF packets.
        self._parts: list[bytes] = []
        self._parts_len = 0
        self._first_seq = -1
        self._prev_seq = -1

    @property
    def buffered(self) -> int:
        """How many fed bytes have not been returned as packets yet."""
        return len(self._buf) - self._pos + self._more_len

    @property
    def empty(self) -> bool:
        """True when every byte fed was returned as packets (``Connection.drained``
        inlines this)."""
        return self._pos >= len(self._buf) and not self._more_len and not self._parts

    @property
    def in_packet(self) -> bool:
        """True when part of a packet (or of a split payload) has been read."""
        return self.buffered > 0 or bool(self._parts)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer."""
        if not data:
            return
        if self._need:
            chunk = bytes(data)
            self._more.append(chunk)
            self._more_len += len(chunk)
            if len(self._buf) - self._pos + self._more_len >= self._need:
                self._consolidate()
            return
        if self._pos >= len(self._buf):
            self._buf = data if type(data) is bytes else bytes(data)
        else:
            self._buf = self._buf[self._pos :] + bytes(data)
        self._pos = 0

    def _consolidate(self) -> None:
        self._buf = b"".join([self._buf[self._pos :], *self._more])
        self._pos = 0
        self._more.clear()
        self._more_len = 0
        self._need = 0

    def next_packet(self) -> tuple[int, int, bytes] | None:
        """The next complete payload as ``(first_seq, last_seq, payload)``, or ``None``.

        Raises ``PacketTooLargeError`` when the payload would exceed ``max_packet_size``
        and ``RemoteProtocolError`` when the packets of a split payload are not numbered
        consecutively.
        """
        if self._need:
            return None
        buf = self._buf
        pos = self._pos
        if len(buf) - pos >= 4 and not self._parts:
            # The hot path: one whole small packet already buffered.
            hdr = _unpack_hdr(buf, pos)[0]
            length = hdr & 0xFFFFFF
            end = pos + 4 + length
            if end <= len(buf) and length < MAX_CHUNK and length <= self.max_packet_size:
                self._pos = end
                seq = hdr >> 24
                return seq, seq, buf[pos + 4 : end]
        while True:
            pos = self._pos
            avail = len(buf) - pos
            if avail < 4:
                if avail:
                    self._need = 4
                return None
            hdr = _unpack_hdr(buf, pos)[0]
            length = hdr & 0xFFFFFF
            seq = hdr >> 24
            total = self._parts_len + length
            if total > self.max_packet_size:
                raise PacketTooLargeError(total, self.max_packet_size)
            end = pos + 4 + length
            if end > len(buf):
                self._need = 4 + length
                return None
            payload = buf[pos + 4 : end]
            self._pos = end
            if length < MAX_CHUNK and not self._parts:
                return seq, seq, payload
            # A piece of a split payload.
            if self._parts:
                if seq != (self._prev_seq + 1) & 0xFF:
                    raise RemoteProtocolError(
                        f"packet sequence id {seq} inside a split payload, expected "
                        f"{(self._prev_seq + 1) & 0xFF}",
                        ErrorCode.NET_READ_ERROR,
                    )
            else:
                self._first_seq = seq
            self._prev_seq = seq
            self._parts.append(payload)
            self._parts_len = total
            if length < MAX_CHUNK:
                whole = b"".join(self._parts)
                first = self._first_seq
                self._parts = []
                self._parts_len = 0
                return first, seq, whole

    def take_rows(self, seq: int, limit: int) -> tuple[list[bytes], int]:
        """Up to ``limit`` buffered payloads of whole, unsplit packets numbered ``seq``,
        ``seq + 1``... whose first byte is below 0xFE (result rows, when the caller knows
        rows are due), and the sequence id after them. It stops before anything else (the
        end of the result, an ERR, a split or incomplete packet, a wrong sequence id),
        which ``next_packet`` then deals with."""
        rows: list[bytes] = []
        if self._need or self._parts:
            return rows, seq
        buf = self._buf
        pos = self._pos
        size = len(buf)
        max_size = self.max_packet_size
        while size - pos >= 5 and len(rows) < limit:
            hdr = _unpack_hdr(buf, pos)[0]
            length = hdr & 0xFFFFFF
            end = pos + 4 + length
            if (
                end > size
                or hdr >> 24 != seq
                or not 0 < length < MAX_CHUNK
                or length > max_size
                or buf[pos + 4] >= 0xFE
            ):
                break
            rows.append(buf[pos + 4 : end])
            pos = end
            seq = (seq + 1) & 0xFF
        self._pos = pos
        return rows, seq

    def peek_result_set(
        self,
        seq: int,
        columns_eof: bool,
        end_below: int,
        no_rows_status: int,
        max_rows: int,
        known_head: bytes = b"",
        known_packets: int = 0,
    ) -> ResultSetPackets | None:
        """A whole result set already buffered, as payloads, if it is a plain one.

        Plain: whole, unsplit packets numbered ``seq``, ``seq + 1``...: a one-byte column
        count n (1..250); n column definitions (none starting with 0xFF); with
        ``columns_eof``, an EOF (0xFE, under 9 bytes) whose status has none of the bits of
        ``no_rows_status`` (a mask of its low byte) set; at most ``max_rows`` rows (first
        byte below 0xFE); the end (0xFE, under ``end_below`` bytes). Returns
        ``(definitions, eof or None, rows, end, next seq, position after them, head)``
        without consuming them (``skip_to`` does); None for anything else (not all
        buffered, an ERR, a cursor, a split packet...), which ``next_packet`` then deals
        with one at a time.

        ``head`` is the column count, definitions and EOF as received (framed). A caller
        that passes a head it got before, with the same arguments, as ``known_head`` (and
        its ``known_packets``, the number of packets in it) has it matched byte for byte
        instead of parsed: the definitions and EOF come back as None and ``head`` empty
        (the same queries return the same columns again and again).
        """
        if self._need or self._parts:
            return None
        buf = self._buf
        pos = self._pos
        size = len(buf)
        if known_head and buf.startswith(known_head, pos):
            last = (seq + known_packets - 1) & 0xFF  # the head's last sequence id
            after = pos + len(known_head)
            return self._peek_rows(last, after, end_below, max_rows, None, None, b"")
        start = pos
        if size - pos < 5 or _unpack_hdr(buf, pos)[0] != 1 | (seq << 24):
            return None
        want = buf[pos + 4]
        if not 0 < want < 0xFB:
            return None
        pos += 5
        # Each packet below: ``length = header ^ (seq << 24)`` is the length when the
        # sequence id is right, and 2**24 or more (over ``max_size``) when it is not.
        max_size = min(self.max_packet_size, MAX_CHUNK - 1)
        columns: list[bytes] = []
        for _ in range(want):
            seq = (seq + 1) & 0xFF
            if size - pos < 5:
                return None
            length = _unpack_hdr(buf, pos)[0] ^ (seq << 24)
            end = pos + 4 + length
            if not 0 < length <= max_size or end > size or buf[pos + 4] == 0xFF:
                return None  # incomplete, out of order, too big, or an ERR
            columns.append(buf[pos + 4 : end])
            pos = end
        eof: bytes | None = None
        if columns_eof:
            seq = (seq + 1) & 0xFF
            if size - pos < 5:
                return None
            length = _unpack_hdr(buf, pos)[0] ^ (seq << 24)
            end = pos + 4 + length
            if not 0 < length < 9 or end > size or buf[pos + 4] != 0xFE:
                return None
            eof = buf[pos + 4 : end]
            if length >= 5 and eof[3] & no_rows_status:
                return None
            pos = end
        return self._peek_rows(seq, pos, end_below, max_rows, columns, eof, buf[start:pos])

    def _peek_rows(
        self,
        seq: int,
        pos: int,
        end_below: int,
        max_rows: int,
        columns: list[bytes] | None,
        eof: bytes | None,
        head: bytes,
    ) -> ResultSetPackets | None:
        """``peek_result_set`` from the first row on (``seq``: the head's last packet's)."""
        buf = self._buf
        size = len(buf)
        max_size = min(self.max_packet_size, MAX_CHUNK - 1)
        rows: list[bytes] = []
        append = rows.append
        try:
            # At most ``max_rows`` rows, then the end: one packet more.
            for _ in range(max_rows + 1):
                seq = (seq + 1) & 0xFF
                # Under 4 bytes left: struct.error (caught below). A length that passes
                # the check leaves its first byte inside the buffer.
                length = _unpack_hdr(buf, pos)[0] ^ (seq << 24)
                start = pos + 4
                pos = start + length  # (the packet's end)
                if not 0 < length <= max_size or pos > size:
                    return None
                b0 = buf[start]
                if b0 < 0xFE:
                    append(buf[start:pos])
                    continue
                if b0 == 0xFE and length < end_below:
                    return columns, eof, rows, buf[start:pos], (seq + 1) & 0xFF, pos, head
                return None  # an ERR, or a text row starting with a 0xFE length
        except struct.error:
            return None  # the next header is not all here yet
        return None  # more than ``max_rows`` rows

    def skip_to(self, pos: int) -> None:
        """Consume the bytes up to ``pos`` (a position ``peek_result_set`` returned)."""
        self._pos = pos

    def take_buffered(self) -> bytes:
        """Remove and return every byte fed but not yet parsed (e.g. a TLS ClientHello)."""
        data = b"".join([self._buf[self._pos :], *self._more])
        self._buf = b""
        self._pos = 0
        self._more.clear()
        self._more_len = 0
        self._need = 0
        return data
