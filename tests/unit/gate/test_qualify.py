"""Keyspace qualifiers and statements that need no database (``vtwist.gate.qualify``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.gate.classify import classify
from vtwist.gate.qualify import named_keyspaces, needs_database

NAMES = ("commerce", "customer", "cust")


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("select * from customer.t", {"customer"}),
        ("SELECT * FROM `customer`.`t` JOIN commerce.u ON 1", {"customer", "commerce"}),
        ("insert into cust.t values (1)", {"cust"}),
        ("INSERT IGNORE customer.t VALUES (1)", {"customer"}),
        ("create table if not exists customer.t (a int)", {"customer"}),
        ("truncate customer.t", {"customer"}),
        ("lock tables customer.t read", {"customer"}),
        ("call customer.p()", {"customer"}),
        ("show tables from customer like 'a%'", {"customer"}),
        ("SHOW FULL TABLES IN `customer`", {"customer"}),
        ("show index from t in customer", {"customer"}),
        ("show create database customer", {"customer"}),
        # Not qualifiers.
        ("show columns from customer", set()),  # a table named like a keyspace
        ("select customer.id from t as customer", set()),  # a column's table alias
        ("select 'from customer.t'", set()),
        ('select "from customer.t"', set()),
        ("select 1 -- from customer.t", set()),
        ("select 1 /* from customer.t */", set()),
        ("select * from customers.t", set()),
        ("select * from Customer.t", set()),  # database names are case-sensitive
        ("select * from t", set()),
    ],
)
def test_named_keyspaces(sql: str, named: set[str]) -> None:
    assert named_keyspaces(sql.encode(), NAMES) == named


@pytest.mark.parametrize(
    ("sql", "needs"),
    [
        ("select 1", False),
        ("select @@sql_mode, now() from dual", False),
        ("select * from information_schema.tables where table_schema = 'x'", False),
        ("select * from `mysql`.`user` u join sys.version v", False),
        ("set names latin1", False),
        ("set sql_mode = ''", False),
        ("do sleep(0)", False),
        ("show variables like 'x%'", False),
        ("show global status", False),
        ("show tables from information_schema", False),
        ("select * from t", True),
        ("select 1 from dual where exists (select 1 from t)", True),
        ("select * from (select 1) x", True),
        ("select * from information_schema.tables, t", True),
        ("select a, b from information_schema.tables where x in (1, 2) order by a, b", False),
        ("show tables", True),
        ("show full columns from t", True),
        ("show create table t", True),
        ("describe t", True),
        ("insert into t values (1)", True),
        ("create table t (a int)", True),
        ("call p()", True),
    ],
)
def test_needs_database(sql: str, needs: bool) -> None:
    assert needs_database(classify(sql.encode())) is needs


@given(st.binary(max_size=200))
def test_any_bytes_are_answered(sql: bytes) -> None:
    assert named_keyspaces(sql, NAMES) <= set(NAMES)
    assert needs_database(classify(sql)) in (True, False)
