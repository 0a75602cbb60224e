"""Statement classification, bind variables, table names and the denylist (sans-IO)."""

from __future__ import annotations

import pytest

from vtwist.protocols.mysql.errors import MySQLError
from vtwist.tablet.policies import QueryPolicy, bind, classify, referenced_tables


@pytest.mark.parametrize(
    ("sql", "kind", "write", "state", "dirty"),
    [
        ("SELECT * FROM t WHERE id = 1", "select", False, False, False),
        ("  /* c */ (select 1)", "select", False, False, False),
        ("with x as (select 1) select * from x", "select", False, False, False),
        ("INSERT INTO t VALUES (1)", "insert", True, False, False),
        ("replace into t values (1)", "insert", True, False, False),
        ("UPDATE t SET a = 1", "update", True, False, False),
        ("delete from t", "delete", True, False, False),
        ("BEGIN", "begin", False, False, False),
        ("start transaction read only", "begin", False, False, False),
        ("COMMIT", "commit", False, False, False),
        ("ROLLBACK", "rollback", False, False, False),
        ("ROLLBACK TO SAVEPOINT a", "other", False, False, False),
        ("CREATE TABLE t (a int)", "other", True, False, False),
        ("ALTER TABLE t ADD b int", "other", True, False, False),
        ("SHOW TABLES", "other", False, False, False),
        ("SET @a = 1", "other", False, True, True),
        ("SET NAMES latin1", "other", False, True, True),
        ("SET GLOBAL read_only = 1", "other", True, False, False),
        ("select @a := 1", "select", False, True, True),
        ("SELECT a INTO @x FROM t", "select", False, True, True),
        ("select get_lock('l', 1)", "select", False, True, True),
        ("SELECT 'get_lock(' FROM t", "select", False, False, False),
        ("SELECT '@a := 1'", "select", False, False, False),
        ("CREATE TEMPORARY TABLE t (a int)", "other", True, True, True),
        ("LOCK TABLES t WRITE", "other", False, True, True),
        ("USE db", "other", False, True, True),
        ("CALL p()", "other", True, False, True),
        ("CALL p(1, @out)", "other", True, True, True),
        ("SET STATEMENT max_statement_time=1 FOR SELECT 1", "select", False, False, False),
        ("set statement sql_mode='' for update t set a=1", "update", True, False, False),
        ("/* c */ call p(\n@@sql_mode, 'a@b')", "other", True, False, True),
        ("SELECT LAST_INSERT_ID(5)", "select", False, False, True),
        ("SELECT LAST_INSERT_ID()", "select", False, False, False),
        ("/*!40101 SET @x = 1 */", "other", False, True, True),
        ("FLUSH TABLES", "other", True, False, False),
        # Session state that COM_RESET_CONNECTION would otherwise have to undo.
        ("FLUSH TABLES WITH READ LOCK", "other", True, True, True),
        ("HANDLER t OPEN", "other", False, True, True),
        ("handler t read first", "other", False, True, True),
    ],
)
def test_classify(sql: str, kind: str, write: bool, state: bool, dirty: bool) -> None:
    stmt = classify(sql.encode())
    assert (stmt.kind, stmt.is_write, stmt.sets_state, stmt.maybe_dirty) == (
        kind,
        write,
        state,
        dirty,
    )


def test_multi_statement_detection() -> None:
    assert classify(b"select 1; select 2").multi
    assert not classify(b"select ';'; ").multi
    assert not classify(b"select 1;").multi


def test_bind() -> None:
    assert bind(b"select :a, :b, ':a', `:a`, :missing", {"a": 1, "b": None}) == (
        b"select 1, NULL, ':a', `:a`, :missing"
    )
    assert bind(b"x in :ids", {"ids": [1, "x"]}) == b"x in (1, 'x')"
    assert bind(b"select @a := 1, :v", {"v": b"\x00"}) == b"select @a := 1, _binary X'00'"
    assert bind(b"select :a", None) == b"select :a"
    with pytest.raises(MySQLError) as info:
        bind(b"x in :ids", {"ids": []})
    assert info.value.code == 1210


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("select * from t1, db.t2 as x, `t 3` y where a = 'from z'", {"t1", "t2", "db.t2", "t 3"}),
        ("SELECT * FROM a JOIN b ON a.x = b.x LEFT JOIN c USING (x)", {"a", "b", "c"}),
        ("insert into t (a, b) values (1, 2)", {"t"}),
        ("update t set a = (select 1 from u)", {"t", "u"}),
        ("delete from t where x in (select y from u)", {"t", "u"}),
        ("select * from (select 1 from inner_t) x", {"inner_t"}),
        ("lock tables a read, b write", {"a", "b"}),
        ("select 1", set()),
    ],
)
def test_referenced_tables(sql: str, tables: set[str]) -> None:
    assert referenced_tables(sql.encode()) == tables


def test_policy_row_limit_and_denylist() -> None:
    policy = QueryPolicy(
        max_result_rows=100,
        warn_result_rows=10,
        denied_patterns=["^delete\\b"],
        denied_tables=["Secret"],
    )
    assert policy.row_limit(0) == 100 and policy.row_limit(5) == 5 and policy.row_limit(500) == 100
    policy.check_denylist(b"select * from ok", classify(b"select * from ok"))
    with pytest.raises(MySQLError, match=r"denylist_patterns\[0\]"):
        policy.check_denylist(b"DELETE FROM ok", classify(b"DELETE FROM ok"))
    with pytest.raises(MySQLError, match="SELECT command denied by the tablet for table 'secret'"):
        policy.check_denylist(b"select * from SECRET", classify(b"select * from SECRET"))
