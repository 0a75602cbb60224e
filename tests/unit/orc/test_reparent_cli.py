"""``vtwist reparent`` in process against the in-memory topo: usage and error paths (the
happy paths run on a real cluster in tests/integration/local/test_failover.py)."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.trial import unittest

from tests.unit.topo.helpers import reactor
from vtwist.cli.main import run
from vtwist.interfaces import ITopoServer
from vtwist.topo import Keyspace, MemoryTopoBackend, Shard, memory_topo, open_topo
from vtwist.topo.memory import MemoryConn


class ReparentCliTests(unittest.TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.backend = MemoryTopoBackend()
        self.unreachable = False

    def factory(self, address: str, auth: tuple[str, str] | None, timeout: float) -> ITopoServer:
        topo = open_topo(address, reactor, memory_backend=self.backend)
        conn: Any = topo.conn
        assert isinstance(conn, MemoryConn)
        conn.set_reachable(not self.unreachable)
        return topo

    async def vt(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = await run(reactor, ["--topo", "memory:", *argv], out, err, self.factory, {})
        return code, out.getvalue(), err.getvalue()

    async def test_bad_names_and_missing_shard(self) -> None:
        code, _, err = await self.vt("reparent", "planned", "nope")
        assert code == 1 and "is not KEYSPACE/SHARD" in err, err
        code, _, err = await self.vt(
            "reparent", "planned", "commerce/0", "--new-primary", "bad alias"
        )
        assert code == 1 and "alias" in err, err
        code, _, err = await self.vt("--json", "reparent", "emergency", "commerce/0")
        assert code == 1
        error = json.loads(err)["error"]
        assert "emergency reparent of commerce/0 failed at step read" in error["message"]

    async def test_a_shard_without_a_live_primary_points_to_emergency(self) -> None:
        topo = memory_topo(reactor, self.backend)
        await topo.connect(5)
        await topo.create_keyspace(Keyspace("commerce"))
        await topo.create_shard(
            Shard("commerce", "0", primary_alias="zone1-0000000100", primary_term=2)
        )
        await topo.close()
        code, _, err = await self.vt("reparent", "planned", "commerce/0")
        assert code == 1, err
        assert "failed at step check" in err and "use vtwist reparent emergency" in err
        code, _, err = await self.vt("reparent", "emergency", "commerce/0")
        assert code == 1 and "no live replica tablet" in err, err

    async def test_unreachable_topo(self) -> None:
        self.unreachable = True
        code, _, err = await self.vt("--topo-timeout", "0.5", "reparent", "planned", "commerce/0")
        assert code == 3 and "unreachable" in err, err
