"""LOAD DATA LOCAL INFILE through vtwist's client against the real MariaDB, the file fed
from an ``IInfileReader`` in uneven pieces: a few MB arrive whole (count and checksum),
and a reader failing halfway leaves none of the rows (mysqld rolls the statement back
because the client closed the connection instead of ending the file)."""

from __future__ import annotations

import os
import zlib
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from tests.integration.client.support import connect_to, reactor, wait_for
from tests.support import servers
from vtwist.interfaces import IInfileReader
from vtwist.protocols.mysql.client import MySQLClient, Result
from vtwist.protocols.mysql.client_protocol import INFILE_PIECE
from vtwist.protocols.mysql.errors import MySQLError

pytestmark = pytest.mark.integration

# Uneven piece sizes (capped by what the client asks for), cycled.
SIZES = (1, 777, 65536 + 3, 250_001, 1 << 20, 4096, 999_999)


def rows_file(n: int) -> tuple[bytes, int, int]:
    """``n`` CSV rows ``id,text``; the file, the sum of the ids and of CRC32(text)."""
    lines = []
    crc_sum = 0
    for i in range(1, n + 1):
        text = f"row-{i:08d}-{(i * 2654435761) % 4294967296:010d}".encode()
        crc_sum += zlib.crc32(text)
        lines.append(b"%d,%s\n" % (i, text))
    return b"".join(lines), n * (n + 1) // 2, crc_sum


@implementer(IInfileReader)
class PieceReader:
    """Hands ``data`` out in uneven pieces, every other one a reactor turn later; fails
    with ``error`` once ``fail_at`` bytes were handed out (if given)."""

    def __init__(
        self, data: bytes, fail_at: int | None = None, error: MySQLError | None = None
    ) -> None:
        self.data = data
        self.pos = 0
        self.reads = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.asked: set[int] = set()
        self.fail_at = fail_at
        self.error = error

    def read(self, max_bytes: int) -> Deferred[bytes]:
        self.asked.add(max_bytes)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.reads += 1
        if self.reads % 2:
            d = deferLater(cast(IReactorTime, reactor), 0.001, self._piece, max_bytes)
        else:
            d = succeed(None).addCallback(lambda _: self._piece(max_bytes))
        return d

    def _piece(self, max_bytes: int) -> bytes:
        self.in_flight -= 1
        if self.fail_at is not None and self.pos >= self.fail_at:
            assert self.error is not None
            raise self.error
        size = min(SIZES[self.reads % len(SIZES)], max_bytes)
        piece = self.data[self.pos : self.pos + size]
        self.pos += len(piece)
        return piece


def run_load(client: MySQLClient, sql: str, reader: PieceReader) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()

    def done(outcome: Result | Failure | None) -> None:
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)

    client.stream_query_notify(sql, lambda ev: None, done, infile=reader)
    return d


class InfileTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.db = servers.shared_mariadb()
        self.table = f"infile_t_{os.getpid()}"

    async def _connect(self, **kw: Any) -> MySQLClient:
        client = await connect_to(self.db, **kw)
        self.addCleanup(client.close)
        return client

    async def _table(self) -> MySQLClient:
        admin = await self._connect()
        await admin.query(f"DROP TABLE IF EXISTS {self.table}")
        await admin.query(
            f"CREATE TABLE {self.table} (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL) ENGINE=InnoDB"
        )
        self.addCleanup(lambda: admin.query(f"DROP TABLE IF EXISTS {self.table}"))
        return admin

    def _load_sql(self) -> str:
        return (
            f"LOAD DATA LOCAL INFILE 'rows.csv' INTO TABLE {self.table}"
            " FIELDS TERMINATED BY ',' (id, v)"
        )

    def test_a_file_of_a_few_mb_streamed_in_uneven_pieces(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._streamed())

    async def _streamed(self) -> None:
        admin = await self._table()
        n = 110_000
        data, id_sum, crc_sum = rows_file(n)
        assert len(data) > 3 * 1024 * 1024
        client = await self._connect(local_files=True, read_timeout=30.0)
        reader = PieceReader(data)
        result = await run_load(client, self._load_sql(), reader)
        assert result.affected_rows == n
        assert reader.pos == len(data) and reader.reads > len(data) // INFILE_PIECE + 2
        assert reader.max_in_flight == 1 and reader.asked == {INFILE_PIECE}
        assert not client.is_broken
        r = await admin.query(f"SELECT COUNT(*), SUM(id), SUM(CRC32(v)) FROM {self.table}")
        assert r.rows == [[str(n).encode(), str(id_sum).encode(), str(crc_sum).encode()]]
        # The connection goes on as usual.
        assert (await client.query("SELECT 1")).rows == [[b"1"]]

    def test_a_reader_failing_halfway_loads_nothing(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._failing())

    async def _failing(self) -> None:
        admin = await self._table()
        data, _, _ = rows_file(60_000)
        client = await self._connect(local_files=True)
        conn_id = client.connection_id
        error = MySQLError(1159, "Got timeout reading communication packets", "08S01")
        reader = PieceReader(data, fail_at=len(data) // 2, error=error)
        with pytest.raises(MySQLError) as info:
            await run_load(client, self._load_sql(), reader)
        assert (info.value.code, info.value.message) == (error.code, error.message)
        assert client.is_broken
        assert 0 < reader.pos < len(data)

        async def gone() -> bool:
            r = await admin.query(
                f"SELECT COUNT(*) FROM information_schema.processlist WHERE id = {conn_id}"
            )
            return bool(r.rows[0][0] == b"0")

        await wait_for(gone, "mysqld ended the aborted LOAD DATA connection", timeout=30.0)
        r = await admin.query(f"SELECT COUNT(*) FROM {self.table}")
        assert r.rows == [[b"0"]]
