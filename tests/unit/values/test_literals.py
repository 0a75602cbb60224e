"""SQL literals and ``?`` interpolation for the gate (EXECUTE run as a text query)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql.converters import escape_string

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.literals import count_placeholders, interpolate, sql_literal
from vtwist.protocols.mysql.values import (
    DateTimeValue,
    DateValue,
    TimeValue,
)


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, b"NULL"),
        (True, b"1"),
        (False, b"0"),
        (-5, b"-5"),
        (2**64 - 1, b"18446744073709551615"),
        (1.5, b"1.5e0"),
        (0.1, b"0.1e0"),
        (1e16, b"1e+16"),
        (-0.0, b"-0.0e0"),
        (Decimal("1E+2"), b"100"),
        (Decimal("-0.001"), b"-0.001"),
        ("it's", b"'it\\'s'"),
        ('a\0b\nc\rd\\e"f\x1ag', b"'a\\0b\\nc\\rd\\\\e\\\"f\\Zg'"),
        ("\u00e9", b"'\xc3\xa9'"),
        (b"\x00'\xff", b"_binary X'0027ff'"),
        (b"", b"_binary X''"),
        (bytearray(b"a"), b"_binary X'61'"),
        (date(2024, 1, 2), b"'2024-01-02'"),
        (datetime(2024, 1, 2, 3, 4, 5, 6), b"'2024-01-02 03:04:05.000006'"),
        (timedelta(hours=-838, minutes=-59, seconds=-59), b"'-838:59:59'"),
        (DateValue(0, 0, 0), b"'0000-00-00'"),
        (DateTimeValue(0, 0, 0), b"'0000-00-00 00:00:00'"),
        (TimeValue(True, 1), b"'-01:00:00'"),
    ],
)
def test_sql_literal(value: object, literal: bytes) -> None:
    assert sql_literal(value) == literal


def test_no_backslash_escapes_only_doubles_quotes() -> None:
    assert sql_literal("a'b\\c\0\n", no_backslash_escapes=True) == b"'a''b\\c\0\n'"
    assert sql_literal(b"'", no_backslash_escapes=True) == b"_binary X'27'"


def test_literal_refusals() -> None:
    for bad in (float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")):
        with pytest.raises(ValueError):
            sql_literal(bad)
    with pytest.raises(TypeError):
        sql_literal(object())
    with pytest.raises(ValueError):
        sql_literal("x", encoding="gbk")  # 0x5C can be a GBK trail byte
    with pytest.raises(ValueError):
        sql_literal("x", encoding="sjis")
    assert sql_literal("\u00e9", encoding="latin-1") == b"'\xe9'"


def test_surrogateescape_keeps_raw_bytes() -> None:
    # decode_execute_params(string_encoding=...) turns invalid bytes into lone surrogates.
    raw = b"\xff'"
    assert sql_literal(raw.decode("utf-8", "surrogateescape")) == b"'\xff\\''"


@given(st.text())
def test_string_escaping_matches_pymysql(s: str) -> None:
    assert sql_literal(s) == ("'" + escape_string(s) + "'").encode("utf-8", "surrogatepass")


@given(st.text())
def test_no_backslash_literal_is_a_single_token(s: str) -> None:
    lit = sql_literal(s, no_backslash_escapes=True)
    body = lit[1:-1]
    assert lit[:1] == lit[-1:] == b"'"
    assert body.replace(b"''", b"").count(b"'") == 0
    assert body.replace(b"''", b"'") == s.encode("utf-8", "surrogatepass")


def test_placeholders_outside_literals_only() -> None:
    sql = (
        b"SELECT ?, '?', \"?\", `?`, 'it''s ?', 'a\\'?', ? -- ?\n"
        b"# ?\n/* ? */ ?--?\n, 1 -?, x/?, /*! ? */ /*M!100000 ? */ /*+ ? */"
    )
    # Real ones: after SELECT; after the strings; both in ?--? ("--" needs whitespace
    # after it to start a comment); -?; /?; inside executable comments /*! */ and /*M! */.
    assert count_placeholders(sql) == 8
    assert interpolate(sql, list(range(8))) == (
        b"SELECT 0, '?', \"?\", `?`, 'it''s ?', 'a\\'?', 1 -- ?\n"
        b"# ?\n/* ? */ 2--3\n, 1 -4, x/5, /*! 6 */ /*M!100000 7 */ /*+ ? */"
    )


def test_no_backslash_escapes_changes_string_ends() -> None:
    sql = b"SELECT 'a\\', ?"
    # With backslash escapes the string runs to the end: no placeholder.
    assert count_placeholders(sql) == 0
    # Without, the string is 'a\' and ? is a placeholder.
    assert count_placeholders(sql, no_backslash_escapes=True) == 1
    assert interpolate(sql, ["x'"], no_backslash_escapes=True) == b"SELECT 'a\\', 'x'''"


def test_interpolate_remembers_each_sql_mode_apart() -> None:
    """The split of a statement is remembered per (text, backslash escapes, ANSI quotes):
    the same text in another mode splits differently; long texts are split every time."""
    sql = b"SELECT 'a\\', ? /* interpolate-cache */"
    assert interpolate(sql, []) == sql  # one string to the end: no placeholder
    assert interpolate(sql, []) == sql  # (now from the cache)
    assert interpolate(sql, ["x"], no_backslash_escapes=True) == (
        b"SELECT 'a\\', 'x' /* interpolate-cache */"
    )
    quoted = b'SELECT "a\\" , ? /* interpolate-cache */'
    assert interpolate(quoted, []) == quoted
    assert interpolate(quoted, [1], ansi_quotes=True).startswith(b'SELECT "a\\" , 1 ')
    long = b"SELECT ?" + b" " * 5000 + b", ?"
    for _ in range(2):
        assert interpolate(long, [1, 2]) == b"SELECT 1" + b" " * 5000 + b", 2"
    with pytest.raises(MySQLError):
        interpolate(long, [1])


def test_ansi_quotes_double_quote_is_an_identifier() -> None:
    sql = b'SELECT "a\\" , ?'
    assert count_placeholders(sql) == 0  # a string with an escaped quote
    assert count_placeholders(sql, ansi_quotes=True) == 1


def test_unterminated_quotes_and_comments() -> None:
    for sql in [b"SELECT '?", b'SELECT "?', b"SELECT `?", b"SELECT /* ?", b"SELECT -- ?", b"#?"]:
        assert count_placeholders(sql) == 0
    assert count_placeholders(b"SELECT ?--") == 1
    assert count_placeholders(b"SELECT 1--?") == 1
    assert count_placeholders(b"SELECT 1--\t?") == 0


def test_param_count_mismatch() -> None:
    with pytest.raises(MySQLError) as e:
        interpolate(b"SELECT ?, ?", [1])
    assert e.value.code == ErrorCode.WRONG_ARGUMENTS
    assert int(ErrorCode.WRONG_ARGUMENTS) == 1210
    assert e.value.sqlstate == "HY000"
    assert "mysqld_stmt_execute" in e.value.message
    with pytest.raises(MySQLError):
        interpolate(b"SELECT 1", [1])


# Random statements built from pieces whose placeholder count is known.
_plain = st.text(alphabet="abc 123,()=+*<>\n\t.", max_size=8)
_string_body = st.text(alphabet="?'\"\\`#-/*ab\n", max_size=8)
_pieces = st.one_of(
    _plain.map(lambda s: (s, 0)),
    st.just(("?", 1)),
    _string_body.map(lambda s: ("'" + s.replace("\\", "\\\\").replace("'", "''") + "'", 0)),
    _string_body.map(lambda s: ('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"', 0)),
    _string_body.map(lambda s: ("`" + s.replace("`", "``") + "`", 0)),
    _string_body.map(lambda s: ("/*" + s.replace("*/", "") + "*/", 0)),
    _string_body.map(lambda s: ("-- " + s.replace("\n", "") + "\n", 0)),
    _string_body.map(lambda s: ("#" + s.replace("\n", "") + "\n", 0)),
)


@given(st.lists(_pieces, max_size=12))
def test_placeholder_count_of_random_statements(pieces: list[tuple[str, int]]) -> None:
    # Separate pieces with a space so that "-" + "-- " or "/" + "*" never fuse.
    sql = " ".join(p for p, _ in pieces).encode()
    expected = sum(n for _, n in pieces)
    assert count_placeholders(sql) == expected
    params = [f"v{i}'?" for i in range(expected)]
    out = interpolate(sql, params)
    # The substituted values' own "?" are inside their literals, so nothing changes twice.
    assert count_placeholders(out) == 0
    for p in params:
        assert sql_literal(p) in out
