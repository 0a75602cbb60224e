"""``TopoCache``: the last known topology for the gate, tablets and orchestrator.

It mirrors the global part of the topo (every keyspace, its shards and its VSchema) and
the tablets of the cells it is told to watch, kept current by watches; nothing polls.
Reads are synchronous, never block and never fail: while ZooKeeper is unreachable the last
known values are served and ``state()`` says ``degraded`` (``expired`` after a session
loss), which a metrics gauge or status page can show; when the connection returns, the
watches re-read everything, so no change is missed.

Usage::

    cache = TopoCache(topo, cells=["zone1"])
    cache.start()
    cache.subscribe(lambda kind, key: ...)   # "keyspaces", "shards", "vschema", "tablets", "state"
    await cache.when_ready()                 # everything read once (bound it with a timeout)
    cache.tablets("zone1"), cache.shard("commerce", "0"), cache.vschema("commerce")
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from zope.interface import implementer

from vtwist.interfaces import ITopoCache, ITopoServer, ITopoWatch
from vtwist.topo.names import validate_cell_name
from vtwist.topo.records import Keyspace, Shard, Tablet
from vtwist.topo.vschema import VSchema

log = Logger()

CacheListener = Callable[[str, tuple[str, ...]], object]


@implementer(ITopoCache)
class TopoCache:
    """A watch-fed mirror of the topo (see the module docstring)."""

    def __init__(self, topo: ITopoServer, cells: Iterable[str] = ()) -> None:
        self._topo = topo
        self._cells = [validate_cell_name(c) for c in cells]
        self._keyspaces: dict[str, Keyspace] = {}
        self._shards: dict[str, dict[str, Shard]] = {}
        self._vschemas: dict[str, VSchema] = {}
        self._tablets: dict[str, dict[str, Tablet]] = {}
        self._watches: dict[tuple[str, ...], ITopoWatch] = {}
        self._listeners: list[CacheListener] = []
        self._unsubscribe_state: Callable[[], None] | None = None
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching (the topo may still be connecting: values fill in when it is)."""
        if self._started:
            return
        self._started = True
        self._unsubscribe_state = self._topo.add_state_listener(self._on_state)
        self._watches[("keyspaces",)] = self._topo.watch_keyspaces(self._on_keyspaces)
        for cell in self._cells:
            self._watch_cell(cell)

    def watch_cell(self, cell: str) -> None:
        """Also follow the tablets of ``cell``."""
        validate_cell_name(cell)
        if cell not in self._cells:
            self._cells.append(cell)
            if self._started:
                self._watch_cell(cell)

    def _watch_cell(self, cell: str) -> None:
        self._watches[("tablets", cell)] = self._topo.watch_tablets(
            cell, lambda tablets: self._on_tablets(cell, tablets)
        )

    def when_ready(self) -> Deferred[None]:
        """Fire when every current watch has delivered once (keyspaces and, for each known
        keyspace, its shards and VSchema; each watched cell's tablets)."""
        return Deferred.fromCoroutine(self._when_ready())

    async def _when_ready(self) -> None:
        await self._watches[("keyspaces",)].when_ready()
        while True:
            watches = list(self._watches.values())
            # A watch cancelled meanwhile (its keyspace was deleted) counts as done.
            await DeferredList([w.when_ready() for w in watches], consumeErrors=True)
            if watches == list(self._watches.values()):
                return  # no keyspace appeared meanwhile

    def stop(self) -> None:
        """Cancel every watch (the values stay readable)."""
        for watch in self._watches.values():
            watch.cancel()
        self._watches.clear()
        if self._unsubscribe_state is not None:
            self._unsubscribe_state()
            self._unsubscribe_state = None
        self._started = False

    # --- reads ------------------------------------------------------------------------------

    def state(self) -> str:
        return self._topo.state()

    def keyspaces(self) -> dict[str, Keyspace]:
        return dict(self._keyspaces)

    def shards(self, keyspace: str) -> dict[str, Shard]:
        return dict(self._shards.get(keyspace, {}))

    def shard(self, keyspace: str, shard: str) -> Shard | None:
        return self._shards.get(keyspace, {}).get(shard)

    def vschema(self, keyspace: str) -> VSchema | None:
        return self._vschemas.get(keyspace)

    def tablets(self, cell: str | None = None) -> dict[str, Tablet]:
        if cell is not None:
            return dict(self._tablets.get(cell, {}))
        merged: dict[str, Tablet] = {}
        for tablets in self._tablets.values():
            merged.update(tablets)
        return merged

    def subscribe(self, listener: CacheListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # --- watch callbacks --------------------------------------------------------------------

    def _notify(self, kind: str, key: tuple[str, ...]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, key)
            except Exception:
                log.failure("topo cache: listener raised on {kind} {key}", kind=kind, key=key)

    def _on_state(self, state: str) -> None:
        self._notify("state", (state,))

    def _on_keyspaces(self, keyspaces: dict[str, Keyspace]) -> None:
        old, self._keyspaces = self._keyspaces, dict(keyspaces)
        for gone in set(old) - set(keyspaces):
            for key in (("shards", gone), ("vschema", gone)):
                watch = self._watches.pop(key, None)
                if watch is not None:
                    watch.cancel()
            self._shards.pop(gone, None)
            self._vschemas.pop(gone, None)
        for name in sorted(set(keyspaces) - set(old)):
            self._watches[("shards", name)] = self._topo.watch_shards(
                name, functools.partial(self._on_shards, name)
            )
            self._watches[("vschema", name)] = self._topo.watch_vschema(
                name, functools.partial(self._on_vschema, name)
            )
        self._notify("keyspaces", ())

    def _on_shards(self, keyspace: str, shards: dict[str, Shard]) -> None:
        if keyspace not in self._keyspaces:
            return
        self._shards[keyspace] = dict(shards)
        self._notify("shards", (keyspace,))

    def _on_vschema(self, keyspace: str, vschema: VSchema | None) -> None:
        if keyspace not in self._keyspaces:
            return
        if vschema is None:
            self._vschemas.pop(keyspace, None)
        else:
            self._vschemas[keyspace] = vschema
        self._notify("vschema", (keyspace,))

    def _on_tablets(self, cell: str, tablets: dict[str, Tablet]) -> None:
        self._tablets[cell] = dict(tablets)
        self._notify("tablets", (cell,))


class TopoCacheService(Service):
    """A role's topo session and watching cache as one service: at start, connect (a slow
    topo is logged while the client keeps retrying; nothing waits for it) and start the
    cache; ``on_loading``/``on_loaded`` hear when the first full read starts and ends. At
    stop, stop watching and close the session."""

    def __init__(
        self,
        topo: ITopoServer,
        cache: TopoCache,
        connect_timeout: float,
        *,
        on_loading: Callable[[], object] | None = None,
        on_loaded: Callable[[], object] | None = None,
    ) -> None:
        self.topo = topo
        self.cache = cache
        self.connect_timeout = connect_timeout
        self.on_loading = on_loading
        self.on_loaded = on_loaded

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]

        def failed(failure: Any) -> None:
            log.warn(
                "topo not reachable within {timeout}s ({error}); still trying",
                timeout=self.connect_timeout,
                error=failure.getErrorMessage(),
            )

        if self.on_loading is not None:
            self.on_loading()
        self.topo.connect(self.connect_timeout).addErrback(failed)
        self.cache.start()
        on_loaded = self.on_loaded
        if on_loaded is not None:
            self.cache.when_ready().addBoth(lambda _: on_loaded())

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        self.cache.stop()
        return self.topo.close()
