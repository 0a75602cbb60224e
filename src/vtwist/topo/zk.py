"""The ZooKeeper backend (``TopoConn`` over kazoo): the only module that imports kazoo.

kazoo runs its own threads (connection, completions, watch callbacks). This module bridges
them into the reactor:

- operations use kazoo's ``*_async`` calls; the completion thread hands each result to the
  reactor with ``callFromThread`` where it fires a Deferred (bounded by ``op_timeout``);
- watch functions and state changes are likewise re-posted to the reactor thread;
- the kazoo state listener does nothing but that re-post: a ZooKeeper call inside a kazoo
  listener blocks or deadlocks (kazoo #355, #381, #241);
- the blocking lock and election recipes (kazoo ``Lock`` and ``Election``) run in daemon
  threads of their own, never on the reactor thread.

Operations fail fast with ``TopoUnavailableError`` unless connected (kazoo would otherwise
queue them until some reconnection). State mapping: CONNECTED -> connected, SUSPENDED ->
degraded, LOST -> expired (kazoo then makes a new session: the CONNECTED after it carries
``new_session`` so ``TopoServer`` re-creates ephemeral nodes).

With digest credentials every node is created with creator-all + world-read ACLs.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

from kazoo import exceptions as kex
from kazoo.client import KazooClient, KazooState
from kazoo.security import CREATOR_ALL_ACL, READ_ACL_UNSAFE
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import ITopoElection, ITopoLock
from vtwist.topo.conn import ConnEvent, ConnListener, NodeStat, TopoState, WatchFn
from vtwist.topo.errors import (
    BadVersionError,
    ClosedError,
    LockLostError,
    LockTimeoutError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    PermissionDeniedError,
    TopoError,
    TopoUnavailableError,
)

log = Logger()

T = TypeVar("T")

ELECTION_RETRY_S = 0.5
# What kazoo raises to a recipe while the client has no live session.
_NO_SESSION = (kex.ConnectionClosedError, kex.ConnectionLoss, kex.SessionExpiredError)
_UNAVAILABLE = (
    kex.ConnectionLoss,
    kex.SessionExpiredError,
    kex.ConnectionClosedError,
    kex.OperationTimeoutError,
    kex.ConnectionDropped,
)


@dataclass(frozen=True)
class ZkConfig:
    """How to reach ZooKeeper.

    ``hosts``: ``host:port[,host:port...]``. ``session_timeout``: seconds (ZooKeeper clamps
    it to 2-20 ticks of the server). ``op_timeout``: bound on each operation.
    ``auth``: optional digest (user, password). ``reconnect_max_delay``: cap of the
    reconnection back-off, seconds.
    """

    hosts: str
    session_timeout: float = 10.0
    op_timeout: float = 10.0
    auth: tuple[str, str] | None = None
    reconnect_max_delay: float = 2.0


def _translate(exc: BaseException, op: str, path: str) -> Exception:
    if isinstance(exc, TopoError):
        return exc
    if isinstance(exc, kex.NoNodeError):
        return NoNodeError(f"{path} does not exist", path)
    if isinstance(exc, kex.NodeExistsError):
        return NodeExistsError(f"{path} already exists", path)
    if isinstance(exc, kex.BadVersionError):
        return BadVersionError(f"{path} changed since it was read", path)
    if isinstance(exc, kex.NotEmptyError):
        return NotEmptyError(f"{path} has children", path)
    if isinstance(exc, kex.NoAuthError):
        return PermissionDeniedError(
            f"{op} {path}: ZooKeeper refused it (ACL); configure the vtwist digest credentials",
            path,
        )
    if isinstance(exc, _UNAVAILABLE):
        return TopoUnavailableError(
            f"{op} {path}: ZooKeeper unavailable ({type(exc).__name__})", path
        )
    if isinstance(exc, kex.KazooException):
        return TopoError(f"{op} {path}: {type(exc).__name__} {exc}", path)
    if isinstance(exc, Exception):
        return exc
    return TopoError(f"{op} {path}: {exc!r}", path)


def _stat(zstat: Any) -> NodeStat:
    return NodeStat(
        version=int(zstat.version),
        mzxid=int(zstat.mzxid),
        ephemeral_owner=int(zstat.ephemeralOwner),
    )


class ZkConn:
    """A kazoo client as a ``TopoConn``; every method is called on the reactor thread."""

    def __init__(self, reactor: IReactorTime, config: ZkConfig) -> None:
        self.config = config
        self._reactor = reactor
        self._threads = cast(IReactorFromThreads, reactor)
        kw: dict[str, Any] = {}
        if config.auth is not None:
            user, password = config.auth
            kw["auth_data"] = [("digest", f"{user}:{password}")]
            kw["default_acl"] = CREATOR_ALL_ACL + READ_ACL_UNSAFE
        self.client = KazooClient(
            hosts=config.hosts,
            timeout=config.session_timeout,
            connection_retry={
                "max_tries": -1,
                "delay": 0.1,
                "backoff": 2,
                "max_delay": config.reconnect_max_delay,
            },
            **kw,
        )
        self.client.add_listener(self._kazoo_listener)
        self._state = TopoState.CONNECTING
        self._session_id: int | None = None
        self._expired = False
        self._started = False
        self._closing = False
        self._listeners: list[ConnListener] = []
        self._connect_waiters: list[Deferred[None]] = []
        self._wrappers: dict[WatchFn, Callable[[Any], None]] = {}
        self.recipes: set[ZkLock | ZkElection] = set()

    # --- state ------------------------------------------------------------------------------

    @property
    def state(self) -> TopoState:
        return self._state

    @property
    def session_id(self) -> int | None:
        return self._session_id

    @property
    def reactor(self) -> IReactorTime:
        return self._reactor

    def reactor_call(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on the reactor thread (callable from any thread)."""
        self._threads.callFromThread(fn, *args)

    def add_listener(self, listener: ConnListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ConnListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _kazoo_listener(self, state: str) -> None:
        # On a kazoo thread: never call ZooKeeper here (it deadlocks); only hand over.
        client_id = self.client.client_id
        self._threads.callFromThread(
            self._on_kazoo_state, state, client_id[0] if client_id else None
        )

    def _on_kazoo_state(self, state: str, session_id: int | None) -> None:
        if self._state is TopoState.CLOSED or self._closing:
            return
        if state == KazooState.CONNECTED:
            new_session = self._expired or (
                self._session_id is not None and session_id != self._session_id
            )
            self._expired = False
            self._session_id = session_id
            self._set_state(TopoState.CONNECTED, new_session)
            waiters, self._connect_waiters = self._connect_waiters, []
            for d in waiters:
                if not d.called:
                    d.callback(None)
        elif state == KazooState.SUSPENDED:
            self._set_state(TopoState.DEGRADED)
        elif state == KazooState.LOST and self._session_id is not None:
            self._expired = True
            self._set_state(TopoState.EXPIRED)

    def _set_state(self, state: TopoState, new_session: bool = False) -> None:
        if state is self._state:
            return
        log.info("topo: ZooKeeper {hosts} is {state}", hosts=self.config.hosts, state=state.value)
        self._state = state
        event = ConnEvent(state, self._session_id, new_session)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.failure("topo: connection listener raised")

    def connect(self, timeout: float) -> Deferred[None]:
        if self._state is TopoState.CLOSED:
            return fail(ClosedError("the topo client is closed"))
        if self._state is TopoState.CONNECTED:
            return succeed(None)
        if not self._started:
            self._started = True
            self.client.start_async()
        d: Deferred[None] = Deferred()
        self._connect_waiters.append(d)
        hosts = self.config.hosts

        def timed_out(result: Any, _timeout: float) -> NoReturn:
            if d in self._connect_waiters:
                self._connect_waiters.remove(d)
            raise TopoUnavailableError(f"cannot reach ZooKeeper at {hosts} within {timeout:g}s")

        d.addTimeout(timeout, self._reactor, onTimeoutCancel=timed_out)
        return d

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        if self._state is TopoState.CLOSED or self._closing:
            return
        self._closing = True
        for recipe in list(self.recipes):
            recipe.abandon()
        self._wrappers.clear()
        if self._started and self._session_id is None:
            # Never connected, so no session to end. kazoo's stop() joins its connection
            # thread, which can sit in one connection attempt for a whole session timeout
            # (a server that accepts but does not answer: paused, overloaded): let it
            # finish in the background rather than make the caller wait for nothing.
            threading.Thread(
                target=self._stop_client_quietly, name="vtwist-zk-close", daemon=True
            ).start()
        elif self._started:
            try:
                await self.in_thread(self._stop_client, self.config.session_timeout + 5, "close")
            except Exception:
                log.failure("topo: closing the ZooKeeper client failed")
        self._closing = False
        self._set_state(TopoState.CLOSED)
        waiters, self._connect_waiters = self._connect_waiters, []
        for d in waiters:
            if not d.called:
                d.errback(ClosedError("the topo client was closed"))

    def _stop_client(self) -> None:
        self.client.stop()
        self.client.close()

    def _stop_client_quietly(self) -> None:
        # In a daemon thread nobody waits on: kazoo logs its own errors.
        with contextlib.suppress(Exception):
            self._stop_client()

    def expire_session(self) -> Deferred[None]:
        """Make ZooKeeper expire this client's session now (fault injection for tests).

        As in ZooKeeper's own tests: a second client attaches to the same session (id and
        password), which disconnects this one, then closes the session. This client then
        reconnects, is told the session expired, and starts a new one.
        """
        client_id = self.client.client_id
        if client_id is None or self._state is not TopoState.CONNECTED:
            return fail(TopoUnavailableError("no ZooKeeper session to expire"))

        def kill() -> None:
            other = KazooClient(
                hosts=self.config.hosts, client_id=client_id, timeout=self.config.session_timeout
            )
            other.start(timeout=self.config.op_timeout)
            other.stop()
            other.close()

        return self.in_thread(kill, self.config.op_timeout * 2, "expire session")

    # --- bridging ---------------------------------------------------------------------------

    def in_thread(self, fn: Callable[[], T], timeout: float, what: str) -> Deferred[T]:
        """Run blocking kazoo code ``fn`` in a daemon thread; its result on the reactor."""
        d: Deferred[T] = Deferred()

        def finish(value: T | None, exc: BaseException | None) -> None:
            if d.called:
                return
            if exc is not None:
                d.errback(_translate(exc, what, ""))
            else:
                d.callback(cast(T, value))

        def run() -> None:
            try:
                value = fn()
            except BaseException as e:
                self._threads.callFromThread(finish, None, e)
            else:
                self._threads.callFromThread(finish, value, None)

        threading.Thread(target=run, name=f"vtwist-zk-{what}", daemon=True).start()

        def timed_out(result: Any, _timeout: float) -> NoReturn:
            raise TopoUnavailableError(f"{what}: no answer from ZooKeeper in {timeout:g}s")

        d.addTimeout(timeout, self._reactor, onTimeoutCancel=timed_out)
        return d

    def _call(
        self, op: str, path: str, start: Callable[[], Any], convert: Callable[[Any], T]
    ) -> Deferred[T]:
        if self._state is not TopoState.CONNECTED:
            return fail(
                TopoUnavailableError(
                    f"{op} {path}: not connected to ZooKeeper ({self._state.value})", path
                )
            )
        d: Deferred[T] = Deferred()
        try:
            async_result = start()
        except BaseException as e:
            return fail(_translate(e, op, path))

        def complete(result: Any) -> None:
            if d.called:
                return  # timed out already
            if result.successful():
                try:
                    value = convert(result.value)
                except Exception as e:
                    d.errback(e)
                else:
                    d.callback(value)
            else:
                d.errback(_translate(result.exception, op, path))

        async_result.rawlink(lambda result: self._threads.callFromThread(complete, result))

        def timed_out(result: Any, _timeout: float) -> NoReturn:
            raise TopoUnavailableError(
                f"{op} {path}: no answer from ZooKeeper in {self.config.op_timeout:g}s"
                " (a write may still be applied)",
                path,
            )

        d.addTimeout(self.config.op_timeout, self._reactor, onTimeoutCancel=timed_out)
        return d

    def _wrap(self, watch: WatchFn | None) -> Callable[[Any], None] | None:
        if watch is None:
            return None
        # One wrapper per watch function: kazoo keeps watchers in a set, so re-arming the
        # same function does not multiply the callbacks.
        wrapper = self._wrappers.get(watch)
        if wrapper is None:

            def wrapper(event: Any, watch: WatchFn = watch) -> None:
                self._threads.callFromThread(self._fire_watch, watch)

            self._wrappers[watch] = wrapper
        return wrapper

    def _fire_watch(self, watch: WatchFn) -> None:
        if watch in self._wrappers and self._state is not TopoState.CLOSED:
            try:
                watch()
            except Exception:
                log.failure("topo: watch function raised")

    def forget_watch(self, watch: WatchFn) -> None:
        self._wrappers.pop(watch, None)

    # --- operations -------------------------------------------------------------------------

    def get(self, path: str, watch: WatchFn | None = None) -> Deferred[tuple[bytes, NodeStat]]:
        return self._call(
            "get",
            path,
            lambda: self.client.get_async(path, watch=self._wrap(watch)),
            lambda r: (bytes(r[0] or b""), _stat(r[1])),
        )

    def exists(self, path: str, watch: WatchFn | None = None) -> Deferred[NodeStat | None]:
        return self._call(
            "exists",
            path,
            lambda: self.client.exists_async(path, watch=self._wrap(watch)),
            lambda r: None if r is None else _stat(r),
        )

    def children(self, path: str, watch: WatchFn | None = None) -> Deferred[list[str]]:
        return self._call(
            "children",
            path,
            lambda: self.client.get_children_async(path, watch=self._wrap(watch)),
            lambda r: [str(c) for c in r],
        )

    def create(
        self, path: str, data: bytes, *, ephemeral: bool = False, makepath: bool = False
    ) -> Deferred[NodeStat]:
        return self._call(
            "create",
            path,
            lambda: self.client.create_async(
                path, data, ephemeral=ephemeral, makepath=makepath, include_data=True
            ),
            lambda r: _stat(r[1]),
        )

    def set(self, path: str, data: bytes, version: int = -1) -> Deferred[NodeStat]:
        return self._call("set", path, lambda: self.client.set_async(path, data, version), _stat)

    def delete(self, path: str, version: int = -1) -> Deferred[None]:
        return self._call(
            "delete", path, lambda: self.client.delete_async(path, version), lambda r: None
        )

    def lock(self, path: str, identifier: str, timeout: float) -> Deferred[ITopoLock]:
        return ZkLock(self, path, identifier).acquire(timeout)

    def election(self, path: str, identifier: str) -> ITopoElection:
        return ZkElection(self, path, identifier)


def _holder(identifier: str) -> str:
    try:
        info = json.loads(identifier)
        return str(info.get("holder", identifier)) + (
            f" ({info['purpose']})" if info.get("purpose") else ""
        )
    except (ValueError, AttributeError):
        return identifier


@implementer(ITopoLock)
class ZkLock:
    """One acquisition of a kazoo ``Lock`` (its blocking calls run in a daemon thread)."""

    def __init__(self, conn: ZkConn, path: str, identifier: str) -> None:
        self.path = path
        self._conn = conn
        self._kz = conn.client.Lock(path, identifier)
        self._session: int | None = None
        self._held = False
        self._abandoned = threading.Event()

    def acquire(self, timeout: float) -> Deferred[ITopoLock]:
        if self._conn.state is not TopoState.CONNECTED:
            return fail(TopoUnavailableError(f"lock {self.path}: not connected to ZooKeeper"))
        self._conn.recipes.add(self)
        d = self._conn.in_thread(
            lambda: self._acquire_blocking(timeout),
            timeout + self._conn.config.op_timeout,
            f"lock {self.path}",
        )
        return d.addCallbacks(self._acquired, self._failed)

    def _acquire_blocking(self, timeout: float) -> int | None:
        try:
            got = self._kz.acquire(blocking=True, timeout=timeout)
        except kex.LockTimeout:
            got = False
        except kex.CancelledError:
            raise ClosedError(f"lock {self.path}: acquisition abandoned") from None
        if got and self._abandoned.is_set():
            self._kz.release()  # our caller already gave up
            raise ClosedError(f"lock {self.path}: acquisition abandoned")
        if not got:
            holder = "another process"
            try:
                contenders = self._kz.contenders()
                if contenders:
                    holder = _holder(contenders[0])
            except kex.KazooException:
                pass
            raise LockTimeoutError(
                f"lock {self.path} is held by {holder}; gave up after {timeout:g}s", self.path
            )
        client_id = self._conn.client.client_id
        return int(client_id[0]) if client_id else None

    def _acquired(self, session: int | None) -> ITopoLock:
        self._held = True
        self._session = session
        return self

    def _failed(self, failure: Failure) -> Failure:
        self._abandoned.set()
        self._conn.recipes.discard(self)
        return failure

    def held(self) -> bool:
        return (
            self._held
            and self._conn.session_id == self._session
            and self._conn.state not in (TopoState.EXPIRED, TopoState.CLOSED)
        )

    def check(self) -> None:
        if not self.held():
            raise LockLostError(f"lock {self.path} is no longer held", self.path)

    def release(self) -> Deferred[None]:
        was_held = self.held()
        self._held = False
        self._conn.recipes.discard(self)
        if not was_held:
            return succeed(None)
        return self._conn.in_thread(
            self._release_blocking,
            self._conn.config.op_timeout,
            f"unlock {self.path}",
        )

    def _release_blocking(self) -> None:
        self._kz.release()

    def abandon(self) -> None:
        """The client is closing: stop any pending acquisition."""
        self._abandoned.set()
        self._held = False
        self._kz.cancel()


@implementer(ITopoElection)
class ZkElection:
    """A candidacy through kazoo's ``Election``, run in a daemon thread.

    While leading, the thread waits inside the election's leader function; it returns
    (releasing the election's lock) on resignation or when the session is lost, and the
    thread then campaigns again with a fresh kazoo ``Election`` unless resigned.
    """

    def __init__(self, conn: ZkConn, path: str, identifier: str) -> None:
        self.path = path
        self.identifier = identifier
        self._conn = conn
        self._leading = False
        self._listeners: list[Callable[[bool], object]] = []
        self._waiters: list[Deferred[None]] = []
        self._resigned = threading.Event()
        self._stop_leading = threading.Event()
        self._guard = threading.Lock()
        self._kz: Any = None
        self._done: Deferred[None] = Deferred()
        conn.recipes.add(self)
        conn.add_listener(self._on_conn)
        threading.Thread(target=self._run, name=f"vtwist-zk-election-{path}", daemon=True).start()

    # thread side
    def _run(self) -> None:
        while not self._resigned.is_set():
            with self._guard:
                if self._resigned.is_set():
                    break
                self._kz = self._conn.client.Election(self.path, self.identifier)
            try:
                self._kz.run(self._lead)
            except Exception as e:
                if self._resigned.is_set():
                    break
                if isinstance(e, _NO_SESSION):
                    # Not connected yet (start-up) or reconnecting: the connection's own
                    # state changes are logged already.
                    log.debug("topo: campaign in {path} waits for the ZooKeeper session",
                              path=self.path)  # fmt: skip
                else:
                    log.info("topo: campaign in {path} interrupted ({error}); retrying",
                             path=self.path, error=repr(e))  # fmt: skip
                self._resigned.wait(ELECTION_RETRY_S)
        self._conn.reactor_call(self._thread_done)

    def _lead(self) -> None:
        client_id = self._conn.client.client_id
        self._conn.reactor_call(self._elected, client_id[0] if client_id else None)
        self._stop_leading.wait()
        self._stop_leading.clear()

    # reactor side
    def _elected(self, session: int | None) -> None:
        stale = session is None or session != self._conn.session_id
        if self._resigned.is_set() or stale or self._conn.state is not TopoState.CONNECTED:
            self._stop_leading.set()  # lost before we could lead: campaign again
            return
        self._set_leading(True)

    def _on_conn(self, event: ConnEvent) -> None:
        if event.state in (TopoState.EXPIRED, TopoState.CLOSED) and self._leading:
            self._set_leading(False)
            self._stop_leading.set()

    def _thread_done(self) -> None:
        if not self._done.called:
            self._done.callback(None)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        for listener in list(self._listeners):
            try:
                listener(leading)
            except Exception:
                log.failure("topo: election listener raised")
        if leading:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)

    def is_leader(self) -> bool:
        return self._leading

    def when_leader(self) -> Deferred[None]:
        if self._leading:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def leader(self) -> Deferred[str | None]:
        kz = self._kz or self._conn.client.Election(self.path, self.identifier)

        def first() -> str | None:
            contenders = kz.contenders()
            return str(contenders[0]) if contenders else None

        return self._conn.in_thread(first, self._conn.config.op_timeout, f"leader of {self.path}")

    def add_listener(self, listener: Callable[[bool], object]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def resign(self) -> Deferred[None]:
        self.abandon()
        d: Deferred[None] = Deferred()
        self._done.addBoth(lambda _: d.callback(None) if not d.called else None)

        def timed_out(result: Any, _timeout: float) -> None:
            log.warn("topo: resigning from {path} is still in progress", path=self.path)

        d.addTimeout(self._conn.config.op_timeout, self._conn.reactor, onTimeoutCancel=timed_out)
        return d

    def abandon(self) -> None:
        """Stop campaigning and leading (resign, or the client is closing)."""
        with self._guard:
            self._resigned.set()
            if self._kz is not None:
                self._kz.cancel()
        self._conn.remove_listener(self._on_conn)
        self._conn.recipes.discard(self)
        self._set_leading(False)
        self._stop_leading.set()
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(ClosedError(f"election {self.path}: resigned"))
