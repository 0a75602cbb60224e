"""The storage primitives a topo backend provides, beneath ``TopoServer``.

A backend (``zk.ZkConn``, ``memory.MemoryConn``) offers ZooKeeper-shaped operations on
byte values at absolute paths, plus the lock and election recipes. ``TopoServer`` builds
the records, the watches and the recovery logic on top, once, for every backend; the
conformance suite checks that both behave alike.

Contract, for every backend:
- every method is called on the reactor thread and every Deferred fires on it;
- operations fail fast with ``TopoUnavailableError`` unless the state is CONNECTED;
- a watch function is one-shot: it is called (on the reactor thread, with no argument)
  after the next change of what was read, or when the backend drops its watches (on a
  lost connection); the caller reads again to re-arm it;
- listeners receive a ``ConnEvent`` at each state change; ``new_session`` is true on the
  CONNECTED that follows a session expiry (ephemeral nodes of the old session are gone).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.defer import Deferred

from vtwist.interfaces import ITopoElection, ITopoLock


class TopoState(enum.StrEnum):
    """The connection state of a topo client, as reported to caches and metrics."""

    CONNECTING = "connecting"  # never connected yet
    CONNECTED = "connected"
    DEGRADED = "degraded"  # connection lost, session may still live: serve from caches
    EXPIRED = "expired"  # session lost: ephemeral nodes and locks are gone; reconnecting
    CLOSED = "closed"


@dataclass(frozen=True)
class NodeStat:
    """What the topo-server layer needs from a znode's stat."""

    version: int  # data version, for compare-and-swap
    mzxid: int  # id of the last change: grows across delete and re-create
    ephemeral_owner: int  # session id of the owner, 0 for persistent nodes


@dataclass(frozen=True)
class ConnEvent:
    """A state change of a backend connection."""

    state: TopoState
    session_id: int | None
    new_session: bool = False


WatchFn = Callable[[], None]
ConnListener = Callable[[ConnEvent], None]


class TopoConn(Protocol):
    """The primitives a backend implements (see the module docstring for the contract)."""

    @property
    def state(self) -> TopoState: ...

    @property
    def session_id(self) -> int | None: ...

    def connect(self, timeout: float) -> Deferred[None]:
        """Start connecting; fire when connected, or fail with TopoUnavailableError after
        ``timeout`` seconds (the backend keeps trying in the background until closed)."""
        ...

    def close(self) -> Deferred[None]:
        """Release locks and elections, end the session (its ephemeral nodes vanish)."""
        ...

    def add_listener(self, listener: ConnListener) -> None: ...

    def remove_listener(self, listener: ConnListener) -> None: ...

    def get(self, path: str, watch: WatchFn | None = None) -> Deferred[tuple[bytes, NodeStat]]: ...

    def exists(self, path: str, watch: WatchFn | None = None) -> Deferred[NodeStat | None]: ...

    def children(self, path: str, watch: WatchFn | None = None) -> Deferred[list[str]]: ...

    def create(
        self, path: str, data: bytes, *, ephemeral: bool = False, makepath: bool = False
    ) -> Deferred[NodeStat]: ...

    def set(self, path: str, data: bytes, version: int = -1) -> Deferred[NodeStat]: ...

    def delete(self, path: str, version: int = -1) -> Deferred[None]: ...

    def forget_watch(self, watch: WatchFn) -> None:
        """The caller will not re-arm ``watch`` any more; drop what the backend keeps for it."""
        ...

    def lock(self, path: str, identifier: str, timeout: float) -> Deferred[ITopoLock]:
        """Take the exclusive lock at ``path`` within ``timeout`` seconds."""
        ...

    def election(self, path: str, identifier: str) -> ITopoElection:
        """Start campaigning in the election at ``path``."""
        ...
