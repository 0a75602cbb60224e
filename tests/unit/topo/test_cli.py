"""The ``vtwist`` topo commands, run in process against the in-memory topo."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from twisted.trial import unittest

from tests.unit.topo.conformance import SHARDED_VSCHEMA, tablet
from tests.unit.topo.helpers import reactor
from vtwist.cli.main import build_parser, run
from vtwist.interfaces import ITopoServer
from vtwist.local.state import ClusterState, save_state
from vtwist.topo import MemoryTopoBackend, memory_topo, open_topo
from vtwist.topo.memory import MemoryConn

LOCAL_TOPO = "zk:127.0.0.1:1/vtwist"


class CliTests(unittest.TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.backend = MemoryTopoBackend()
        self.unreachable = False
        self.tmp = Path(tempfile.mkdtemp(prefix="vtwist-cli-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.local = self.tmp / "local"  # no local cluster until a test makes one
        self.addresses: list[str] = []

    def factory(self, address: str, auth: tuple[str, str] | None, timeout: float) -> ITopoServer:
        if address == LOCAL_TOPO:  # (the test's local cluster: recorded, served from memory)
            self.addresses.append(address)
            address = "memory:"
        topo = open_topo(address, reactor, memory_backend=self.backend)
        conn: Any = topo.conn
        assert isinstance(conn, MemoryConn)
        conn.set_reachable(not self.unreachable)
        return topo

    async def vt(self, *argv: str, topo: bool = True) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = ["--topo", "memory:", *argv] if topo else list(argv)
        code = await run(reactor, args, out, err, self.factory, environ={}, local_dir=self.local)
        return code, out.getvalue(), err.getvalue()

    async def vt_json(self, *argv: str) -> Any:
        code, out, err = await self.vt("--json", *argv)
        assert code == 0, err
        return json.loads(out)

    def write(self, name: str, content: str) -> str:
        path = self.tmp / name
        path.write_text(content)
        return str(path)

    async def test_keyspace_commands(self) -> None:
        code, out, err = await self.vt("keyspace", "create", "commerce")
        assert (code, err) == (0, "")
        assert out == "created keyspace commerce (unsharded, durability none)\n"
        created = await self.vt_json(
            "keyspace", "create", "customer", "--sharded", "--durability", "semi_sync"
        )
        assert created == {"name": "customer", "sharded": True, "durability": "semi_sync"}
        code, out, _ = await self.vt("keyspace", "list")
        assert out.splitlines()[0].split() == ["KEYSPACE", "SHARDED", "DURABILITY"]
        assert out.splitlines()[2].split() == ["customer", "yes", "semi_sync"]
        listed = await self.vt_json("keyspace", "list")
        assert [k["name"] for k in listed] == ["commerce", "customer"]
        assert (await self.vt_json("keyspace", "get", "customer"))["sharded"] is True
        code, out, err = await self.vt("keyspace", "create", "commerce")
        assert (code, out) == (1, "")
        assert err == "vtwist: error: keyspace 'commerce' already exists\n"

    async def test_shard_commands(self) -> None:
        await self.vt("keyspace", "create", "customer", "--sharded")
        code, out, _ = await self.vt("shard", "create", "customer/-80")
        assert out == "created shard customer/-80: key range -80, no primary\n"
        shard = await self.vt_json("shard", "create", "customer/80-")
        assert shard["key_range"] == {"start": "80", "end": ""}
        assert shard["primary_alias"] is None and shard["node_version"] == 0
        got = await self.vt_json("shard", "get", "customer/-80")
        assert (got["keyspace"], got["name"], got["primary_term"]) == ("customer", "-80", 0)
        assert [s["name"] for s in await self.vt_json("shard", "list", "customer")] == [
            "-80",
            "80-",
        ]
        code, _, err = await self.vt("shard", "create", "ghost/0")
        assert code == 1 and "keyspace 'ghost' does not exist: create it first" in err
        code, _, err = await self.vt("shard", "create", "customer")
        assert code == 1 and "KEYSPACE/SHARD" in err
        code, _, err = await self.vt("shard", "get", "customer/c0-")
        assert code == 1 and "shard customer/c0- does not exist" in err

    async def test_vschema_commands(self) -> None:
        await self.vt("keyspace", "create", "customer", "--sharded")
        await self.vt("keyspace", "create", "commerce")
        good = self.write("good.json", json.dumps(SHARDED_VSCHEMA))
        code, out, _ = await self.vt("vschema", "apply", "customer", "--file", good, "--dry-run")
        assert out == "would apply vschema to customer: 1 tables, 1 vindexes\n"
        code, _, err = await self.vt("vschema", "get", "customer")
        assert code == 1 and "has no vschema" in err
        summary = await self.vt_json("vschema", "apply", "customer", "--file", good)
        assert summary == {"keyspace": "customer", "applied": True, "tables": 1, "vindexes": 1}
        assert await self.vt_json("vschema", "get", "customer") == SHARDED_VSCHEMA
        code, out, _ = await self.vt("vschema", "get", "customer")
        assert json.loads(out) == SHARDED_VSCHEMA

        bad = self.write("bad.json", '{"sharded": true, "vindexes": {"h": {"type": "md6"}}}')
        code, out, err = await self.vt("vschema", "apply", "customer", "--file", bad)
        assert code == 1 and out == ""
        assert f"{bad} refused: vschema.vindexes.h.type: unknown vindex type 'md6'" in err
        code, _, err = await self.vt("vschema", "apply", "commerce", "--file", good)
        assert code == 1 and "keyspace 'commerce' is unsharded" in err
        code, _, err = await self.vt("vschema", "apply", "customer", "--file", self.write("x", "{"))
        assert code == 1 and "not valid JSON" in err
        code, _, err = await self.vt("vschema", "apply", "customer", "--file", "/nonexistent/f")
        assert code == 1 and "cannot read /nonexistent/f" in err
        assert await self.vt_json("vschema", "get", "customer") == SHARDED_VSCHEMA  # unchanged

    async def test_tablets_command(self) -> None:
        code, out, _ = await self.vt("tablets")
        assert (code, out) == (0, "no tablets\n")
        owner = memory_topo(reactor, self.backend)
        await owner.connect(1)
        self.addCleanup(owner.close)
        await owner.register_tablet(tablet("zone1-100", tablet_type="primary", serving=True))
        await owner.register_tablet(tablet("zone2-200"))
        listed = await self.vt_json("tablets")
        assert [(t["alias"], t["cell"], t["type"]) for t in listed] == [
            ("zone1-100", "zone1", "primary"),
            ("zone2-200", "zone2", "replica"),
        ]
        assert [t["alias"] for t in await self.vt_json("tablets", "--cell", "zone2")] == [
            "zone2-200"
        ]
        code, out, _ = await self.vt("tablets", "--cell", "zone1")
        header, row = out.splitlines()
        assert header.split()[:3] == ["CELL", "ALIAS", "KEYSPACE"]
        assert row.split()[:7] == ["zone1", "zone1-100", "commerce", "0", "primary", "yes",
                                   "127.0.0.1:3306"]  # fmt: skip
        code, _, err = await self.vt("tablets", "--cell", "Zone-1")
        assert code == 1 and "cell name 'Zone-1' is invalid" in err

    async def test_topo_errors(self) -> None:
        code, out, err = await self.vt("keyspace", "list", topo=False)
        assert code == 2 and "no topo address" in err and "VTWIST_TOPO" in err
        # The local cluster of `vtwist up` (its cluster.json) is the fallback.
        self.local.mkdir()
        state = ClusterState("zone1", [], 1, 2, {}, {}, {}, {}, zookeeper_hosts="127.0.0.1:1")
        save_state(self.local, state)
        code, out, err = await self.vt("keyspace", "list", topo=False)
        assert code == 0 and self.addresses == [LOCAL_TOPO], err
        self.unreachable = True
        code, out, err = await self.vt("keyspace", "list", "--topo-timeout", "0.05")
        assert (code, out) == (3, "")
        assert err.startswith("vtwist: error: topo unreachable at memory:")
        code, out, err = await self.vt("--json", "keyspace", "list", "--topo-timeout", "0.05")
        assert code == 3 and json.loads(err)["error"]["kind"] == "unavailable"
        for bad in ("-1", "nan"):
            code, out, err = await self.vt("keyspace", "list", "--topo-timeout", bad)
            assert (code, out) == (1, "")
            assert err == (
                f"vtwist: error: topo connect timeout {float(bad)!r} is invalid:"
                " give a number of seconds >= 0\n"
            )
        code, _, err = await self.vt("--topo", "zk:nohost", "keyspace", "list", topo=False)
        assert code == 1 and "not HOST:PORT" in err
        assert "Traceback" not in err

    def test_usage_errors_exit_2(self) -> None:
        parser = build_parser()
        for argv in ([], ["keyspace"], ["keyspace", "create"], ["frobnicate"]):
            with pytest.raises(SystemExit) as e:
                parser.parse_args(argv)
            assert e.value.code == 2
        args = parser.parse_args(["keyspace", "list", "--json"])
        assert args.json is True
        args = parser.parse_args(["--json", "--topo", "zk:h:1", "keyspace", "list"])
        assert args.json is True and args.topo == "zk:h:1"
