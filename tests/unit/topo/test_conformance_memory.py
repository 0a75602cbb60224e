"""The conformance suite on the in-memory topo (several clients on one backend)."""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from tests.unit.topo.conformance import TopoConformance
from tests.unit.topo.helpers import reactor
from vtwist.topo import MemoryTopoBackend, TopoServer, memory_topo


class MemoryConformanceTests(TopoConformance, unittest.TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.backend = MemoryTopoBackend()

    async def new_client(self) -> TopoServer:
        topo = memory_topo(reactor, self.backend)
        await topo.connect(1)
        self.addCleanup(topo.close)
        return topo

    async def expire(self, topo: TopoServer) -> None:
        conn: Any = topo.conn
        conn.expire_session()
