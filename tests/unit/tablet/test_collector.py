"""``runner.Collector``: rows given in batches (``row_batch``, the MySQL client's batch
path) end exactly as the same rows given one ``Row`` event at a time, limits included."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from vtwist.protocols.mysql.events import ResultSetDone, Row
from vtwist.protocols.mysql.messages import Ok
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
    for c in (one, batched):  # a second result (CALL) is not kept
        c(ResultSetDone(2))
    for payload in second:
        one(Row(payload))
    if second:
        batched.row_batch(second)
    assert batched.rows == one.rows
    assert (batched.error is None) == (one.error is None)
    if one.error is not None:
        assert batched.error is not None and batched.error.code == one.error.code
    else:
        assert one.rows == rows


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
    assert whole.rows == events.rows and whole.index == events.index == len(results)
    assert (whole.error is None) == (events.error is None)
    if events.error is not None:
        assert whole.error is not None and whole.error.code == events.error.code
    else:
        assert events.rows == results[0]


def test_a_second_result_set_is_refused_not_dropped() -> None:
    one = Collector(10, 1000)  # CALL of a procedure with one SELECT: its rows, then an OK
    one(Row(b"\x011"))
    one(ResultSetDone(2))
    one(Ok(0, 0, 2, 0))
    assert one.error is None and one.rows == [b"\x011"]
    two = Collector(10, 1000)  # two SELECTs: refused with mysqld's 1312, not half answered
    two(Row(b"\x011"))
    two(ResultSetDone(2))
    two(Row(b"\x012"))
    two(ResultSetDone(2))
    two(Ok(0, 0, 2, 0))
    assert two.error is not None and two.error.code == 1312 and two.rows == []
    whole = Collector(10, 1000)
    whole.result_set([], [b"\x011"], ResultSetDone(2))
    whole.result_set([], [], ResultSetDone(2))  # an empty second set counts too
    assert whole.error is not None and whole.error.code == 1312
