"""Text-protocol rows and MySQL text forms of Python values."""

from __future__ import annotations

import math
import struct
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vtwist.protocols.mysql.constants import ColumnType as T
from vtwist.protocols.mysql.errors import RemoteProtocolError
from vtwist.protocols.mysql.values import (
    DateTimeValue,
    DateValue,
    TimeValue,
    decode_binary_row,
    decode_text_row,
    encode_binary_row,
    encode_text_row,
    parse_text_value,
    text_row_to_binary,
    text_to_binary_converter,
    text_value,
)

from .strategies import typed_rows

raw_values = st.lists(
    st.none()
    | st.binary(max_size=300)
    | st.sampled_from([b"", b"x" * 250, b"x" * 251, b"y" * 0xFFFF, b"z" * 0x10000]),
    max_size=8,
)


def test_golden_text_row() -> None:
    row = b"\x011\xfb\x00\x03foo"
    assert decode_text_row(row, 4) == [b"1", None, b"", b"foo"]
    assert encode_text_row([b"1", None, b"", b"foo"]) == row


def test_lenenc_boundaries() -> None:
    assert encode_text_row([b"a" * 250])[:1] == b"\xfa"
    assert encode_text_row([b"a" * 251])[:3] == b"\xfc\xfb\x00"
    assert encode_text_row([b"a" * 0x10000])[:4] == b"\xfd\x00\x00\x01"
    big = b"a" * 0x1000000
    encoded = encode_text_row([big])
    assert encoded[:9] == b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"
    assert decode_text_row(encoded, 1) == [big]


@given(raw_values)
def test_text_row_round_trip(values: list[bytes | None]) -> None:
    assert decode_text_row(encode_text_row(values), len(values)) == values


@pytest.mark.parametrize(
    ("payload", "ncols"),
    [
        (b"", 1),  # no value at all
        (b"\x03fo", 1),  # truncated string
        (b"\x03foo\x00", 1),  # a byte too many
        (b"\xfc\x01", 1),  # truncated length
        (b"\xfd\x01\x00", 1),
        (b"\xfe\x01\x00\x00\x00", 1),
        (b"\xfe" + b"\xff" * 8, 1),  # 2**64-1 bytes claimed
        (b"\xff", 1),  # 0xFF never starts a value
        (b"\x011", 2),
    ],
)
def test_malformed_text_rows(payload: bytes, ncols: int) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_text_row(payload, ncols)


@given(st.binary(max_size=40), st.integers(0, 6))
def test_text_row_fuzz_never_crashes(payload: bytes, ncols: int) -> None:
    try:
        values = decode_text_row(payload, ncols)
    except RemoteProtocolError:
        return
    assert encode_text_row(values) == payload


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (0, b"0"),
        (-(2**63), b"-9223372036854775808"),
        (2**64 - 1, b"18446744073709551615"),
        (True, b"1"),
        (False, b"0"),
        (1.5, b"1.5"),
        (0.1, b"0.1"),
        (-0.0, b"-0.0"),
        (1e300, b"1e+300"),
        (Decimal("1E+2"), b"100"),
        (Decimal("-0.0100"), b"-0.0100"),
        ("h\u00e9\U0001f600", "h\u00e9\U0001f600".encode()),
        (b"\x00\xff", b"\x00\xff"),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"cd"), b"cd"),
        (date(2024, 1, 2), b"2024-01-02"),
        (datetime(2024, 1, 2, 3, 4, 5), b"2024-01-02 03:04:05"),
        (datetime(2024, 1, 2, 3, 4, 5, 6), b"2024-01-02 03:04:05.000006"),
        (timedelta(hours=-838, minutes=-59, seconds=-59), b"-838:59:59"),
        (time(1, 2, 3), b"01:02:03"),
        (DateValue(0, 0, 0), b"0000-00-00"),
        (DateTimeValue(0, 0, 0), b"0000-00-00 00:00:00"),
        (TimeValue(True, 1, 2, 3, 4), b"-01:02:03.000004"),
    ],
)
def test_text_value(value: object, text: bytes | None) -> None:
    assert text_value(value) == text


def test_text_value_refuses() -> None:
    for bad in (math.inf, -math.inf, math.nan, Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError):
            text_value(bad)
    with pytest.raises(ValueError):
        text_value(timedelta(hours=839))
    with pytest.raises(TypeError):
        text_value(object())


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_reads_back_exactly(x: float) -> None:
    text = text_value(x)
    assert text is not None
    assert float(text) == x and math.copysign(1, float(text)) == math.copysign(1, x)


def test_parse_text_value() -> None:
    assert parse_text_value(None, T.LONG) is None
    assert parse_text_value(b"-5", T.TINY) == -5
    assert parse_text_value(b"18446744073709551615", T.LONGLONG, True) == 2**64 - 1
    assert parse_text_value(b"1.1", T.FLOAT) == struct.unpack("<f", struct.pack("<f", 1.1))[0]
    assert parse_text_value(b"1.1", T.DOUBLE) == 1.1
    assert parse_text_value(b"-15.50", T.NEWDECIMAL) == Decimal("-15.50")
    assert parse_text_value(b"2024-01-02", T.DATE) == DateValue(2024, 1, 2)
    assert parse_text_value(b"0000-00-00", T.DATE) == DateValue(0, 0, 0)
    assert parse_text_value(b"2024-01-02 03:04:05.5", T.DATETIME) == DateTimeValue(
        2024, 1, 2, 3, 4, 5, 500000
    )
    assert parse_text_value(b"-838:59:59", T.TIME) == TimeValue(True, 838, 59, 59)
    assert parse_text_value(b"\x00\x01", T.BIT) == b"\x00\x01"
    with pytest.raises(ValueError):
        parse_text_value(b"abc", T.NEWDECIMAL)
    with pytest.raises(ValueError):
        parse_text_value(b"abc", T.LONG)
    with pytest.raises(ValueError):
        parse_text_value(b"1", 0x42)


def test_text_row_to_binary_golden() -> None:
    specs = [(T.LONG, False), (T.VAR_STRING, False), (T.DATE, False), (T.TIME, False)]
    text = encode_text_row([b"1", None, b"0000-00-00", b"-01:00:00"])
    assert text_row_to_binary(text, specs) == (
        b"\x00"
        + b"\x08"  # NULL bitmap: column 1 at bit 1 + 2
        + b"\x01\x00\x00\x00"
        + b"\x00"  # zero date: length 0
        + b"\x08\x01\x00\x00\x00\x00\x01\x00\x00"
    )


@given(typed_rows())
def test_text_form_converts_to_the_same_binary_row(
    row: tuple[list[tuple[T, bool]], list[object]],
) -> None:
    """A row sent as text and converted gives the same binary row as sending it directly.

    Non-finite floats are left out: MySQL has no text form for them and never sends one.
    """
    specs, values = row
    assume(not any(isinstance(v, float) and not math.isfinite(v) for v in values))
    binary = encode_binary_row(values, specs)
    as_text = [text_value(v) for v in values]
    assert text_row_to_binary(encode_text_row(as_text), specs) == binary
    parsed = [parse_text_value(t, c, u) for t, (c, u) in zip(as_text, specs, strict=True)]
    assert parsed == decode_binary_row(binary, specs)


_LENENC_SPECS = st.lists(
    st.sampled_from([(T.VAR_STRING, False), (T.BLOB, False), (T.STRING, False)]),
    min_size=1,
    max_size=8,
)


@given(row=typed_rows())
def test_a_converter_gives_what_text_row_to_binary_gives(
    row: tuple[list[tuple[T, bool]], list[object]],
) -> None:
    specs, values = row
    assume(not any(isinstance(v, float) and not math.isfinite(v) for v in values))
    text = encode_text_row([text_value(v) for v in values])
    assert text_to_binary_converter(specs)(text) == text_row_to_binary(text, specs)


@given(specs=_LENENC_SPECS, data=st.data())
def test_string_columns_keep_their_bytes_and_match_the_general_path(
    specs: list[tuple[T, bool]], data: st.DataObject
) -> None:
    values = data.draw(
        st.lists(
            st.none()
            | st.binary(max_size=300)
            | st.sampled_from([b"", b"x" * 251, b"y" * 0xFFFF, b"z" * 0x10000]),
            min_size=len(specs),
            max_size=len(specs),
        )
    )
    text = encode_text_row(values)
    converted = text_to_binary_converter(specs)(text)
    assert converted == text_row_to_binary(text, specs)
    assert decode_binary_row(converted, specs) == values
    if None not in values:  # the values are copied as they are, after header and bitmap
        assert converted.endswith(text)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x03ab", b"\x01a", b"\xff", b"\xfc\x05", b"\x01a\x00"],
)
def test_a_converter_refuses_malformed_rows_like_the_general_path(payload: bytes) -> None:
    specs = [(T.VAR_STRING, False), (T.VAR_STRING, False)]
    if payload == b"\x01a\x00":
        payload = b"\x01a\x00\x00"  # three values for two columns
    with pytest.raises(RemoteProtocolError):
        text_row_to_binary(payload, specs)
    with pytest.raises(RemoteProtocolError):
        text_to_binary_converter(specs)(payload)


def test_a_converter_handles_decimals_and_nulls_among_string_columns() -> None:
    specs = [(T.NEWDECIMAL, False), (T.VAR_STRING, False)]
    convert = text_to_binary_converter(specs)
    for values in ([b"12.50", b"x"], [b"12.50", None], [None, None]):
        text = encode_text_row(values)
        assert convert(text) == text_row_to_binary(text, specs)
    assert convert(encode_text_row([b"12.50", b"x"])) == b"\x00\x00\x0512.50\x01x"


@given(
    specs=st.lists(
        st.sampled_from([(T.VAR_STRING, False), (T.BLOB, False)]), min_size=1, max_size=3
    ),
    payload=st.binary(max_size=12)
    | st.lists(st.binary(max_size=4), min_size=1, max_size=4).map(encode_text_row),
)
def test_string_converters_take_any_bytes_like_the_general_path(
    specs: list[tuple[T, bool]], payload: bytes
) -> None:
    """Damaged or odd rows (one column or several): the converter's length walk gives what
    ``text_row_to_binary`` gives, or refuses what it refuses."""
    try:
        want = text_row_to_binary(payload, specs)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            text_to_binary_converter(specs)(payload)
        return
    assert text_to_binary_converter(specs)(payload) == want


@pytest.mark.parametrize("payload", [b"", b"\x03ab", b"\xff", b"\xfc\x05", b"\x01a\x00", b"\x01"])
def test_a_one_column_converter_refuses_malformed_rows(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        text_to_binary_converter([(T.VAR_STRING, False)])(payload)
    assert text_to_binary_converter([(T.VAR_STRING, False)])(b"\xfb") == b"\x00\x04"
