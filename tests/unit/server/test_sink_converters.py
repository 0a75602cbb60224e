"""Text rows answering an execute: one converter per tuple of column definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vtwist.protocols.mysql.constants import ColumnType
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.server_sink import ResultSink, SinkLimits
from vtwist.protocols.mysql.values import encode_text_row

LIMITS = SinkLimits(1 << 20, 100, 1 << 20)


class Out:
    """The sink's output: records each result set's row payloads."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_result_set(self, columns: Sequence[Any], rows: Sequence[bytes], *rest: Any) -> int:
        self.sent.append(list(rows))
        return 0


def _answer(out: Out, columns: Sequence[ColumnDefinition41], value: bytes) -> ResultSink:
    sink = ResultSink(out, LIMITS, binary=True)  # type: ignore[arg-type]
    sink.result_set(columns, [encode_text_row([value])], 2)
    return sink


def test_the_same_tuple_of_definitions_reuses_its_converter() -> None:
    out = Out()
    text = (ColumnDefinition41("a", ColumnType.VAR_STRING, 45, 40),)
    first, second = _answer(out, text, b"x"), _answer(out, text, b"y")
    assert first._types is not None and first._types is second._types
    assert out.sent == [[b"\x00\x00\x01x"], [b"\x00\x00\x01y"]]
    # Other definitions, their own converter (an INT is re-encoded as 4 bytes).
    number = (ColumnDefinition41("a", ColumnType.LONG, 63, 11),)
    assert _answer(out, number, b"5")._types is not first._types
    assert out.sent[-1] == [b"\x00\x00\x05\x00\x00\x00"]
    assert _answer(out, text, b"z")._types is first._types
    # A list may change between two results: never remembered.
    listed = [ColumnDefinition41("a", ColumnType.VAR_STRING, 45, 40)]
    assert _answer(out, listed, b"x")._types is not _answer(out, listed, b"x")._types
