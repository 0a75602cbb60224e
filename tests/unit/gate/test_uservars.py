"""User variables the gate holds (``vtwist.gate.uservars``) and a session using them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.gate.test_session import cluster
from vtwist.gate.uservars import (
    MAX_USER_VARIABLES,
    fits,
    set_literals,
    set_statement,
)


@pytest.mark.parametrize(
    ("sql", "values"),
    [
        ("SET @a = 1", {b"a": b"1"}),
        (
            "set @A:=-2.5e3, @b = 'it''s', @c=NULL ;",
            {b"a": b"-2.5e3", b"b": b"'it''s'", b"c": b"NULL"},
        ),
        ("SET @x.y$z = TRUE", {b"x.y$z": b"TRUE"}),
        ("SET @a = 1 + 1", None),  # an expression: mysqld's to compute
        ("SET @a = now()", None),
        ("SET @a = @b", None),
        ("SET @a = 1, sql_mode = ''", None),
        ("SET @`a` = 1", None),
        ("SET @a = 'x' COLLATE utf8mb4_bin", None),
        ("SET @a = 1 /* comment */", None),
        ("SET GLOBAL x = 1", None),
        ("SELECT 1", None),
    ],
)
def test_set_literals(sql: str, values: dict[bytes, bytes] | None) -> None:
    assert set_literals(sql.encode()) == values


def test_set_statement_and_bounds() -> None:
    assert set_statement({b"a": b"5", b"o`k": b"NULL"}) == "SET @`a` = 5, @`o``k` = NULL"
    many = {str(i).encode(): b"1" for i in range(MAX_USER_VARIABLES)}
    assert fits({}, many) and not fits(many, {b"one more": b"1"})
    assert fits(many, {b"0": b"2"})  # (a new value of a held name)
    assert not fits({}, {b"big": b"'" + b"x" * 70_000 + b"'"})


@given(st.binary(max_size=120))
def test_any_bytes(sql: bytes) -> None:
    values = set_literals(sql)
    assert values is None or all(isinstance(v, bytes) for v in values.values())


def test_a_session_keeps_literal_user_variables_as_a_setting() -> None:
    c = cluster()
    s = c.session(database="commerce@replica")
    c.run(s, "SET @a = 5, @Who = 'me'")
    assert all(not t.calls for t in c.services.values())  # no tablet was asked
    c.run(s, "set @a = 6")  # a new value: the same one setting, updated
    c.run(s, "select @a, @who from t")
    sent = [(a, op, args) for a, t in c.services.items() for op, args in t.calls]
    assert len(sent) == 1 and sent[0][0] in ("zone1-101", "zone1-102")  # pooled, a replica
    assert sent[0][1] == "execute" and sent[0][2].reserved_id == 0
    assert sent[0][2].sql == "select @a, @who from t"  # mysqld evaluates them
    assert sent[0][2].settings == ["SET @`a` = 6, @`who` = 'me'"]
    # State that is not a literal reserves a connection, where the settings come first.
    c.run(s, "set sql_mode = ''")
    c.run(s, "set @n = now()")
    replica = c.services[sent[0][0]]
    reserve = next(args for op, args in replica.calls if op == "reserve")
    assert reserve.settings == ["SET @`a` = 6, @`who` = 'me'", "set sql_mode = ''"]
    c.run(s, "set @a = 7")  # now on the reserved connection, and replayed after the others
    assert replica.calls[-1][1].sql == "set @a = 7" and replica.calls[-1][1].reserved_id
    assert s.settings[-2:] == ["set @n = now()", "set @a = 7"]
    # COM_RESET_CONNECTION forgets them.
    c.wait(s.reset_connection())
    assert s.user_vars == {} and s.settings == []


def test_inside_an_open_transaction_the_set_goes_to_its_connection() -> None:
    c = cluster()
    s = c.session(database="commerce")
    c.run(s, "begin")
    c.run(s, "set @early = 1")  # the transaction has not opened on a tablet yet: held
    c.run(s, "insert into t values (1)")
    c.run(s, "set @late = 2")  # now it has: the SET must reach that connection
    primary = c.services["zone1-100"]
    begin = next(args for op, args in primary.calls if op == "begin")
    assert begin.settings == ["SET @`early` = 1"]
    late = [args for op, args in primary.calls if op == "execute"][-1]
    assert late.sql == "set @late = 2" and late.transaction_id
    assert s.user_vars == {b"early": b"1"}
