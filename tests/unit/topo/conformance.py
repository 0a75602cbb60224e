"""The ITopoServer conformance suite, run against every backend.

``TopoConformance`` holds the tests; a backend's test module mixes it into a trial
``TestCase`` and provides ``new_client()`` (a connected TopoServer on the shared store,
as another process would have) and ``expire(topo)`` (end its session as ZooKeeper would).
Tests run on the real reactor, so they also check that every callback arrives on the
reactor thread.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Any

from zope.interface.verify import verifyObject

from tests.unit.topo.helpers import Recorder, eventually, eventually_async, with_timeout
from vtwist.interfaces import ITopoCache, ITopoElection, ITopoLock, ITopoServer, ITopoWatch
from vtwist.topo import (
    FORMAT_VERSION,
    Keyspace,
    Shard,
    Tablet,
    TabletHealth,
    TopoCache,
    TopoServer,
    VSchema,
)
from vtwist.topo.errors import (
    BadVersionError,
    LockLostError,
    LockTimeoutError,
    NodeExistsError,
    NoNodeError,
    ValidationError,
)

SHARDED_VSCHEMA = {
    "sharded": True,
    "vindexes": {"hash": {"type": "hash"}},
    "tables": {"customer": {"column_vindexes": [{"column": "id", "name": "hash"}]}},
}


def tablet(alias: str, **kw: Any) -> Tablet:
    values: dict[str, Any] = {
        "keyspace": "commerce",
        "shard": "0",
        "tablet_type": "replica",
        "host": "127.0.0.1",
        "rpc_port": 16000,
        "mysql_port": 3306,
    }
    values.update(kw)
    return Tablet(alias=alias, **values)


class TopoConformance:
    """Backend-independent behaviour of ITopoServer (mixed into a trial TestCase)."""

    lock_timeout = 0.5

    async def new_client(self) -> TopoServer:
        raise NotImplementedError

    async def expire(self, topo: TopoServer) -> None:
        raise NotImplementedError

    async def test_provides_interfaces(self) -> None:
        topo = await self.new_client()
        assert verifyObject(ITopoServer, topo)
        assert topo.state() == "connected"
        watch = topo.watch_shard("commerce", "0", lambda s: None)
        assert verifyObject(ITopoWatch, watch)
        watch.cancel()
        lock = await topo.lock_shard("commerce", "0", 5)
        assert verifyObject(ITopoLock, lock)
        await lock.release()
        election = topo.election("vtorc", "me")
        assert verifyObject(ITopoElection, election)
        await election.resign()

    async def test_keyspace_create_get_list_update(self) -> None:
        topo = await self.new_client()
        assert await topo.list_keyspaces() == []
        created = await topo.create_keyspace(Keyspace("commerce", sharded=False))
        assert created.node_version == 0
        await topo.create_keyspace(Keyspace("customer", sharded=True, durability="semi_sync"))
        assert await topo.list_keyspaces() == ["commerce", "customer"]
        got = await topo.get_keyspace("customer")
        assert got == Keyspace("customer", sharded=True, durability="semi_sync")
        with self._raises(NodeExistsError, "already exists"):
            await topo.create_keyspace(Keyspace("commerce"))
        with self._raises(NoNodeError, "'nope' does not exist"):
            await topo.get_keyspace("nope")
        updated = await topo.update_keyspace(replace(got, durability="none"))
        assert updated.node_version == 1
        assert (await topo.get_keyspace("customer")).durability == "none"
        with self._raises(BadVersionError, "changed by someone else"):
            await topo.update_keyspace(replace(got, durability="semi_sync"))
        with self._raises(ValidationError, "node_version"):
            await topo.update_keyspace(Keyspace("customer"))

    async def test_shard_create_get_list_and_cas(self) -> None:
        topo, other = await self.new_client(), await self.new_client()
        with self._raises(NoNodeError, "create it first"):
            await topo.create_shard(Shard.new("commerce", "0"))
        with self._raises(NoNodeError, "does not exist"):
            await topo.list_shards("commerce")
        await topo.create_keyspace(Keyspace("commerce", sharded=True))
        assert await topo.list_shards("commerce") == []
        await topo.create_shard(Shard.new("commerce", "-80"))
        await topo.create_shard(Shard.new("commerce", "80-"))
        assert await topo.list_shards("commerce") == ["-80", "80-"]
        with self._raises(NodeExistsError, "shard commerce/-80 already exists"):
            await topo.create_shard(Shard.new("commerce", "-80"))
        mine = await topo.get_shard("commerce", "-80")
        theirs = await other.get_shard("commerce", "-80")
        assert (mine.key_range.start, mine.key_range.end) == ("", "80")
        assert mine.primary_alias is None and mine.primary_term == 0
        won = await other.update_shard(replace(theirs, primary_alias="zone1-100", primary_term=1))
        assert won.node_version == theirs.node_version + 1  # type: ignore[operator]
        with self._raises(BadVersionError, "shard commerce/-80 was changed by someone else"):
            await topo.update_shard(replace(mine, primary_alias="zone1-101", primary_term=1))
        fresh = await topo.get_shard("commerce", "-80")
        assert (fresh.primary_alias, fresh.primary_term) == ("zone1-100", 1)
        with self._raises(NoNodeError, "shard commerce/c0- does not exist"):
            await topo.get_shard("commerce", "c0-")

    async def test_vschema_get_save_validate(self) -> None:
        topo = await self.new_client()
        await topo.create_keyspace(Keyspace("customer", sharded=True))
        with self._raises(NoNodeError, "has no vschema"):
            await topo.get_vschema("customer")
        with self._raises(NoNodeError, "does not exist"):
            await topo.get_vschema("nope")
        saved = await topo.save_vschema("customer", VSchema.parse(SHARDED_VSCHEMA))
        got = await topo.get_vschema("customer")
        assert got == saved and got.to_dict() == SHARDED_VSCHEMA
        with self._raises(ValidationError, "sharded"):
            await topo.save_vschema("customer", VSchema.parse({"sharded": False}))
        await topo.save_vschema("customer", got)  # CAS at the version read: wins
        with self._raises(BadVersionError, "changed by someone else"):
            await topo.save_vschema("customer", got)  # same version again: stale

    async def test_tablets_register_update_list(self) -> None:
        topo = await self.new_client()
        assert await topo.list_cells() == []
        registered = await topo.register_tablet(tablet("zone1-100"))
        assert registered.node_version == 0
        await topo.register_tablet(tablet("zone1-101", tablet_type="primary"))
        await topo.register_tablet(tablet("zone2-200"))
        assert await topo.list_cells() == ["zone1", "zone2"]
        assert [t.alias for t in await topo.list_tablets("zone1")] == ["zone1-100", "zone1-101"]
        assert await topo.list_tablets("zone9") == []
        health = TabletHealth(lag_s=1.5, error=None, updated=1000.0)
        updated = await topo.update_tablet(replace(registered, serving=True, health=health))
        assert updated.node_version == 1
        got = await topo.get_tablet("zone1-100")
        assert got.serving and got.health == health and got.cell == "zone1"
        with self._raises(NoNodeError, "not registered by this process"):
            await topo.update_tablet(tablet("zone1-999"))
        with self._raises(NoNodeError, "does not exist"):
            await topo.get_tablet("zone1-999")
        await topo.unregister_tablet("zone1-101")
        assert [t.alias for t in await topo.list_tablets("zone1")] == ["zone1-100"]

    async def test_records_are_versioned_json_at_the_architecture_paths(self) -> None:
        topo = await self.new_client()
        await topo.create_keyspace(Keyspace("customer", sharded=True, durability="semi_sync"))
        await topo.create_shard(Shard.new("customer", "-80"))
        await topo.save_vschema("customer", VSchema.parse(SHARDED_VSCHEMA))
        await topo.register_tablet(tablet("zone1-100", keyspace="customer", shard="-80"))
        root = topo.layout.root
        expected: dict[str, dict[str, Any]] = {
            f"{root}/global/keyspaces/customer": {"sharded": True, "durability": "semi_sync"},
            f"{root}/global/keyspaces/customer/vschema": {"tables": SHARDED_VSCHEMA["tables"]},
            f"{root}/global/keyspaces/customer/shards/-80": {
                "key_range": {"start": "", "end": "80"}
            },
            f"{root}/cells/zone1/tablets/zone1-100": {"alias": "zone1-100", "type": "replica"},
        }
        owners: dict[str, int | None] = {}
        for path, fields in expected.items():
            data, stat = await topo.conn.get(path)
            stored = json.loads(data)
            assert stored["version"] == FORMAT_VERSION, path
            assert {k: stored[k] for k in fields} == fields, path
            owners[path.rsplit("/", 1)[1]] = stat.ephemeral_owner
        # Only the tablet is ephemeral, and it belongs to this client's session.
        assert owners == {"customer": 0, "vschema": 0, "-80": 0, "zone1-100": topo.conn.session_id}

    async def test_tablet_is_ephemeral(self) -> None:
        owner, observer = await self.new_client(), await self.new_client()
        await owner.register_tablet(tablet("zone1-100"))
        with self._raises(NodeExistsError, "another ZooKeeper session"):
            await observer.register_tablet(tablet("zone1-100"))
        assert [t.alias for t in await observer.list_tablets("zone1")] == ["zone1-100"]
        await owner.close()
        assert await observer.list_tablets("zone1") == []
        await observer.register_tablet(tablet("zone1-100"))  # the alias is free again

    async def test_lock_exclusion_and_timeout(self) -> None:
        a, b = await self.new_client(), await self.new_client()
        lock = await a.lock_shard("commerce", "0", 5, purpose="reparent")
        assert lock.held()
        lock.check()
        with self._raises(LockTimeoutError, "reparent"):
            await b.lock_shard("commerce", "0", self.lock_timeout)
        other_shard = await b.lock_shard("commerce", "80-", 5)  # other shards are free
        await other_shard.release()
        waiting = b.lock_shard("commerce", "0", 15)
        await lock.release()
        assert not lock.held()
        with self._raises(LockLostError, "no longer held"):
            lock.check()
        second = await with_timeout(waiting, 15, "the waiter to get the lock")
        assert second.held()
        # The holder's session ends: the lock is free.
        third = a.lock_shard("commerce", "0", 15)
        await b.close()
        assert (await with_timeout(third, 15, "lock after the holder closed")).held()

    async def test_election_handover(self) -> None:
        a, b, c = await self.new_client(), await self.new_client(), await self.new_client()
        first = a.election("vtorc", "orc-a")
        await with_timeout(first.when_leader(), 10, "a to lead")
        second = b.election("vtorc", "orc-b")
        events: list[bool] = []
        second.add_listener(events.append)
        assert first.is_leader() and not second.is_leader()
        assert await second.leader() == "orc-a"
        await first.resign()
        await with_timeout(second.when_leader(), 10, "b to lead after a resigned")
        assert events == [True] and not first.is_leader()
        third = c.election("vtorc", "orc-c")
        await b.close()  # the leader's process dies
        await with_timeout(third.when_leader(), 10, "c to lead after b closed")
        assert await third.leader() == "orc-c"

    async def test_watch_shard_delivers_in_order_on_reactor_thread(self) -> None:
        topo, writer = await self.new_client(), await self.new_client()
        seen: Recorder[Shard | None] = Recorder()
        watch = topo.watch_shard("commerce", "0", seen)
        await with_timeout(watch.when_ready(), 10, "first delivery")
        assert seen.values == [None]
        await writer.create_keyspace(Keyspace("commerce"))
        shard = await writer.create_shard(Shard.new("commerce", "0"))
        for term in range(1, 6):
            shard = await writer.update_shard(replace(shard, primary_term=term))
        await seen.until(lambda s: s is not None and s.primary_term == 5, "term 5")
        terms = [s.primary_term for s in seen.values if s is not None]
        assert terms == sorted(terms) and len(set(terms)) == len(terms)
        assert seen.threads == {threading.main_thread().ident}
        watch.cancel()
        count = len(seen.values)
        await writer.update_shard(replace(shard, primary_term=6))
        await writer.get_shard("commerce", "0")  # a round trip after the change
        assert len(seen.values) == count

    async def test_watch_tablets_of_cell(self) -> None:
        topo, a, b = await self.new_client(), await self.new_client(), await self.new_client()
        await a.register_tablet(tablet("zone1-100"))
        seen: Recorder[dict[str, Tablet]] = Recorder()
        topo.watch_tablets("zone1", seen)
        await seen.until(lambda t: list(t) == ["zone1-100"], "the first tablet")
        t101 = await b.register_tablet(tablet("zone1-101"))
        await seen.until(lambda t: list(t) == ["zone1-100", "zone1-101"], "the second tablet")
        await b.update_tablet(replace(t101, serving=True))
        await seen.until(lambda t: t["zone1-101"].serving, "zone1-101 serving")
        await a.close()
        await seen.until(lambda t: list(t) == ["zone1-101"], "zone1-100 to vanish")
        await b.register_tablet(tablet("zone2-300"))  # another cell: not delivered here
        await b.get_tablet("zone2-300")
        assert all("zone2-300" not in v for v in seen.values)
        assert seen.threads == {threading.main_thread().ident}

    async def test_watch_vschema_keyspaces_and_shards(self) -> None:
        topo, writer = await self.new_client(), await self.new_client()
        keyspaces: Recorder[dict[str, Keyspace]] = Recorder()
        shards: Recorder[dict[str, Shard]] = Recorder()
        vschemas: Recorder[VSchema | None] = Recorder()
        topo.watch_keyspaces(keyspaces)
        topo.watch_shards("customer", shards)
        topo.watch_vschema("customer", vschemas)
        await keyspaces.until(lambda k: k == {}, "no keyspace")
        await writer.create_keyspace(Keyspace("customer", sharded=True))
        await keyspaces.until(lambda k: list(k) == ["customer"], "the keyspace")
        await writer.create_shard(Shard.new("customer", "-80"))
        await writer.create_shard(Shard.new("customer", "80-"))
        await shards.until(lambda s: list(s) == ["-80", "80-"], "two shards")
        await writer.save_vschema("customer", VSchema.parse(SHARDED_VSCHEMA))
        await vschemas.until(lambda v: v is not None and "customer" in v.tables, "the vschema")
        assert vschemas.values[0] is None

    async def test_session_expiry_recreates_tablet_and_rearms_watches(self) -> None:
        topo, writer = await self.new_client(), await self.new_client()
        states: list[str] = []
        topo.add_state_listener(states.append)
        await writer.create_keyspace(Keyspace("commerce"))
        shard = await writer.create_shard(Shard.new("commerce", "0"))
        await topo.register_tablet(tablet("zone1-100"))
        seen: Recorder[Shard | None] = Recorder()
        topo.watch_shard("commerce", "0", seen)
        await seen.until(lambda s: s is not None, "the shard")
        old_session = topo.conn.session_id
        await self.expire(topo)
        await eventually(
            lambda: "expired" in states and topo.state() == "connected", "a new session"
        )
        assert topo.conn.session_id != old_session
        await writer.update_shard(replace(shard, primary_term=7))
        await seen.until(lambda s: s is not None and s.primary_term == 7, "a change after expiry")

        async def republished() -> bool:
            return [t.alias for t in await writer.list_tablets("zone1")] == ["zone1-100"]

        await eventually_async(republished, "the tablet to be published again")
        # and it belongs to the new session: closing the owner removes it
        await topo.close()
        assert await writer.list_tablets("zone1") == []

    async def test_lock_and_leadership_lost_with_session(self) -> None:
        a, b = await self.new_client(), await self.new_client()
        lock = await a.lock_shard("commerce", "0", 5)
        election = a.election("vtorc", "orc-a")
        await with_timeout(election.when_leader(), 10, "a to lead")
        rival = b.election("vtorc", "orc-b")
        changes: list[bool] = []
        election.add_listener(changes.append)
        old_session = a.conn.session_id
        await self.expire(a)
        await with_timeout(rival.when_leader(), 15, "b to lead after a's session expired")
        # The server may free the lock before a's client learns of the expiry.
        await eventually(
            lambda: a.state() == "expired" or a.conn.session_id != old_session,
            "a to learn its session expired",
        )
        assert not lock.held()
        with self._raises(LockLostError, "no longer held"):
            lock.check()
        assert False in changes
        relock = await b.lock_shard("commerce", "0", 10)
        assert relock.held()
        await eventually(lambda: a.state() == "connected", "a to reconnect")
        assert not election.is_leader()  # campaigning again behind b
        await rival.resign()
        await with_timeout(election.when_leader(), 15, "a to lead again")

    async def test_cache_mirrors_topo(self) -> None:
        topo, writer = await self.new_client(), await self.new_client()
        await writer.create_keyspace(Keyspace("customer", sharded=True))
        await writer.create_shard(Shard.new("customer", "-80"))
        await writer.register_tablet(tablet("zone1-100", keyspace="customer", shard="-80"))
        cache = TopoCache(topo, cells=["zone1"])
        assert verifyObject(ITopoCache, cache)
        events: list[tuple[str, tuple[str, ...]]] = []
        cache.subscribe(lambda kind, key: events.append((kind, key)))
        cache.start()
        await with_timeout(cache.when_ready(), 15, "the cache")
        assert list(cache.keyspaces()) == ["customer"]
        assert list(cache.shards("customer")) == ["-80"]
        assert list(cache.tablets("zone1")) == ["zone1-100"] == list(cache.tablets())
        assert cache.vschema("customer") is None and cache.state() == "connected"
        await writer.save_vschema("customer", VSchema.parse(SHARDED_VSCHEMA))
        await writer.create_shard(Shard.new("customer", "80-"))
        await eventually(lambda: cache.vschema("customer") is not None, "the vschema")
        await eventually(lambda: len(cache.shards("customer")) == 2, "the second shard")
        assert ("vschema", ("customer",)) in events and ("tablets", ("zone1",)) in events
        cache.stop()

    # helpers
    def _raises(self, kind: type[Exception], text: str) -> _Raises:
        return _Raises(kind, text)


class _Raises:
    """``with _Raises(Error, "text"):`` asserts the block raises Error mentioning text."""

    def __init__(self, kind: type[Exception], text: str) -> None:
        self.kind, self.text = kind, text

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc is None:
            raise AssertionError(f"expected {self.kind.__name__} mentioning {self.text!r}")
        if not isinstance(exc, self.kind) or self.text not in str(exc):
            raise AssertionError(
                f"expected {self.kind.__name__} mentioning {self.text!r}, got {exc!r}"
            ) from exc
        return True
