"""``runner.Collector``: rows given in batches (``row_batch``, the MySQL client's batch
path) end exactly as the same rows given one ``Row`` event at a time, limits included; a
CALL's several result sets are all kept."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from vtwist.protocols.mysql.client_commands import Result
from vtwist.protocols.mysql.constants import ColumnType
from vtwist.protocols.mysql.events import ResultSetDone, Row
from vtwist.protocols.mysql.messages import ColumnDefinition41, Ok
from vtwist.tablet.runner import Collector


@given(
    rows=st.lists(st.binary(max_size=30), max_size=40),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    max_rows=st.integers(1, 30),
    max_bytes=st.integers(1, 600),
    second=st.lists(st.binary(max_size=5), max_size=3),
)
def test_batches_end_as_single_rows(
    rows: list[bytes], cuts: list[int], max_rows: int, max_bytes: int, second: list[bytes]
) -> None:
    one, batched = Collector(max_rows, max_bytes), Collector(max_rows, max_bytes)
    for payload in rows:
        one(Row(payload))
    bounds = [0, *sorted({c % (len(rows) + 1) for c in cuts}), len(rows)]
    for start, end in pairwise(bounds):
        if end > start:
            batched.row_batch(rows[start:end])
    for c in (one, batched):  # a second result set (CALL) is kept apart
        c(ResultSetDone(2))
    for payload in second:
        one(Row(payload))
    if second:
        batched.row_batch(second)
    assert batched.rows == one.rows and batched.extra == one.extra
    assert (batched.error is None) == (one.error is None)
    if one.error is not None:
        assert batched.error is not None and batched.error.code == one.error.code
    else:
        assert one.rows == rows and one.extra == [second]


@given(
    results=st.lists(st.lists(st.binary(max_size=30), max_size=20), min_size=1, max_size=3),
    max_rows=st.integers(1, 30),
    max_bytes=st.integers(1, 400),
)
def test_whole_result_sets_end_as_their_events(
    results: list[list[bytes]], max_rows: int, max_bytes: int
) -> None:
    events, whole = Collector(max_rows, max_bytes), Collector(max_rows, max_bytes)
    for rows in results:
        for payload in rows:
            events(Row(payload))
        events(ResultSetDone(2))
        whole.result_set([], rows, ResultSetDone(2))
    assert whole.rows == events.rows and whole.extra == events.extra
    assert whole.sets == events.sets == len(results)
    assert (whole.error is None) == (events.error is None)
    if events.error is not None:
        assert whole.error is not None and whole.error.code == events.error.code
    else:
        assert events.rows == results[0]


def test_a_calls_result_sets_are_all_kept() -> None:
    one = Collector(10, 1000)  # CALL of a procedure with one SELECT: its rows, then an OK
    one(Row(b"\x011"))
    one(ResultSetDone(2))
    one(Ok(0, 0, 2, 0))
    assert one.error is None and one.rows == [b"\x011"] and one.sets == 1
    two = Collector(10, 1000)  # two SELECTs, then the OK
    two(Row(b"\x011"))
    two(ResultSetDone(10))
    two(Row(b"\x012"))
    two(Row(b"\x013"))
    two(ResultSetDone(10))
    two(Ok(0, 0, 2, 0))
    a = ColumnDefinition41("a", ColumnType.LONGLONG, 63, 1)
    b = ColumnDefinition41("b", ColumnType.VAR_STRING, 45, 8)
    summary = Result([a], status=10, more=[Result([b], status=10, warnings=1), Result(status=2)])
    result = two.result(summary)
    assert result.fields == [a.encode()] and result.rows == [b"\x011"]
    [second] = result.more
    assert second.fields == [b.encode()] and second.rows == [b"\x012", b"\x013"]
    assert second.warnings == 1 and not second.more
    assert Collector(10, 1000).result(Result([a])).more == ()


def test_each_result_set_is_bounded() -> None:
    c = Collector(2, 1000)
    c.result_set([], [b"a", b"b"], ResultSetDone(2))
    c.result_set([], [b"c", b"d", b"e"], ResultSetDone(2))  # over max_rows
    assert c.error is not None and c.error.code == 1104 and c.rows == [] and c.extra == []
