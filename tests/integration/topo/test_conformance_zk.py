"""The conformance suite against a real ZooKeeper (the session's shared standalone server).

Each test works under its own root path, so tests do not see each other's nodes.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial import unittest

from tests.support.servers import shared_zookeeper
from tests.unit.topo.conformance import TopoConformance
from tests.unit.topo.helpers import reactor, with_timeout
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


class ZkElectionStartTests(unittest.TestCase):
    """A candidacy opened before the client's first connection (as vtorc does at start)."""

    timeout = 60

    def test_campaign_before_connecting_logs_no_interruption(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._campaign_before_connecting())

    async def _campaign_before_connecting(self) -> None:
        events: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "vtwist.topo.zk":
                events.append(event)

        observer = cast(ILogObserver, observe)  # any callable taking the event dict will do
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        zk = shared_zookeeper()
        topo = open_topo(zk.address(f"/t{uuid.uuid4().hex[:12]}"), reactor, session_timeout=4.0)
        self.addCleanup(topo.close)
        election = topo.election("vtorc", "orc-a")  # the kazoo thread starts campaigning now
        await topo.connect(10)
        await with_timeout(election.when_leader(), 15, "the candidate to lead")
        assert election.is_leader()
        interrupted = [
            e
            for e in events
            if "interrupted" in e.get("log_format", "") and e["log_level"] != LogLevel.debug
        ]
        assert interrupted == []
        await election.resign()
