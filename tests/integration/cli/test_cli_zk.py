"""The ``vtwist`` console script against a real ZooKeeper, including its error paths.

Each test runs the installed script in a subprocess under its own topo root, as an
operator would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from vtwist.local.procs import free_port
from vtwist.local.zookeeper import ZooKeeper

pytestmark = pytest.mark.integration

VTWIST = str(Path(sys.executable).with_name("vtwist"))
VSCHEMA = {
    "sharded": True,
    "vindexes": {"hash": {"type": "hash"}},
    "tables": {"customer": {"column_vindexes": [{"column": "id", "name": "hash"}]}},
}


RESULTS: list[subprocess.CompletedProcess[str]] = []


def vtwist(
    *args: str, topo: str | None, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VTWIST_")}
    if topo is not None:
        environ["VTWIST_TOPO"] = topo
    environ.update(env)
    result = subprocess.run(
        [VTWIST, *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
        cwd=cwd,
    )
    RESULTS.append(result)
    return result


@pytest.fixture
def topo(zookeeper: ZooKeeper) -> str:
    return zookeeper.address(f"/cli{uuid.uuid4().hex[:12]}")


def test_admin_commands_end_to_end(topo: str, tmp_path: Path) -> None:
    r = vtwist(
        "keyspace", "create", "customer", "--sharded", "--durability", "semi_sync", topo=topo
    )
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == "created keyspace customer (sharded, durability semi_sync)\n"
    assert vtwist("shard", "create", "customer/-80", topo=topo).returncode == 0
    r = vtwist("--json", "shard", "create", "customer/80-", topo=topo)
    assert json.loads(r.stdout)["key_range"] == {"start": "80", "end": ""}
    vschema = tmp_path / "vschema.json"
    vschema.write_text(json.dumps(VSCHEMA))
    r = vtwist("vschema", "apply", "customer", "--file", str(vschema), topo=topo)
    assert r.stdout == "applied vschema to customer: 1 tables, 1 vindexes\n"
    r = vtwist("vschema", "get", "customer", "--json", topo=topo)
    assert json.loads(r.stdout) == VSCHEMA
    r = vtwist("keyspace", "list", "--json", topo=topo)
    assert json.loads(r.stdout) == [
        {"name": "customer", "sharded": True, "durability": "semi_sync"}
    ]
    r = vtwist("shard", "get", "customer/-80", topo=topo)
    assert r.stdout == "shard customer/-80: key range -80, no primary\n"
    r = vtwist("tablets", "--json", topo=None, VTWIST_TOPO=topo)
    assert (r.returncode, json.loads(r.stdout)) == (0, [])


# A tablet process: registers two tablets, keeps its session until stdin closes.
TABLET_PROCESS = """
import sys
from twisted.internet import task, threads
from twisted.internet.defer import Deferred
from vtwist.topo import Tablet, open_topo

async def main(reactor):
    topo = open_topo(sys.argv[1], reactor)
    await topo.connect(10)
    await topo.register_tablet(Tablet("zone1-100", "customer", "-80", "primary",
                                      mysql_port=17100, serving=True, primary_term=2))
    await topo.register_tablet(Tablet("zone2-200", "customer", "80-"))
    print("registered", flush=True)
    await threads.deferToThread(sys.stdin.read)
    await topo.close()

task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
"""


def test_tablets_lists_live_tablets_of_every_cell_or_one(topo: str) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", TABLET_PROCESS, topo],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "registered\n"
        r = vtwist("tablets", "--json", topo=topo)
        assert r.returncode == 0, r.stderr
        assert [(t["cell"], t["alias"], t["type"], t["serving"]) for t in json.loads(r.stdout)] == [
            ("zone1", "zone1-100", "primary", True),
            ("zone2", "zone2-200", "replica", False),
        ]
        r = vtwist("tablets", "--cell", "zone1", topo=topo)
        header, row = r.stdout.splitlines()
        assert header.split()[:5] == ["CELL", "ALIAS", "KEYSPACE", "SHARD", "TYPE"]
        assert row.split()[:8] == [
            "zone1", "zone1-100", "customer", "-80", "primary", "yes", "127.0.0.1:17100", "2"
        ]  # fmt: skip
    finally:
        if owner.stdin is not None:
            owner.stdin.close()  # the owner closes its session: its tablets vanish
        owner.wait(timeout=30)
    assert owner.returncode == 0
    r = vtwist("tablets", topo=topo)
    assert (r.returncode, r.stdout) == (0, "no tablets\n")


def test_error_paths_give_a_message_and_status_not_a_traceback(topo: str, tmp_path: Path) -> None:
    dead = f"zk:127.0.0.1:{free_port()}/vtwist"
    r = vtwist("keyspace", "list", "--topo-timeout", "1", topo=dead)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.startswith(f"vtwist: error: topo unreachable at {dead}")
    r = vtwist("--json", "keyspace", "list", "--topo-timeout", "1", topo=dead)
    assert r.returncode == 3 and json.loads(r.stderr)["error"]["kind"] == "unavailable"

    with socket.socket() as silent:  # accepts connections, never answers: a paused server
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        mute = f"zk:127.0.0.1:{silent.getsockname()[1]}/vtwist"
        r = vtwist("tablets", "--topo-timeout", "1", topo=mute)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr.startswith(f"vtwist: error: topo unreachable at {mute}")

    r = vtwist("keyspace", "list", topo=None, cwd=tmp_path)  # (no ./.vtwist there either)
    assert r.returncode == 2 and "no topo address" in r.stderr

    assert vtwist("keyspace", "create", "commerce", topo=topo).returncode == 0
    r = vtwist("keyspace", "create", "commerce", topo=topo)
    assert r.returncode == 1 and r.stderr == "vtwist: error: keyspace 'commerce' already exists\n"

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sharded": True, "tables": {"t": {"column_vindexes": []}}}))
    r = vtwist("vschema", "apply", "commerce", "--file", str(bad), topo=topo)
    assert r.returncode == 1
    assert "refused: vschema.tables.t: a table of a sharded keyspace needs column_vindexes" in (
        r.stderr
    )
    r = vtwist("keyspace", "create", "bad-name", topo=topo)
    assert r.returncode == 1 and "keyspace name 'bad-name' is invalid" in r.stderr
    r = vtwist("keyspace", "frobnicate", topo=topo)
    assert r.returncode == 2 and "usage:" in r.stderr

    auth = tmp_path / "auth"
    auth.write_text("no-colon\n")
    r = vtwist("keyspace", "list", "--topo-auth-file", str(auth), topo=topo)
    assert r.returncode == 1 and "must hold one line 'user:password'" in r.stderr

    assert len(RESULTS) >= 10
    assert not [x.args for x in RESULTS if "Traceback" in x.stderr + x.stdout]
