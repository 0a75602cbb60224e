"""Test helpers for the topo suites: recording watch callbacks and waiting on them."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

T = TypeVar("T")
reactor: Any = _reactor


class Recorder(Generic[T]):
    """A watch callback that records every value and the thread it ran on."""

    def __init__(self) -> None:
        self.values: list[T] = []
        self.threads: set[int] = set()
        self._waiters: list[tuple[Callable[[T], bool], Deferred[T]]] = []

    def __call__(self, value: T) -> None:
        self.values.append(value)
        self.threads.add(threading.get_ident())
        for waiter in list(self._waiters):
            predicate, d = waiter
            if predicate(value) and not d.called:
                self._waiters.remove(waiter)
                d.callback(value)

    @property
    def last(self) -> T:
        return self.values[-1]

    async def until(self, predicate: Callable[[T], bool], what: str, timeout: float = 15.0) -> T:
        """Wait until the latest value satisfies ``predicate``; fail after ``timeout``."""
        if self.values and predicate(self.values[-1]):
            return self.values[-1]
        d: Deferred[T] = Deferred()
        waiter = (predicate, d)
        self._waiters.append(waiter)

        def expire() -> None:
            if not d.called:
                self._waiters.remove(waiter)
                d.errback(
                    AssertionError(f"timed out waiting for {what}; last values: {self.values[-3:]}")
                )

        call = reactor.callLater(timeout, expire)
        try:
            return await d
        finally:
            if call.active():
                call.cancel()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``check`` on the reactor every 20 ms until true; fail after ``timeout``."""
    deadline = reactor.seconds() + timeout
    while not check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)


async def eventually_async(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0
) -> None:
    """Like ``eventually`` for an asynchronous check (e.g. a topo read)."""
    deadline = reactor.seconds() + timeout
    while not await check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)


async def with_timeout(d: Deferred[T], timeout: float, what: str) -> T:
    """Await ``d`` but fail the test if it has not fired within ``timeout`` seconds."""

    def on_timeout(result: object, _t: float) -> T:
        raise AssertionError(f"timed out waiting for {what}")

    d.addTimeout(timeout, reactor, onTimeoutCancel=on_timeout)
    return await d
