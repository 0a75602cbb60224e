"""Small pieces of a gate session: its transaction pin, reserved connections, prepared
statements, the stream relay, and the write-on-replica and link errors (``session`` uses them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from vtwist.gate.buffer import NotExecutedError
from vtwist.gate.classify import QueryInfo
from vtwist.gate.discovery import TabletHandle
from vtwist.gate.target import Target
from vtwist.interfaces import IResultSink
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, is_client_error
from vtwist.protocols.tabletrpc_codec import Chunk

if TYPE_CHECKING:
    from vtwist.gate.gate import Gate


@dataclass
class Pin:
    """The session's open tablet transaction."""

    handle: TabletHandle
    keyspace: str
    shard: str
    transaction_id: int
    generation: int
    characteristics: str = ""  # its START TRANSACTION's (what AND CHAIN begins again with)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A prepared statement's ``PrepareInfo.state``: the classification of its text,
    whether executes may reuse it (``classify.reusable``), and its digest (``querystats``;
    empty when the gate keeps none)."""

    info: QueryInfo
    reusable: bool
    digest: bytes = b""


@dataclass(frozen=True)
class Held:
    """A reserved tablet connection of the session."""

    handle: TabletHandle
    reserved_id: int
    generation: int

    @property
    def alive(self) -> bool:
        """False once the tablet left or its link reconnected (the tablet dropped it)."""
        return not self.handle.removed and self.handle.generation == self.generation


def read_only_target(target: Target) -> MySQLError:
    """ERROR 1290 for a write sent with a replica/rdonly target."""
    ks = target.keyspace or "<keyspace>"
    return MySQLError(
        ErrorCode.OPTION_PREVENTS_STATEMENT,
        f"target {target} is read-only: writes go to the primary; USE {ks} or {ks}@primary "
        "for writes",
    )


@implementer(IPushProducer)
class Relay:
    """Relays a tablet stream into the client's sink; the sink pauses it when the client
    is congested, and a paused relay holds the chunk's credit (so the tablet pauses too)."""

    def __init__(self, gate: Gate, sink: IResultSink) -> None:
        self.gate = gate
        self.sink = sink
        self.started = False
        self.paused = False
        # One per chunk taken while paused: each holds that chunk's credit (the tablet may
        # send up to its window of chunks before it notices, so there may be several).
        self._waiters: list[Deferred[None]] = []

    def on_chunk(self, chunk: Chunk) -> Deferred[None] | None:
        if chunk.fields and not self.started:
            self.started = True
            self.sink.start([self.gate.column(f) for f in chunk.fields])
        if chunk.rows and self.started:
            self.sink.rows(chunk.rows)
        if self.paused:
            waiter: Deferred[None] = Deferred()
            self._waiters.append(waiter)
            return waiter
        return None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def stopProducing(self) -> None:
        self.resumeProducing()  # the sink aborted: let the stream end (its writes are ignored)


def wire_target(keyspace: str, shard: str, tablet_type: str) -> str:
    return f"{keyspace}:{shard}@{tablet_type}"


def sql_text(sql: bytes) -> str:
    return sql.decode("utf-8", "surrogateescape")


#: Client error codes meaning "could not connect": nothing was sent to mysqld.
_NOT_SENT = (ErrorCode.CR_CONNECTION_ERROR, ErrorCode.CR_CONN_HOST_ERROR)


class LinkLostError(MySQLError):
    """``link_error``'s ERROR 1105 when the link broke under a statement it had sent (the
    tablet died or stalled): it may or may not have run, so only a read may run again."""


def link_error(handle: TabletHandle, e: MySQLError) -> MySQLError | None:
    """The ERROR 1105 naming the tablet for a client-side error of the gate's link to it
    (CR_*, 2000-2999): a ``NotExecutedError`` when it could not connect (the statement never
    ran, so the buffer may retry it), else a ``LinkLostError``; None for the errors of the
    tablet and its mysqld."""
    if not is_client_error(e.code):
        return None
    cls = LinkLostError if e.code not in _NOT_SENT else NotExecutedError
    return cls(ErrorCode.UNKNOWN_ERROR, f"tablet {handle.alias}: {e.message}; retry the statement")
