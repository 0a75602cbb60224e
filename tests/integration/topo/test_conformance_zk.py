"""The conformance suite against a real ZooKeeper (the session's shared standalone server).

Each test works under its own root path, so tests do not see each other's nodes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from twisted.trial import unittest

from tests.support.servers import shared_zookeeper
from tests.unit.topo.conformance import TopoConformance
from tests.unit.topo.helpers import reactor
from vtwist.topo import TopoServer, open_topo

pytestmark = pytest.mark.integration


class ZkConformanceTests(TopoConformance, unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.zk = shared_zookeeper()
        self.root = f"/t{uuid.uuid4().hex[:12]}"

    async def new_client(self) -> TopoServer:
        topo = open_topo(self.zk.address(self.root), reactor, session_timeout=4.0, op_timeout=5.0)
        await topo.connect(10)
        self.addCleanup(topo.close)
        return topo

    async def expire(self, topo: TopoServer) -> None:
        conn: Any = topo.conn
        await conn.expire_session()
