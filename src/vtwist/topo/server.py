"""``TopoServer``: the ``ITopoServer`` of every backend, built on a ``TopoConn``.

It owns what must be right whatever the backend: the record layout and JSON, errors that
name the keyspace or shard, compare-and-swap updates, this process's ephemeral tablet
nodes, and the recovery after connection trouble:

- connection lost (DEGRADED): nothing to do; watches keep their last values;
- reconnected with the same session: every watch re-reads and re-arms (kazoo dropped them),
  and each registered tablet is checked and rewritten if a write was missed;
- reconnected with a new session (after EXPIRED): the same, and the tablets' ephemeral
  nodes, deleted with the old session, are created again.

The recovery runs from the backend's state listener on the reactor thread, never inside
kazoo's listener (a ZooKeeper call there deadlocks).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from vtwist.interfaces import ITopoElection, ITopoLock, ITopoServer, ITopoWatch
from vtwist.topo.conn import ConnEvent, NodeStat, TopoConn, TopoState
from vtwist.topo.errors import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    TopoUnavailableError,
    ValidationError,
)
from vtwist.topo.layout import Layout
from vtwist.topo.names import validate_cell_name, validate_keyspace_name
from vtwist.topo.records import Keyspace, Shard, Tablet
from vtwist.topo.vschema import VSchema
from vtwist.topo.watch import ChildrenWatch, NodeWatch

log = Logger()

_Rearmable = NodeWatch[Any] | ChildrenWatch[Any]


def _need_version(kind: str, name: str, node_version: int | None) -> int:
    if node_version is None:
        raise ValidationError(
            f"{kind} {name}: an update needs the record as read from the topo (its node_version)"
            "; read it, change it with dataclasses.replace, then update"
        )
    return node_version


@implementer(ITopoServer)
class TopoServer:
    """The topo-server over one backend connection (``ZkConn`` or ``MemoryConn``)."""

    def __init__(self, conn: TopoConn, clock: IReactorTime, layout: Layout | None = None) -> None:
        self.layout = layout or Layout()
        self._conn = conn
        self._clock = clock
        self._listeners: list[Callable[[str], object]] = []
        self._watches: set[_Rearmable] = set()
        self._tablets: dict[str, Tablet] = {}  # registered by this process: alias -> record
        self._elections: list[ITopoElection] = []
        self._closed = False
        conn.add_listener(self._on_conn_event)

    @property
    def conn(self) -> TopoConn:
        """The backend connection (tests use it for fault injection)."""
        return self._conn

    # --- state -----------------------------------------------------------------------------

    def state(self) -> str:
        return self._conn.state.value

    def add_state_listener(self, listener: Callable[[str], object]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def connect(self, timeout: float) -> Deferred[None]:
        if not timeout >= 0:  # also refuses NaN (e.g. from a --topo-timeout option)
            return fail(
                ValidationError(
                    f"topo connect timeout {timeout!r} is invalid: give a number of seconds >= 0"
                )
            )
        return self._conn.connect(timeout)

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for watch in list(self._watches):
            watch.cancel()
        for election in self._elections:
            try:
                await election.resign()
            except Exception:
                log.failure("topo: resigning an election on close failed")
        self._tablets.clear()
        await self._conn.close()

    def _on_conn_event(self, event: ConnEvent) -> None:
        if event.state is TopoState.CONNECTED:
            if event.new_session:
                log.warn("topo: new ZooKeeper session {sid:#x}: re-creating ephemeral nodes",
                         sid=event.session_id or 0)  # fmt: skip
            for alias in list(self._tablets):
                Deferred.fromCoroutine(self._ensure_tablet(alias))
            for watch in list(self._watches):
                watch.rearm()
        for listener in list(self._listeners):
            try:
                listener(event.state.value)
            except Exception:
                log.failure("topo: state listener raised")

    # --- keyspaces -------------------------------------------------------------------------

    def create_keyspace(self, keyspace: Keyspace) -> Deferred[Keyspace]:
        return Deferred.fromCoroutine(self._create_keyspace(keyspace))

    async def _create_keyspace(self, keyspace: Keyspace) -> Keyspace:
        path = self.layout.keyspace(keyspace.name)
        try:
            stat = await self._conn.create(path, keyspace.to_json(), makepath=True)
        except NodeExistsError:
            raise NodeExistsError(f"keyspace {keyspace.name!r} already exists", path) from None
        return replace(keyspace, node_version=stat.version)

    def get_keyspace(self, name: str) -> Deferred[Keyspace]:
        return Deferred.fromCoroutine(self._get_keyspace(name))

    async def _get_keyspace(self, name: str) -> Keyspace:
        path = self.layout.keyspace(name)
        try:
            data, stat = await self._conn.get(path)
        except NoNodeError:
            raise NoNodeError(f"keyspace {name!r} does not exist", path) from None
        return Keyspace.from_json(name, data, stat.version)

    def list_keyspaces(self) -> Deferred[list[str]]:
        return Deferred.fromCoroutine(self._list(self.layout.keyspaces_dir))

    async def _list(self, path: str) -> list[str]:
        try:
            return sorted(await self._conn.children(path))
        except NoNodeError:
            return []

    def update_keyspace(self, keyspace: Keyspace) -> Deferred[Keyspace]:
        return Deferred.fromCoroutine(self._update_keyspace(keyspace))

    async def _update_keyspace(self, keyspace: Keyspace) -> Keyspace:
        version = _need_version("keyspace", keyspace.name, keyspace.node_version)
        path = self.layout.keyspace(keyspace.name)
        stat = await self._cas(path, keyspace.to_json(), version, f"keyspace {keyspace.name!r}")
        return replace(keyspace, node_version=stat.version)

    async def _cas(self, path: str, data: bytes, version: int, what: str) -> NodeStat:
        try:
            return await self._conn.set(path, data, version)
        except BadVersionError:
            raise BadVersionError(
                f"{what} was changed by someone else since it was read (at version {version})"
                ": read it again, reapply the change and retry",
                path,
            ) from None
        except NoNodeError:
            raise NoNodeError(f"{what} does not exist", path) from None

    async def _require_keyspace(self, keyspace: str) -> None:
        if await self._conn.exists(self.layout.keyspace(keyspace)) is None:
            raise NoNodeError(
                f"keyspace {keyspace!r} does not exist: create it first",
                self.layout.keyspace(keyspace),
            )

    # --- shards ----------------------------------------------------------------------------

    def create_shard(self, shard: Shard) -> Deferred[Shard]:
        return Deferred.fromCoroutine(self._create_shard(shard))

    async def _create_shard(self, shard: Shard) -> Shard:
        await self._require_keyspace(shard.keyspace)
        path = self.layout.shard(shard.keyspace, shard.name)
        try:
            stat = await self._conn.create(path, shard.to_json(), makepath=True)
        except NodeExistsError:
            raise NodeExistsError(
                f"shard {shard.keyspace}/{shard.name} already exists", path
            ) from None
        return replace(shard, node_version=stat.version)

    def get_shard(self, keyspace: str, shard: str) -> Deferred[Shard]:
        return Deferred.fromCoroutine(self._get_shard(keyspace, shard))

    async def _get_shard(self, keyspace: str, shard: str) -> Shard:
        path = self.layout.shard(keyspace, shard)
        try:
            data, stat = await self._conn.get(path)
        except NoNodeError:
            raise NoNodeError(f"shard {keyspace}/{shard} does not exist", path) from None
        return Shard.from_json(keyspace, shard, data, stat.version)

    def list_shards(self, keyspace: str) -> Deferred[list[str]]:
        return Deferred.fromCoroutine(self._list_shards(keyspace))

    async def _list_shards(self, keyspace: str) -> list[str]:
        try:
            return sorted(await self._conn.children(self.layout.shards_dir(keyspace)))
        except NoNodeError:
            await self._require_keyspace(keyspace)
            return []

    def update_shard(self, shard: Shard) -> Deferred[Shard]:
        return Deferred.fromCoroutine(self._update_shard(shard))

    async def _update_shard(self, shard: Shard) -> Shard:
        name = f"{shard.keyspace}/{shard.name}"
        version = _need_version("shard", name, shard.node_version)
        path = self.layout.shard(shard.keyspace, shard.name)
        stat = await self._cas(path, shard.to_json(), version, f"shard {name}")
        return replace(shard, node_version=stat.version)

    # --- vschema ---------------------------------------------------------------------------

    def get_vschema(self, keyspace: str) -> Deferred[VSchema]:
        return Deferred.fromCoroutine(self._get_vschema(keyspace))

    async def _get_vschema(self, keyspace: str) -> VSchema:
        path = self.layout.vschema(keyspace)
        try:
            data, stat = await self._conn.get(path)
        except NoNodeError:
            await self._require_keyspace(keyspace)
            raise NoNodeError(f"keyspace {keyspace!r} has no vschema yet", path) from None
        return VSchema.from_json(data, stat.version, what=f"vschema of {keyspace!r}")

    def save_vschema(self, keyspace: str, vschema: VSchema) -> Deferred[VSchema]:
        return Deferred.fromCoroutine(self._save_vschema(keyspace, vschema))

    async def _save_vschema(self, keyspace: str, vschema: VSchema) -> VSchema:
        record = await self._get_keyspace(keyspace)
        vschema.check_keyspace(keyspace, record.sharded)
        path = self.layout.vschema(keyspace)
        data = vschema.to_json()
        what = f"vschema of {keyspace!r}"
        if vschema.node_version is not None:
            stat = await self._cas(path, data, vschema.node_version, what)
        else:
            try:
                stat = await self._conn.set(path, data)
            except NoNodeError:
                stat = await self._conn.create(path, data)
        return replace(vschema, node_version=stat.version)

    # --- tablets ---------------------------------------------------------------------------

    def register_tablet(self, tablet: Tablet) -> Deferred[Tablet]:
        return Deferred.fromCoroutine(self._register_tablet(tablet))

    async def _register_tablet(self, tablet: Tablet) -> Tablet:
        self._tablets[tablet.alias] = tablet
        try:
            return await self._write_tablet(tablet.alias, create_first=True)
        except TopoUnavailableError:
            # Kept: it is published when the connection comes up.
            raise
        except Exception:
            self._tablets.pop(tablet.alias, None)
            raise

    def update_tablet(self, tablet: Tablet) -> Deferred[Tablet]:
        return Deferred.fromCoroutine(self._update_tablet(tablet))

    async def _update_tablet(self, tablet: Tablet) -> Tablet:
        if tablet.alias not in self._tablets:
            raise NoNodeError(
                f"tablet {tablet.alias} is not registered by this process: register it first",
                self.layout.tablet(tablet.alias),
            )
        self._tablets[tablet.alias] = tablet
        return await self._write_tablet(tablet.alias, create_first=False)

    async def _write_tablet(self, alias: str, create_first: bool) -> Tablet:
        """Write the registered record of ``alias`` to its ephemeral node, creating it if
        needed; refuse to overwrite a node of another session. NoNodeError when the tablet
        is unregistered meanwhile (a node this call created then is removed again)."""
        path = self.layout.tablet(alias)
        if create_first:
            try:
                stat = await self._conn.create(
                    path, self._registered(alias, path).to_json(), ephemeral=True, makepath=True
                )
                return await self._created(alias, path, stat.version)
            except NodeExistsError:
                pass
        current = await self._conn.exists(path)
        if current is None:
            try:
                stat = await self._conn.create(
                    path, self._registered(alias, path).to_json(), ephemeral=True, makepath=True
                )
                return await self._created(alias, path, stat.version)
            except NodeExistsError:
                # A concurrent write of ours (re-publish after reconnecting, and an update)
                # created it in between: look again and update it in place.
                current = await self._conn.exists(path)
                if current is None:
                    raise
        if current.ephemeral_owner != self._conn.session_id:
            raise NodeExistsError(
                f"tablet {alias} is registered by another ZooKeeper session"
                f" ({current.ephemeral_owner:#x}); if it is a previous run of this tablet, its"
                " node vanishes when that session times out",
                path,
            )
        stat = await self._conn.set(path, self._registered(alias, path).to_json())
        return replace(self._registered(alias, path), node_version=stat.version)

    def _registered(self, alias: str, path: str) -> Tablet:
        tablet = self._tablets.get(alias)
        if tablet is None:
            raise NoNodeError(f"tablet {alias} was unregistered meanwhile", path)
        return tablet

    async def _created(self, alias: str, path: str, version: int) -> Tablet:
        """The record after creating its node; the node goes again if the tablet was
        unregistered while it was being created."""
        tablet = self._tablets.get(alias)
        if tablet is None:
            with contextlib.suppress(NoNodeError):
                await self._conn.delete(path)
        return replace(self._registered(alias, path), node_version=version)

    async def _ensure_tablet(self, alias: str) -> None:
        if alias not in self._tablets:
            return
        try:
            await self._write_tablet(alias, create_first=False)
        except TopoUnavailableError:
            pass  # the next reconnection tries again
        except Exception:
            if alias in self._tablets:  # else: unregistered meanwhile, nothing to publish
                log.failure("topo: could not re-publish tablet {alias}", alias=alias)

    def unregister_tablet(self, alias: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._unregister_tablet(alias))

    async def _unregister_tablet(self, alias: str) -> None:
        path = self.layout.tablet(alias)
        self._tablets.pop(alias, None)
        stat = await self._conn.exists(path)
        if stat is not None and stat.ephemeral_owner == self._conn.session_id:
            with contextlib.suppress(NoNodeError):
                await self._conn.delete(path)

    def get_tablet(self, alias: str) -> Deferred[Tablet]:
        return Deferred.fromCoroutine(self._get_tablet(alias))

    async def _get_tablet(self, alias: str) -> Tablet:
        path = self.layout.tablet(alias)
        try:
            data, stat = await self._conn.get(path)
        except NoNodeError:
            raise NoNodeError(f"tablet {alias} does not exist", path) from None
        return Tablet.from_json(alias, data, stat.version)

    def list_tablets(self, cell: str) -> Deferred[list[Tablet]]:
        return Deferred.fromCoroutine(self._list_tablets(cell))

    async def _list_tablets(self, cell: str) -> list[Tablet]:
        aliases = await self._list(self.layout.tablets_dir(cell))
        # Read them concurrently: one round trip for the whole cell, not one per tablet.
        results = await DeferredList(
            [self.get_tablet(alias) for alias in aliases], consumeErrors=True
        )
        tablets: list[Tablet] = []
        for alias, (ok, value) in zip(aliases, results, strict=True):
            if ok:
                tablets.append(value)
                continue
            error = cast(Failure, value).value
            if isinstance(error, NoNodeError):
                continue  # gone between the listing and the read
            if not isinstance(error, ValidationError):
                cast(Failure, value).raiseException()
            log.error(
                "topo: skipping invalid tablet {alias}: {error}", alias=alias, error=str(error)
            )
        return tablets

    def list_cells(self) -> Deferred[list[str]]:
        return Deferred.fromCoroutine(self._list(self.layout.cells_dir))

    # --- coordination ----------------------------------------------------------------------

    def lock_shard(
        self, keyspace: str, shard: str, timeout: float, purpose: str = ""
    ) -> Deferred[ITopoLock]:
        path = self.layout.shard_lock(keyspace, shard)
        identifier = json.dumps(
            {
                "holder": f"{socket.gethostname()}:{os.getpid()}",
                "purpose": purpose,
                "time": self._clock.seconds(),
            },
            sort_keys=True,
        )
        return self._conn.lock(path, identifier, timeout)

    def election(self, name: str, identifier: str) -> ITopoElection:
        election = self._conn.election(self.layout.election(name), identifier)
        self._elections.append(election)
        return election

    # --- watches ---------------------------------------------------------------------------

    def _track(self, watch: _Rearmable) -> ITopoWatch:
        self._watches.add(watch)
        watch.start()
        return watch

    def _untrack(self, watch: _Rearmable) -> None:
        self._watches.discard(watch)

    def watch_tablets(
        self, cell: str, callback: Callable[[dict[str, Tablet]], object]
    ) -> ITopoWatch:
        validate_cell_name(cell)
        return self._track(
            ChildrenWatch(
                self._conn,
                self.layout.tablets_dir(cell),
                lambda alias, data, stat: Tablet.from_json(alias, data, stat.version),
                callback,
                f"tablets of cell {cell}",
                self._untrack,
            )
        )

    def watch_shard(
        self, keyspace: str, shard: str, callback: Callable[[Shard | None], object]
    ) -> ITopoWatch:
        return self._track(
            NodeWatch(
                self._conn,
                self.layout.shard(keyspace, shard),
                lambda data, stat: Shard.from_json(keyspace, shard, data, stat.version),
                callback,
                f"shard {keyspace}/{shard}",
                self._untrack,
            )
        )

    def watch_vschema(
        self, keyspace: str, callback: Callable[[VSchema | None], object]
    ) -> ITopoWatch:
        return self._track(
            NodeWatch(
                self._conn,
                self.layout.vschema(keyspace),
                lambda data, stat: VSchema.from_json(
                    data, stat.version, f"vschema of {keyspace!r}"
                ),
                callback,
                f"vschema of {keyspace}",
                self._untrack,
            )
        )

    def watch_keyspaces(self, callback: Callable[[dict[str, Keyspace]], object]) -> ITopoWatch:
        return self._track(
            ChildrenWatch(
                self._conn,
                self.layout.keyspaces_dir,
                lambda name, data, stat: Keyspace.from_json(name, data, stat.version),
                callback,
                "keyspaces",
                self._untrack,
            )
        )

    def watch_shards(
        self, keyspace: str, callback: Callable[[dict[str, Shard]], object]
    ) -> ITopoWatch:
        validate_keyspace_name(keyspace)
        return self._track(
            ChildrenWatch(
                self._conn,
                self.layout.shards_dir(keyspace),
                lambda name, data, stat: Shard.from_json(keyspace, name, data, stat.version),
                callback,
                f"shards of {keyspace}",
                self._untrack,
            )
        )
