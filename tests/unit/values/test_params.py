"""COM_STMT_EXECUTE parameter blocks: type choice, NULLs, long data, unsigned flags."""

from __future__ import annotations

import struct
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.protocols.mysql.constants import ColumnType as T
from vtwist.protocols.mysql.errors import RemoteProtocolError
from vtwist.protocols.mysql.values import (
    DateTimeValue,
    DateValue,
    ExecuteParams,
    TimeValue,
    choose_param_type,
    decode_execute_params,
    encode_execute_params,
    pack_param_types,
    unpack_param_types,
)

from .strategies import column_specs, date_values, datetime_values, time_values, typed_rows


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        (None, (T.NULL, False)),
        (True, (T.TINY, False)),
        (0, (T.LONGLONG, False)),
        (2**63 - 1, (T.LONGLONG, False)),
        (-(2**63), (T.LONGLONG, False)),
        (2**63, (T.LONGLONG, True)),
        (2**64 - 1, (T.LONGLONG, True)),
        (2**64, (T.NEWDECIMAL, False)),
        (-(2**63) - 1, (T.NEWDECIMAL, False)),
        (1.5, (T.DOUBLE, False)),
        (Decimal("1.5"), (T.NEWDECIMAL, False)),
        ("x", (T.VAR_STRING, False)),
        (b"x", (T.BLOB, False)),
        (bytearray(b"x"), (T.BLOB, False)),
        (date(2024, 1, 2), (T.DATE, False)),
        (DateValue(0, 0, 0), (T.DATE, False)),
        (datetime(2024, 1, 2), (T.DATETIME, False)),
        (DateTimeValue(0, 0, 0), (T.DATETIME, False)),
        (timedelta(0), (T.TIME, False)),
        (time(1), (T.TIME, False)),
        (TimeValue(True, 1), (T.TIME, False)),
    ],
)
def test_choose_param_type(value: object, spec: tuple[T, bool]) -> None:
    assert choose_param_type(value) == spec


def test_choose_param_type_refuses_unknown() -> None:
    with pytest.raises(TypeError):
        choose_param_type(object())


def test_golden_execute_block() -> None:
    bitmap, types, data = encode_execute_params([1, None, "ab", 2**64 - 1, date(2024, 1, 2)])
    assert bitmap == b"\x02"
    assert pack_param_types(types) == bytes.fromhex("08000600fd0008800a00")
    assert data == (
        bytes.fromhex("0100000000000000") + b"\x02ab" + b"\xff" * 8 + bytes.fromhex("04e8070102")
    )


def test_unsigned_flag_is_0x80_of_second_byte() -> None:
    assert unpack_param_types(b"\x08\x80\x01\x00\x03\x20", 3) == [
        (T.LONGLONG, True),
        (T.TINY, False),
        (T.LONG, False),  # 0x20 is the column-flag bit, not the parameter one
    ]
    with pytest.raises(RemoteProtocolError):
        unpack_param_types(b"\x08\x80\x01", 2)
    with pytest.raises(RemoteProtocolError):
        unpack_param_types(b"\x42\x00", 1)


def test_explicit_types() -> None:
    bitmap, types, data = encode_execute_params(
        [5, None, b"2024-01-02"], [(T.TINY, True), (T.LONG, False), (T.DATE, False)]
    )
    assert bitmap == b"\x02"
    assert types == [(T.TINY, True), (T.LONG, False), (T.DATE, False)]
    assert data == b"\x05\x04\xe8\x07\x01\x02"
    with pytest.raises(ValueError):
        encode_execute_params([1], [])


def test_long_data_replaces_the_value_even_if_flagged_null() -> None:
    types = [(T.LONG, False), (T.BLOB, False), (T.VAR_STRING, False)]
    # param 1 got COM_STMT_SEND_LONG_DATA and is absent from the values; it is also
    # flagged NULL, which mysqld ignores for long-data parameters.
    values = bytes.fromhex("07000000") + b"\x02hi"
    out = decode_execute_params(3, b"\x02", types, values, {1: b"long" * 1000})
    assert out == [7, b"long" * 1000, b"hi"]


def test_null_type_without_null_flag() -> None:
    # ProxySQL #3585: a NULL-typed parameter whose bitmap bit is clear still has no value.
    types = [(T.NULL, False), (T.LONG, False)]
    assert decode_execute_params(2, b"\x00", types, b"\x01\x00\x00\x00", {}) == [None, 1]


def test_string_encoding_splits_character_and_binary_strings() -> None:
    types = [(T.VAR_STRING, False), (T.BLOB, False), (T.STRING, False), (T.ENUM, False)]
    data = b"\x02\xc3\xa9\x01\xff\x01\xff\x01a"
    out = decode_execute_params(4, b"\x00", types, data, {}, string_encoding="utf-8")
    assert out == ["\u00e9", b"\xff", "\udcff", "a"]
    assert str(out[2]).encode("utf-8", "surrogateescape") == b"\xff"
    assert decode_execute_params(4, b"\x00", types, data, {}) == [
        b"\xc3\xa9",
        b"\xff",
        b"\xff",
        b"a",
    ]


def test_string_encoding_applies_to_long_data() -> None:
    out = decode_execute_params(
        2,
        b"\x00",
        [(T.STRING, False), (T.BLOB, False)],
        b"",
        {0: b"x", 1: b"y"},
        string_encoding="latin-1",
    )
    assert out == ["x", b"y"]


@pytest.mark.parametrize(
    ("n", "bitmap", "types", "data"),
    [
        (1, b"", [(T.LONG, False)], b"\x01\x00\x00\x00"),  # short bitmap
        (1, b"\x00\x00", [(T.LONG, False)], b"\x01\x00\x00\x00"),  # long bitmap
        (2, b"\x00", [(T.LONG, False)], b"\x01\x00\x00\x00"),  # too few types
        (1, b"\x00", [(T.LONG, False)], b"\x01\x00\x00"),  # truncated value
        (1, b"\x00", [(T.LONG, False)], b"\x01\x00\x00\x00\x00"),  # trailing byte
        (1, b"\x00", [(0x42, False)], b"\x01"),  # unknown type
        (1, b"\x00", [(T.DATETIME, False)], b"\x05\x00\x00\x00\x00\x00"),  # bad length
    ],
)
def test_malformed_params(n: int, bitmap: bytes, types: list[tuple[T, bool]], data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_execute_params(n, bitmap, types, data, {})


def test_many_params_bitmap() -> None:
    values: list[object] = [None if i % 3 == 0 else i for i in range(65535)]
    bitmap, types, data = encode_execute_params(values)
    assert len(bitmap) == (65535 + 7) // 8
    assert decode_execute_params(65535, bitmap, types, data, {}) == values


python_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=5, max_value=10**20, min_value=-(10**20)
    ),
    st.text(max_size=20),
    st.binary(max_size=300),
    st.dates(),
    st.datetimes(),
    st.timedeltas(
        min_value=-timedelta(hours=838, minutes=59, seconds=59),
        max_value=timedelta(hours=838, minutes=59, seconds=59),
    ),
    date_values,
    datetime_values,
    time_values,
)


def _expected(v: object) -> object:
    """What a decoded parameter looks like for a Python value sent with its chosen type."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int) and not -(2**63) <= v < 2**64:
        return Decimal(v)
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, datetime):
        return DateTimeValue.from_python(v)
    if isinstance(v, date):
        return DateValue.from_python(v)
    if isinstance(v, timedelta):
        return TimeValue.from_python(v)
    return v


@given(st.lists(python_values, max_size=12))
def test_execute_params_round_trip(values: list[object]) -> None:
    bitmap, types, data = encode_execute_params(values)
    wire_types = unpack_param_types(pack_param_types(types), len(types))
    assert wire_types == types
    out = decode_execute_params(len(values), bitmap, wire_types, data, {})
    expected = [_expected(v) for v in values]
    for got, want in zip(out, expected, strict=True):
        if isinstance(want, float) and want != want:
            assert got != got  # NaN travels as NaN
        else:
            assert got == want


@given(typed_rows(max_columns=12))
def test_execute_params_with_column_types_round_trip(
    row: tuple[list[tuple[T, bool]], list[object]],
) -> None:
    specs, values = row
    bitmap, types, data = encode_execute_params(values, specs)
    assert decode_execute_params(len(values), bitmap, types, data, {}) == values


@given(st.lists(column_specs, max_size=6), st.binary(max_size=40), st.binary(max_size=1))
def test_params_fuzz_never_crashes(
    specs: list[tuple[T, bool]], data: bytes, bitmap_seed: bytes
) -> None:
    bitmap = (bitmap_seed * 2)[: (len(specs) + 7) // 8].ljust((len(specs) + 7) // 8, b"\x00")
    try:
        out = decode_execute_params(len(specs), bitmap, specs, data, {})
    except RemoteProtocolError:
        return
    assert len(out) == len(specs)


def test_decoded_parameters_keep_their_wire_form_unless_long_data_came() -> None:
    types = ((T.LONG, False), (T.VAR_STRING, False))
    params = decode_execute_params(2, b"\x00", types, b"\x05\x00\x00\x00\x01x")
    assert params == [5, b"x"]
    assert isinstance(params, ExecuteParams) and isinstance(params, list)
    assert params.wire == (b"\x00", types, b"\x05\x00\x00\x00\x01x")
    with_long = decode_execute_params(2, b"\x00", types, b"\x05\x00\x00\x00", {1: b"long"})
    assert with_long == [5, b"long"]
    assert with_long.wire is None


_NUMERIC = [T.TINY, T.SHORT, T.YEAR, T.INT24, T.LONG, T.LONGLONG, T.FLOAT, T.DOUBLE]


@given(
    typed_rows(max_columns=10).filter(lambda r: all(t in _NUMERIC for t, _ in r[0])),
    st.sampled_from([0, 1, -1]),
)
def test_numeric_params_fast_path_matches_the_general_decoder(
    row: tuple[list[tuple[T, bool]], list[object]], cut: int
) -> None:
    """Type tuples of numbers take one struct call (NULLs, a short or a long values
    section go the general way): the same values, wire form and errors as a type list."""
    specs, values = row
    bitmap, spec_list, data = encode_execute_params(values, specs)
    types = tuple(spec_list)
    data = data[:cut] if cut < 0 else data + b"\x00" * cut
    try:
        want = decode_execute_params(len(values), bitmap, list(types), data)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            decode_execute_params(len(values), bitmap, types, data)
        return
    got = decode_execute_params(len(values), bitmap, types, data)
    for g, w in zip(got, want, strict=True):
        assert g != g if w != w else g == w  # (NaN travels as NaN)
    assert got.wire == (bitmap, types, data)


def test_numeric_params_fast_path_needs_no_null_and_no_long_data() -> None:
    types = ((T.LONG, False), (T.DOUBLE, True))
    data = b"\x05\x00\x00\x00" + struct.pack("<d", 2.5)
    assert decode_execute_params(2, b"\x00", types, data) == [5, 2.5]
    assert decode_execute_params(2, b"\x01", types, data[4:]) == [None, 2.5]
    assert decode_execute_params(2, b"\x00", types, data[:4], {1: b"7"}) == [5, b"7"]
    unsigned = ((T.TINY, True),)
    assert decode_execute_params(1, b"\x00", unsigned, b"\xff") == [255]
    assert decode_execute_params(1, b"\x00", ((T.TINY, False),), b"\xff") == [-1]
