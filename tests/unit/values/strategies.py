"""Hypothesis strategies shared by the value-codec tests."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from vtwist.protocols.mysql.constants import ColumnType
from vtwist.protocols.mysql.values import DateTimeValue, DateValue, TimeValue

T = ColumnType

date_values = st.builds(
    DateValue, st.integers(0, 9999), st.integers(0, 12), st.integers(0, 31)
) | st.just(DateValue(0, 0, 0))

datetime_values = st.builds(
    DateTimeValue,
    st.integers(0, 9999),
    st.integers(0, 12),
    st.integers(0, 31),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999_999) | st.just(0),
) | st.just(DateTimeValue(0, 0, 0))

time_values = st.builds(
    TimeValue,
    st.booleans(),
    st.integers(0, 837) | st.sampled_from([0, 24, 838]),
    st.integers(0, 59),
    st.integers(0, 59),
    st.integers(0, 999_999) | st.just(0),
).filter(lambda t: t.hours < 838 or t.microseconds == 0) | st.sampled_from(
    [TimeValue(True, 838, 59, 59), TimeValue(False, 838, 59, 59), TimeValue(False, 0)]
)

decimals = st.integers(0, 30).flatmap(
    lambda places: st.decimals(
        min_value=Decimal(-(10**35) + 1),  # fits DECIMAL(65, 30)
        max_value=Decimal(10**35 - 1),
        places=places,
        allow_nan=False,
        allow_infinity=False,
    )
)

_INT_RANGES = {
    T.TINY: 8,
    T.SHORT: 16,
    T.YEAR: 16,
    T.INT24: 32,  # INT24 travels as 4 bytes
    T.LONG: 32,
    T.LONGLONG: 64,
}


def _ints(ctype: ColumnType, unsigned: bool) -> st.SearchStrategy[int]:
    bits = _INT_RANGES[ctype]
    lo, hi = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.integers(lo, hi) | st.sampled_from([lo, hi])


_STRINGS = [
    T.VARCHAR,
    T.VAR_STRING,
    T.STRING,
    T.ENUM,
    T.SET,
    T.JSON,
    T.TINY_BLOB,
    T.MEDIUM_BLOB,
    T.LONG_BLOB,
    T.BLOB,
    T.BIT,
    T.GEOMETRY,
]


def value_for(ctype: ColumnType, unsigned: bool) -> st.SearchStrategy[object]:
    """A non-NULL value of the type ``decode_binary_row`` returns for the column."""
    if ctype in _INT_RANGES:
        return _ints(ctype, unsigned)
    if ctype == T.FLOAT:
        return st.floats(width=32, allow_nan=False)
    if ctype == T.DOUBLE:
        return st.floats(allow_nan=False)
    if ctype in (T.DECIMAL, T.NEWDECIMAL):
        return decimals
    if ctype in (T.DATE, T.NEWDATE):
        return date_values
    if ctype in (T.DATETIME, T.TIMESTAMP, T.DATETIME2, T.TIMESTAMP2):
        return datetime_values
    if ctype in (T.TIME, T.TIME2):
        return time_values
    assert ctype in _STRINGS, ctype
    return st.binary(max_size=300)


ALL_TYPES = [
    *_INT_RANGES,
    T.FLOAT,
    T.DOUBLE,
    T.DECIMAL,
    T.NEWDECIMAL,
    T.DATE,
    T.NEWDATE,
    T.DATETIME,
    T.TIMESTAMP,
    T.DATETIME2,
    T.TIMESTAMP2,
    T.TIME,
    T.TIME2,
    T.NULL,
    *_STRINGS,
]

column_specs = st.tuples(st.sampled_from(ALL_TYPES), st.booleans())


@st.composite
def typed_rows(
    draw: st.DrawFn, max_columns: int = 20
) -> tuple[list[tuple[ColumnType, bool]], list[object]]:
    """Random column types and a row of values (or NULLs) for them."""
    specs = draw(st.lists(column_specs, max_size=max_columns))
    values: list[object] = []
    for ctype, unsigned in specs:
        if ctype == T.NULL or draw(st.integers(0, 5)) == 0:
            values.append(None)
        else:
            values.append(draw(value_for(ctype, unsigned)))
    return specs, values
