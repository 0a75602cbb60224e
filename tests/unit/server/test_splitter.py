"""The multi-statement lexer: ``;`` outside strings, identifiers and comments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.protocols.mysql.splitter import (
    is_compound,
    multi_statement_error_text,
    second_statement,
    set_statement_inner,
    split_statements,
)

SINGLE = [
    b"SELECT 1",
    b"SELECT 1;",
    b"SELECT 1 ;  \n\t",
    b"SELECT 1; -- trailing comment",
    b"SELECT 1; # hash comment",
    b"SELECT 1; /* block ; comment */",
    b"SELECT 1;;",
    b"SELECT 'a;b'",
    b'SELECT "a;b"',
    b"SELECT `a;b` FROM t",
    b"SELECT 'it''s; fine'",
    b"SELECT 'back\\'slash; still string'",
    b"SELECT 1 -- comment; with semicolon\n",
    b"SELECT 1 # comment; with semicolon",
    b"SELECT /* ; */ 1",
    b"SELECT 1 /* unterminated ; comment",
    b"SELECT 'unterminated ; string",
    b"CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END",
    b"create or replace definer=`root`@`%` function f() returns int begin return 1; end",
    b"/* lead */ CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET @a=1; END",
    b"BEGIN NOT ATOMIC SELECT 1; SELECT 2; END",
    b"",
    b";",
]

MULTI = [
    (b"SELECT 1; SELECT 2", b"SELECT 2"),
    (b"SELECT 1;SELECT 2;", b"SELECT 2;"),
    (b"SELECT 'a;b'; DROP TABLE t", b"DROP TABLE t"),
    (b"SELECT 1; -- c\nSELECT 2", b"SELECT 2"),
    (b"SELECT 1; /* c */ SELECT 2", b"SELECT 2"),
    (b"SET a=1; SET b=2", b"SET b=2"),
    (b"SELECT 1;;SELECT 2", b"SELECT 2"),
    (b"SELECT 1 --x; SELECT 2", b"SELECT 2"),  # "--x" is not a comment (no space)
    (b"SELECT 1; /*!40101 SET x=1 */", b"/*!40101 SET x=1 */"),
    (b"CREATE TABLE t (event INT); DROP TABLE x", b"DROP TABLE x"),
]


@pytest.mark.parametrize("sql", SINGLE)
def test_single_statement(sql: bytes) -> None:
    assert second_statement(sql) is None


@pytest.mark.parametrize(("sql", "rest"), MULTI)
def test_second_statement_found(sql: bytes, rest: bytes) -> None:
    offset = second_statement(sql)
    assert offset is not None
    assert sql[offset:] == rest


def test_no_backslash_escapes_changes_where_strings_end() -> None:
    sql = b"SELECT 'a\\'; SELECT 2"
    # With backslash escapes the string runs to the end; without, it ends after a\.
    assert second_statement(sql) is None
    offset = second_statement(sql, no_backslash_escapes=True)
    assert offset is not None and sql[offset:] == b"SELECT 2"


def test_ansi_quotes_make_double_quotes_identifiers() -> None:
    sql = b'SELECT "a\\"; SELECT 2'
    assert second_statement(sql) is None
    assert second_statement(sql, ansi_quotes=True) is not None


def test_split_statements() -> None:
    assert split_statements(b"SELECT 1; SELECT ';'; -- c\n ;") == [b"SELECT 1", b" SELECT ';'"]
    assert split_statements(b"  ") == []
    assert split_statements(b"SELECT 1") == [b"SELECT 1"]
    proc = b"CREATE PROCEDURE p() BEGIN SELECT 1; END"
    assert split_statements(proc) == [proc]


def test_is_compound() -> None:
    assert is_compound(b"  create aggregate function f() returns int begin end")
    assert not is_compound(b"CREATE TABLE procedure_log (a int)")
    assert not is_compound(b"SELECT 1")


def test_error_text_names_the_spot_and_the_fix() -> None:
    sql = b"SELECT 1;\nSELECT 2"
    offset = second_statement(sql)
    assert offset is not None
    text = multi_statement_error_text(sql, offset)
    assert "near 'SELECT 2' at line 2" in text
    assert "CLIENT_MULTI_STATEMENTS" in text


@given(st.lists(st.sampled_from([b"SELECT 1", b"SELECT 'x;y'", b"SET @a=`b;c`"]), min_size=1))
def test_split_round_trips_joined_statements(parts: list[bytes]) -> None:
    sql = b";".join(parts)
    assert split_statements(sql) == parts
    assert (second_statement(sql) is None) == (len(parts) == 1)


@given(st.binary(max_size=200))
def test_never_raises_on_garbage(sql: bytes) -> None:
    offset = second_statement(sql)
    assert offset is None or 0 < offset <= len(sql)
    split_statements(sql)


@pytest.mark.parametrize(
    ("sql", "inner"),
    [
        (b"SET STATEMENT max_statement_time=1 FOR SELECT SLEEP(2)", b" SELECT SLEEP(2)"),
        (
            b"/* c */ set statement a='FOR', `for`=2 # for\n for update t set b=1",
            b" update t set b=1",
        ),
        (b"SET STATEMENT a=1", None),  # no FOR: not whole (mysqld gives a syntax error)
        (b"SET sql_mode='' ", None),
        (b"SELECT 'SET STATEMENT a=1 FOR'", None),
    ],
)
def test_set_statement_inner(sql: bytes, inner: bytes | None) -> None:
    at = set_statement_inner(sql)
    assert (None if at is None else sql[at:]) == inner
