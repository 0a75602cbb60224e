"""Watches that survive disconnections, built on a backend's one-shot watches.

ZooKeeper watches fire once, are dropped when the connection is lost (kazoo clears them on
SUSPENDED), are never set on a missing node by ``get_children`` (kazoo's ChildrenWatch then
stops forever), and skip intermediate versions. So a watch here:

- re-reads and re-arms after every event, and whenever ``rearm()`` is called (TopoServer
  calls it on every reconnection, so a change made while disconnected is delivered);
- follows a missing node with an ``exists`` watch, so its creation is seen;
- delivers whole values in change order, never an older value after a newer one (by
  znode ``mzxid``), and never the same value twice;
- runs the callback on the reactor thread (backends guarantee it) and logs its errors.

``NodeWatch`` follows one znode; ``ChildrenWatch`` follows a directory and the value of
each child (tablets of a cell, keyspaces, shards of a keyspace).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import ITopoWatch
from vtwist.topo.conn import NodeStat, TopoConn, TopoState
from vtwist.topo.errors import NoNodeError, TopoUnavailableError, ValidationError

log = Logger()

T = TypeVar("T")


class _Ready:
    """The first-delivery Deferreds of a watch."""

    def __init__(self) -> None:
        self.done = False
        self._waiters: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        if self.done:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def fire(self) -> None:
        if self.done:
            return
        self.done = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def cancel(self) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(CancelledError("watch cancelled"))


@implementer(ITopoWatch)
class NodeWatch(Generic[T]):
    """Follows one znode: ``callback(value)`` at each change, ``callback(None)`` while it
    is absent (or holds a value that does not decode, which is logged)."""

    def __init__(
        self,
        conn: TopoConn,
        path: str,
        decode: Callable[[bytes, NodeStat], T],
        callback: Callable[[T | None], object],
        what: str,
        on_cancel: Callable[[NodeWatch[T]], None] | None = None,
    ) -> None:
        self.path = path
        self._conn = conn
        self._decode = decode
        self._callback = callback
        self._what = what
        self._on_cancel = on_cancel
        # One bound method kept for the watch's lifetime: backends deduplicate by identity.
        self._event_fn = self._on_event
        self._gen = 0
        self._cancelled = False
        self._present: bool | None = None  # None: nothing delivered yet
        self._max_mzxid = -1
        self._ready = _Ready()

    def start(self) -> None:
        """Read the node and arm the watch."""
        self._arm()

    def rearm(self) -> None:
        """Read again and re-arm (after a reconnection)."""
        self._arm()

    def when_ready(self) -> Deferred[None]:
        return self._ready.wait()

    def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._conn.forget_watch(self._event_fn)
        self._ready.cancel()
        if self._on_cancel is not None:
            self._on_cancel(self)

    def _on_event(self) -> None:
        # Events also come when the backend drops its watches on disconnection: then the
        # read would fail, and the reconnection re-arms every watch anyway.
        if not self._cancelled and self._conn.state is TopoState.CONNECTED:
            self._arm()

    def _arm(self) -> None:
        if self._cancelled:
            return
        self._gen += 1
        gen = self._gen
        d = self._conn.get(self.path, watch=self._event_fn)
        d.addCallbacks(functools.partial(self._got, gen), functools.partial(self._get_failed, gen))

    def _get_failed(self, gen: int, failure: Failure) -> None:
        if not isinstance(failure.value, NoNodeError):
            self._failed(gen, failure)
            return
        # A missing node: an exists() watch tells when it appears.
        d = self._conn.exists(self.path, watch=self._event_fn)
        d.addCallbacks(functools.partial(self._exists, gen), functools.partial(self._failed, gen))

    def _exists(self, gen: int, stat: NodeStat | None) -> None:
        if gen != self._gen or self._cancelled:
            return
        if stat is not None:
            self._arm()  # created between the get and the exists
        elif self._present is not False:
            self._present = False
            self._deliver(None)

    def _got(self, gen: int, result: tuple[bytes, NodeStat]) -> None:
        if gen != self._gen or self._cancelled:
            return  # a newer read is in flight
        data, stat = result
        if stat.mzxid <= self._max_mzxid:
            return  # unchanged, or older than what was delivered (mzxid only grows)
        self._max_mzxid = stat.mzxid
        try:
            value: T | None = self._decode(data, stat)
        except ValidationError as e:
            log.error("topo: ignoring invalid {what} at {path}: {error}", what=self._what,
                      path=self.path, error=str(e))  # fmt: skip
            value = None
        self._present = value is not None
        self._deliver(value)

    def _failed(self, gen: int, failure: Failure) -> None:
        if gen != self._gen or self._cancelled:
            return
        if isinstance(failure.value, TopoUnavailableError):
            log.debug("topo: watch on {path} waits for reconnection", path=self.path)
        else:
            log.failure("topo: watch on {path} failed", failure, path=self.path)

    def _deliver(self, value: T | None) -> None:
        try:
            self._callback(value)
        except Exception:
            log.failure("topo: watch callback for {what} raised", what=self._what)
        self._ready.fire()


@implementer(ITopoWatch)
class ChildrenWatch(Generic[T]):
    """Follows a directory and each child's value: ``callback({name: value})``.

    The first delivery waits until every listed child has been read once; children whose
    value is invalid are left out (and logged). A missing directory is an empty mapping.
    """

    def __init__(
        self,
        conn: TopoConn,
        path: str,
        decode: Callable[[str, bytes, NodeStat], T],
        callback: Callable[[dict[str, T]], object],
        what: str,
        on_cancel: Callable[[ChildrenWatch[T]], None] | None = None,
    ) -> None:
        self.path = path
        self._conn = conn
        self._decode = decode
        self._callback = callback
        self._what = what
        self._on_cancel = on_cancel
        self._event_fn = self._on_event
        self._gen = 0
        self._cancelled = False
        self._listed = False
        self._children: dict[str, NodeWatch[T]] = {}
        self._pending: set[str] = set()
        self._values: dict[str, T] = {}
        self._delivered: dict[str, T] | None = None
        self._ready = _Ready()

    def start(self) -> None:
        self._arm()

    def rearm(self) -> None:
        self._arm()
        for child in list(self._children.values()):
            child.rearm()

    def when_ready(self) -> Deferred[None]:
        return self._ready.wait()

    def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._conn.forget_watch(self._event_fn)
        for child in self._children.values():
            child.cancel()
        self._children.clear()
        self._ready.cancel()
        if self._on_cancel is not None:
            self._on_cancel(self)

    def _on_event(self) -> None:
        if not self._cancelled and self._conn.state is TopoState.CONNECTED:
            self._arm()

    def _arm(self) -> None:
        if self._cancelled:
            return
        self._gen += 1
        gen = self._gen
        d = self._conn.children(self.path, watch=self._event_fn)
        d.addCallbacks(
            functools.partial(self._got_children, gen), functools.partial(self._list_failed, gen)
        )

    def _list_failed(self, gen: int, failure: Failure) -> None:
        if not isinstance(failure.value, NoNodeError):
            self._failed(gen, failure)
            return
        d = self._conn.exists(self.path, watch=self._event_fn)
        d.addCallbacks(functools.partial(self._exists, gen), functools.partial(self._failed, gen))

    def _exists(self, gen: int, stat: NodeStat | None) -> None:
        if gen != self._gen or self._cancelled:
            return
        if stat is not None:
            self._arm()
        else:
            self._got_children(gen, [])

    def _failed(self, gen: int, failure: Failure) -> None:
        if gen != self._gen or self._cancelled:
            return
        if isinstance(failure.value, TopoUnavailableError):
            log.debug("topo: watch on {path} waits for reconnection", path=self.path)
        else:
            log.failure("topo: watch on {path} failed", failure, path=self.path)

    def _got_children(self, gen: int, names: list[str]) -> None:
        if gen != self._gen or self._cancelled:
            return
        current = set(names)
        for gone in set(self._children) - current:
            self._children.pop(gone).cancel()
            self._values.pop(gone, None)
            self._pending.discard(gone)
        for name in sorted(current - set(self._children)):
            child: NodeWatch[T] = NodeWatch(
                self._conn,
                f"{self.path}/{name}",
                functools.partial(self._decode, name),
                functools.partial(self._child_changed, name),
                f"{self._what} {name}",
            )
            self._children[name] = child
            self._pending.add(name)
            child.start()
        self._listed = True
        self._maybe_deliver()

    def _child_changed(self, name: str, value: T | None) -> None:
        if self._cancelled or name not in self._children:
            return
        if value is None:
            self._values.pop(name, None)
        else:
            self._values[name] = value
        self._pending.discard(name)
        self._maybe_deliver()

    def _maybe_deliver(self) -> None:
        if self._cancelled or not self._listed or self._pending:
            return
        if self._delivered == self._values:
            return
        snapshot = dict(sorted(self._values.items()))
        self._delivered = dict(snapshot)
        try:
            self._callback(snapshot)
        except Exception:
            log.failure("topo: watch callback for {what} raised", what=self._what)
        self._ready.fire()
