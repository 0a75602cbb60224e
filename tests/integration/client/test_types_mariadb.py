"""Every MySQL column type through the real MariaDB in both row formats: text-protocol rows
(raw and parsed) and binary-protocol rows must give the same, expected Python values;
prepared-statement parameters of every type (NULL, and re-executions with
new-params-bound = 0) must store those values."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from tests.integration.client.alltypes import CREATE, NAMES, ROWS, SESSION, insert_sql
from tests.integration.client.support import connect_to
from tests.support import servers
from vtwist.protocols.mysql.client import MySQLClient
from vtwist.protocols.mysql.commands import ComStmtExecute
from vtwist.protocols.mysql.values import DateValue

pytestmark = pytest.mark.integration

SELECT = f"SELECT {', '.join(NAMES)} FROM all_types WHERE id BETWEEN ? AND ? ORDER BY id"


class TypeTests(unittest.TestCase):
    timeout = 120

    async def _setup(self) -> MySQLClient:
        c = await connect_to(servers.shared_mariadb())
        self.addCleanup(c.close)
        for sql in SESSION:
            await c.query(sql)
        await c.query("DROP TEMPORARY TABLE IF EXISTS all_types")
        await c.query(CREATE.replace("CREATE TABLE", "CREATE TEMPORARY TABLE"))
        return c

    async def _both_formats(self, c: MySQLClient, low: int, high: int) -> list[list[Any]]:
        """The rows with ids in [low, high] as text (parsed) and binary rows; they agree."""
        text_sql = SELECT.replace("?", str(low), 1).replace("?", str(high), 1)
        raw = await c.query(text_sql)
        parsed = await c.query(text_sql, python=True)
        stmt = await c.prepare(SELECT)
        binary = await c.execute(stmt, [low, high])
        await c.close_statement(stmt)
        assert [col.name for col in binary.columns] == NAMES
        for raw_row, text_row, bin_row in zip(raw.rows, parsed.rows, binary.rows, strict=True):
            for name, r, t, b in zip(NAMES, raw_row, text_row, bin_row, strict=True):
                assert t == b, (name, r, t, b)
                assert (r is None) == (b is None), name
        assert len(parsed.rows) == high - low + 1
        return parsed.rows

    def test_every_type_in_both_row_formats(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._every_type())

    async def _every_type(self) -> None:
        c = await self._setup()
        for row_id in ROWS:
            await c.query(insert_sql(row_id))
        rows = await self._both_formats(c, 1, len(ROWS))
        for row_id, row in zip(ROWS, rows, strict=True):
            expected = ROWS[row_id][1]
            for name, got, want in zip(NAMES, row, expected, strict=True):
                assert got == want, (row_id, name, got, want)
                assert type(got) is type(want), (row_id, name, got, want)
        # mysqld's text form of every temporal value is what ``values`` formats it to, with
        # the column's number of fraction digits.
        raw = await c.query("SELECT dt, tm, tm6, dtm, ts FROM all_types ORDER BY id")
        decimals = [col.decimals for col in raw.columns]
        for raw_row, row in zip(raw.rows, rows, strict=True):
            temporal = row[NAMES.index("dt") : NAMES.index("ts") + 1]
            formatted = [
                None if v is None else str(v) if isinstance(v, DateValue) else v.format(n)
                for v, n in zip(temporal, decimals, strict=True)
            ]
            assert raw_row == [None if f is None else f.encode() for f in formatted]

    def test_parameters_of_every_type(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._parameters())

    async def _parameters(self) -> None:
        c = await self._setup()
        sent: list[ComStmtExecute] = []
        conn = c.protocol.conn
        original = conn.send

        def spy(msg: Any) -> bytes:
            if isinstance(msg, ComStmtExecute):
                sent.append(msg)
            return original(msg)

        conn.send = spy  # type: ignore[method-assign, assignment]
        marks = ", ".join(["?"] * (len(NAMES) + 1))
        ins = await c.prepare(f"INSERT INTO all_types VALUES ({marks})")
        assert ins.num_params == len(NAMES) + 1
        # Row 1 with character strings as str (VAR_STRING), the others as bytes (BLOB).
        as_str = {"c", "vc", "t", "j", "e", "st"}
        first = [
            v.decode() if n in as_str and isinstance(v, bytes) else v
            for n, v in zip(NAMES, ROWS[1][1], strict=True)
        ]
        plan = [(11, 1), (12, 2), (13, 2), (14, 3), (15, 4), (16, 3), (17, 3)]
        for row_id, source in plan:
            values = first if source == 1 else ROWS[source][1]
            r = await c.execute(ins, [row_id, *values])
            assert r.affected_rows == 1
        # Types are sent only when they change: a repeated execute has new-params-bound = 0
        # and mysqld reuses what it has (row 3 has signed zeros where row 2 has an
        # unsigned BIGINT; row 4 is all NULL).
        assert [m.new_params_bound for m in sent] == [True, True, False, True, True, True, False]
        assert sent[2].param_types == sent[1].param_types
        rows = await self._both_formats(c, 11, 17)
        for (row_id, source), row in zip(plan, rows, strict=True):
            for name, got, want in zip(NAMES, row, ROWS[source][1], strict=True):
                assert got == want, (row_id, name, got, want)
