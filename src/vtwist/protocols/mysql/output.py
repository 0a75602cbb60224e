"""How the MySQL protocols put bytes on the socket: sooner, and in fewer system calls.

Twisted's ``transport.write`` only buffers: the bytes go out in a later reactor turn, when
the reactor has asked epoll to watch the socket for writability, woken up for it and
dispatched ``doWrite`` (then asked epoll to stop watching). For a proxy that answers one
small query per packet that round costs as much as the rest of the query. Two helpers cut
it:

* ``write_through(transport, data)`` sends at once with ``socket.send`` when the transport
  is a plain TCP or unix-socket connection (no TLS) with nothing queued; whatever the
  kernel does not take (or any error) goes through ``transport.write``, which keeps
  Twisted's ordering, back-pressure and error handling. Any other transport (TLS, test
  fakes) simply gets ``transport.write``.
* ``OutputBuffer`` collects the pieces of one reply (column definitions, rows, the end of
  the result) made while a read is being handled (``reading``: the MySQL protocols wrap
  their ``dataReceived`` with it, so a passthrough's reply, produced while reading the
  backend's bytes, counts) and writes them with one ``write_through``: when the reply is
  complete, when more than ``FLUSH_BYTES`` wait, or when the outermost read returns.
  Writes made outside any read (timers, other protocols' callbacks) are not held back.

Nothing waits across reactor turns, so back-pressure (the transport pausing its producer)
still follows every reply's bytes within the read that produced them.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from twisted.internet import tcp, unix
from twisted.internet.interfaces import ITransport

__all__ = ["FLUSH_BYTES", "Flushable", "OutputBuffer", "reading", "write_through"]

FLUSH_BYTES: Final = 64 * 1024

# Plain stream sockets. A unix transport only qualifies with no file descriptor queued
# (vtwist never sends any; Twisted would send them with the first bytes).
_UNIX: Final = frozenset({unix.Server, unix.Client})
_DIRECT: Final = frozenset({tcp.Server, tcp.Client, *_UNIX})


def write_through(transport: ITransport, data: bytes) -> None:
    """``transport.write(data)``, sending at once when that cannot change the byte order."""
    kind = type(transport)
    if kind in _DIRECT:
        t: Any = transport
        if (
            not t.TLS
            and t.connected
            and not t.disconnecting
            and not t.dataBuffer
            and not t._tempDataBuffer
            and not (kind in _UNIX and t._sendmsgQueue)
        ):
            try:
                sent = t.socket.send(data)
            except OSError:  # EAGAIN, or a broken socket: Twisted's doWrite will tell
                sent = 0
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
    transport.write(data)


class Flushable(Protocol):
    """Something holding bytes that ``flush()`` writes out."""

    def flush(self) -> None: ...


class _Reading:
    """The buffers to flush when the outermost read being handled returns.

    ``enter``/``leave`` around a read. The MySQL protocols' per-read paths inline them:
    ``depth += 1``, then ``depth -= 1`` and ``flush_dirty()`` when it reached 0 with
    ``dirty`` not empty.
    """

    __slots__ = ("depth", "dirty")

    def __init__(self) -> None:
        self.depth = 0
        self.dirty: list[Flushable] = []

    def enter(self) -> None:
        self.depth += 1

    def leave(self) -> None:
        self.depth -= 1
        if self.depth == 0 and self.dirty:
            self.flush_dirty()

    def flush_dirty(self) -> None:
        """Flush the buffers written during the read that just ended."""
        dirty, self.dirty = self.dirty, []
        for buf in dirty:
            buf.flush()


reading: Final = _Reading()


class OutputBuffer:
    """Bytes for one transport, written together (see the module docstring).

    ``transport`` may be set later; ``discard`` drops what waits (the connection is gone).
    """

    __slots__ = ("_chunks", "_size", "transport")

    def __init__(self, transport: ITransport | None = None) -> None:
        self.transport = transport
        self._chunks: list[bytes] = []
        self._size = 0

    @property
    def pending(self) -> int:
        """Bytes written but not yet handed to the transport."""
        return self._size

    def write(self, data: bytes, complete: bool) -> None:
        """Write ``data``; ``complete``: it ends a reply (nothing more follows it soon).

        While a read is being handled the bytes wait for the end of the reply or of the
        read; otherwise they go to the transport at once: at the end of a reply with
        ``write_through``, in the middle of one with ``transport.write`` (Twisted gathers
        the writes of one reactor turn).
        """
        transport = self.transport
        if transport is None or not data:
            return
        if reading.depth:
            chunks = self._chunks
            if complete and not chunks:  # a whole reply, nothing held: at once (as ``flush``)
                write_through(transport, data)
                return
            chunks.append(data)
            self._size += len(data)
            if complete or self._size > FLUSH_BYTES:
                self.flush()
            elif len(chunks) == 1:
                reading.dirty.append(self)
        elif complete:
            write_through(transport, data)
        else:
            transport.write(data)

    def flush(self) -> None:
        """Hand everything queued to the transport now."""
        chunks = self._chunks
        if not chunks:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._size = 0
        if self.transport is not None:
            write_through(self.transport, data)

    def discard(self) -> None:
        """Drop what is queued (the connection is gone)."""
        self._chunks.clear()
        self._size = 0
