"""The framework end to end with the test-only role: in this reactor, and under real twistd.

In-process: parse flags, makeService, start it on tcp:0 and fetch /metrics, /debug/health and
/debug/status with twisted.web.client.Agent. Under twistd: a plugin file in a temporary
directory names ``tests.unit.framework.dummy_tap`` exactly as a role's ServiceMaker would;
``twistd -n dummy`` serves, reloads on SIGHUP, stops on SIGTERM, and refuses a bad config
naming the key. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet import reactor as global_reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from tests.unit.framework import dummy_tap
from vtwist.config import render_example
from vtwist.service import ListenerService

pytestmark = pytest.mark.filterwarnings(
    # Twisted's own Response transport lacks abortConnection: its warning, not ours to fix.
    "ignore:Using readBody with a transport:DeprecationWarning"
)

reactor = cast(Any, global_reactor)
REPO = Path(__file__).resolve().parents[3]
EVIL = "<script>alert(1)</script>"


class InReactorTests(unittest.TestCase):
    async def fetch(self, url: str) -> tuple[int, bytes]:
        response = await Agent(reactor).request(b"GET", url.encode())  # type: ignore[no-untyped-call]  # Twisted: unannotated
        body = await readBody(response)
        return response.code, body

    async def test_role_serves_its_status(self) -> None:
        opts = dummy_tap.Options()
        opts.parseOptions(
            [
                "--alias",
                "zone1-42",
                "--http-listen",
                "tcp:0:interface=127.0.0.1",
                "--status-note",
                EVIL,
                "--mysql-app-password",
                "hunter2",
            ]
        )
        top = dummy_tap.makeService(opts)
        top.startService()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        self.addCleanup(top.stopService)
        listener = top.getServiceNamed("http-status")  # type: ignore[no-untyped-call]  # Twisted: unannotated
        assert isinstance(listener, ListenerService)
        port = (await listener.whenListening()).getHost()
        assert port.host == "127.0.0.1"  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{port.port}"  # type: ignore[attr-defined]

        code, body = await self.fetch(base + "/metrics")
        assert code == 200 and b'dummy_requests_total{kind="select"} 3.0' in body

        code, body = await self.fetch(base + "/debug/health")
        assert (code, body) == (200, b"ok\n")

        code, body = await self.fetch(base + "/debug/status")
        page = body.decode()
        assert code == 200 and "<h1>dummy zone1-42</h1>" in page
        assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "hunter2" not in page and "&lt;secret&gt;" in page

        top.role.serving = False  # type: ignore[attr-defined]
        code, body = await self.fetch(base + "/debug/health")
        assert (code, body) == (503, b"not serving: configured off\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class TwistdTests(unittest.TestCase):
    def setUp(self) -> None:
        # A system temp dir, not trial's mktemp(): under pytest that lands in the repo root.
        self.dir = Path(tempfile.mkdtemp(prefix="vtwist-dummy-role-")).resolve()
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        plugins = self.dir / "twisted" / "plugins"
        plugins.mkdir(parents=True)
        (plugins / "vtwist_dummy_plugin.py").write_text(
            "from twisted.application.service import ServiceMaker\n"
            'dummy = ServiceMaker("dummy", "tests.unit.framework.dummy_tap", '
            '"A test role.", "dummy")\n'
        )
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(self.dir), str(REPO)]))
        self.twistd = [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile="]

    def run_twistd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.twistd, "dummy", *args],
            env=self.env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_bad_flag_fails_at_start_naming_the_key(self) -> None:
        done = self.run_twistd("--alias", "zone1-1", "--pool-size", "0")
        assert done.returncode == 1
        out = done.stdout + done.stderr
        assert "pool.size: must be >= 1, got 0 (from --pool-size)" in out
        # The error is not buried under the whole --help: a synopsis, a pointer, the error.
        assert len(out.splitlines()) < 8, out
        assert "`twistd dummy --help` lists every option." in out

    def test_bad_file_fails_at_start_naming_the_key(self) -> None:
        conf = self.dir / "dummy.toml"
        conf.write_text(render_example(dummy_tap.SCHEMA).replace("min_idle = 0", "min_idle = 99"))
        done = self.run_twistd("--config", str(conf))
        assert done.returncode == 1
        assert f"pool.min_idle: must not exceed pool.size (in {conf})" in done.stdout + done.stderr

    def test_serves_reloads_and_stops(self) -> None:
        conf = self.dir / "dummy.toml"
        conf.write_text(render_example(dummy_tap.SCHEMA))
        port = free_port()
        proc = subprocess.Popen(
            [
                *self.twistd,
                "dummy",
                "--config",
                str(conf),
                "--http-listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            env=self.env,
            cwd=self.dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    status = get(base + "/debug/health")
                    break
                except OSError:
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                    assert time.monotonic() < deadline, "twistd never listened"
                    time.sleep(0.1)
            assert status == (200, "ok\n")
            code, metrics = get(base + "/metrics")
            assert code == 200 and 'dummy_requests_total{kind="select"} 3.0' in metrics

            proc.send_signal(signal.SIGHUP)
            while "<th>reloads</th><td>1</td>" not in get(base + "/debug/status")[1]:
                assert time.monotonic() < deadline, "SIGHUP hook never ran"
                time.sleep(0.1)

            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        # twistd re-raises the SIGTERM it handled after a clean shutdown.
        assert proc.returncode in (0, -signal.SIGTERM), out
        assert "dummy reloaded 1 times" in out
        assert "Main loop terminated." in out
