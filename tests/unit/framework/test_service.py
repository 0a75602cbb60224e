"""ListenerService on real loopback sockets, signal hooks, log observers."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
from collections.abc import Callable
from typing import Any, cast

import pytest
from twisted.internet import reactor as global_reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher
from twisted.trial import unittest

from vtwist.service import (
    ListenerService,
    SignalHookService,
    log_observer,
    on_sighup,
    on_signal,
    parse_log_level,
    role_service,
    with_backlog,
)

reactor = cast(Any, global_reactor)


class ListenerTests(unittest.TestCase):
    async def test_listen_tcp0_and_stop(self) -> None:
        svc = ListenerService("tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol))
        waiting = svc.whenListening()
        svc.startService()
        port = await waiting
        assert svc.port is port
        host = port.getHost()
        assert host.host == "127.0.0.1" and host.port > 0  # type: ignore[attr-defined]
        assert (await svc.whenListening()) is port
        # It really accepts connections.
        with socket.create_connection(("127.0.0.1", host.port), timeout=5):  # type: ignore[attr-defined]
            pass
        await svc.stopService()
        assert svc.port is None and not svc.running
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", host.port), timeout=5).close()

    async def test_backlog_queues_a_burst_the_listener_has_not_accepted(self) -> None:
        # Twisted's own default backlog (50) would drop the SYNs past 51 queued connections:
        # those clients retry after 1 s and 3 s and time out here, as nothing accepts.
        svc = ListenerService(
            "tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol), backlog=300
        )
        svc.startService()
        self.addCleanup(svc.stopService)
        port = cast(Any, await svc.whenListening())
        assert port.backlog == 300
        port.stopReading()  # accept nothing: the kernel's queue holds the connections
        socks = []
        try:
            for _ in range(200):
                socks.append(socket.create_connection(("127.0.0.1", port.getHost().port), 2.5))
        finally:
            for s in socks:
                s.close()
        assert len(socks) == 200

    def test_with_backlog_adds_one_unless_set_or_not_taken(self) -> None:
        assert with_backlog("tcp:15306:interface=127.0.0.1", 1024) == (
            "tcp:15306:interface=127.0.0.1:backlog=1024"
        )
        assert with_backlog("ssl:3306:privateKey=k.pem", 9) == "ssl:3306:privateKey=k.pem:backlog=9"
        assert with_backlog("unix:/run/g.sock", 9) == "unix:/run/g.sock:backlog=9"
        # The operator's own backlog wins; other endpoint types take none; None adds none.
        assert with_backlog("tcp:1:backlog=5:interface=::1", 9) == "tcp:1:backlog=5:interface=::1"
        assert with_backlog("systemd:domain=INET:index=0", 9) == "systemd:domain=INET:index=0"
        assert with_backlog("tcp:1", None) == "tcp:1"
        # An escaped colon is part of a value, not a new parameter.
        assert with_backlog(r"unix:/tmp/a\:backlog=2", 9) == r"unix:/tmp/a\:backlog=2:backlog=9"

    async def test_port_in_use_fails_at_start(self) -> None:
        first = ListenerService("tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol))
        first.startService()
        self.addCleanup(first.stopService)
        port = (await first.whenListening()).getHost().port  # type: ignore[attr-defined]
        second = ListenerService(
            f"tcp:{port}:interface=127.0.0.1", Factory.forProtocol(Protocol), reactor=reactor
        )
        with pytest.raises(CannotListenError):
            second.privilegedStartService()
        assert second.port is None

    async def test_role_service_starts_and_stops_children(self) -> None:
        a = ListenerService("tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol), name="a")
        top = role_service("role", a)
        assert top.name == "role" and top.getServiceNamed("a") is a  # type: ignore[no-untyped-call]  # Twisted: unannotated
        top.startService()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        await a.whenListening()
        await top.stopService()  # type: ignore[no-untyped-call]  # Twisted: unannotated
        assert a.port is None


class FakeReactor:
    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        self.calls.append((f, args))

    def run_calls(self) -> None:
        calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)


def _deliver(signum: int) -> None:
    # The handler runs in the main thread at the next bytecode boundary after the signal.
    os.kill(os.getpid(), signum)


def test_sighup_hooks_run_via_call_from_thread() -> None:
    before = signal.getsignal(signal.SIGHUP)
    fake = FakeReactor()
    seen: list[str] = []
    remove_a = on_sighup(lambda: seen.append("a"), reactor=fake)  # type: ignore[arg-type]
    remove_b = on_sighup(lambda: seen.append("b"), reactor=fake)  # type: ignore[arg-type]
    try:
        _deliver(signal.SIGHUP)
        assert seen == []  # nothing runs inside the signal handler itself
        assert len(fake.calls) == 2
        fake.run_calls()
        assert seen == ["a", "b"]
        remove_a()
        remove_a()  # idempotent
        _deliver(signal.SIGHUP)
        fake.run_calls()
        assert seen == ["a", "b", "b"]
    finally:
        remove_b()
    assert signal.getsignal(signal.SIGHUP) is before


def test_failing_hook_is_logged_and_others_run() -> None:
    fake = FakeReactor()
    seen: list[str] = []

    def boom() -> None:
        raise RuntimeError("reload failed")

    removes = [
        on_signal(signal.SIGUSR2, boom, reactor=fake),  # type: ignore[arg-type]
        on_signal(signal.SIGUSR2, lambda: seen.append("ok"), reactor=fake),  # type: ignore[arg-type]
    ]
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)  # any callable taking the event dict will do
    globalLogPublisher.addObserver(observer)
    try:
        _deliver(signal.SIGUSR2)
        fake.run_calls()
        assert seen == ["ok"]
        failures = [e for e in events if "log_failure" in e]
        assert len(failures) == 1 and failures[0]["hook"] is boom
        assert failures[0]["log_failure"].check(RuntimeError)
    finally:
        globalLogPublisher.removeObserver(observer)
        for remove in removes:
            remove()


def test_signal_hook_service_lifetime() -> None:
    before = signal.getsignal(signal.SIGHUP)
    fake = FakeReactor()
    seen: list[int] = []
    svc = SignalHookService(lambda: seen.append(1), reactor=fake)  # type: ignore[arg-type]
    svc.startService()
    assert signal.getsignal(signal.SIGHUP) is not before
    _deliver(signal.SIGHUP)
    fake.run_calls()
    assert seen == [1]
    svc.stopService()
    assert signal.getsignal(signal.SIGHUP) is before


def test_log_observer_filters_by_level() -> None:
    out = io.StringIO()
    log = Logger(observer=log_observer(out, level=LogLevel.warn), namespace="t")
    log.info("hidden {x}", x=1)
    log.warn("shown {x}", x=2)
    assert "hidden" not in out.getvalue() and "shown 2" in out.getvalue()

    js = io.StringIO()
    Logger(observer=log_observer(js, json=True), namespace="t").info("hi {who}", who="you")
    record = json.loads(js.getvalue().strip("\x1e\n"))
    assert record["who"] == "you" and record["log_format"] == "hi {who}"


def test_parse_log_level() -> None:
    assert parse_log_level(" Info ") is LogLevel.info
    with pytest.raises(ValueError, match="use one of debug, info, warn, error, critical"):
        parse_log_level("verbose")
