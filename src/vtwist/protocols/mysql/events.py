"""The abstract result-set events and the signals of ``Connection.next_event``.

A result set is exchanged as ``ResultSetStart`` (column count), one ``Column`` per column,
any number of ``Row`` (raw text or binary row payloads) and one ``ResultSetDone``. These
events do not say how the end of the column list and of the rows is marked on the wire:
``Connection`` writes and swallows the classic EOF packets, or the OK-with-0xFE header,
according to whether CLIENT_DEPRECATE_EOF was negotiated on *that* connection. That is what
lets a proxy pass the events from a backend connection to a client connection unchanged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.wire import Message

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "PAUSED",
    "Column",
    "ResultSetDone",
    "ResultSetStart",
    "Role",
    "Row",
    "Signal",
]


class Role(enum.Enum):
    """Which end of the protocol a ``Connection`` plays."""

    CLIENT = "client"
    SERVER = "server"


class Signal(enum.Enum):
    """What ``next_event`` returns when it has no event."""

    NEED_DATA = "need data"  # feed more bytes (or it is our turn to send)
    PAUSED = "paused"  # TLS upgrade in progress: call start_tls_done() first
    CLOSED = "closed"  # the conversation is over


NEED_DATA = Signal.NEED_DATA
PAUSED = Signal.PAUSED
CLOSED = Signal.CLOSED


@dataclass(frozen=True, slots=True)
class ResultSetStart(Message):
    """A result set with ``column_count`` (> 0) columns begins."""

    column_count: int


@dataclass(frozen=True, slots=True)
class Column(Message):
    """One column definition: of a result set, of a COM_FIELD_LIST reply, or of a prepare
    reply (first its parameter definitions, then its column definitions)."""

    definition: ColumnDefinition41


@dataclass(frozen=True, slots=True)
class Row(Message):
    """One row, raw: a text row (COM_QUERY) or a binary row (COM_STMT_EXECUTE / FETCH)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class ResultSetDone(Message):
    """The end of a result set (or of a COM_FIELD_LIST / COM_STMT_FETCH reply).

    ``MORE_RESULTS_EXISTS`` in ``status`` means another result follows for the same
    command; ``CURSOR_EXISTS`` right after the columns of a COM_STMT_EXECUTE means a cursor
    was opened and rows come with COM_STMT_FETCH; ``LAST_ROW_SENT`` ends a fetched cursor.
    ``affected_rows``, ``last_insert_id`` and ``info`` only travel in DEPRECATE_EOF mode.
    """

    status: int = 0
    warnings: int = 0
    affected_rows: int = 0
    last_insert_id: int = 0
    info: bytes = b""
