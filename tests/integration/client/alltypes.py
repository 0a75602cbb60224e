"""The table of every MySQL column type used by the client's type tests, with its rows and
the Python values ``values`` must decode them to (text and binary protocols alike)."""

from __future__ import annotations

import struct
from decimal import Decimal

from vtwist.protocols.mysql.values import DateTimeValue, DateValue, TimeValue

COLUMNS = [
    ("ti", "TINYINT"),
    ("tiu", "TINYINT UNSIGNED"),
    ("si", "SMALLINT"),
    ("siu", "SMALLINT UNSIGNED"),
    ("mi", "MEDIUMINT"),
    ("miu", "MEDIUMINT UNSIGNED"),
    ("i", "INT"),
    ("iu", "INT UNSIGNED"),
    ("bi", "BIGINT"),
    ("biu", "BIGINT UNSIGNED"),
    ("f", "FLOAT"),
    ("d", "DOUBLE"),
    ("dec65", "DECIMAL(65,30)"),
    ("c", "CHAR(10)"),
    ("vc", "VARCHAR(100)"),
    ("t", "TEXT"),
    ("b", "BLOB"),
    ("j", "JSON"),
    ("e", "ENUM('a','b')"),
    ("st", "SET('x','y','z')"),
    ("bt", "BIT(10)"),
    ("dt", "DATE"),
    ("tm", "TIME"),
    ("tm6", "TIME(6)"),
    ("dtm", "DATETIME(6)"),
    ("ts", "TIMESTAMP(6) NULL"),
    ("y", "YEAR"),
]

NAMES = [name for name, _ in COLUMNS]
CREATE = (
    "CREATE TABLE all_types (id INT PRIMARY KEY, "
    + ", ".join(f"{n} {t}" for n, t in COLUMNS)
    + ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
)
# Zero dates need a permissive sql_mode; TIMESTAMP bounds depend on the time zone.
SESSION = ["SET SESSION sql_mode = ''", "SET SESSION time_zone = '+00:00'"]

BIG_DECIMAL = "9" * 35 + "." + "9" * 30


def f32(x: float) -> float:
    """``x`` rounded to single precision, as a FLOAT column holds it."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


# id -> (SQL literals, expected Python values), both in column order.
# fmt: off
ROWS: dict[int, tuple[list[str], list[object]]] = {
    1: (
        [
            "-128", "0", "-32768", "0", "-8388608", "0", "-2147483648", "0",
            "-9223372036854775808", "0", "-1.5", "-2.25e-300",
            "-" + BIG_DECIMAL, "'abc'", "'h\u00e9llo \u2713'", "'text'", "X'00FF10'",
            "'{\"a\": [1, 2]}'", "'b'", "'x,z'", "b'1010101010'", "'1000-01-01'",
            "'-838:59:59'", "'-00:00:01.5'", "'1000-01-01 00:00:00'",
            "'1970-01-01 00:00:01'", "1901",
        ],
        [
            -128, 0, -32768, 0, -8388608, 0, -(2**31), 0, -(2**63), 0, -1.5, -2.25e-300,
            Decimal("-" + BIG_DECIMAL), b"abc", "h\u00e9llo \u2713".encode(), b"text",
            b"\x00\xff\x10", b'{"a": [1, 2]}', b"b", b"x,z", b"\x02\xaa", DateValue(1000, 1, 1),
            TimeValue(True, 838, 59, 59), TimeValue(True, 0, 0, 1, 500000),
            DateTimeValue(1000, 1, 1), DateTimeValue(1970, 1, 1, 0, 0, 1), 1901,
        ],
    ),
    2: (
        [
            "127", "255", "32767", "65535", "8388607", "16777215", "2147483647", "4294967295",
            "9223372036854775807", "18446744073709551615", "0.001", "1.7976931348623157e308",
            BIG_DECIMAL, "'0123456789'", "''", "''", "''", "'[]'", "'a'", "''", "b'0'",
            "'9999-12-31'", "'838:59:59'", "'12:34:56.000001'", "'9999-12-31 23:59:59.999999'",
            "'2038-01-19 03:14:07.999999'", "2155",
        ],
        [
            127, 255, 32767, 65535, 8388607, 16777215, 2**31 - 1, 2**32 - 1, 2**63 - 1,
            2**64 - 1, f32(0.001), 1.7976931348623157e308, Decimal(BIG_DECIMAL),
            b"0123456789", b"", b"", b"", b"[]", b"a", b"", b"\x00\x00",
            DateValue(9999, 12, 31), TimeValue(False, 838, 59, 59),
            TimeValue(False, 12, 34, 56, 1), DateTimeValue(9999, 12, 31, 23, 59, 59, 999999),
            DateTimeValue(2038, 1, 19, 3, 14, 7, 999999), 2155,
        ],
    ),
    3: (  # zero dates and zero times
        [
            "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "0", "'z'", "'z'",
            "'z'", "'z'", "'{}'", "'a'", "'y'", "b'1'", "'0000-00-00'", "'00:00:00'",
            "'00:00:00'", "'0000-00-00 00:00:00'", "'0000-00-00 00:00:00'", "0",
        ],
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, Decimal("0E-30"), b"z", b"z", b"z", b"z",
            b"{}", b"a", b"y", b"\x00\x01", DateValue(0, 0, 0), TimeValue(False, 0),
            TimeValue(False, 0), DateTimeValue(0, 0, 0), DateTimeValue(0, 0, 0), 0,
        ],
    ),
    4: (["NULL"] * len(COLUMNS), [None] * len(COLUMNS)),
}
# fmt: on


def insert_sql(row_id: int) -> str:
    literals, _ = ROWS[row_id]
    return f"INSERT INTO all_types VALUES ({row_id}, {', '.join(literals)})"
