"""Lock and election for the in-memory topo, with the semantics of kazoo's recipes.

A contender creates an EPHEMERAL|SEQUENTIAL node under the lock's directory; the lowest
sequence holds the lock; the others watch their predecessor. The node's data is the
contender's identifier (as with kazoo), so ``leader()`` and timeout messages can name the
holder. Locks and leadership vanish with the session; an election campaigns again on the
new session until it resigns.
"""

from __future__ import annotations

import contextlib
import functools
import posixpath
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from vtwist.interfaces import ITopoElection, ITopoLock
from vtwist.topo.conn import ConnEvent, TopoState
from vtwist.topo.errors import (
    ClosedError,
    LockLostError,
    LockTimeoutError,
    NoNodeError,
    TopoError,
    TopoUnavailableError,
)

if TYPE_CHECKING:
    from vtwist.topo.memory import MemoryConn

log = Logger()

PREFIX = "lock-"
ELECTION_RETRY_S = 0.5


async def contender_ids(conn: MemoryConn, path: str) -> list[str]:
    """The identifiers of the contenders at ``path``, in queue order (holder first)."""
    try:
        names = sorted(await conn.children(path))
    except NoNodeError:
        return []
    ids: list[str] = []
    for name in names:
        try:
            data, _ = await conn.get(f"{path}/{name}")
        except NoNodeError:
            continue
        ids.append(data.decode("utf-8", "replace"))
    return ids


def _wake_up(wake: Deferred[None]) -> None:
    if not wake.called:
        wake.callback(None)


@implementer(ITopoLock)
class MemoryLock:
    """One acquisition of the lock at ``path`` (``ITopoLock`` once acquired)."""

    def __init__(self, conn: MemoryConn, path: str, identifier: str) -> None:
        self.path = path
        self._conn = conn
        self._identifier = identifier
        self._node: str | None = None
        self._session: int | None = None
        self._held = False
        self._released = False
        self._wake: Deferred[None] | None = None

    def acquire(self, timeout: float | None) -> Deferred[ITopoLock]:
        """Queue up and wait for the lock; LockTimeoutError after ``timeout`` (None: forever)."""
        return Deferred.fromCoroutine(self._acquire(timeout))

    async def _acquire(self, timeout: float | None) -> ITopoLock:
        clock = self._conn.reactor
        deadline = None if timeout is None else clock.seconds() + timeout
        self._conn.locks.add(self)
        try:
            node, _ = await self._conn.create_node(
                f"{self.path}/{PREFIX}",
                self._identifier.encode("utf-8"),
                ephemeral=True,
                makepath=True,
                sequence=True,
            )
            self._node = node
            mine = posixpath.basename(node)
            while True:
                if self._released:
                    raise ClosedError(f"lock {self.path}: acquisition abandoned")
                names = sorted(await self._conn.children(self.path))
                if mine not in names:
                    raise TopoUnavailableError(f"lock {self.path}: session lost while waiting")
                index = names.index(mine)
                if index == 0:
                    self._held = True
                    self._session = self._conn.session_id
                    self._conn.add_listener(self._on_conn)
                    return self
                wake: Deferred[None] = Deferred()
                self._wake = wake
                stat = await self._conn.exists(
                    f"{self.path}/{names[index - 1]}", watch=functools.partial(_wake_up, wake)
                )
                if stat is None:
                    continue
                if deadline is None:
                    await wake
                    continue
                remaining = deadline - clock.seconds()
                if remaining <= 0:
                    raise await self._timeout_error(timeout or 0.0)
                call = clock.callLater(remaining, _wake_up, wake)
                await wake
                if call.active():
                    call.cancel()
                elif clock.seconds() >= deadline:
                    raise await self._timeout_error(timeout or 0.0)
        except BaseException:
            self._conn.locks.discard(self)
            await self._delete_node()
            raise

    async def _timeout_error(self, timeout: float) -> LockTimeoutError:
        holders = await contender_ids(self._conn, self.path)
        holder = holders[0] if holders else "unknown"
        return LockTimeoutError(
            f"lock {self.path} is held by {holder}; gave up after {timeout:.1f}s", self.path
        )

    async def _delete_node(self) -> None:
        node, self._node = self._node, None
        if node is None or self._conn.state is not TopoState.CONNECTED:
            return
        with contextlib.suppress(TopoError):  # gone already, or goes with the session
            await self._conn.delete(node)

    def _on_conn(self, event: ConnEvent) -> None:
        if event.state in (TopoState.EXPIRED, TopoState.CLOSED):
            self._held = False

    def held(self) -> bool:
        return (
            self._held
            and not self._released
            and self._conn.session_id == self._session
            and self._conn.state not in (TopoState.EXPIRED, TopoState.CLOSED)
        )

    def check(self) -> None:
        if not self.held():
            raise LockLostError(f"lock {self.path} is no longer held", self.path)

    def release(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._release())

    async def _release(self) -> None:
        self._released = True
        self._conn.remove_listener(self._on_conn)
        self._conn.locks.discard(self)
        self._held = False
        if self._session is None or self._conn.session_id == self._session:
            await self._delete_node()

    def abandon(self) -> None:
        """Give up (the client is closing): stop waiting, forget the lock."""
        self._released = True
        self._held = False
        wake, self._wake = self._wake, None
        if wake is not None and not wake.called:
            wake.callback(None)


@implementer(ITopoElection)
class MemoryElection:
    """A candidacy in the election at ``path`` (``ITopoElection``)."""

    def __init__(self, conn: MemoryConn, path: str, identifier: str) -> None:
        self.path = path
        self.identifier = identifier
        self._conn = conn
        self._lock: MemoryLock | None = None
        self._leading = False
        self._campaigning = False
        self._resigned = False
        self._listeners: list[Callable[[bool], object]] = []
        self._waiters: list[Deferred[None]] = []
        conn.add_listener(self._on_conn)
        conn.locks.add(self)
        self._campaign()

    def _campaign(self) -> None:
        if self._resigned or self._campaigning or self._leading:
            return
        if self._conn.state is not TopoState.CONNECTED:
            return  # campaign on the next CONNECTED
        self._campaigning = True
        lock = MemoryLock(self._conn, self.path, self.identifier)
        self._lock = lock
        lock.acquire(None).addCallbacks(self._won, self._lost_campaign)

    def _won(self, _lock: ITopoLock) -> None:
        self._campaigning = False
        if self._resigned:
            return
        self._set_leading(True)

    def _lost_campaign(self, failure: object) -> None:
        self._campaigning = False
        if self._resigned:
            return
        log.debug("memory topo: campaign in {path} failed: {f}", path=self.path, f=failure)
        if self._conn.state is TopoState.CONNECTED:
            self._conn.reactor.callLater(ELECTION_RETRY_S, self._campaign)

    def _on_conn(self, event: ConnEvent) -> None:
        if event.state in (TopoState.EXPIRED, TopoState.CLOSED):
            self._set_leading(False)
        elif event.state is TopoState.CONNECTED:
            self._campaign()

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        for listener in list(self._listeners):
            try:
                listener(leading)
            except Exception:
                log.failure("memory topo: election listener raised")
        if leading:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def is_leader(self) -> bool:
        return self._leading and self._lock is not None and self._lock.held()

    def when_leader(self) -> Deferred[None]:
        if self.is_leader():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def leader(self) -> Deferred[str | None]:
        return Deferred.fromCoroutine(self._leader())

    async def _leader(self) -> str | None:
        ids = await contender_ids(self._conn, self.path)
        return ids[0] if ids else None

    def add_listener(self, listener: Callable[[bool], object]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def resign(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._resign())

    async def _resign(self) -> None:
        if self._resigned:
            return
        self._resigned = True
        self._conn.remove_listener(self._on_conn)
        self._conn.locks.discard(self)
        lock, self._lock = self._lock, None
        self._set_leading(False)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(ClosedError(f"election {self.path}: resigned"))
        if lock is not None:
            lock.abandon()
            await lock.release()

    def abandon(self) -> None:
        """The client is closing: stop campaigning."""
        self._resigned = True
        if self._lock is not None:
            self._lock.abandon()
        self._set_leading(False)
