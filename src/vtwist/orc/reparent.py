"""Planned and emergency reparent of one shard (``vtwist reparent``, ``vtorc``).

Both run under the shard lock and talk to tablets only through their tablet-manager
actions (``vtwist.tablet.manager``); the shard record in the topo is the single truth of
who is primary, written last by compare-and-swap with the term bumped, so every tablet
(and through the health stream every gate) follows it.

**Planned** (the primary is alive): demote the old primary (it stops taking writes, then
``read_only``), wait until the candidate has applied the old primary's whole binlog
(``wait_timeout``), promote the candidate (replication forgotten, semi-sync primary side
per the keyspace's durability, writable), record it with term + 1, repoint every other
tablet (the old primary included) at it by GTID. A failure before the record is written
undoes what was done (the old primary is made writable again, the candidate read-only and
replicating again), so the shard keeps exactly one writable primary, and the error names
the step.

**Emergency** (the primary is dead): stop replication on every reachable replica after its
relay log is applied and, at the same time, fence the old primary if its tablet still
answers (``read_only``, bounded by ``fence_timeout``); refuse replicas whose position shows
errant transactions, pick the most advanced (or check that the asked-for candidate is),
promote, record the new term, repoint the rest.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from vtwist.interfaces import ITopoLock, ITopoServer
from vtwist.orc import gtid
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.topo.errors import TopoError
from vtwist.topo.records import Shard, Tablet

log = Logger()

#: Types that may never become primary. Any other tablet but the recorded primary may: its
#: own record can still say "primary" for a moment after an earlier reparent.
NOT_PROMOTABLE = ("rdonly",)


class ReparentError(Exception):
    """A reparent failed at ``step``; ``message`` says why and what state the shard is in."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass
class ReparentReport:
    """What a reparent did, for the CLI, vtorc's metrics and logs."""

    kind: str
    keyspace: str
    shard: str
    old_primary: str | None = None
    new_primary: str = ""
    term: int = 0
    position: str = ""
    steps: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "keyspace": self.keyspace,
            "shard": self.shard,
            "old_primary": self.old_primary,
            "new_primary": self.new_primary,
            "primary_term": self.term,
            "position": self.position,
            "steps": list(self.steps),
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _ShardView:
    """What a reparent reads first: the shard record, its durability, its live tablets."""

    shard: Shard
    semi_sync: bool
    tablets: dict[str, Tablet]


@dataclass(frozen=True)
class ReparentSettings:
    """Bounds of one reparent (seconds)."""

    lock_timeout: float = 10.0
    wait_timeout: float = 15.0
    action_timeout: float = 10.0
    fence_timeout: float = 2.0


async def shard_tablets(topo: ITopoServer, keyspace: str, shard: str) -> list[Tablet]:
    """The tablets of ``keyspace/shard`` in every cell, sorted by alias."""
    out: list[Tablet] = []
    for cell in await topo.list_cells():
        out.extend(
            t for t in await topo.list_tablets(cell) if (t.keyspace, t.shard) == (keyspace, shard)
        )
    return sorted(out, key=lambda t: t.alias)


class Reparenter:
    """Runs reparents of shards (see the module docstring)."""

    def __init__(
        self,
        topo: ITopoServer,
        clients: Any,
        settings: ReparentSettings | None = None,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topo = topo
        self.clients = clients
        self.settings = settings or ReparentSettings()
        self.now = now

    async def _manage(
        self,
        tablet: Tablet,
        action: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        report: dict[str, Any] = await self.clients.manage(
            tablet, action, params or {}, timeout=timeout or self.settings.action_timeout
        )
        return report

    async def _lock(self, keyspace: str, shard: str, purpose: str) -> ITopoLock:
        try:
            lock: ITopoLock = await self.topo.lock_shard(
                keyspace, shard, self.settings.lock_timeout, purpose
            )
        except TopoError as e:
            raise ReparentError(
                "lock", f"could not take the lock of shard {keyspace}/{shard}: {e}"
            ) from None
        return lock

    async def _semi_sync(self, keyspace: str) -> bool:
        record = await self.topo.get_keyspace(keyspace)
        return record.durability == "semi_sync"

    async def _record(self, shard: Shard, alias: str, lock: ITopoLock) -> Shard:
        lock.check()
        return await self.topo.update_shard(
            replace(shard, primary_alias=alias, primary_term=shard.primary_term + 1)
        )

    async def _repoint(
        self,
        report: ReparentReport,
        primary: Tablet,
        others: list[Tablet],
        semi_sync: bool,
        timeout: float,
    ) -> None:
        params = {"host": primary.host, "port": primary.mysql_port, "semi_sync": semi_sync}

        async def one(t: Tablet) -> None:
            try:
                await self._manage(t, "set_replication_source", params, timeout)
                report.steps.append(f"repointed {t.alias} to {primary.alias}")
            except MySQLError as e:
                report.warnings.append(f"could not repoint {t.alias} (vtorc retries): {e.message}")

        await DeferredList([Deferred.fromCoroutine(one(t)) for t in others], consumeErrors=True)

    # --- planned ------------------------------------------------------------------------

    async def planned(
        self, keyspace: str, shard_name: str, new_primary: str | None = None
    ) -> ReparentReport:
        """Move the primary of a healthy shard to ``new_primary`` (or the best replica)."""
        return await self._run("planned", keyspace, shard_name, new_primary, self._planned)

    async def _run(
        self,
        kind: str,
        keyspace: str,
        shard_name: str,
        new_primary: str | None,
        body: Callable[[ReparentReport, ITopoLock, _ShardView, str | None], Awaitable[None]],
    ) -> ReparentReport:
        """Under the shard lock: read the shard, then run ``body``; time the whole."""
        start = self.now()
        report = ReparentReport(kind, keyspace, shard_name)
        lock = await self._lock(keyspace, shard_name, f"{kind} reparent")
        try:
            view = await self._read(keyspace, shard_name)
            report.old_primary = view.shard.primary_alias
            await body(report, lock, view, new_primary)
        finally:
            await lock.release()
        report.seconds = self.now() - start
        return report

    async def _read(self, ks: str, name: str) -> _ShardView:
        try:
            shard = await self.topo.get_shard(ks, name)
            semi_sync = await self._semi_sync(ks)
            tablets = {t.alias: t for t in await shard_tablets(self.topo, ks, name)}
        except TopoError as e:
            raise ReparentError("read", f"cannot read shard {ks}/{name}: {e}") from None
        return _ShardView(shard, semi_sync, tablets)

    async def _planned(
        self, report: ReparentReport, lock: ITopoLock, view: _ShardView, new_primary: str | None
    ) -> None:
        ks, name = report.keyspace, report.shard
        shard, semi_sync, tablets = view.shard, view.semi_sync, view.tablets
        old_alias = shard.primary_alias
        old = tablets.get(old_alias or "")
        if old is None:
            raise ReparentError(
                "check",
                f"shard {ks}/{name} has no live primary tablet (record names "
                f"{old_alias or 'none'}); use vtwist reparent emergency",
            )
        candidate = await self._pick_planned(report, tablets, old, new_primary)
        lock.check()
        # 1. demote
        try:
            demoted = await self._manage(old, "demote_primary")
        except MySQLError as e:
            await self._undo_demote(report, old)
            raise ReparentError(
                "demote", f"{e.message}; the old primary {old.alias} was made writable again"
            ) from None
        position = str(demoted.get("gtid_binlog_pos") or "")
        report.position = position
        report.steps.append(f"demoted {old.alias} at {position or 'empty position'}")
        # 2. catch up
        try:
            await self._manage(
                candidate,
                "wait_for_position",
                {"position": position, "timeout": self.settings.wait_timeout},
                self.settings.wait_timeout + self.settings.action_timeout,
            )
        except MySQLError as e:
            await self._undo_demote(report, old)
            raise ReparentError(
                "catch_up", f"{e.message}; {old.alias} stays the primary (writable again)"
            ) from None
        report.steps.append(f"{candidate.alias} caught up")
        # 3. promote
        try:
            lock.check()
            await self._manage(candidate, "promote_replica", {"semi_sync": semi_sync})
        except (MySQLError, TopoError) as e:
            await self._back_to_replica(report, candidate, old, semi_sync)
            await self._undo_demote(report, old)
            raise ReparentError(
                "promote", f"{_msg(e)}; {old.alias} stays the primary (writable again)"
            ) from None
        report.steps.append(f"promoted {candidate.alias}")
        # 4. record
        try:
            record = await self._record(shard, candidate.alias, lock)
        except TopoError as e:
            await self._back_to_replica(report, candidate, old, semi_sync)
            await self._undo_demote(report, old)
            raise ReparentError(
                "record", f"could not write the shard record: {e}; {old.alias} stays the primary"
            ) from None
        report.new_primary, report.term = candidate.alias, record.primary_term
        report.steps.append(f"shard record: primary {candidate.alias}, term {record.primary_term}")
        # 5. repoint
        others = [t for t in tablets.values() if t.alias != candidate.alias]
        await self._repoint(report, candidate, others, semi_sync, self.settings.action_timeout)

    async def _pick_planned(
        self,
        report: ReparentReport,
        tablets: dict[str, Tablet],
        old: Tablet,
        new_primary: str | None,
    ) -> Tablet:
        if new_primary:
            cand = tablets.get(new_primary)
            if cand is None:
                raise ReparentError(
                    "check",
                    f"tablet {new_primary} is not a live tablet of "
                    f"{report.keyspace}/{report.shard}",
                )
            if cand.alias == old.alias:
                raise ReparentError("check", f"{new_primary} is already the primary")
            if cand.tablet_type in NOT_PROMOTABLE:
                raise ReparentError(
                    "check",
                    f"{new_primary} is a {cand.tablet_type}; only a replica can be promoted",
                )
            return cand
        best: tuple[tuple[int, ...], Tablet] | None = None
        for t in tablets.values():
            if t.alias == old.alias or t.tablet_type in NOT_PROMOTABLE:
                continue
            try:
                status = await self._manage(t, "status", timeout=self.settings.fence_timeout)
                pos = gtid.parse_position(str(status.get("gtid_current_pos") or ""))
            except (MySQLError, ValueError) as e:
                report.warnings.append(f"skipped {t.alias}: {_msg(e)}")
                continue
            repl = status.get("replication") or {}
            if repl.get("sql_running") != "Yes":
                report.warnings.append(f"skipped {t.alias}: it is not replicating")
                continue
            key = gtid.advance_key(pos)
            if best is None or key > best[0]:
                best = (key, t)
        if best is None:
            raise ReparentError(
                "check", f"no healthy replica of {report.keyspace}/{report.shard} to promote"
            )
        return best[1]

    async def _undo_demote(self, report: ReparentReport, old: Tablet) -> None:
        try:
            await self._manage(old, "undo_demote_primary")
            report.steps.append(f"undid the demotion of {old.alias}")
        except MySQLError as e:
            report.warnings.append(f"could not make {old.alias} writable again: {e.message}")

    async def _back_to_replica(
        self, report: ReparentReport, candidate: Tablet, primary: Tablet, semi_sync: bool
    ) -> None:
        try:
            await self._manage(
                candidate,
                "set_replication_source",
                {"host": primary.host, "port": primary.mysql_port, "semi_sync": semi_sync},
            )
            report.steps.append(f"{candidate.alias} replicates from {primary.alias} again")
        except MySQLError as e:
            report.warnings.append(f"could not make {candidate.alias} a replica again: {e.message}")

    # --- emergency ----------------------------------------------------------------------

    async def emergency(
        self, keyspace: str, shard_name: str, new_primary: str | None = None
    ) -> ReparentReport:
        """Promote the most advanced replica of a shard whose primary is dead."""
        return await self._run("emergency", keyspace, shard_name, new_primary, self._emergency)

    async def _emergency(
        self, report: ReparentReport, lock: ITopoLock, view: _ShardView, new_primary: str | None
    ) -> None:
        ks, name = report.keyspace, report.shard
        shard, semi_sync, tablets = view.shard, view.semi_sync, view.tablets
        old_alias = shard.primary_alias
        old = tablets.get(old_alias or "")
        replicas = [t for t in tablets.values() if t.alias != old_alias]
        if not replicas:
            raise ReparentError("check", f"shard {ks}/{name} has no live replica tablet to promote")
        # 1. stop replication everywhere, after the relay logs are applied
        statuses: dict[str, dict[str, Any]] = {}

        async def stop(t: Tablet) -> None:
            try:
                statuses[t.alias] = await self._manage(
                    t,
                    "stop_replication",
                    {"wait_relay": True, "timeout": self.settings.wait_timeout},
                    self.settings.wait_timeout + self.settings.action_timeout,
                )
            except MySQLError as e:
                report.warnings.append(f"{t.alias} left out: {e.message}")

        async def fence(t: Tablet) -> None:
            # Alongside the replicas' stop: a frozen primary would only make us wait.
            try:
                await self._manage(t, "set_read_only", {"on": True}, self.settings.fence_timeout)
                report.steps.append(f"fenced {t.alias} (read_only)")
            except MySQLError as e:
                report.warnings.append(
                    f"could not fence {t.alias} ({e.message}); its tablet demotes itself when it"
                    " sees the new term"
                )

        work = [Deferred.fromCoroutine(stop(t)) for t in replicas]
        if old is not None:
            work.append(Deferred.fromCoroutine(fence(old)))
        await DeferredList(work, consumeErrors=True)
        report.steps.append(
            "stopped replication on " + (", ".join(sorted(statuses)) or "no replica")
        )
        # 2. positions, errant transactions
        positions: dict[str, gtid.Position] = {}
        for alias, status in statuses.items():
            try:
                positions[alias] = gtid.parse_position(str(status.get("gtid_current_pos") or ""))
            except ValueError as e:
                report.warnings.append(f"{alias} left out: {e}")
        valid: dict[str, gtid.Position] = {}
        for alias, pos in positions.items():
            others = [p for a, p in positions.items() if a != alias]
            bad = gtid.errant(pos, int(statuses[alias].get("server_id") or 0), others)
            if bad and others:
                report.warnings.append(
                    f"{alias} refused: errant transactions {', '.join(map(str, bad))} (written "
                    "on it while it was a replica); rebuild it from the new primary"
                )
                continue
            valid[alias] = pos
        if not valid:
            raise ReparentError(
                "choose",
                f"no replica of {ks}/{name} can be promoted "
                f"({'; '.join(report.warnings) or 'none answered'})",
            )
        best = max(
            valid,
            key=lambda a: (
                gtid.advance_key(valid[a]),
                tablets[a].tablet_type not in NOT_PROMOTABLE,
            ),
        )
        if new_primary:
            if new_primary not in valid:
                raise ReparentError(
                    "choose",
                    f"{new_primary} cannot be promoted: it is not a reachable replica "
                    "without errant transactions",
                )
            if gtid.advance_key(valid[new_primary]) < gtid.advance_key(valid[best]):
                raise ReparentError(
                    "choose",
                    f"{new_primary} is behind {best} ({gtid.format_position(valid[new_primary])} < "
                    f"{gtid.format_position(valid[best])}); promoting it would lose transactions",
                )
            chosen = new_primary
        else:
            promotable = [a for a in valid if tablets[a].tablet_type not in NOT_PROMOTABLE]
            if not promotable:
                raise ReparentError("choose", "only rdonly tablets are left; none can be promoted")
            chosen = max(promotable, key=lambda a: gtid.advance_key(valid[a]))
            if gtid.advance_key(valid[chosen]) < gtid.advance_key(valid[best]):
                report.warnings.append(
                    f"{best} (rdonly) is ahead of {chosen}; its extra transactions are lost"
                )
        candidate = tablets[chosen]
        report.position = gtid.format_position(valid[chosen])
        report.steps.append(f"chose {chosen} at {report.position or 'empty position'}")
        # 3. (the old primary was fenced alongside step 1)
        # 4. promote
        try:
            lock.check()
            await self._manage(candidate, "promote_replica", {"semi_sync": semi_sync})
        except (MySQLError, TopoError) as e:
            raise ReparentError(
                "promote", f"{_msg(e)}; the shard has no primary: run the emergency reparent again"
            ) from None
        report.steps.append(f"promoted {candidate.alias}")
        # 5. record
        try:
            record = await self._record(shard, candidate.alias, lock)
        except TopoError as e:
            with contextlib.suppress(MySQLError):
                await self._manage(candidate, "set_read_only", {"on": True})
            raise ReparentError(
                "record",
                f"could not write the shard record: {e}; {candidate.alias} was made read-only "
                "again",
            ) from None
        report.new_primary, report.term = candidate.alias, record.primary_term
        report.steps.append(f"shard record: primary {candidate.alias}, term {record.primary_term}")
        # 6. repoint the others (the old primary too, if it answers)
        rest = [t for t in tablets.values() if t.alias not in (candidate.alias, old_alias)]
        await self._repoint(report, candidate, rest, semi_sync, self.settings.action_timeout)
        if old is not None:
            await self._repoint(report, candidate, [old], semi_sync, self.settings.fence_timeout)


def _msg(e: Exception) -> str:
    return e.message if isinstance(e, MySQLError) else str(e)
