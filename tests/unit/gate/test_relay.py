"""The gate's relay of a tablet stream into the client's sink: its pause holds the credit of
every chunk taken meanwhile, and its resume gives all of it back."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred

from vtwist.gate.session_parts import Relay
from vtwist.protocols.tabletrpc_codec import Chunk


class _Gate:
    def column(self, payload: bytes) -> bytes:
        return payload


class _Sink:
    """The two ``IResultSink`` calls a relay makes, recorded."""

    def __init__(self) -> None:
        self.columns: list[Any] = []
        self.received: list[bytes] = []

    def start(self, columns: list[Any]) -> None:
        self.columns = columns

    def rows(self, rows: list[bytes]) -> None:
        self.received.extend(rows)


def test_every_chunk_taken_while_paused_gets_its_credit_back_on_resume() -> None:
    sink = _Sink()
    relay = Relay(cast(Any, _Gate()), cast(Any, sink))
    assert relay.on_chunk(Chunk(1, [b"col"], [b"r0"])) is None  # not paused: credit at once
    relay.pauseProducing()
    held = [relay.on_chunk(Chunk(1, None, [f"r{i}".encode()])) for i in range(1, 4)]
    assert all(isinstance(d, Deferred) and not d.called for d in held)
    relay.resumeProducing()
    # All three, not only the last: a lost one is a chunk of credit the tablet never gets
    # back, and a long stream stalled once its window was used up so.
    assert all(isinstance(d, Deferred) and d.called for d in held)
    assert sink.received == [b"r0", b"r1", b"r2", b"r3"] and sink.columns == [b"col"]
    assert relay.on_chunk(Chunk(1, None, [b"r4"])) is None
