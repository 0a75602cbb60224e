# Failure.trap is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""``twistd -n vttablet --config FILE`` as a real process against a private MariaDB and the
session's ZooKeeper: it registers its ephemeral node and serves over the tablet RPC; stopping
its mysqld flips it to not serving in the node and on a real RPC health stream; after SIGKILL
its node vanishes within the ZooKeeper session timeout. A bad config stops it at start."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial import unittest

from tests.integration.tablet.harness import DATABASE, first_value, reactor, sleep
from tests.support import servers
from vtwist.config import render_example
from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import pid_alive
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient, TabletRPCClientFactory
from vtwist.tablet.config import ENV_DBA_PASSWORD, SCHEMA
from vtwist.topo import Keyspace, open_topo
from vtwist.topo.errors import NoNodeError
from vtwist.topo.records import Tablet

pytestmark = pytest.mark.integration

TWISTD = str(Path(sys.executable).with_name("twistd"))
SESSION_TIMEOUT = 2.0
ALIAS = "zone1-0000000100"


def write_config(directory: Path) -> Path:
    """The generated example file (every key documented), as twistd will read it."""
    path = directory / "vttablet.toml"
    path.write_text(render_example(SCHEMA))
    return path


def twistd_args(config: Path, directory: Path, **flags: Any) -> list[str]:
    args = [TWISTD, "-n", "--pidfile=", f"--logfile={directory / 'twistd.log'}", "vttablet"]
    args += ["--config", str(config)]
    for key, value in flags.items():
        args += [f"--{key.replace('.', '-').replace('_', '-')}", str(value)]
    return args


class TwistdTabletTests(unittest.TestCase):
    timeout = 60

    def test_twistd_tablet_serves_flips_when_mysqld_stops_and_vanishes_when_killed(
        self,
    ) -> Deferred[None]:
        return Deferred.fromCoroutine(self._e2e())

    async def _e2e(self) -> None:
        zk = servers.shared_zookeeper()
        # A private mysqld: this test stops it (never the session's shared one).
        db: MariaDB = await deferToThread(
            lambda: MariaDB(servers.scratch_dir("e2e-mariadb")).start()
        )
        self.addCleanup(deferToThread, db.destroy)
        directory = servers.scratch_dir("twistd-tablet")
        root = f"/e2e_{secrets.token_hex(4)}"
        address = zk.address(root)
        topo = open_topo(address, cast(IReactorTime, reactor), session_timeout=SESSION_TIMEOUT)
        await topo.connect(10.0)
        self.addCleanup(topo.close)
        await topo.create_keyspace(Keyspace("commerce"))

        app_pw = directory / "app_password"
        app_pw.write_text(db.password + "\n")
        args = twistd_args(
            write_config(directory),
            directory,
            **{
                "alias": ALIAS,
                "tablet_type": "primary",
                "topo.address": address,
                "topo.session_timeout": f"{SESSION_TIMEOUT}s",
                # The tablet's own connections use the socket; the TCP port is published.
                "mysql.socket": db.socket_path,
                "mysql.port": db.port,
                "mysql.database": DATABASE,
                "mysql.app_user": db.user,
                "mysql.app_password_file": app_pw,
                "mysql.dba_user": db.user,
                "rpc.listen": "tcp:0:interface=127.0.0.1",
                "http.listen": "tcp:0:interface=127.0.0.1",
                "health.interval": "200ms",
            },
        )
        env = {**os.environ, ENV_DBA_PASSWORD: db.password}
        proc = subprocess.Popen(
            args, cwd=directory, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.addCleanup(_stop, proc)

        tablet = await _wait_node(topo, lambda t: t.serving and t.rpc_port > 0, proc, directory)
        assert tablet.tablet_type == "primary" and tablet.keyspace == "commerce"
        assert tablet.mysql_port == db.port and tablet.http_port > 0

        endpoint = TCP4ClientEndpoint(cast(IReactorTCP, reactor), "127.0.0.1", tablet.rpc_port)
        client = await endpoint.connect(TabletRPCClientFactory(cast(IReactorTime, reactor)))
        assert isinstance(client, TabletRPCClient)
        self.addCleanup(client.close)
        hello = await client.when_ready()
        assert hello is not None
        health: list[dict[str, Any]] = []
        subscription = client.stream_health(health.append)
        subscription.addErrback(_ended)
        r = await client.execute("SELECT 40 + 2")
        assert first_value(r.rows[0]) == b"42"
        r = await client.execute("SELECT USER()")  # over the socket, not loopback TCP
        assert first_value(r.rows[0]) == f"{db.user}@localhost".encode()
        tx = await client.begin(target="commerce:0@primary")
        await client.execute("SELECT 1", transaction_id=tx)
        assert await client.commit(tx) == 0
        await _until(lambda: bool(health) and health[-1]["serving"] is True, "serving pushed")

        log = (directory / "twistd.log").read_text()
        assert "Traceback" not in log, log[-3000:]

        # mysqld goes away: the health stream and the topo node both say not serving.
        await deferToThread(db.stop)
        await _until(lambda: health[-1]["serving"] is False, "not serving on the health stream")
        assert health[-1]["error"], health[-1]
        assert health[-1]["alias"] == ALIAS
        await _wait_node(topo, lambda t: not t.serving, proc, directory)
        err: MySQLError | None = None
        try:
            await client.execute("SELECT 1")
        except MySQLError as e:
            err = e
        assert err is not None  # no answer from a tablet without its mysqld
        subscription.cancel()

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        while True:
            try:
                await topo.get_tablet(ALIAS)
            except NoNodeError:
                break
            assert time.monotonic() - killed_at < SESSION_TIMEOUT + 3.0, (
                "the node outlived the session timeout"
            )
            await sleep(0.1)


def _ended(failure: Failure) -> None:
    """The health subscription ends by our cancel, or when the tablet is killed."""
    failure.trap(CancelledError, MySQLError)


async def _until(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not true after {timeout}s: {what}"
        await sleep(0.05)


async def _wait_node(
    topo: Any, ready: Any, proc: subprocess.Popen[bytes], directory: Path, timeout: float = 30.0
) -> Tablet:
    deadline = time.monotonic() + timeout
    last: Tablet | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (directory / "twistd.log").read_text()[-3000:]
            raise AssertionError(f"twistd exited with {proc.returncode}:\n{log}")
        try:
            last = await topo.get_tablet(ALIAS)
        except NoNodeError:
            last = None
        if last is not None and ready(last):
            return last
        await sleep(0.1)
    log = (directory / "twistd.log").read_text()[-3000:]
    raise AssertionError(f"tablet node not ready: {last}\n{log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None and pid_alive(proc.pid):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_bad_config_stops_twistd_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    args = twistd_args(config, tmp_path, **{"pool.query.size": 0, "topo.address": "memory:"})
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "pool.query.size: must be >= 1, got 0 (from --pool-query-size)" in (
        out.stdout + out.stderr
    )


def test_twistd_help_lists_every_key(tmp_path: Path) -> None:
    out = subprocess.run(
        [TWISTD, "-n", "vttablet", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Usage: twistd [options] vttablet [--config FILE] [options]" in out.stdout
    for opt in SCHEMA:
        assert f"--{opt.flag}=" in out.stdout, opt.key
        assert f"{opt.key}:" in out.stdout, opt.key
