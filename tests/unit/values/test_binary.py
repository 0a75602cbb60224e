"""Binary-protocol rows: golden bytes from the MySQL docs, round trips, malformed input."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.protocols.mysql.constants import ColumnType as T
from vtwist.protocols.mysql.errors import RemoteProtocolError
from vtwist.protocols.mysql.values import (
    DateTimeValue,
    DateValue,
    TimeValue,
    decode_binary_row,
    encode_binary_row,
    null_bitmap,
)

from .strategies import column_specs, typed_rows

# (type, unsigned, value, value bytes). The first rows are the examples of the MySQL
# "Binary Protocol Value" page; the rest are written out from its field layouts.
GOLDEN: list[tuple[T, bool, object, bytes]] = [
    (T.VAR_STRING, False, b"foo", bytes.fromhex("03666f6f")),
    (T.LONGLONG, False, 1, bytes.fromhex("0100000000000000")),
    (T.LONG, False, 1, bytes.fromhex("01000000")),
    (T.INT24, False, 1, bytes.fromhex("01000000")),
    (T.SHORT, False, 1, bytes.fromhex("0100")),
    (T.YEAR, False, 1, bytes.fromhex("0100")),
    (T.TINY, False, 1, bytes.fromhex("01")),
    (T.DOUBLE, False, 10.2, bytes.fromhex("6666666666662440")),
    (T.FLOAT, False, 10.199999809265137, bytes.fromhex("33332341")),  # float32(10.2)
    (
        T.DATETIME,
        False,
        DateTimeValue(2010, 10, 17, 19, 27, 30, 1),
        bytes.fromhex("0bda070a11131b1e01000000"),
    ),
    (T.DATETIME, False, DateTimeValue(2010, 10, 17, 19, 27, 30), bytes.fromhex("07da070a11131b1e")),
    (T.DATETIME, False, DateTimeValue(2010, 10, 17), bytes.fromhex("04da070a11")),
    (T.DATETIME, False, DateTimeValue(0, 0, 0), b"\x00"),
    (T.TIMESTAMP, False, DateTimeValue(1970, 1, 1, 0, 0, 1), bytes.fromhex("07b2070101000001")),
    (T.DATE, False, DateValue(2010, 10, 17), bytes.fromhex("04da070a11")),
    (T.DATE, False, DateValue(0, 0, 0), b"\x00"),  # zero date: length 0 (Vitess #20348)
    (T.DATE, False, DateValue(2024, 0, 0), bytes.fromhex("04e8070000")),
    (T.TIME, False, TimeValue(False, 0), b"\x00"),
    # -1 day 10:20:30.000040 = -34:20:30.000040
    (T.TIME, False, TimeValue(True, 34, 20, 30, 40), bytes.fromhex("0c01010000000a141e28000000")),
    (T.TIME, False, TimeValue(False, 34, 20, 30), bytes.fromhex("0800010000000a141e")),
    (T.TIME, False, TimeValue(True, 838, 59, 59), bytes.fromhex("080122000000163b3b")),
    (T.TINY, False, -1, b"\xff"),
    (T.TINY, True, 255, b"\xff"),
    (T.SHORT, False, -2, b"\xfe\xff"),
    (T.SHORT, True, 65534, b"\xfe\xff"),
    (T.YEAR, True, 2024, b"\xe8\x07"),
    (T.INT24, False, -(2**23), bytes.fromhex("000080ff")),
    (T.INT24, True, 2**24 - 1, bytes.fromhex("ffffff00")),
    (T.LONG, False, -(2**31), bytes.fromhex("00000080")),
    (T.LONG, True, 2**32 - 1, bytes.fromhex("ffffffff")),
    (T.LONGLONG, False, -(2**63), bytes.fromhex("0000000000000080")),
    (T.LONGLONG, True, 2**64 - 1, bytes.fromhex("ffffffffffffffff")),
    (T.NEWDECIMAL, False, Decimal("-15.50"), b"\x06-15.50"),  # MariaDB KB's DECIMAL(10,2)
    (T.DECIMAL, False, Decimal("0"), b"\x010"),
    (T.JSON, False, b'{"a": 1}', b'\x08{"a": 1}'),
    (T.BIT, False, b"\x00\x05", b"\x02\x00\x05"),
    (T.BLOB, False, b"", b"\x00"),
    (T.ENUM, False, b"red", b"\x03red"),
    (T.GEOMETRY, False, b"\x00" * 4, b"\x04\x00\x00\x00\x00"),
]


@pytest.mark.parametrize(("ctype", "unsigned", "value", "wire"), GOLDEN)
def test_golden_values(ctype: T, unsigned: bool, value: object, wire: bytes) -> None:
    row = b"\x00\x00" + wire  # header + 1-byte bitmap (1 column + 2 bits)
    assert encode_binary_row([value], [(ctype, unsigned)]) == row
    assert decode_binary_row(row, [(ctype, unsigned)]) == [value]


def test_docs_example_row() -> None:
    # MySQL docs, "Binary Protocol Resultset Row": 00 00 06 66 6f 6f 62 61 72
    row = bytes.fromhex("000006666f6f626172")
    assert decode_binary_row(row, [(T.VAR_STRING, False)]) == [b"foobar"]


def test_docs_time_example_is_clipped_like_mysqld() -> None:
    # The docs' TIME example, -120 days 19:27:30.000001, is beyond TIME's range; mysqld
    # clips such a parameter to -838:59:59, and so does the decoder.
    row = b"\x00\x00" + bytes.fromhex("0c0178000000131b1e01000000")
    assert decode_binary_row(row, [(T.TIME, False)]) == [TimeValue(True, 838, 59, 59)]


def test_python_values_are_accepted() -> None:
    specs = [(T.DATE, False), (T.DATETIME, False), (T.TIME, False), (T.DOUBLE, False)]
    row = encode_binary_row(
        [date(2024, 1, 2), datetime(2024, 1, 2, 3, 4, 5), timedelta(seconds=-1), 3], specs
    )
    assert decode_binary_row(row, specs) == [
        DateValue(2024, 1, 2),
        DateTimeValue(2024, 1, 2, 3, 4, 5),
        TimeValue(True, 0, 0, 1),
        3.0,
    ]


def test_date_column_with_time_keeps_it() -> None:
    row = b"\x00\x00" + bytes.fromhex("07da070a11131b1e")
    assert decode_binary_row(row, [(T.DATE, False)]) == [DateTimeValue(2010, 10, 17, 19, 27, 30)]
    # ... and a DATE sent with a zero time is just a date
    row = b"\x00\x00" + bytes.fromhex("07da070a11000000")
    assert decode_binary_row(row, [(T.DATE, False)]) == [DateValue(2010, 10, 17)]


def test_null_bitmap_offsets() -> None:
    assert null_bitmap([], 0) == b""
    assert null_bitmap([], 2) == b"\x00"  # (0 + 7 + 2) // 8
    assert null_bitmap([None], 2) == b"\x04"
    assert null_bitmap([None] * 6, 2) == b"\xfc"
    assert null_bitmap([None] * 7, 2) == b"\xfc\x01"
    assert null_bitmap([1, None, 1, None, 1, 1, 1, 1, None], 0) == b"\x0a\x01"
    assert len(null_bitmap([1] * 65535, 2)) == (65535 + 9) // 8


def test_nulls_and_null_type() -> None:
    specs = [(T.NULL, False), (T.LONG, False), (T.BLOB, False)]
    row = encode_binary_row([None, None, b"x"], specs)
    assert row == b"\x00\x0c\x01x"
    assert decode_binary_row(row, specs) == [None, None, b"x"]


def test_special_floats() -> None:
    specs = [(T.DOUBLE, False), (T.FLOAT, False), (T.DOUBLE, False)]
    out = decode_binary_row(encode_binary_row([math.nan, math.inf, -0.0], specs), specs)
    assert math.isnan(out[0])  # type: ignore[arg-type]
    assert out[1] == math.inf
    assert math.copysign(1, out[2]) == -1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        (128, (T.TINY, False)),
        (-1, (T.TINY, True)),
        (2**64, (T.LONGLONG, True)),
        (1e39, (T.FLOAT, False)),
        (None, (T.VAR_STRING, False)),  # placeholder: replaced below
        (b"2024-13-01", (T.DATE, False)),
        (b"x", (T.LONG, False)),
        (timedelta(hours=900), (T.TIME, False)),
        (5, (0x42, False)),
    ],
)
def test_encode_refuses_values_that_do_not_fit(value: object, spec: tuple[T, bool]) -> None:
    if value is None:
        value, spec = 1, (T.NULL, False)
    with pytest.raises(ValueError):
        encode_binary_row([value], [spec])


@pytest.mark.parametrize(
    ("value", "spec"),
    [(1.5, (T.LONG, False)), (object(), (T.BLOB, False)), ([], (T.DATE, False))],
)
def test_encode_refuses_wrong_types(value: object, spec: tuple[T, bool]) -> None:
    with pytest.raises(TypeError):
        encode_binary_row([value], [spec])


def test_encode_wrong_arity() -> None:
    with pytest.raises(ValueError):
        encode_binary_row([1, 2], [(T.LONG, False)])


@pytest.mark.parametrize(
    ("payload", "spec"),
    [
        (b"", (T.LONG, False)),  # no header
        (b"\x01\x00\x01\x00\x00\x00", (T.LONG, False)),  # header not 0x00
        (b"\x00\x00\x01\x00\x00", (T.LONG, False)),  # truncated int
        (b"\x00\x00\x01\x00\x00\x00\x00", (T.LONG, False)),  # trailing byte
        (b"\x00\x00\x05ab", (T.BLOB, False)),  # truncated string
        (b"\x00\x00\x05", (T.DATE, False)),  # bad temporal length
        (b"\x00\x00\x04\xe8\x07\x0d\x01", (T.DATE, False)),  # month 13
        (b"\x00\x00\x07\xe8\x07\x01\x01\x18\x00\x00", (T.DATETIME, False)),  # hour 24
        (b"\x00\x00\x08\x00\x00\x00\x00\x00\x00\x3c\x00", (T.TIME, False)),  # minute 60
        (b"\x00\x00\x04\xe8\x07", (T.DATE, False)),  # truncated date
        (b"\x00\x00\x03abc", (T.NEWDECIMAL, False)),  # not a number
        (b"\x00\x00\x03NaN", (T.NEWDECIMAL, False)),
        (b"\x00\x00\x01\x00", (0x42, False)),  # unknown type
    ],
)
def test_malformed_binary_rows(payload: bytes, spec: tuple[T, bool]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_binary_row(payload, [spec])


@given(typed_rows())
def test_binary_row_round_trip(row: tuple[list[tuple[T, bool]], list[object]]) -> None:
    specs, values = row
    wire = encode_binary_row(values, specs)
    decoded = decode_binary_row(wire, specs)
    assert decoded == values
    assert encode_binary_row(decoded, specs) == wire


@given(st.lists(column_specs, max_size=6), st.binary(max_size=60))
def test_binary_row_fuzz_never_crashes(specs: list[tuple[T, bool]], tail: bytes) -> None:
    payload = b"\x00" + tail
    try:
        values = decode_binary_row(payload, specs)
    except RemoteProtocolError:
        return
    assert len(values) == len(specs)
