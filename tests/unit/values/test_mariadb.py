"""The codecs against a real MariaDB: literals read back exactly, binary rows and execute
parameters as the server writes and reads them, text rows converted to binary rows equal
the server's own binary rows.

Raw COM_STMT_PREPARE/EXECUTE and COM_QUERY packets go over a PyMySQL connection (its
private packet API), so only the codecs under test encode and decode values.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysql.protocol import FieldDescriptorPacket

from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.constants import ColumnFlag, ColumnType, Command
from vtwist.protocols.mysql.literals import count_placeholders, interpolate, sql_literal
from vtwist.protocols.mysql.values import (
    DateTimeValue,
    DateValue,
    TimeValue,
    decode_binary_row,
    decode_text_row,
    encode_execute_params,
    pack_param_types,
    parse_text_value,
    text_row_to_binary,
)

from .strategies import date_values, datetime_values, decimals, time_values

pytestmark = pytest.mark.integration

Conn = Any  # pymysql.connections.Connection; its private packet API is untyped
Spec = tuple[ColumnType, bool]

TABLE = (
    "CREATE TABLE IF NOT EXISTS vt_values ("
    " id INT PRIMARY KEY, d DATE, dt DATETIME(6), tm TIME(6), dec65 DECIMAL(65,30),"
    " ub BIGINT UNSIGNED, sb BIGINT, ti TINYINT, mi MEDIUMINT UNSIGNED, yr YEAR,"
    " dbl DOUBLE, fl FLOAT, bl LONGBLOB, tx LONGTEXT CHARACTER SET utf8mb4,"
    " bt BIT(12), js JSON, en ENUM('a','b'))"
)
COLUMNS = "d, dt, tm, dec65, ub, sb, ti, mi, yr, dbl, fl, bl, tx, bt, js, en"
EMOJI_TEXT = '\U0001f600 it\'s \\ "q" \x00 \x1a \u00e9'

EDGE_ROW: list[object] = [
    DateValue(0, 0, 0),
    DateTimeValue(0, 0, 0),
    TimeValue(True, 838, 59, 59),
    Decimal("-" + "9" * 35 + "." + "9" * 30),
    2**64 - 1,
    -(2**63),
    -128,
    2**24 - 1,
    2155,
    1.7976931348623157e308,
    10.2,
    bytes(range(256)),
    EMOJI_TEXT,
    b"\x0f\xff",
    '{"a": [1, "\\u00e9"]}',
    "b",
]
PLAIN_ROW: list[object] = [
    DateValue(2024, 2, 0),
    DateTimeValue(9999, 12, 31, 23, 59, 59, 999999),
    TimeValue(False, 838, 59, 59),
    Decimal("0.000000000000000000000000000001"),
    0,
    2**63 - 1,
    127,
    0,
    0,
    5e-324,
    -3.4028234663852886e38,
    b"",
    "",
    b"\x00\x00",
    "null",
    "a",
]


@pytest.fixture
def conn(mariadb: MariaDB) -> Iterator[Conn]:
    c = mariadb.connect()
    with c.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS vt_values_test")
        cur.execute("USE vt_values_test")
        cur.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")  # zero dates allowed
        cur.execute(TABLE)
        cur.execute("DELETE FROM vt_values")
    try:
        yield c
    finally:
        c.close()


def _column_specs(c: Conn, count: int) -> list[Spec]:
    specs = []
    for _ in range(count):
        f = c._read_packet(FieldDescriptorPacket)
        specs.append((ColumnType(f.type_code), bool(f.flags & ColumnFlag.UNSIGNED)))
    return specs


def binary_query(c: Conn, sql: bytes, params: list[object]) -> tuple[list[Spec], list[bytes]]:
    """PREPARE + EXECUTE (+ CLOSE) with our parameter encoding; the raw binary rows."""
    c._execute_command(Command.STMT_PREPARE, sql)
    ok = c._read_packet().get_all_data()
    stmt_id, ncols, nparams = struct.unpack_from("<IHH", ok, 1)
    assert nparams == len(params)
    for count in (nparams, ncols):
        if count:
            _column_specs(c, count)
            c._read_packet()  # EOF (PyMySQL does not ask for DEPRECATE_EOF)
    payload = struct.pack("<IBI", stmt_id, 0, 1)
    if params:
        bitmap, types, values = encode_execute_params(params)
        payload += bitmap + b"\x01" + pack_param_types(types) + values
    c._execute_command(Command.STMT_EXECUTE, payload)
    specs, rows = _read_result(c)
    c._execute_command(Command.STMT_CLOSE, struct.pack("<I", stmt_id))  # no response
    return specs, rows


def text_query(c: Conn, sql: bytes) -> tuple[list[Spec], list[bytes]]:
    """COM_QUERY; the raw text rows."""
    c._execute_command(Command.QUERY, sql)
    return _read_result(c)


def _read_result(c: Conn) -> tuple[list[Spec], list[bytes]]:
    first = c._read_packet()
    if first.is_ok_packet():
        return [], []
    specs = _column_specs(c, first.read_length_encoded_integer())
    c._read_packet()  # EOF
    rows = []
    while not (p := c._read_packet()).is_eof_packet():
        rows.append(p.get_all_data())
    return specs, rows


def _insert(c: Conn, row_id: int, row: list[object]) -> None:
    marks = ", ".join("?" * (len(row) + 1))
    sql = f"INSERT INTO vt_values (id, {COLUMNS}) VALUES ({marks})".encode()
    binary_query(c, sql, [row_id, *row])


def _assert_text_rows_convert(
    text_rows: list[bytes], binary_rows: list[bytes], specs: list[Spec]
) -> None:
    """Each text row, converted, is the server's binary row, except that MariaDB prints a
    FLOAT in text with only 6 significant digits (16777217 shows as 16777200), so FLOATs
    can only agree to that precision.
    """
    floats = [i for i, (c, _) in enumerate(specs) if c == ColumnType.FLOAT]
    for text_row, binary_row in zip(text_rows, binary_rows, strict=True):
        converted = text_row_to_binary(text_row, specs)
        if not floats:
            assert converted == binary_row
            continue
        got, want = decode_binary_row(converted, specs), decode_binary_row(binary_row, specs)
        for i in floats:
            assert math.isclose(got[i], want[i], rel_tol=1e-5)  # type: ignore[arg-type]
            got[i] = want[i]
        assert got == want


def _expected(row: list[object]) -> list[object]:
    """What the binary protocol returns for a row of EDGE_ROW/PLAIN_ROW's column types."""
    out = list(row)
    out[10] = struct.unpack("<f", struct.pack("<f", row[10]))[0]
    for i in (12, 14, 15):  # text columns come back as bytes
        out[i] = row[i].encode()  # type: ignore[attr-defined]
    return out


def test_execute_params_and_binary_rows_round_trip(conn: Conn) -> None:
    _insert(conn, 1, EDGE_ROW)
    _insert(conn, 2, PLAIN_ROW)
    sql = f"SELECT {COLUMNS} FROM vt_values ORDER BY id".encode()
    specs, rows = binary_query(conn, sql, [])
    assert [decode_binary_row(r, specs) for r in rows] == [
        _expected(EDGE_ROW),
        _expected(PLAIN_ROW),
    ]
    _, text_rows = text_query(conn, sql)
    _assert_text_rows_convert(text_rows, rows, specs)


def test_interpolated_literals_store_the_same_values(conn: Conn) -> None:
    for row_id, row in ((1, EDGE_ROW), (2, PLAIN_ROW)):
        marks = ", ".join("?" * (len(row) + 1))
        sql = f"INSERT INTO vt_values (id, {COLUMNS}) VALUES ({marks})".encode()
        text_query(conn, interpolate(sql, [row_id, *row]))
    specs, rows = binary_query(conn, f"SELECT {COLUMNS} FROM vt_values ORDER BY id".encode(), [])
    assert [decode_binary_row(r, specs) for r in rows] == [
        _expected(EDGE_ROW),
        _expected(PLAIN_ROW),
    ]


@pytest.mark.parametrize("no_backslash_escapes", [False, True])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text() | st.binary())
def test_select_literal_returns_the_value(
    conn: Conn, no_backslash_escapes: bool, value: str | bytes
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SET SESSION sql_mode = %s", ("NO_BACKSLASH_ESCAPES" if no_backslash_escapes else "",)
        )
        literal = sql_literal(value, no_backslash_escapes)
        cur.execute(b"SELECT " + literal + b" AS v")
        assert cur.fetchone() == (value,)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            date_values,
            datetime_values,
            time_values,
            decimals,
            st.integers(0, 2**64 - 1),
            st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            st.binary(max_size=300),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_random_rows_through_both_protocols(conn: Conn, rows: list[tuple[object, ...]]) -> None:
    columns = "d, dt, tm, dec65, ub, sb, dbl, fl, bl"
    with conn.cursor() as cur:
        cur.execute("DELETE FROM vt_values")
    for i, row in enumerate(rows):
        sql = f"INSERT INTO vt_values (id, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        binary_query(conn, sql.encode(), [i, *row])
    select = f"SELECT {columns} FROM vt_values ORDER BY id".encode()
    specs, binary_rows = binary_query(conn, select, [])
    assert [decode_binary_row(r, specs) for r in binary_rows] == [list(r) for r in rows]
    _, text_rows = text_query(conn, select)
    _assert_text_rows_convert(text_rows, binary_rows, specs)


def test_param_count_matches_the_server(conn: Conn) -> None:
    for sql in [
        b"SELECT ?, '?', \"?\" AS `?` FROM DUAL WHERE 1 = ? -- ?\n AND 2 = ? # ?",
        b"SELECT /* ? */ ?, 1 -?, 'a\\'?', ? /*! , ? */",
    ]:
        conn._execute_command(Command.STMT_PREPARE, sql)
        ok = conn._read_packet().get_all_data()
        stmt_id, ncols, nparams = struct.unpack_from("<IHH", ok, 1)
        for count in (nparams, ncols):
            if count:
                _column_specs(conn, count)
                conn._read_packet()
        conn._execute_command(Command.STMT_CLOSE, struct.pack("<I", stmt_id))
        assert count_placeholders(sql) == nparams


def test_text_values_parse_like_binary(conn: Conn) -> None:
    _insert(conn, 1, EDGE_ROW)
    sql = f"SELECT {COLUMNS} FROM vt_values".encode()
    specs, text_rows = text_query(conn, sql)
    _, binary_rows = binary_query(conn, sql, [])
    raw = decode_text_row(text_rows[0], len(specs))
    parsed = [parse_text_value(v, c, u) for v, (c, u) in zip(raw, specs, strict=True)]
    assert parsed == decode_binary_row(binary_rows[0], specs)
