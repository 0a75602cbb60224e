"""The in-memory topo backend: a ZooKeeper-like tree shared by several clients, with faults.

``MemoryTopoBackend`` plays the server (nodes, versions, zxids, sessions, ephemeral nodes,
one-shot watches); each ``MemoryConn`` is one client with its own session, implementing
``TopoConn`` so that ``TopoServer`` runs unchanged on it. ``memory_topo()`` builds both.

Results and watch events reach a client through one FIFO queue drained by the reactor
(``callLater(0)``), so, as with ZooKeeper, they arrive asynchronously and in order.

Fault injection, on a client: ``fail(op=..., path=..., error=..., count=...)`` makes
matching operations fail; ``set_reachable(False)`` cuts the client off (state DEGRADED,
operations fail with TopoUnavailableError, watches dropped) until
``set_reachable(True)``; ``expire_session()`` ends the session as ZooKeeper would (its
ephemeral nodes and locks vanish, then a new session is made).
"""

from __future__ import annotations

import collections
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from vtwist.interfaces import ITopoElection, ITopoLock
from vtwist.topo.conn import ConnEvent, ConnListener, NodeStat, TopoState, WatchFn
from vtwist.topo.errors import (
    BadVersionError,
    ClosedError,
    InjectedError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    TopoError,
    TopoUnavailableError,
)
from vtwist.topo.layout import Layout
from vtwist.topo.server import TopoServer

log = Logger()

T = TypeVar("T")


@dataclass
class _Node:
    data: bytes
    version: int
    czxid: int
    mzxid: int
    ephemeral_owner: int
    children: set[str] = field(default_factory=set)
    next_sequence: int = 0

    def stat(self) -> NodeStat:
        return NodeStat(
            version=self.version, mzxid=self.mzxid, ephemeral_owner=self.ephemeral_owner
        )


class MemoryTopoBackend:
    """The shared tree: what a ZooKeeper ensemble holds, for in-process clients."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {"/": _Node(b"", 0, 0, 0, 0)}
        self._zxid = 0
        self._next_session = 0x10000
        self._live_sessions: set[int] = set()
        self._data_watches: dict[str, set[tuple[MemoryConn, WatchFn]]] = collections.defaultdict(
            set
        )
        self._child_watches: dict[str, set[tuple[MemoryConn, WatchFn]]] = collections.defaultdict(
            set
        )

    # sessions
    def new_session(self) -> int:
        self._next_session += 1
        self._live_sessions.add(self._next_session)
        return self._next_session

    def session_alive(self, session_id: int) -> bool:
        return session_id in self._live_sessions

    def end_session(self, session_id: int) -> None:
        """Expire or close a session: delete its ephemeral nodes (firing watches)."""
        self._live_sessions.discard(session_id)
        owned = [p for p, n in self._nodes.items() if n.ephemeral_owner == session_id]
        for path in sorted(owned, reverse=True):
            if path in self._nodes:
                self.delete(path, -1)

    def drop_watches(self, conn: MemoryConn) -> list[WatchFn]:
        """Remove every watch of ``conn``; return the functions (to notify them)."""
        dropped: list[WatchFn] = []
        for table in (self._data_watches, self._child_watches):
            for watchers in table.values():
                mine = {w for w in watchers if w[0] is conn}
                watchers -= mine
                dropped.extend(fn for _, fn in mine)
        return dropped

    def _fire(self, table: dict[str, set[tuple[MemoryConn, WatchFn]]], path: str) -> None:
        for conn, fn in table.pop(path, set()):
            conn._post(fn)

    def _node(self, path: str) -> _Node:
        node = self._nodes.get(path)
        if node is None:
            raise NoNodeError(f"{path} does not exist", path)
        return node

    # operations (synchronous; MemoryConn makes them asynchronous)
    def get(self, path: str, watcher: tuple[MemoryConn, WatchFn] | None) -> tuple[bytes, NodeStat]:
        node = self._node(path)
        if watcher is not None:
            self._data_watches[path].add(watcher)
        return node.data, node.stat()

    def exists(self, path: str, watcher: tuple[MemoryConn, WatchFn] | None) -> NodeStat | None:
        if watcher is not None:
            self._data_watches[path].add(watcher)
        node = self._nodes.get(path)
        return None if node is None else node.stat()

    def children(self, path: str, watcher: tuple[MemoryConn, WatchFn] | None) -> list[str]:
        node = self._node(path)
        if watcher is not None:
            self._child_watches[path].add(watcher)
        return sorted(node.children)

    def create(
        self, path: str, data: bytes, owner: int, makepath: bool, sequence: bool
    ) -> tuple[str, NodeStat]:
        parent_path = posixpath.dirname(path)
        parent = self._nodes.get(parent_path)
        if parent is None:
            if not makepath:
                raise NoNodeError(f"{parent_path} does not exist", parent_path)
            self.create(parent_path, b"", 0, True, False)
            parent = self._nodes[parent_path]
        if parent.ephemeral_owner:
            raise TopoError(f"{parent_path} is ephemeral and cannot have children", path)
        if sequence:
            path = f"{path}{parent.next_sequence:010d}"
            parent.next_sequence += 1
        if path in self._nodes:
            raise NodeExistsError(f"{path} already exists", path)
        self._zxid += 1
        node = _Node(data, 0, self._zxid, self._zxid, owner)
        self._nodes[path] = node
        parent.children.add(posixpath.basename(path))
        if not sequence:
            parent.next_sequence += 1  # ZooKeeper's cversion grows with every child change
        self._fire(self._data_watches, path)
        self._fire(self._child_watches, parent_path)
        return path, node.stat()

    def set(self, path: str, data: bytes, version: int) -> NodeStat:
        node = self._node(path)
        if version != -1 and version != node.version:
            raise BadVersionError(f"{path} is at version {node.version}, not {version}", path)
        self._zxid += 1
        node.data, node.version, node.mzxid = data, node.version + 1, self._zxid
        self._fire(self._data_watches, path)
        return node.stat()

    def delete(self, path: str, version: int) -> None:
        node = self._node(path)
        if version != -1 and version != node.version:
            raise BadVersionError(f"{path} is at version {node.version}, not {version}", path)
        if node.children:
            raise NotEmptyError(f"{path} has children", path)
        self._zxid += 1
        del self._nodes[path]
        parent_path = posixpath.dirname(path)
        self._nodes[parent_path].children.discard(posixpath.basename(path))
        self._fire(self._data_watches, path)
        self._fire(self._child_watches, path)
        self._fire(self._child_watches, parent_path)


@dataclass
class _Fault:
    op: str | None
    path: str | None
    error: Exception
    count: int | None

    def matches(self, op: str, path: str) -> bool:
        return (self.op is None or self.op == op) and (
            self.path is None or path == self.path or path.startswith(self.path.rstrip("/") + "/")
        )


class MemoryConn:
    """One client of a ``MemoryTopoBackend``: the ``TopoConn`` of the memory topo."""

    def __init__(self, backend: MemoryTopoBackend, reactor: IReactorTime) -> None:
        self.backend = backend
        self.reactor = reactor
        self._state = TopoState.CONNECTING
        self._session_id: int | None = None
        self._connect_wanted = False
        self._reachable = True
        self._faults: list[_Fault] = []
        self._listeners: list[ConnListener] = []
        self._connect_waiters: list[Deferred[None]] = []
        self._queue: collections.deque[Callable[[], object]] = collections.deque()
        self._drain_call: IDelayedCall | None = None
        self.locks: set[Any] = set()  # MemoryLock/MemoryElection register here (recipes)

    # --- TopoConn: state ------------------------------------------------------------------

    @property
    def state(self) -> TopoState:
        return self._state

    @property
    def session_id(self) -> int | None:
        return self._session_id

    def add_listener(self, listener: ConnListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: ConnListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def connect(self, timeout: float) -> Deferred[None]:
        if self._state is TopoState.CLOSED:
            return fail(ClosedError("the topo client is closed"))
        if self._state is TopoState.CONNECTED:
            return succeed(None)
        self._connect_wanted = True
        d: Deferred[None] = Deferred()
        self._connect_waiters.append(d)
        if self._reachable:
            self._establish()
        else:
            call = self.reactor.callLater(timeout, self._connect_timed_out, d, timeout)

            def cancel_timer(result: object) -> object:
                if call.active():
                    call.cancel()
                return result

            d.addBoth(cancel_timer)
        return d

    def _connect_timed_out(self, d: Deferred[None], timeout: float) -> None:
        if d in self._connect_waiters:
            self._connect_waiters.remove(d)
            d.errback(TopoUnavailableError(f"memory topo unreachable after {timeout:.1f}s"))

    def _establish(self) -> None:
        new_session = False
        if self._session_id is None or not self.backend.session_alive(self._session_id):
            if self._session_id is not None:
                self._set_state(TopoState.EXPIRED)
            new_session = self._session_id is not None
            self._session_id = self.backend.new_session()
        self._set_state(TopoState.CONNECTED, new_session)
        waiters, self._connect_waiters = self._connect_waiters, []
        for d in waiters:
            self._post(lambda d=d: d.callback(None))  # type: ignore[misc]

    def _set_state(self, state: TopoState, new_session: bool = False) -> None:
        if state is self._state:
            return
        self._state = state
        event = ConnEvent(state, self._session_id, new_session)
        for listener in list(self._listeners):
            self._post(lambda listener=listener: listener(event))  # type: ignore[misc]

    def close(self) -> Deferred[None]:
        if self._state is TopoState.CLOSED:
            return succeed(None)
        for recipe in list(self.locks):
            recipe.abandon()
        if self._session_id is not None and self.backend.session_alive(self._session_id):
            self.backend.end_session(self._session_id)
        self.backend.drop_watches(self)
        self._set_state(TopoState.CLOSED)
        waiters, self._connect_waiters = self._connect_waiters, []
        for d in waiters:
            d.errback(ClosedError("the topo client was closed"))
        return succeed(None)

    # --- fault injection ------------------------------------------------------------------

    def fail(
        self,
        op: str | None = None,
        path: str | None = None,
        error: Exception | None = None,
        count: int | None = None,
    ) -> None:
        """Make operations fail: ``op`` (get, exists, children, create, set, delete) or any;
        ``path`` and everything under it, or any; ``count`` times, or until cleared."""
        err = error if error is not None else InjectedError(f"injected failure of {op or 'any op'}")
        self._faults.append(_Fault(op, path, err, count))

    def clear_faults(self) -> None:
        self._faults.clear()

    def set_reachable(self, reachable: bool) -> None:
        """Cut this client off the backend (DEGRADED) or reconnect it."""
        if reachable == self._reachable or self._state is TopoState.CLOSED:
            self._reachable = reachable
            return
        self._reachable = reachable
        if not reachable:
            if self._state is TopoState.CONNECTED:
                self._set_state(TopoState.DEGRADED)
                self._drop_watches()
        elif self._connect_wanted:
            self._establish()

    def expire_session(self) -> None:
        """End the session now, as a ZooKeeper session timeout would."""
        if self._session_id is None or self._state is TopoState.CLOSED:
            return
        self.backend.end_session(self._session_id)
        if self._reachable:
            self._drop_watches()
            self._establish()
        # Unreachable: the client learns of the expiry when it reconnects.

    def _drop_watches(self) -> None:
        # As kazoo does, dropped watches are notified (their owners re-arm on reconnection).
        for fn in self.backend.drop_watches(self):
            self._post(fn)

    # --- delivery ---------------------------------------------------------------------------

    def _post(self, fn: Callable[[], object]) -> None:
        self._queue.append(fn)
        if self._drain_call is None:
            self._drain_call = self.reactor.callLater(0, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        while self._queue:
            fn = self._queue.popleft()
            try:
                fn()
            except Exception:
                log.failure("memory topo: delivery raised")

    def _run(self, op: str, path: str, fn: Callable[[], T]) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        try:
            if self._state is not TopoState.CONNECTED:
                raise TopoUnavailableError(
                    f"{op} {path}: not connected to the topo ({self._state.value})", path
                )
            for fault in self._faults:
                if fault.matches(op, path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._faults.remove(fault)
                    raise fault.error
            result = fn()
        except Exception as e:
            error = e
            self._post(lambda: d.errback(error))
        else:
            self._post(lambda: d.callback(result))
        return d

    def _watcher(self, watch: WatchFn | None) -> tuple[MemoryConn, WatchFn] | None:
        return None if watch is None else (self, watch)

    # --- TopoConn: operations -------------------------------------------------------------

    def get(self, path: str, watch: WatchFn | None = None) -> Deferred[tuple[bytes, NodeStat]]:
        return self._run("get", path, lambda: self.backend.get(path, self._watcher(watch)))

    def exists(self, path: str, watch: WatchFn | None = None) -> Deferred[NodeStat | None]:
        return self._run("exists", path, lambda: self.backend.exists(path, self._watcher(watch)))

    def children(self, path: str, watch: WatchFn | None = None) -> Deferred[list[str]]:
        return self._run(
            "children", path, lambda: self.backend.children(path, self._watcher(watch))
        )

    def create(
        self, path: str, data: bytes, *, ephemeral: bool = False, makepath: bool = False
    ) -> Deferred[NodeStat]:
        return self.create_node(path, data, ephemeral=ephemeral, makepath=makepath).addCallback(
            lambda r: r[1]
        )

    def create_node(
        self,
        path: str,
        data: bytes,
        *,
        ephemeral: bool = False,
        makepath: bool = False,
        sequence: bool = False,
    ) -> Deferred[tuple[str, NodeStat]]:
        """Create, returning the actual path (with the sequence suffix if ``sequence``)."""

        def op() -> tuple[str, NodeStat]:
            owner = (self._session_id or 0) if ephemeral else 0
            return self.backend.create(path, data, owner, makepath, sequence)

        return self._run("create", path, op)

    def set(self, path: str, data: bytes, version: int = -1) -> Deferred[NodeStat]:
        return self._run("set", path, lambda: self.backend.set(path, data, version))

    def delete(self, path: str, version: int = -1) -> Deferred[None]:
        return self._run("delete", path, lambda: self.backend.delete(path, version))

    def forget_watch(self, watch: WatchFn) -> None:
        pass  # watches are one-shot entries in the backend; nothing is kept per function

    def lock(self, path: str, identifier: str, timeout: float) -> Deferred[ITopoLock]:
        from vtwist.topo.memory_recipes import MemoryLock

        return MemoryLock(self, path, identifier).acquire(timeout)

    def election(self, path: str, identifier: str) -> ITopoElection:
        from vtwist.topo.memory_recipes import MemoryElection

        return MemoryElection(self, path, identifier)


def memory_topo(
    reactor: IReactorTime,
    backend: MemoryTopoBackend | None = None,
    layout: Layout | None = None,
) -> TopoServer:
    """A ``TopoServer`` on a new client of ``backend`` (a fresh backend by default).

    Call ``connect()`` before use, as with ZooKeeper. Several servers on one backend act
    as several processes sharing one ZooKeeper.
    """
    conn = MemoryConn(backend or MemoryTopoBackend(), reactor)
    return TopoServer(conn, reactor, layout)
