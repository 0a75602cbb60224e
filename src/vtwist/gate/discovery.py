# twisted.application.service is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The gate's live view of the tablets: topo records plus each tablet's health stream.

``Discovery`` watches the tablets of the configured cells in a ``TopoCache`` and keeps one
link (``TabletRPCConnector``) per tablet, started when the tablet appears and stopped when
its node vanishes (or its address changes). The topo says what exists; the health stream
says what serves: a tablet is a candidate only while its link is connected and its last
health push says ``serving``, and its type is the one that push reports. So a tablet that
stops serving gets no new query once its push arrives, and one whose node vanishes none
once the cache reports it. While ZooKeeper is unreachable the cache keeps its last view and
so does the gate.

One exception: a node that vanishes while its tablet's link is up and its health says
serving is a ZooKeeper session that expired (after a ZooKeeper outage, or a partition
between that tablet and ZooKeeper), not a tablet that left: a tablet that stops says "not
serving" first, and a dead one drops its link. Such a tablet stays a candidate
(``TabletHandle.unlisted``) until it registers again, says it is not serving, or its link
drops; only then is it retired as above. Without this, every replica vanished for a second
when ZooKeeper came back from an outage longer than the tablets' session timeout, and
their reads failed with "no healthy tablet".

``candidates(keyspace, shard, tablet_type)``: serving tablets of that shard and type;
replicas lagging more than ``max_lag`` are skipped; for PRIMARY only the tablet(s) with the
highest ``primary_term`` count (two tablets claiming PRIMARY: the newer term wins). Every
statement asks, so the answers are cached until the next change (a health push, a link
state change, a topo sync); a cached tablet that stopped serving meanwhile (its link
closing before the state change is reported) makes the answer be computed again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from vtwist.interfaces import ITopoCache
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient
from vtwist.topo.records import Tablet

log = Logger()

DEFAULT_MAX_TABLETS = 4096
DEFAULT_DRAIN_TIMEOUT = 30.0
DRAIN_POLL = 0.05  # seconds between two looks at a retired tablet's requests in flight
# Distinct (keyspace, shard, type) answers cached; beyond, the cache starts over.
MAX_CACHED_CANDIDATES = 1024


class TabletLink(Protocol):
    """What discovery needs of a tablet link (``TabletRPCConnector`` provides it)."""

    @property
    def connected(self) -> bool: ...

    def require_client(self) -> TabletRPCClient: ...

    def subscribe_health(self, listener: Callable[[dict[str, Any]], object]) -> Any: ...

    def subscribe_state(self, listener: Callable[[bool], object]) -> Any: ...

    def startService(self) -> None: ...

    def stopService(self) -> Deferred[None] | None: ...


LinkFactory = Callable[[Tablet], TabletLink]


class NoServingTabletError(MySQLError):
    """ERROR 1105: no tablet of ``keyspace/shard@tablet_type`` serves right now (the
    failover buffer waits on this one when the type is PRIMARY)."""

    def __init__(self, keyspace: str, shard: str, tablet_type: str, message: str) -> None:
        super().__init__(ErrorCode.UNKNOWN_ERROR, message)
        self.keyspace = keyspace
        self.shard = shard
        self.tablet_type = tablet_type


class TabletHandle:
    """One tablet as the gate routes to it: its topo record, link and last health."""

    def __init__(self, tablet: Tablet, link: TabletLink) -> None:
        self.tablet = tablet
        self.link = link
        self.health: Mapping[str, Any] | None = None
        self.inflight = 0
        self.removed = False  # left the topo: no new statement goes to it
        # Its node vanished while it was linked and serving (an expired ZooKeeper session):
        # still routed until it registers again or stops serving (module docstring).
        self.unlisted = False
        self.stopped = False  # its link is closed for good (after ``removed``)
        # Sessions' transactions open on it: a removed tablet's link stays up while they
        # are (the tablet lets them end while it shuts down), at most drain_timeout.
        self.pinned = 0
        # Bumped on every (re)connect: ids the tablet gave on an older connection's watch
        # (transactions, reserved connections) are gone with it.
        self.generation = 0

    @property
    def alias(self) -> str:
        """The tablet's alias (``cell-uid``)."""
        return self.tablet.alias

    @property
    def cell(self) -> str:
        """The tablet's cell."""
        return self.tablet.cell

    @property
    def keyspace(self) -> str:
        """The keyspace the tablet serves."""
        return self.tablet.keyspace

    @property
    def shard(self) -> str:
        """The shard the tablet serves."""
        return self.tablet.shard

    @property
    def tablet_type(self) -> str:
        """The type the tablet's last health push reports (else its topo record's)."""
        if self.health is not None:
            t = self.health.get("tablet_type")
            if isinstance(t, str) and t:
                return t
        return self.tablet.tablet_type

    @property
    def hostname(self) -> str:
        """The host name the tablet reports (else its topo record's address)."""
        if self.health is not None:
            name = self.health.get("hostname")
            if isinstance(name, str) and name:
                return name
        return self.tablet.host

    @property
    def serving(self) -> bool:
        """True while linked and the last health push says serving."""
        return (
            not self.removed
            and self.link.connected
            and self.health is not None
            and self.health.get("serving") is True
        )

    @property
    def primary_term(self) -> int:
        """The primary term the tablet reports (health first, then topo)."""
        if self.health is not None:
            term = self.health.get("primary_term")
            if isinstance(term, int):
                return term
        return self.tablet.primary_term

    @property
    def primary_term_start(self) -> float | None:
        """When its primary term started (epoch seconds), if it reports it."""
        if self.health is not None:
            start = self.health.get("primary_term_start")
            if isinstance(start, (int, float)):
                return float(start)
        return None

    @property
    def lag_s(self) -> float | None:
        """Replication lag in seconds (None: unknown or not a replica)."""
        if self.health is not None:
            lag = self.health.get("lag_s")
            if isinstance(lag, (int, float)):
                return float(lag)
            return None
        return self.tablet.health.lag_s

    @property
    def error(self) -> str | None:
        """The tablet's last health error, if any."""
        if self.health is not None:
            err = self.health.get("error")
            return err if isinstance(err, str) else None
        return None

    @property
    def state(self) -> str:
        """SERVING, NOT_SERVING or DISCONNECTED (for SHOW VITESS_TABLETS and metrics)."""
        if not self.link.connected:
            return "DISCONNECTED"
        return "SERVING" if self.serving else "NOT_SERVING"

    def client(self) -> TabletRPCClient:
        """The connected RPC client (MySQLError 2003 if not connected right now)."""
        return self.link.require_client()

    def __repr__(self) -> str:
        return f"<TabletHandle {self.alias} {self.keyspace}/{self.shard} {self.tablet_type}>"


class Discovery(Service):
    """Tablets of the watched cells with their links and health (module docstring).

    Bounds: ``max_tablets`` (links kept; more tablets are ignored and logged), ``max_lag``
    (seconds; replicas lagging more are skipped, None: never skipped), ``drain_timeout``
    (seconds a tablet that left the topo keeps its link for the requests already running on
    it: its node also vanishes when only its ZooKeeper session expired, and those requests
    should finish rather than fail with "may or may not have run").
    """

    def __init__(
        self,
        cache: ITopoCache,
        clock: IReactorTime,
        link_factory: LinkFactory,
        *,
        cells: list[str],
        max_lag: float | None = 30.0,
        max_tablets: int = DEFAULT_MAX_TABLETS,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    ) -> None:
        self.cache = cache
        self.clock = clock
        self.link_factory = link_factory
        self.cells = list(cells)
        self.max_lag = max_lag
        self.max_tablets = max_tablets
        self.drain_timeout = drain_timeout
        self._draining: dict[TabletHandle, IDelayedCall] = {}
        self.handles: dict[str, TabletHandle] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._listeners: list[Callable[[], object]] = []
        self._candidates: dict[tuple[str, str, str], list[TabletHandle]] = {}

    # --- lifecycle --------------------------------------------------------------------------

    def startService(self) -> None:
        """Follow the cache's tablets from now on."""
        super().startService()
        self._unsubscribe = self.cache.subscribe(self._on_cache)
        self.sync()

    def stopService(self) -> Deferred[None]:
        """Stop following the cache and close every link."""
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        handles, self.handles = list(self.handles.values()), {}
        for handle, call in list(self._draining.items()):
            if call.active():
                call.cancel()
            handles.append(handle)
        self._draining.clear()
        waits: list[Deferred[Any]] = []
        for h in handles:
            d = self._stop(h)
            if d is not None:
                waits.append(d)
        if not waits:
            return succeed(None)
        return gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def on_change(self, listener: Callable[[], object]) -> None:
        """Call ``listener()`` whenever the set of tablets or their health changes."""
        self._listeners.append(listener)

    # --- following the topo -----------------------------------------------------------------

    def _on_cache(self, kind: str, key: tuple[str, ...]) -> None:
        if kind == "tablets":
            self.sync()

    def sync(self) -> None:
        """Reconcile links with the cache's tablets of the watched cells."""
        wanted: dict[str, Tablet] = {}
        for cell in self.cells:
            wanted.update(self.cache.tablets(cell))
        for alias in [a for a in self.handles if a not in wanted]:
            handle = self.handles[alias]
            if handle.serving:
                if not handle.unlisted:
                    handle.unlisted = True
                    log.info(
                        "tablet {alias} left the topo but is linked and serving (its ZooKeeper "
                        "session expired?): still routed until it registers again or stops "
                        "serving",
                        alias=alias,
                    )
                continue
            self._leave(handle)
        for alias, tablet in sorted(wanted.items()):
            known = self.handles.get(alias)
            if known is not None:
                if _address(known.tablet) == _address(tablet):
                    known.tablet = tablet
                    known.unlisted = False
                    continue
                log.info("tablet {alias} moved; reconnecting", alias=alias)
                self._stop(self.handles.pop(alias))
            if len(self.handles) >= self.max_tablets:
                log.warn(
                    "ignoring tablet {alias}: discovery.max_tablets ({max}) reached",
                    alias=alias,
                    max=self.max_tablets,
                )
                continue
            if not tablet.rpc_port:
                continue  # not listening yet: its record is updated once it is
            self._add(tablet)
        self._changed()

    def _add(self, tablet: Tablet) -> None:
        link = self.link_factory(tablet)
        handle = TabletHandle(tablet, link)

        def on_health(snapshot: dict[str, Any]) -> None:
            if not handle.removed:
                handle.health = snapshot
                if handle.unlisted and not handle.serving:
                    self._leave(handle)
                self._changed()

        def on_state(connected: bool) -> None:
            handle.generation += 1
            if not connected:
                handle.health = None
                if handle.unlisted and not handle.removed:
                    self._leave(handle)
            self._changed()

        link.subscribe_health(on_health)
        link.subscribe_state(on_state)
        self.handles[tablet.alias] = handle
        link.startService()

    def _leave(self, handle: TabletHandle) -> None:
        """``handle``'s node is gone (and it is not serving, or no longer): retire it."""
        if self.handles.get(handle.alias) is handle:
            del self.handles[handle.alias]
        log.info("tablet {alias} left the topo; no more queries to it", alias=handle.alias)
        self._retire(handle)

    def _retire(self, handle: TabletHandle, waited: float = 0.0) -> None:
        """No new query goes to ``handle``; its link closes once what runs on it is done
        and the transactions open on it ended (or ``drain_timeout`` passed, or the link
        dropped)."""
        self._draining.pop(handle, None)
        handle.removed = True
        idle = handle.inflight <= 0 and (handle.pinned <= 0 or not handle.link.connected)
        if idle or waited >= self.drain_timeout or not self.running:
            self._stop(handle)
            return
        self._draining[handle] = self.clock.callLater(
            DRAIN_POLL, self._retire, handle, waited + DRAIN_POLL
        )

    def _stop(self, handle: TabletHandle) -> Deferred[None] | None:
        handle.removed = handle.stopped = True
        handle.health = None
        return handle.link.stopService()

    def _changed(self) -> None:
        self._candidates.clear()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.failure("discovery listener failed")

    # --- what routing asks ------------------------------------------------------------------

    def all(self) -> list[TabletHandle]:
        """Every known tablet, by alias."""
        return [self.handles[a] for a in sorted(self.handles)]

    def candidates(self, keyspace: str, shard: str, tablet_type: str) -> list[TabletHandle]:
        """Serving tablets of ``keyspace/shard`` at ``tablet_type`` (module docstring)."""
        key = (keyspace, shard, tablet_type)
        cached = self._candidates.get(key)
        if cached is not None:
            for h in cached:
                if not h.serving:
                    break
            else:
                return list(cached)
        found = self._find(keyspace, shard, tablet_type)
        if found:
            if len(self._candidates) >= MAX_CACHED_CANDIDATES:
                self._candidates.clear()
            self._candidates[key] = found
            return list(found)
        self._candidates.pop(key, None)
        return found

    def _find(self, keyspace: str, shard: str, tablet_type: str) -> list[TabletHandle]:
        found = [
            h
            for h in self.handles.values()
            if h.keyspace == keyspace
            and h.shard == shard
            and h.serving
            and h.tablet_type == tablet_type
        ]
        if tablet_type == "primary":
            if len(found) > 1:
                top = max(h.primary_term for h in found)
                found = [h for h in found if h.primary_term == top]
            return found
        if self.max_lag is not None:
            limit = self.max_lag
            found = [h for h in found if h.lag_s is None or h.lag_s <= limit]
        return found


def _address(tablet: Tablet) -> tuple[str, int]:
    return tablet.host, tablet.rpc_port
