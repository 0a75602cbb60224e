"""Targets (Vitess syntax) and the cheap statement classifier."""

from __future__ import annotations

import pytest

from vtwist.gate.classify import (
    KIND_BEGIN,
    KIND_COMMIT,
    KIND_DDL,
    KIND_INSERT,
    KIND_ROLLBACK,
    KIND_SAVEPOINT,
    KIND_SELECT,
    KIND_SET,
    KIND_SHOW,
    OWNED_AUTOCOMMIT,
    OWNED_CONNECTION_ID,
    OWNED_COUNT_WARNINGS,
    OWNED_DATABASES,
    OWNED_KILL,
    OWNED_KILL_QUERY,
    OWNED_LOAD_LOCAL,
    OWNED_PROCESSLIST,
    OWNED_QUERY_TIMEOUT,
    OWNED_REPLICATION_STATUS,
    OWNED_SET_NAMES,
    OWNED_SHOW_WARNINGS,
    OWNED_TABLETS,
    OWNED_USE,
    OWNED_VERSION_COMMENT,
    QueryInfo,
    chains_by_default,
    classify,
    directive_timeout_ms,
    replayable_setting,
    reusable,
    strip_comments,
    transaction_characteristics,
    transaction_end,
)
from vtwist.gate.target import Target, check_keyspace, parse_target
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.literals import interpolate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("commerce", Target("commerce", "", "primary", False)),
        ("commerce@replica", Target("commerce", "", "replica", True)),
        ("commerce@RDONLY", Target("commerce", "", "rdonly", True)),
        ("commerce@master", Target("commerce", "", "primary", True)),
        ("commerce:-80@replica", Target("commerce", "-80", "replica", True)),
        ("`commerce:0`", Target("commerce", "0", "primary", False)),
        ("@primary", Target("", "", "primary", True)),
        ("@replica", Target("", "", "replica", True)),
    ],
)
def test_parse_target(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


def test_default_type_applies_without_at() -> None:
    assert parse_target("commerce", "replica").tablet_type == "replica"
    assert parse_target("commerce@primary", "replica").tablet_type == "primary"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("commerce@leader", "unknown tablet type"),
        (":0@replica", "needs its keyspace"),
        ("com merce", "not a keyspace name"),
        ("commerce:@replica", "not a shard name"),
        ("", "no keyspace"),
    ],
)
def test_bad_target_is_1105_naming_the_syntax(text: str, why: str) -> None:
    with pytest.raises(MySQLError) as e:
        parse_target(text)
    assert e.value.code == 1105
    assert why in e.value.message
    assert "keyspace@primary|replica|rdonly" in e.value.message


def test_unknown_keyspace_is_1049() -> None:
    with pytest.raises(MySQLError) as e:
        check_keyspace(parse_target("nosuch@replica"), {"commerce"})
    assert e.value.code == 1049
    assert "Unknown database 'nosuch'" in e.value.message
    assert check_keyspace(parse_target("@primary"), {"commerce"}).keyspace == ""
    with pytest.raises(MySQLError) as e:
        check_keyspace(parse_target("information_schema"), {"commerce"})
    assert e.value.code == 1049 and "information_schema.TABLES" in e.value.message


def test_target_strings() -> None:
    assert str(parse_target("commerce:0@replica")) == "commerce:0@replica"
    assert parse_target("commerce").database() == "commerce"
    assert parse_target("commerce@replica").database() == "commerce@replica"


@pytest.mark.parametrize(
    ("sql", "kind", "write"),
    [
        (b"SELECT 1", KIND_SELECT, False),
        (b"  /* hint */ select * from t", KIND_SELECT, False),
        (b"(select 1) union (select 2)", KIND_SELECT, False),
        (b"insert into t values (1)", KIND_INSERT, True),
        (b"UPDATE t SET a=1", "update", True),
        (b"delete from t", "delete", True),
        (b"replace into t values (1)", "replace", True),
        (b"begin", KIND_BEGIN, False),
        (b"START TRANSACTION", KIND_BEGIN, False),
        (b"commit", KIND_COMMIT, False),
        (b"rollback", KIND_ROLLBACK, False),
        (b"rollback to savepoint a", KIND_SAVEPOINT, False),
        (b"show tables", KIND_SHOW, False),
        (b"create table t (a int)", KIND_DDL, True),
        (b"set global max_connections = 10", KIND_SET, True),
        (b"CALL p()", "other", True),
    ],
)
def test_kinds(sql: bytes, kind: str, write: bool) -> None:
    info = classify(sql)
    assert (info.kind, info.is_write) == (kind, write)


@pytest.mark.parametrize(
    "sql",
    [
        b"select * from t where id = 1 for update",
        b"SELECT * FROM t LOCK IN SHARE MODE",
        b"select a from t for share",
    ],
)
def test_locking_reads(sql: bytes) -> None:
    info = classify(sql)
    assert info.locks and not info.is_write and not info.is_read


def test_locking_words_in_strings_or_comments_do_not_count() -> None:
    assert not classify(b"select 'for update' from t").locks
    assert not classify(b"select a from t /* for update */").locks
    assert classify(b"select a from t").is_read


@pytest.mark.parametrize(
    "sql",
    [
        b"set @x = 1",
        b"SET SESSION sql_mode = ''",
        b"set sql_mode='ANSI'",
        b"select @x := 1",
        b"select a into @v from t",
        b"select get_lock('a', 1)",
        b"create temporary table tt (a int)",
        b"lock tables t read",
        b"select last_insert_id(5)",
        b"flush tables with read lock",
        b"FLUSH TABLES t1, t2 WITH READ LOCK",
        b"handler t open",
        b"CALL p(21, @y)",
        b"call p(\n@a, @b)",
    ],
)
def test_session_state(sql: bytes) -> None:
    info = classify(sql)
    assert info.sets_state and not info.is_read


def test_set_statement_for_is_its_inner_statement() -> None:
    info = classify(b"SET STATEMENT max_statement_time=1, sql_mode='FOR x' FOR SELECT a FROM t")
    assert (info.kind, info.is_read, info.sets_state) == ("select", True, False)
    info = classify(b"/* c */ set statement lock_wait_timeout=2 for update t set a = 1")
    assert (info.kind, info.is_write, info.sets_state) == ("update", True, False)
    assert classify(b"SET STATEMENT a=1 FOR SELECT * FROM t FOR UPDATE").locks
    assert classify(b"SET STATEMENT a=1 FOR SELECT @x := 1").sets_state
    assert classify(b"SET STATEMENT a=1").sets_state  # not a whole SET STATEMENT: as SET


def test_not_session_state() -> None:
    assert not classify(b"select '@x := 1'").sets_state
    assert not classify(b"select @@version").sets_state
    assert not classify(b"select last_insert_id()").sets_state
    assert not classify(b"set global x = 1").sets_state
    assert not classify(b"call p(@@sql_mode, 'a@b')").sets_state


@pytest.mark.parametrize(
    ("sql", "owned", "arg"),
    [
        (b"select @@version_comment limit 1", OWNED_VERSION_COMMENT, "@@version_comment"),
        (b"SELECT  CONNECTION_ID() ;", OWNED_CONNECTION_ID, "CONNECTION_ID()"),
        (b"show full processlist", OWNED_PROCESSLIST, ""),
        (b"SHOW VITESS_TABLETS", OWNED_TABLETS, ""),
        (b"show databases", OWNED_DATABASES, ""),
        (b"kill 12", OWNED_KILL, "12"),
        (b"KILL CONNECTION 12", OWNED_KILL, "12"),
        (b"kill query 7", OWNED_KILL_QUERY, "7"),
        (b"use commerce@replica", OWNED_USE, "commerce@replica"),
        (b"USE `commerce:0@rdonly`", OWNED_USE, "commerce:0@rdonly"),
        (b"SET autocommit=0", OWNED_AUTOCOMMIT, "0"),
        (b"set @@session.autocommit = ON", OWNED_AUTOCOMMIT, "1"),
        (b"SET NAMES utf8mb4", OWNED_SET_NAMES, ""),
        (b"SET NAMES 'utf8'", OWNED_SET_NAMES, ""),
        (b"show warnings", OWNED_SHOW_WARNINGS, "warnings:0:"),
        (b"SHOW ERRORS LIMIT 5;", OWNED_SHOW_WARNINGS, "errors:0:5"),
        (b"show  warnings limit 2 ,3", OWNED_SHOW_WARNINGS, "warnings:2:3"),
        (b"show warnings /* x */ limit 3 offset 2", OWNED_SHOW_WARNINGS, "warnings:2:3"),
        (b"LOAD DATA LOCAL INFILE '/tmp/a b.csv' INTO TABLE t", OWNED_LOAD_LOCAL, "/tmp/a b.csv"),
        (b"load data concurrent local infile 'it''s' into table t", OWNED_LOAD_LOCAL, "it's"),
        (
            b'LOAD XML LOW_PRIORITY LOCAL INFILE "C:\\\\x\\ty" INTO TABLE t',
            OWNED_LOAD_LOCAL,
            "C:\\x\ty",
        ),
        (b"/* c */ load data local infile 'x\"\"' into table t", OWNED_LOAD_LOCAL, 'x""'),
        (b"SHOW VITESS_REPLICATION_STATUS", OWNED_REPLICATION_STATUS, "%"),
        (b"show vitess_replication_status like 'com\\_%'", OWNED_REPLICATION_STATUS, "com\\_%"),
        (b"SET query_timeout = 250", OWNED_QUERY_TIMEOUT, "250"),
        (b"set @@session.query_timeout=0;", OWNED_QUERY_TIMEOUT, "0"),
        (b"SHOW COUNT(*) WARNINGS", OWNED_COUNT_WARNINGS, "warnings"),
        (b"show count ( * ) errors", OWNED_COUNT_WARNINGS, "errors"),
    ],
)
def test_gate_owned(sql: bytes, owned: str, arg: str) -> None:
    info = classify(sql)
    assert (info.owned, info.arg) == (owned, arg)
    assert not info.sets_state


def test_not_owned() -> None:
    assert classify(b"select @@version_comment, 1").owned is None
    assert classify(b"SET NAMES latin1").sets_state
    assert classify(b"set autocommit=0, sql_mode=''").owned is None
    # Not SHOW WARNINGS as mysqld parses it: goes on (and gets mysqld's syntax error).
    for sql in (b"show warnings limit", b"show status like '%errors%'", b"show errors 5"):
        assert classify(sql).owned is None, sql
    # Not LOCAL: mysqld reads a file of its own host (the FILE privilege decides).
    assert classify(b"LOAD DATA INFILE '/tmp/x' INTO TABLE t").owned is None
    assert classify(b"LOAD DATA INFILE '/tmp/x' INTO TABLE t").is_write


def test_strip_comments_keeps_executable_comments() -> None:
    assert b"hint" not in strip_comments(b"select /* hint */ 1 -- x\n")
    assert b"/*!40101" in strip_comments(b"/*!40101 SET NAMES utf8 */")


VALUES: list[object] = [
    None,
    0,
    -7,
    1.5,
    "x",
    "it's a 'quote' \\ and /* not a comment */ -- nor this # nor this",
    "@x := 1 FOR UPDATE LOCK IN SHARE MODE GET_LOCK('a', 1) INTO @v",
    "select @@version_comment limit 1",
    b"\x00\xff",
]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (b"SELECT c FROM sbtest1 WHERE id=?", True),
        (b"SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c", True),
        (b"UPDATE sbtest1 SET k=k+1 WHERE id=?", True),
        (b"DELETE FROM sbtest1 WHERE id=?", True),
        (b"/* c */ select a, ? from t where b in (?, ?)", True),
        (b"INSERT INTO t VALUES (?)", False),  # INTO: the state check looks again
        (b"SELECT a FROM t WHERE id = ? FOR UPDATE", False),
        (b"SELECT a FROM t WHERE id = ? LOCK IN SHARE MODE", False),
        (b"SELECT @x := ?", False),
        (b"SELECT LAST_INSERT_ID(?)", False),
        (b"SET autocommit = ?", False),
        (b"SET @x = ?", False),
        (b"KILL ?", False),
        (b"SHOW TABLES LIKE ?", False),
        (b"select @@version_comment limit ?", False),
    ],
)
def test_reusable_templates_classify_like_every_execute(template: bytes, expected: bool) -> None:
    info = classify(template)
    assert reusable(info) is expected
    if not expected:
        return
    for value in VALUES:
        params = [value] * template.count(b"?")
        sql = interpolate(template, params)
        again = QueryInfo(sql, info.kind, info.first_word, info.is_write, info.locks)
        assert classify(sql) == again, sql


@pytest.mark.parametrize(
    ("sql", "replayable"),
    [
        (b"SET SQL_AUTO_IS_NULL = 0", True),
        (b"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", True),
        (b"set /* c */ sql_mode = ''", True),
        (b"SET sql_mode = 'has@at', NAMES latin1", True),
        (b"SET NAMES latin1", True),
        (b"SET character_set_results = NULL", True),
        (
            b"SET @@SESSION.sql_mode = CONCAT(CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), "
            b"',NO_AUTO_VALUE_ON_ZERO'), @@SESSION.sql_auto_is_null = 0",
            True,
        ),
        (b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED", False),  # the next one only
        (b"set @x = 1", False),
        (b"SET sql_mode = @saved", False),
        (b"SET GLOBAL max_connections = 10", False),
        (b"SET sql_mode = @@GLOBAL.sql_mode", False),
        (b"SET PERSIST x = 1", False),
        (b"SET x = (SELECT 1)", False),
        (b"SET PASSWORD = 'x'", False),
        (b"SET ROLE r", False),
        (b"SET DEFAULT ROLE r TO u", False),
        (b"SET STATEMENT max_statement_time = 1 FOR SELECT 1", False),
        (b"SET autocommit = 0", False),  # the gate's own
        (b"SET NAMES utf8mb4", False),  # the gate's own
        (b"SELECT 1", False),
    ],
)
def test_replayable_setting(sql: bytes, replayable: bool) -> None:
    assert replayable_setting(classify(sql)) is replayable


@pytest.mark.parametrize(
    ("sql", "characteristics"),
    [
        (b"BEGIN", ""),
        (b"begin work", ""),
        (b"START TRANSACTION", ""),
        (b"start transaction read only", "READ ONLY"),
        (
            b"START  TRANSACTION\n WITH   consistent SNAPSHOT , READ WRITE;",
            "WITH CONSISTENT SNAPSHOT, READ WRITE",
        ),
        (b"/* x */ START TRANSACTION READ ONLY", "READ ONLY"),
        # mysqldump / mariadb-dump --single-transaction, and MariaDB's own form.
        (b"START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */", "WITH CONSISTENT SNAPSHOT"),
        (b"START TRANSACTION /*M!100100 READ ONLY */", "READ ONLY"),
    ],
)
def test_transaction_characteristics(sql: bytes, characteristics: str) -> None:
    assert transaction_characteristics(sql) == characteristics


@pytest.mark.parametrize(
    ("sql", "chain", "release"),
    [
        (b"COMMIT", False, False),
        (b"commit work and chain", True, False),
        (b"ROLLBACK AND NO CHAIN", False, False),
        (b"COMMIT RELEASE", False, True),
        (b"COMMIT AND NO CHAIN NO RELEASE", False, False),
        (b"rollback work and chain no release", True, False),
        (b"COMMIT /* AND CHAIN */", False, False),
    ],
)
def test_transaction_end(sql: bytes, chain: bool, release: bool) -> None:
    assert transaction_end(sql) == (chain, release)


@pytest.mark.parametrize(
    ("sql", "chains"),
    [
        (b"SET completion_type = 1", True),
        (b"SET SESSION completion_type='CHAIN'", True),
        (b"set @@session.completion_type = release", True),
        (b"SET sql_mode = '', completion_type = 2", True),
        (b"SET completion_type = 0", False),
        (b"SET completion_type = 'NO_CHAIN'", False),
        (b"SET completion_type = DEFAULT", False),
        (b"SET sql_mode = 'completion_type = 1'", False),
    ],
)
def test_chains_by_default(sql: bytes, chains: bool) -> None:
    assert chains_by_default(sql) is chains


def test_unknown_transaction_characteristic_is_a_syntax_error() -> None:
    with pytest.raises(MySQLError) as e:
        transaction_characteristics(b"START TRANSACTION READ SOMETIMES")
    assert e.value.code == 1064 and "READ SOMETIMES" in e.value.message


@pytest.mark.parametrize(
    ("sql", "ms"),
    [
        (b"SELECT /*vt+ QUERY_TIMEOUT_MS=100 */ 1", 100),
        (b"/*VT+ ALLOW_SCATTER query_timeout_ms = 7 */ select 1", 7),
        (b"select /*vt+ QUERY_TIMEOUT_MS=0 */ 1", 0),
        (b"select /* QUERY_TIMEOUT_MS=3 */ 1", None),
        (b"select '/*vt+ QUERY_TIMEOUT_MS=3 */'", None),
        (b"select /*vt+ ALLOW_SCATTER */ 1 /* QUERY_TIMEOUT_MS=4 */", None),
        (b"select 1", None),
    ],
)
def test_query_timeout_directive(sql: bytes, ms: int | None) -> None:
    assert directive_timeout_ms(sql) == ms
