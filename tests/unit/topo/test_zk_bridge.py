"""The kazoo bridge without a server: the state listener only hands over to the reactor,
and kazoo states map onto TopoState events (with ``new_session`` after an expiry)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

import vtwist
from vtwist.topo.conn import ConnEvent, TopoState
from vtwist.topo.errors import TopoUnavailableError
from vtwist.topo.zk import ZkConfig, ZkConn


class FakeReactor(Clock):
    """A Clock that records callFromThread calls instead of running them."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def callFromThread(self, fn: Callable[..., object], *args: Any) -> None:
        self.from_threads.append((fn, args))

    def run_pending(self) -> None:
        calls, self.from_threads = self.from_threads, []
        for fn, args in calls:
            fn(*args)


def make_conn() -> tuple[ZkConn, FakeReactor, list[ConnEvent]]:
    reactor = FakeReactor()
    conn = ZkConn(reactor, ZkConfig(hosts="127.0.0.1:1"))
    events: list[ConnEvent] = []
    conn.add_listener(events.append)
    return conn, reactor, events


def test_kazoo_listener_only_hands_over_to_the_reactor() -> None:
    conn, reactor, events = make_conn()
    calls: list[str] = []
    conn.client = _Spy(conn.client, calls)  # any ZooKeeper call would be recorded
    thread = threading.Thread(target=conn._kazoo_listener, args=("SUSPENDED",))
    thread.start()
    thread.join()
    assert calls == ["client_id"]  # reading the session id is all it does
    assert len(reactor.from_threads) == 1 and events == []


def test_state_mapping_and_new_session_after_expiry() -> None:
    conn, _reactor, events = make_conn()
    conn._on_kazoo_state("LOST", None)  # kazoo's initial state: ignored
    conn._on_kazoo_state("CONNECTED", 0x10)
    conn._on_kazoo_state("SUSPENDED", 0x10)
    conn._on_kazoo_state("CONNECTED", 0x10)  # same session: nothing to re-create
    conn._on_kazoo_state("SUSPENDED", 0x10)
    conn._on_kazoo_state("LOST", 0x10)
    conn._on_kazoo_state("CONNECTED", 0x11)
    assert [(e.state, e.new_session) for e in events] == [
        (TopoState.CONNECTED, False),
        (TopoState.DEGRADED, False),
        (TopoState.CONNECTED, False),
        (TopoState.DEGRADED, False),
        (TopoState.EXPIRED, False),
        (TopoState.CONNECTED, True),
    ]
    assert conn.session_id == 0x11 and conn.state is TopoState.CONNECTED


def test_operations_fail_fast_unless_connected() -> None:
    conn, _reactor, _events = make_conn()
    failures: list[Any] = []
    conn.get("/vtwist").addErrback(failures.append)
    conn.create("/vtwist", b"").addErrback(failures.append)
    assert [f.type for f in failures] == [TopoUnavailableError, TopoUnavailableError]
    assert "not connected to ZooKeeper (connecting)" in str(failures[0].value)


def test_close_before_any_session_does_not_wait_for_kazoo() -> None:
    # A server that accepts connections but never answers (a paused or overloaded
    # ZooKeeper): kazoo's connection thread sits in its handshake for a session timeout,
    # and stop() would join it. With no session to end, close() must not wait for that:
    # the CLI would hang well past --topo-timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        reactor = FakeReactor()
        port = silent.getsockname()[1]
        conn = ZkConn(reactor, ZkConfig(hosts=f"127.0.0.1:{port}", session_timeout=2.0))
        failures: list[Any] = []
        conn.connect(0.5).addErrback(failures.append)
        reactor.advance(0.5)
        assert [f.type for f in failures] == [TopoUnavailableError]
        closed = conn.close()
        assert closed.called and conn.state is TopoState.CLOSED


def test_zk_is_the_only_module_importing_kazoo() -> None:
    src = Path(vtwist.__file__).parent
    kazoo_import = re.compile(r"^\s*(import|from)\s+kazoo\b", re.MULTILINE)
    importers = sorted(
        p.relative_to(src).as_posix()
        for p in src.rglob("*.py")
        if kazoo_import.search(p.read_text())
    )
    assert importers == ["topo/zk.py"]
    # The memory topo and the CLI's parsing work without loading kazoo at all.
    code = "import sys, vtwist.topo, vtwist.cli.main; print('kazoo' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"


class _Spy:
    def __init__(self, client: Any, calls: list[str]) -> None:
        self._client = client
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        self._calls.append(name)
        return getattr(self._client, name)
