"""The exact temporal types: validation, text forms, Python conversion, ordering."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.protocols.mysql.values import DateTimeValue, DateValue, TimeValue
from vtwist.protocols.mysql.values_time import pack_time, unpack_time

from .strategies import date_values, datetime_values, time_values


def test_zero_and_partial_dates_are_allowed_but_not_python() -> None:
    assert str(DateValue(0, 0, 0)) == "0000-00-00"
    assert DateValue(0, 0, 0).is_zero
    assert DateValue(0, 0, 0).to_python() is None
    assert DateValue(2024, 2, 0).to_python() is None
    assert DateValue(2024, 2, 30).to_python() is None  # ALLOW_INVALID_DATES
    assert DateValue(2024, 2, 29).to_python() == date(2024, 2, 29)
    assert str(DateValue(7, 1, 2)) == "0007-01-02"


@pytest.mark.parametrize(
    "args",
    [(10000, 1, 1), (-1, 1, 1), (2024, 13, 1), (2024, 1, 32)],
)
def test_date_out_of_range(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        DateValue(*args)


def test_datetime_text_form() -> None:
    assert str(DateTimeValue(2024, 1, 2, 3, 4, 5, 6)) == "2024-01-02 03:04:05.000006"
    assert str(DateTimeValue(2024, 1, 2, 3, 4, 5)) == "2024-01-02 03:04:05"
    assert DateTimeValue(2024, 1, 2, 3, 4, 5).format(3) == "2024-01-02 03:04:05.000"
    assert DateTimeValue(2024, 1, 2, 3, 4, 5, 123456).format(3) == "2024-01-02 03:04:05.123"
    assert DateTimeValue(2024, 1, 2, 3, 4, 5, 123456).format(0) == "2024-01-02 03:04:05"
    assert str(DateTimeValue(0, 0, 0)) == "0000-00-00 00:00:00"
    assert DateTimeValue(0, 0, 0).to_python() is None
    with pytest.raises(ValueError):
        DateTimeValue(2024, 1, 1).format(7)
    with pytest.raises(ValueError):
        DateTimeValue(2024, 1, 1, 24)


def test_datetime_python_round_trip() -> None:
    dt = datetime(2024, 1, 2, 3, 4, 5, 6)
    assert DateTimeValue.from_python(dt).to_python() == dt
    assert DateTimeValue.from_python(date(2024, 1, 2)) == DateTimeValue(2024, 1, 2)
    assert DateTimeValue.from_python(dt).date_part() == DateValue(2024, 1, 2)
    assert DateValue.from_python(dt) == DateValue(2024, 1, 2)


def test_time_range_and_text() -> None:
    assert str(TimeValue(True, 838, 59, 59)) == "-838:59:59"
    assert str(TimeValue(False, 838, 59, 59)) == "838:59:59"
    assert str(TimeValue(False, 0)) == "00:00:00"
    assert str(TimeValue(False, 1, 2, 3, 500000)) == "01:02:03.500000"
    assert TimeValue(False, 1, 2, 3, 500000).format(1) == "01:02:03.5"
    assert str(TimeValue(True, 100, 0, 0)) == "-100:00:00"
    with pytest.raises(ValueError):
        TimeValue(False, 839)
    with pytest.raises(ValueError):
        TimeValue(False, 838, 59, 59, 1)
    with pytest.raises(ValueError):
        TimeValue(False, 1, 60)


def test_negative_zero_time_is_positive() -> None:
    assert TimeValue(True, 0) == TimeValue(False, 0)
    assert not TimeValue(True, 0).negative
    assert str(TimeValue(True, 0, 0, 0, 0)) == "00:00:00"


def test_time_python() -> None:
    assert TimeValue(True, 838, 59, 59).to_python() == -timedelta(hours=838, minutes=59, seconds=59)
    assert TimeValue.from_python(timedelta(days=-1)) == TimeValue(True, 24)
    assert TimeValue.from_python(timedelta(microseconds=-1)) == TimeValue(True, 0, 0, 0, 1)
    assert TimeValue.from_python(time(23, 59, 58, 7)) == TimeValue(False, 23, 59, 58, 7)
    with pytest.raises(ValueError):
        TimeValue.from_python(timedelta(hours=839))
    with pytest.raises(ValueError):
        TimeValue.from_python(-timedelta(hours=838, minutes=59, seconds=59, microseconds=1))


def test_time_clipping_like_mysqld() -> None:
    assert TimeValue.clipped(True, 2899, 27, 30, 1) == TimeValue(True, 838, 59, 59)
    assert TimeValue.clipped(False, 838, 59, 59, 1) == TimeValue(False, 838, 59, 59)
    assert TimeValue.clipped(False, 12, 0, 0) == TimeValue(False, 12)


def test_time_orders_by_signed_duration() -> None:
    values = [TimeValue(False, 1), TimeValue(True, 2), TimeValue(False, 0), TimeValue(True, 1)]
    assert sorted(values) == [
        TimeValue(True, 2),
        TimeValue(True, 1),
        TimeValue(False, 0),
        TimeValue(False, 1),
    ]
    assert TimeValue(True, 1) <= TimeValue(True, 1) < TimeValue(False, 0)
    assert TimeValue(False, 1) >= TimeValue(False, 1) > TimeValue(True, 5)


def test_parse_rejects_other_forms() -> None:
    for bad in ["2024-1-2", "2024-01-02x", "", "20240102"]:
        with pytest.raises(ValueError):
            DateValue.parse(bad)
    for bad in ["2024-01-02 3:04:05", "2024-01-02 03:04:05.1234567", "2024-01-02 03:04"]:
        with pytest.raises(ValueError):
            DateTimeValue.parse(bad)
    for bad in ["1:02:03", "1000:00:00", "01:02", "--01:00:00", "839:00:00"]:
        with pytest.raises(ValueError):
            TimeValue.parse(bad)
    assert DateTimeValue.parse("2024-01-02T03:04:05.5") == DateTimeValue(
        2024, 1, 2, 3, 4, 5, 500000
    )
    assert DateTimeValue.parse(b"2024-01-02") == DateTimeValue(2024, 1, 2)


@given(date_values)
def test_date_text_round_trip(v: DateValue) -> None:
    assert DateValue.parse(str(v)) == v
    py = v.to_python()
    if py is not None:
        assert DateValue.from_python(py) == v
        assert py.isoformat() == str(v)


@given(datetime_values, st.sampled_from([None, 6]))
def test_datetime_text_round_trip(v: DateTimeValue, decimals: int | None) -> None:
    assert DateTimeValue.parse(v.format(decimals)) == v
    py = v.to_python()
    if py is not None:
        assert DateTimeValue.from_python(py) == v
        assert py.isoformat(" ") == str(v)


@given(time_values, st.sampled_from([None, 6]))
def test_time_text_and_python_round_trip(v: TimeValue, decimals: int | None) -> None:
    assert TimeValue.parse(v.format(decimals)) == v
    assert TimeValue.from_python(v.to_python()) == v


@given(time_values)
def test_time_binary_round_trip(v: TimeValue) -> None:
    packed = pack_time(v)
    assert packed[0] == len(packed) - 1 and packed[0] in (0, 8, 12)
    assert unpack_time(packed[1:]) == v


@given(st.lists(datetime_values, min_size=2, max_size=5))
def test_datetime_order_matches_python(values: list[DateTimeValue]) -> None:
    as_python = [v.to_python() for v in values]
    if all(p is not None for p in as_python):
        assert [v.to_python() for v in sorted(values)] == sorted(as_python)  # type: ignore[type-var]
