"""ZooKeeper-only behaviour: digest ACLs, an unreachable server, and the launcher itself."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from twisted.trial import unittest

from tests.support.servers import scratch_dir, shared_zookeeper
from tests.unit.topo.conformance import tablet
from tests.unit.topo.helpers import reactor
from vtwist.local.procs import free_port, pid_alive, port_open
from vtwist.local.zookeeper import ZooKeeper, four_letter_word
from vtwist.topo import Keyspace, Shard, TopoServer, open_topo
from vtwist.topo.errors import PermissionDeniedError, TopoUnavailableError

pytestmark = pytest.mark.integration


class ZkOnlyTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.zk = shared_zookeeper()
        self.root = f"/z{uuid.uuid4().hex[:12]}"

    async def client(self, auth: tuple[str, str] | None = None) -> TopoServer:
        topo = open_topo(self.zk.address(self.root), reactor, session_timeout=4.0, auth=auth)
        await topo.connect(10)
        self.addCleanup(topo.close)
        return topo

    async def test_digest_credentials_make_nodes_creator_all_world_read(self) -> None:
        owner = await self.client(auth=("vtwist", "s3cret"))
        stranger = await self.client()
        ks = await owner.create_keyspace(Keyspace("commerce"))
        await owner.create_shard(Shard.new("commerce", "0"))
        await owner.register_tablet(tablet("zone1-100"))
        assert (await stranger.get_keyspace("commerce")).name == "commerce"  # world-read
        assert [t.alias for t in await stranger.list_tablets("zone1")] == ["zone1-100"]
        with pytest.raises(PermissionDeniedError):
            await stranger.update_keyspace(ks)
        with pytest.raises(PermissionDeniedError):
            await stranger.create_shard(Shard.new("commerce", "1"))
        with pytest.raises(PermissionDeniedError):
            await stranger.register_tablet(tablet("zone1-101"))
        colleague = await self.client(auth=("vtwist", "s3cret"))  # same identity: may write
        await colleague.update_keyspace(ks)

    async def test_unreachable_server_fails_connect_with_clear_error(self) -> None:
        port = free_port()
        topo = open_topo(f"zk:127.0.0.1:{port}/vtwist", reactor)
        with pytest.raises(TopoUnavailableError) as e:
            await topo.connect(0.5)
        assert f"127.0.0.1:{port}" in str(e.value)
        assert topo.state() == "connecting"
        with pytest.raises(TopoUnavailableError):
            await topo.list_keyspaces()
        await topo.close()
        assert topo.state() == "closed"


def test_launcher_standalone_answers_four_letter_words_and_stops_by_pid() -> None:
    zk = ZooKeeper(Path(scratch_dir("zk-launcher")))
    with zk:
        [node] = zk.nodes
        assert zk.leader() is node and node.mode() == "standalone"
        assert four_letter_word("127.0.0.1", node.client_port, "ruok") == "imok"
        assert zk.address("/x") == f"zk:127.0.0.1:{node.client_port}/x"
        cfg = node.cfg_path.read_text()
        assert "admin.enableServer=false" in cfg and "clientPortAddress=127.0.0.1" in cfg
        pid = node.pid
        assert pid is not None and pid_alive(pid)
        zk.stop()
        assert not pid_alive(pid) and not port_open("127.0.0.1", node.client_port)
        assert node.mode() is None
        node.start()  # restarts on the same port and data
        assert node.serving()
        node.pause()  # SIGSTOP: the port accepts but nothing answers
        assert node.mode() is None and node.running()
        node.resume()
        node.wait_serving(10)
    assert not zk.base_dir.exists()


def test_launcher_rejects_even_ensembles() -> None:
    with pytest.raises(ValueError, match="odd"):
        ZooKeeper(Path("/nonexistent"), size=2)
