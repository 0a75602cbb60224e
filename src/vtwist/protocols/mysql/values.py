"""MySQL value codecs: text rows, binary rows and COM_STMT_EXECUTE parameters.

What a value looks like after decoding (binary rows and execute parameters alike):
integers -> ``int`` (signedness from the column/parameter flag), FLOAT/DOUBLE -> ``float``,
DECIMAL -> ``decimal.Decimal``, DATE -> ``DateValue``, DATETIME/TIMESTAMP ->
``DateTimeValue``, TIME -> ``TimeValue`` (see ``values_time``: exact, zero dates allowed),
every string/blob/JSON/ENUM/SET/BIT/GEOMETRY -> ``bytes``, NULL -> ``None``. The encoders
accept those and the matching Python types, and also a value's MySQL *text* form as
``bytes`` for any column type, so a text-protocol row can be re-sent as a binary row
(``text_row_to_binary``: the gate runs an EXECUTE as a text query).

``literals`` turns parameters into SQL text. ``str`` means a character
string in the connection's encoding, ``bytes`` a binary string (``_binary X'..'``), as mysqld
treats VARCHAR and BLOB parameters; ``decode_execute_params(string_encoding=...)`` yields
that split. Escaping is only safe for ASCII-compatible connection charsets whose multibyte
characters never contain ``\\`` or ``'`` (utf8mb4, latin1...); GBK/Big5/SJIS are refused.

Malformed peer bytes raise ``RemoteProtocolError``; unencodable local values raise
``ValueError``/``TypeError``. Sans-IO: nothing here imports Twisted.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from vtwist.protocols.mysql.constants import PARAM_UNSIGNED, ColumnType
from vtwist.protocols.mysql.errors import RemoteProtocolError
from vtwist.protocols.mysql.values_time import (
    DateTimeValue,
    DateValue,
    TimeValue,
    pack_date,
    pack_datetime,
    pack_time,
    unpack_datetime_fields,
    unpack_time,
)
from vtwist.protocols.mysql.wire import lenenc_int

__all__ = [
    "ColumnSpec",
    "DateTimeValue",
    "DateValue",
    "ExecuteParams",
    "TimeValue",
    "WireParams",
    "choose_param_type",
    "decode_binary_row",
    "decode_execute_params",
    "decode_text_row",
    "encode_binary_row",
    "encode_execute_params",
    "encode_text_row",
    "null_bitmap",
    "pack_param_types",
    "parse_text_value",
    "text_row_to_binary",
    "text_to_binary_converter",
    "text_value",
    "unpack_param_types",
]

ColumnSpec = tuple[ColumnType, bool]
"""A column or parameter type and whether it is unsigned (only meaningful for integers)."""

_BYTE = [bytes((i,)) for i in range(256)]

WireParams = tuple[bytes, tuple[tuple[int, bool], ...], bytes]
"""COM_STMT_EXECUTE parameters as sent: NULL bitmap, ``(type, unsigned)`` each, values."""


class ExecuteParams(list[object]):
    """The decoded parameters of a COM_STMT_EXECUTE (a list), with their wire form.

    ``wire`` is what the client sent (``WireParams``), or None when some parameter came
    with COM_STMT_SEND_LONG_DATA. A client relaying the execute to mysqld sends ``wire`` as
    it is (``client_commands.ExecuteHandler``) instead of encoding the values again.
    """

    __slots__ = ("wire",)

    def __init__(self, values: Iterable[object] = (), wire: WireParams | None = None) -> None:
        super().__init__(values)
        self.wire = wire


def _read_lenenc_str(buf: bytes, pos: int) -> tuple[bytes, int]:
    """A lenenc string at ``pos``; IndexError/ValueError when it does not fit (caller maps)."""
    first = buf[pos]
    if first < 0xFB:
        pos += 1
        n = first
    elif first == 0xFC:
        n = buf[pos + 1] | buf[pos + 2] << 8
        pos += 3
    elif first == 0xFD:
        n = buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16
        pos += 4
    elif first == 0xFE:
        n = int.from_bytes(buf[pos + 1 : pos + 9], "little")
        pos += 9
    else:
        raise ValueError(f"0x{first:02x} does not start a length-encoded string")
    end = pos + n
    if end > len(buf):
        raise IndexError("length-encoded string runs past the end of the packet")
    return buf[pos:end], end


# -- text protocol ------------------------------------------------------------------------


def decode_text_row(payload: bytes, ncols: int) -> list[bytes | None]:
    """Split a text-protocol row into ``ncols`` values (lenenc strings, 0xFB = NULL)."""
    out: list[bytes | None] = []
    append = out.append
    pos = 0
    try:
        for _ in range(ncols):
            first = payload[pos]
            # A value running past the end slices short but leaves pos past the end, which
            # the single check after the loop catches (pos never decreases).
            if first < 0xFB:
                nxt = pos + 1 + first
                append(payload[pos + 1 : nxt])
            elif first == 0xFB:
                append(None)
                nxt = pos + 1
            elif first == 0xFC:
                nxt = pos + 3 + (payload[pos + 1] | payload[pos + 2] << 8)
                append(payload[pos + 3 : nxt])
            elif first == 0xFD:
                nxt = pos + 4 + (payload[pos + 1] | payload[pos + 2] << 8 | payload[pos + 3] << 16)
                append(payload[pos + 4 : nxt])
            elif first == 0xFE:
                nxt = pos + 9 + int.from_bytes(payload[pos + 1 : pos + 9], "little")
                append(payload[pos + 9 : nxt])
            else:
                raise RemoteProtocolError(f"text row value starts with 0x{first:02x}")
            pos = nxt
    except IndexError:
        raise RemoteProtocolError(f"text row has fewer than {ncols} values") from None
    if pos != len(payload):
        raise RemoteProtocolError(
            f"text row of {len(payload)} bytes does not hold exactly {ncols} values"
        )
    return out


def encode_text_row(values: Sequence[bytes | None]) -> bytes:
    """A text-protocol row payload from raw values (None is NULL)."""
    parts: list[bytes] = []
    append = parts.append
    for v in values:
        if v is None:
            append(b"\xfb")
        else:
            n = len(v)
            append(_BYTE[n] if n < 0xFB else lenenc_int(n))
            append(v)
    return b"".join(parts)


def _float_text(value: float) -> str:
    # repr() is the shortest string that reads back as the same double; MySQL parses it
    # exactly (correctly rounded strtod).
    if not math.isfinite(value):
        raise ValueError(f"MySQL has no representation for the float {value!r}")
    return repr(value)


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"MySQL has no representation for the decimal {value!r}")
    return format(value, "f")  # never exponent notation: keeps DECIMAL's digits and scale


def text_value(value: object) -> bytes | None:
    """``value`` in MySQL's text form (what a text-protocol row carries); None stays None.

    Accepts int, bool, float (finite), Decimal, str (utf-8), bytes-likes, date, datetime,
    time, timedelta and the ``values_time`` types. TypeError for anything else; ValueError
    for NaN/infinity and TIMEs beyond ±838:59:59.
    """
    return None if value is None else _text(value)


def _text(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode("ascii")
    if isinstance(value, float):
        return _float_text(value).encode("ascii")
    if isinstance(value, Decimal):
        return _decimal_text(value).encode("ascii")
    if isinstance(value, DateValue | DateTimeValue | TimeValue):
        return str(value).encode("ascii")
    if isinstance(value, datetime):
        return DateTimeValue.from_python(value).format().encode("ascii")
    if isinstance(value, date):
        return str(DateValue.from_python(value)).encode("ascii")
    if isinstance(value, timedelta | time):
        return TimeValue.from_python(value).format().encode("ascii")
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"cannot send a {type(value).__name__} to MySQL")


# -- binary protocol values ---------------------------------------------------------------

# Each column/parameter type belongs to one of these kinds.
_K_INT, _K_FLOAT, _K_DOUBLE, _K_DECIMAL, _K_DATE, _K_DATETIME, _K_TIME, _K_NULL = range(8)
_K_STRING, _K_BINARY = 8, 9  # character strings vs binary strings (both lenenc bytes)

_T = ColumnType
_KIND: dict[int, int] = {
    **dict.fromkeys((_T.TINY, _T.SHORT, _T.YEAR, _T.INT24, _T.LONG, _T.LONGLONG), _K_INT),
    _T.FLOAT: _K_FLOAT,
    _T.DOUBLE: _K_DOUBLE,
    _T.DECIMAL: _K_DECIMAL,
    _T.NEWDECIMAL: _K_DECIMAL,
    _T.DATE: _K_DATE,
    _T.NEWDATE: _K_DATE,
    **dict.fromkeys((_T.DATETIME, _T.TIMESTAMP, _T.DATETIME2, _T.TIMESTAMP2), _K_DATETIME),
    _T.TIME: _K_TIME,
    _T.TIME2: _K_TIME,
    _T.NULL: _K_NULL,
    **dict.fromkeys((_T.VARCHAR, _T.VAR_STRING, _T.STRING, _T.ENUM, _T.SET, _T.JSON), _K_STRING),
    **dict.fromkeys(
        (_T.TINY_BLOB, _T.MEDIUM_BLOB, _T.LONG_BLOB, _T.BLOB, _T.BIT, _T.GEOMETRY), _K_BINARY
    ),
}

# (signed, unsigned) struct for each integer type; INT24 travels as 4 bytes, YEAR as 2.
_INT_STRUCTS: dict[int, tuple[struct.Struct, struct.Struct]] = {
    _T.TINY: (struct.Struct("<b"), struct.Struct("<B")),
    _T.SHORT: (struct.Struct("<h"), struct.Struct("<H")),
    _T.YEAR: (struct.Struct("<h"), struct.Struct("<H")),
    _T.INT24: (struct.Struct("<i"), struct.Struct("<I")),
    _T.LONG: (struct.Struct("<i"), struct.Struct("<I")),
    _T.LONGLONG: (struct.Struct("<q"), struct.Struct("<Q")),
}
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")
# DECIMAL(65, 30) needs 67 characters; the cap keeps a hostile 16 MiB "number" cheap.
_DECIMAL_RE = re.compile(rb"(?=.{1,200}$)[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,6})?", re.S)
_ZERO_DATE = DateValue(0, 0, 0)


def _kind(ctype: int) -> int:
    kind = _KIND.get(ctype)
    if kind is None:
        raise RemoteProtocolError(f"unknown MySQL column/parameter type {ctype}")
    return kind


def _decode_value(buf: bytes, pos: int, ctype: int, unsigned: bool) -> tuple[object, int]:
    """One binary value at ``pos``. Raises IndexError/ValueError/struct.error on bad bytes."""
    kind = _kind(ctype)
    if kind in (_K_STRING, _K_BINARY):
        return _read_lenenc_str(buf, pos)
    if kind == _K_INT:
        st = _INT_STRUCTS[ctype][1 if unsigned else 0]
        return st.unpack_from(buf, pos)[0], pos + st.size
    if kind == _K_DOUBLE:
        return _DOUBLE.unpack_from(buf, pos)[0], pos + 8
    if kind == _K_FLOAT:
        return _FLOAT.unpack_from(buf, pos)[0], pos + 4
    if kind == _K_DECIMAL:
        raw, pos = _read_lenenc_str(buf, pos)
        if _DECIMAL_RE.fullmatch(raw) is None:
            raise ValueError(f"DECIMAL value {raw[:40]!r} is not a number")
        return Decimal(raw.decode("ascii")), pos
    if kind == _K_NULL:
        return None, pos
    n = buf[pos]
    body = buf[pos + 1 : pos + 1 + n]
    if len(body) != n:
        raise IndexError("temporal value runs past the end of the packet")
    pos += 1 + n
    if kind == _K_TIME:
        return unpack_time(body), pos
    fields = unpack_datetime_fields(body)
    if kind == _K_DATE and not (fields[3] or fields[4] or fields[5] or fields[6]):
        return (DateValue(*fields[:3]) if n else _ZERO_DATE), pos
    # A DATE sent with a time of day keeps it rather than losing it.
    return DateTimeValue(*fields), pos


def _to_temporal(value: object, kind: int) -> DateValue | DateTimeValue | TimeValue:
    if kind == _K_TIME:
        if isinstance(value, TimeValue):
            return value
        if isinstance(value, timedelta | time):
            return TimeValue.from_python(value)
        if isinstance(value, bytes | str):
            return TimeValue.parse(value)
    else:
        if isinstance(value, DateTimeValue | DateValue):
            return value
        if isinstance(value, datetime):
            return DateTimeValue.from_python(value)
        if isinstance(value, date):
            return DateValue.from_python(value)
        if isinstance(value, bytes | str):
            if kind == _K_DATE and len(value) == 10:
                return DateValue.parse(value)
            return DateTimeValue.parse(value)
    raise TypeError(f"cannot send a {type(value).__name__} as a {_KIND_NAMES[kind]}")


_KIND_NAMES = {_K_DATE: "DATE", _K_DATETIME: "DATETIME", _K_TIME: "TIME"}


def _encode_value(value: object, ctype: int, unsigned: bool) -> bytes:
    """The binary form of one non-NULL value as ``ctype``; ValueError/TypeError if it can't."""
    kind = _KIND.get(ctype)
    if kind is None:
        raise ValueError(f"unknown MySQL column type {ctype}")
    if kind in (_K_STRING, _K_BINARY, _K_DECIMAL):
        if isinstance(value, bytes):
            raw = value
        elif kind == _K_DECIMAL and not isinstance(value, int | float | Decimal):
            raise TypeError(f"cannot send a {type(value).__name__} as a DECIMAL")
        else:
            raw = _text(value)
        return lenenc_int(len(raw)) + raw
    if kind == _K_INT:
        if not isinstance(value, int | bytes | str):
            raise TypeError(f"cannot send a {type(value).__name__} as an integer")
        try:
            return _INT_STRUCTS[ctype][1 if unsigned else 0].pack(int(value))
        except struct.error:
            raise ValueError(f"{value!r} is out of range for {ColumnType(ctype).name}") from None
    if kind in (_K_DOUBLE, _K_FLOAT):
        if not isinstance(value, int | float | Decimal | bytes | str):
            raise TypeError(f"cannot send a {type(value).__name__} as a float")
        try:
            return (_DOUBLE if kind == _K_DOUBLE else _FLOAT).pack(float(value))
        except OverflowError:
            raise ValueError(f"{value!r} is out of range for FLOAT") from None
    if kind == _K_NULL:
        raise ValueError("a NULL-typed column can only hold None")
    v = _to_temporal(value, kind)
    if isinstance(v, TimeValue):
        return pack_time(v)
    if isinstance(v, DateValue):
        return pack_date(v)
    return pack_datetime(v)


def null_bitmap(values: Sequence[object], offset: int) -> bytes:
    """The NULL bitmap for ``values``: offset 2 for result rows, 0 for execute parameters."""
    bits = bytearray((len(values) + 7 + offset) // 8)
    for i, v in enumerate(values):
        if v is None:
            bit = i + offset
            bits[bit >> 3] |= 1 << (bit & 7)
    return bytes(bits)


def decode_binary_row(payload: bytes, column_types: Sequence[ColumnSpec]) -> list[object]:
    """Decode a binary-protocol row (0x00, NULL bitmap with offset 2, values)."""
    n = len(column_types)
    start = 1 + (n + 9) // 8
    if len(payload) < start or payload[0] != 0:
        raise RemoteProtocolError("binary row has a bad header or a short NULL bitmap")
    out: list[object] = []
    pos = start
    try:
        for i, (ctype, unsigned) in enumerate(column_types):
            bit = i + 2
            if payload[1 + (bit >> 3)] & (1 << (bit & 7)):
                out.append(None)
                continue
            value, pos = _decode_value(payload, pos, ctype, unsigned)
            out.append(value)
    except (IndexError, ValueError, struct.error) as e:
        raise RemoteProtocolError(f"malformed binary row value: {e}") from None
    if pos != len(payload):
        raise RemoteProtocolError(f"binary row has {len(payload) - pos} bytes after its values")
    return out


def encode_binary_row(values: Sequence[object], column_types: Sequence[ColumnSpec]) -> bytes:
    """A binary-protocol row payload. ``bytes`` are taken as MySQL text form for non-string
    columns (``b"12"`` for an INT, ``b"2024-01-02"`` for a DATE). ValueError/TypeError when
    a value does not fit its column.
    """
    if len(values) != len(column_types):
        raise ValueError(f"{len(values)} values for {len(column_types)} columns")
    parts = [b"\x00", null_bitmap(values, 2)]
    for v, (ctype, unsigned) in zip(values, column_types, strict=True):
        if v is not None:
            parts.append(_encode_value(v, ctype, unsigned))
    return b"".join(parts)


def text_row_to_binary(payload: bytes, column_types: Sequence[ColumnSpec]) -> bytes:
    """Re-encode a text-protocol row as a binary-protocol row for the same columns.

    RemoteProtocolError when the text row is malformed; ValueError when a value is not in
    its column type's text form.
    """
    return encode_binary_row(decode_text_row(payload, len(column_types)), column_types)


_LENENC_KINDS: Final = frozenset({_K_STRING, _K_BINARY, _K_DECIMAL})


def text_to_binary_converter(column_types: Sequence[ColumnSpec]) -> Callable[[bytes], bytes]:
    """``text_row_to_binary`` for one result set's columns, built once for all its rows.

    When every column is a string, blob or DECIMAL (the common ``SELECT c ...``), both
    protocols write a non-NULL value as the same length-encoded bytes: a row then only
    gains the binary header and NULL bitmap, and its values are copied as they are.
    """
    types = tuple(column_types)
    if not types or any(_KIND.get(t) not in _LENENC_KINDS for t, _ in types):
        return lambda payload: text_row_to_binary(payload, types)
    ncols = len(types)
    no_nulls = b"\x00" + bytes((ncols + 9) // 8)

    def checked(payload: bytes) -> bytes:
        values = decode_text_row(payload, ncols)  # checks the row like the general path
        if None in values:
            return encode_binary_row(values, types)  # rare: the bitmap and no NULL bytes
        return no_nulls + payload

    def convert(payload: bytes) -> bytes:
        # The usual row: values under 251 bytes, none NULL. Walk their lengths (no list,
        # no slices); anything else (long values, NULLs, malformed rows) is ``checked``.
        pos = 0
        try:
            for _ in range(ncols):
                first = payload[pos]
                if first >= 0xFB:
                    return checked(payload)
                pos += 1 + first
        except IndexError:
            return checked(payload)  # raises: the row is short
        return no_nulls + payload if pos == len(payload) else checked(payload)

    def convert_one(payload: bytes) -> bytes:
        # ``convert`` for one column: the whole row is one value.
        if payload and payload[0] < 0xFB and len(payload) == payload[0] + 1:
            return no_nulls + payload
        return checked(payload)

    return convert_one if ncols == 1 else convert


def parse_text_value(raw: bytes | None, column_type: int, unsigned: bool = False) -> object:
    """A text-protocol value as the object ``decode_binary_row`` would give for the column
    (FLOAT is rounded to single precision). ValueError if ``raw`` is not in that form.
    """
    if raw is None:
        return None
    kind = _KIND.get(column_type)
    if kind is None:
        raise ValueError(f"unknown MySQL column type {column_type}")
    if kind in (_K_STRING, _K_BINARY):
        return raw
    if kind == _K_INT:
        return int(raw)
    if kind == _K_DOUBLE:
        return float(raw)
    if kind == _K_FLOAT:
        return _FLOAT.unpack(_FLOAT.pack(float(raw)))[0]
    if kind == _K_DECIMAL:
        if _DECIMAL_RE.fullmatch(raw) is None:
            raise ValueError(f"not a DECIMAL: {raw[:40]!r}")
        return Decimal(raw.decode("ascii"))
    if kind == _K_NULL:
        return None
    return _to_temporal(raw, kind)


# -- COM_STMT_EXECUTE parameters ----------------------------------------------------------


def choose_param_type(value: object) -> ColumnSpec:
    """The parameter type a client would send for ``value`` (None -> NULL)."""
    if value is None:
        return _T.NULL, False
    if isinstance(value, bool):
        return _T.TINY, False
    if isinstance(value, int):
        if -(1 << 63) <= value < 1 << 63:
            return _T.LONGLONG, False
        if 0 <= value < 1 << 64:
            return _T.LONGLONG, True
        return _T.NEWDECIMAL, False  # too wide for any integer type: exact as DECIMAL
    if isinstance(value, float):
        return _T.DOUBLE, False
    if isinstance(value, Decimal):
        return _T.NEWDECIMAL, False
    if isinstance(value, str):
        return _T.VAR_STRING, False
    if isinstance(value, bytes | bytearray | memoryview):
        return _T.BLOB, False
    if isinstance(value, datetime | DateTimeValue):
        return _T.DATETIME, False
    if isinstance(value, date | DateValue):
        return _T.DATE, False
    if isinstance(value, timedelta | time | TimeValue):
        return _T.TIME, False
    raise TypeError(f"cannot send a {type(value).__name__} to MySQL")


def encode_execute_params(
    values: Sequence[object], types: Sequence[ColumnSpec] | None = None
) -> tuple[bytes, list[ColumnSpec], bytes]:
    """``(null_bitmap, param_types, values_bytes)`` for COM_STMT_EXECUTE.

    Types come from ``types`` when given, else from each value (``choose_param_type``).
    """
    if types is None:
        specs = [choose_param_type(v) for v in values]
    else:
        if len(types) != len(values):
            raise ValueError(f"{len(values)} parameters for {len(types)} types")
        specs = [(ColumnType(t), bool(u)) for t, u in types]
    parts: list[bytes] = []
    for v, (ctype, unsigned) in zip(values, specs, strict=True):
        if v is None:
            continue
        if isinstance(v, bytearray | memoryview):
            v = bytes(v)
        parts.append(_encode_value(v, ctype, unsigned))
    return null_bitmap(values, 0), specs, b"".join(parts)


def pack_param_types(types: Sequence[ColumnSpec]) -> bytes:
    """The 2-bytes-per-parameter wire form (type, then 0x80 when unsigned)."""
    out = bytearray()
    for ctype, unsigned in types:
        out += bytes((int(ctype), PARAM_UNSIGNED if unsigned else 0))
    return bytes(out)


def unpack_param_types(data: bytes, num_params: int) -> list[ColumnSpec]:
    """Parse ``num_params`` 2-byte parameter types; RemoteProtocolError if malformed."""
    if len(data) != 2 * num_params:
        raise RemoteProtocolError(f"{len(data)} bytes of types for {num_params} parameters")
    out: list[ColumnSpec] = []
    for i in range(0, len(data), 2):
        _kind(data[i])
        out.append((ColumnType(data[i]), bool(data[i + 1] & PARAM_UNSIGNED)))
    return out


_NO_LONG_DATA: Mapping[int, bytes] = MappingProxyType({})
_new_params: Final = list.__new__

# Parameter type lists made only of fixed-size numbers (integers, FLOAT, DOUBLE): the
# values section of an execute with none of them NULL as one struct (its ``unpack`` and
# size), and the all-zero NULL bitmap. Other lists map to ``_NOT_FIXED``, which matches
# no execute. Bounded: cleared when full.
_FixedParams = tuple[Callable[[bytes], tuple[object, ...]], int, bytes]
_FIXED_PARAMS: dict[tuple[ColumnSpec, ...], _FixedParams] = {}
_FIXED_PARAMS_ENTRIES: Final = 256
_NOT_FIXED: Final[_FixedParams] = (struct.Struct("").unpack, -1, b"")
_FIXED_CODES: Final[dict[tuple[int, bool], str]] = {
    **{(t, u): pair[u].format[1:] for t, pair in _INT_STRUCTS.items() for u in (False, True)},
    **{(_T.FLOAT, u): "f" for u in (False, True)},
    **{(_T.DOUBLE, u): "d" for u in (False, True)},
}


def _fixed_params(types: tuple[ColumnSpec, ...]) -> _FixedParams:
    """``_FIXED_PARAMS[types]``, computed and remembered."""
    codes = [_FIXED_CODES.get((t, bool(u)), "") for t, u in types]
    fixed = _NOT_FIXED
    if all(codes):
        st = struct.Struct("<" + "".join(codes))
        fixed = (st.unpack, st.size, bytes((len(types) + 7) // 8))
    if len(_FIXED_PARAMS) >= _FIXED_PARAMS_ENTRIES:
        _FIXED_PARAMS.clear()
    _FIXED_PARAMS[types] = fixed
    return fixed


def decode_execute_params(
    num_params: int,
    null_bitmap: bytes,
    param_types: Sequence[tuple[int, bool]],
    values_bytes: bytes,
    long_data: Mapping[int, bytes] | None = None,
    *,
    string_encoding: str | None = None,
) -> ExecuteParams:
    """The parameter values of a COM_STMT_EXECUTE (with their wire form, see
    ``ExecuteParams``).

    ``null_bitmap`` has offset 0. A parameter that received COM_STMT_SEND_LONG_DATA takes
    that data and is absent from ``values_bytes`` (even when flagged NULL, as in mysqld).
    A NULL-typed parameter is None whether flagged or not (ProxySQL #3585). With
    ``string_encoding``, character-string parameters (VARCHAR, CHAR, ENUM, SET, JSON)
    become ``str`` decoded losslessly (surrogateescape), so ``sql_literal`` quotes them as
    strings, while BLOB/BIT/GEOMETRY stay ``bytes`` (binary strings).
    """
    if not long_data and type(param_types) is tuple and len(param_types) == num_params:
        # The common case: numbers only, none NULL, no long data: one struct call.
        fixed = _FIXED_PARAMS.get(param_types) or _fixed_params(param_types)
        if null_bitmap == fixed[2] and len(values_bytes) == fixed[1]:
            out = _new_params(ExecuteParams)
            out.extend(fixed[0](values_bytes))
            out.wire = (null_bitmap, param_types, values_bytes)
            return out
    if len(null_bitmap) != (num_params + 7) // 8:
        raise RemoteProtocolError(f"NULL bitmap of {len(null_bitmap)} bytes for {num_params}")
    if len(param_types) != num_params:
        raise RemoteProtocolError(f"{len(param_types)} parameter types for {num_params}")
    long_data = long_data or _NO_LONG_DATA
    out = _new_params(ExecuteParams)  # (no Python ``__init__``: ``wire`` is set below)
    append = out.append
    pos = 0
    try:
        for i, (ctype, unsigned) in enumerate(param_types):
            kind = _KIND.get(ctype)
            value: object
            if kind is None:
                raise RemoteProtocolError(f"unknown MySQL column/parameter type {ctype}")
            if long_data and i in long_data:
                value = long_data[i]
            elif null_bitmap[i >> 3] & (1 << (i & 7)) or kind == _K_NULL:
                append(None)
                continue
            elif kind == _K_INT:  # the most common parameter: ``_decode_value``, inlined
                st = _INT_STRUCTS[ctype][1 if unsigned else 0]
                append(st.unpack_from(values_bytes, pos)[0])
                pos += st.size
                continue
            else:
                value, pos = _decode_value(values_bytes, pos, ctype, unsigned)
            if string_encoding is not None and kind == _K_STRING and isinstance(value, bytes):
                value = value.decode(string_encoding, "surrogateescape")
            append(value)
    except (IndexError, ValueError, struct.error) as e:
        raise RemoteProtocolError(f"malformed COM_STMT_EXECUTE parameter: {e}") from None
    if pos != len(values_bytes):
        raise RemoteProtocolError(f"{len(values_bytes) - pos} bytes after the parameters")
    if not long_data:
        types = (
            param_types  # already (type, unsigned) pairs, as ``commands`` decodes them
            if type(param_types) is tuple
            else tuple((int(t), bool(u)) for t, u in param_types)
        )
        out.wire = (null_bitmap, types, values_bytes)
    else:
        out.wire = None
    return out
