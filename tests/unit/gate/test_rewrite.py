"""CONNECTION_ID(), @@autocommit, @@workload and LAST_INSERT_ID() inside statements become
the gate's values (``vtwist.gate.rewrite``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.gate.rewrite import SessionValues, mentions_session_values, with_session_values

VALUES = SessionValues(7, False, "OLTP", 42, 3)


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        # A whole SELECT item without an alias keeps its column name.
        (b"SELECT CONNECTION_ID()", b"SELECT 7 AS `CONNECTION_ID()`"),
        (b"select connection_id( ) , 1", b"select 7 AS `connection_id( )` , 1"),
        (b"SELECT 1, connection_id() FROM t", b"SELECT 1, 7 AS `connection_id()` FROM t"),
        (b"SELECT DISTINCT CONNECTION_ID();", b"SELECT DISTINCT 7 AS `CONNECTION_ID()`;"),
        # Aliased, in an expression, nested, or outside a select list: the value alone.
        (b"SELECT CONNECTION_ID() AS id", b"SELECT 7 AS id"),
        (b"SELECT CONNECTION_ID() id", b"SELECT 7 id"),
        (b"SELECT CONNECTION_ID() + 1", b"SELECT 7 + 1"),
        (b"SELECT IF(1, CONNECTION_ID(), 0)", b"SELECT IF(1, 7, 0)"),
        (b"SELECT (SELECT CONNECTION_ID())", b"SELECT (SELECT 7)"),
        (b"SET @c = CONNECTION_ID()", b"SET @c = 7"),
        (b"INSERT INTO t VALUES (CONNECTION_ID())", b"INSERT INTO t VALUES (7)"),
        (b"SELECT * FROM t WHERE c = connection_id()", b"SELECT * FROM t WHERE c = 7"),
        # Executable comments run on mysqld: rewritten inside too.
        (b"SELECT /*! CONNECTION_ID() + */ 0", b"SELECT /*! 7 + */ 0"),
        # The session's autocommit (0 here), whichever way the variable is written.
        (b"SELECT @@autocommit", b"SELECT 0 AS `@@autocommit`"),
        (
            b"select @@SESSION.autocommit, @@local.AUTOCOMMIT x",
            b"select 0 AS `@@SESSION.autocommit`, 0 x",
        ),
        (b"SET @a = @@autocommit", b"SET @a = 0"),
        (b"SELECT @@workload, 1", b"SELECT 'OLTP' AS `@@workload`, 1"),
        # The session's last generated id (42 here); LAST_INSERT_ID(expr) is mysqld's.
        (b"SELECT LAST_INSERT_ID()", b"SELECT 42 AS `LAST_INSERT_ID()`"),
        (b"select last_insert_id( ) + 1 x", b"select 42 + 1 x"),
        # What the previous statement reported (3 rows here).
        (b"SELECT ROW_COUNT()", b"SELECT 3 AS `ROW_COUNT()`"),
        (b"SET @n = row_count()", b"SET @n = 3"),
        (
            b"INSERT INTO child VALUES (LAST_INSERT_ID(), LAST_INSERT_ID(7))",
            b"INSERT INTO child VALUES (42, LAST_INSERT_ID(7))",
        ),
    ],
)
def test_calls_become_the_gate_id(sql: bytes, want: bytes) -> None:
    assert mentions_session_values(sql)
    assert with_session_values(sql, VALUES) == want


@pytest.mark.parametrize(
    "sql",
    [
        b"SELECT 'CONNECTION_ID()'",
        b'SELECT "connection_id()"',
        b"SELECT 'it''s connection_id()', 'a\\' connection_id()'",
        b"SELECT `connection_id()` FROM t",
        b"SELECT 1 /* CONNECTION_ID() */",
        b"SELECT 1 -- CONNECTION_ID()\n",
        b"SELECT 1 # CONNECTION_ID()",
        b"SELECT my_connection_id() FROM t",
        b"SELECT connection_id FROM t",
        b"SELECT 'unterminated CONNECTION_ID()",
        b"SELECT @@global.autocommit",
        b"SELECT @@autocommit_x, '@@autocommit'",
        b"SELECT LAST_INSERT_ID(5)",
        b"SELECT 'LAST_INSERT_ID()', my_last_insert_id()",
        # DATABASE() stays mysqld's (ORMs compare it with information_schema).
        b"SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    ],
)
def test_strings_identifiers_comments_and_other_names_stay(sql: bytes) -> None:
    assert with_session_values(sql, VALUES) == sql


def test_statements_without_the_names_are_not_scanned() -> None:
    assert not mentions_session_values(b"SELECT c FROM sbtest1 WHERE id = 5")
    assert mentions_session_values(b"select Connection_Id()")
    assert mentions_session_values(b"select @@AutoCommit")


def test_diagnostics_counts() -> None:
    values = SessionValues(7, True, "OLTP", warning_count=3, error_count=1)
    sql = b"select @@warning_count, @@SESSION.error_count + 0 AS n, '@@warning_count'"
    assert with_session_values(sql, values) == (
        b"select 3 AS `@@warning_count`, 1 + 0 AS n, '@@warning_count'"
    )


def test_query_timeout_is_the_sessions() -> None:
    values = SessionValues(7, True, "OLTP", query_timeout_ms=250)
    sql = b"select @@query_timeout, @@session.QUERY_TIMEOUT > 0 /* @@query_timeout */"
    assert with_session_values(sql, values) == (
        b"select 250 AS `@@query_timeout`, 250 > 0 /* @@query_timeout */"
    )
    assert mentions_session_values(b"SELECT @@query_timeout")


def test_autocommit_on() -> None:
    on = SessionValues(7, True, "OLAP")
    assert with_session_values(b"SELECT @@autocommit", on) == b"SELECT 1 AS `@@autocommit`"
    assert with_session_values(b"select @@workload", on) == b"select 'OLAP' AS `@@workload`"


_SQLISH = st.lists(
    st.sampled_from(
        [b"SELECT ", b"connection_id()", b"@@autocommit", b"@@workload", b"last_insert_id()",
         b"row_count()", b"@@warning_count", b"@@error_count", b"@@query_timeout", b"'",
         b'"', b"`", b"(",
         b")", b",", b" AS x", b"/*", b"*/", b"-- ", b"\n", b"#", b"\\", b" FROM t", b"1"]
    ),
    max_size=16,
).map(b"".join)  # fmt: skip


@given(st.one_of(_SQLISH, st.binary(max_size=40)))
def test_any_text_is_rewritten_once_and_for_all(sql: bytes) -> None:
    """Never raises; nothing left to rewrite afterwards (values and aliases are digits,
    strings and quoted identifiers); text without the names comes back as it is."""
    once = with_session_values(sql, VALUES)
    assert with_session_values(once, VALUES) == once
    if not mentions_session_values(sql):
        assert once == sql
