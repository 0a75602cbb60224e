# twisted.application.service is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""vtorc's loop: observe every shard, detect problems, repair them while leading.

Every ``poll_interval`` the orchestrator reads each shard from the watching topo cache,
asks every live tablet of the shard for its ``status`` (``status_timeout`` each, in
parallel), checks whether the recorded primary's mysqld greets (``mysqld_timeout``), and
runs ``vtwist.orc.analysis.analyze``. Detections are counted whether or not this instance
leads; repairs run only while it holds the ``vtorc`` election, under the shard lock, and
only after observing the shard again under that lock (a reparent that finished meanwhile
must not be "repaired"). A dead primary gets an emergency reparent unless the shard had one
less than ``recovery_block`` ago (anti-flapping); the other problems get their small fix.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from vtwist.interfaces import ITopoElection, ITopoLock, ITopoServer
from vtwist.orc import analysis
from vtwist.orc.analysis import Observation, Problem
from vtwist.orc.metrics import OrcMetrics
from vtwist.orc.reparent import Reparenter, ReparentError
from vtwist.orc.tablets import TabletClients, mysqld_reachable
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.topo.cache import TopoCache
from vtwist.topo.errors import TopoError
from vtwist.topo.records import Shard, Tablet

log = Logger()

MAX_RECENT = 50


@dataclass(frozen=True)
class OrcSettings:
    """Timing and policy of the loop (seconds)."""

    poll_interval: float = 1.0
    status_timeout: float = 2.0
    mysqld_timeout: float = 1.0
    recovery_block: float = 30.0
    lock_timeout: float = 2.0
    emergency_reparent: bool = True
    repair: bool = True
    keyspaces: tuple[str, ...] = ()


@dataclass
class ShardView:
    """The last observation of a shard, for the status page."""

    keyspace: str
    shard: str
    primary: str | None = None
    term: int = 0
    problems: list[Problem] = field(default_factory=list)
    observed: float = 0.0


def default_identifier() -> str:
    """``host:pid`` of this process: how other candidates see the leader."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Orchestrator(Service):
    """See the module docstring."""

    def __init__(
        self,
        topo: ITopoServer,
        cache: TopoCache,
        clients: TabletClients,
        reparenter: Reparenter,
        clock: IReactorTime,
        reactor: Any,
        settings: OrcSettings,
        metrics: OrcMetrics,
        *,
        identifier: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.topo = topo
        self.cache = cache
        self.clients = clients
        self.reparenter = reparenter
        self.clock = clock
        self.reactor = reactor
        self.settings = settings
        self.metrics = metrics
        self.identifier = identifier or default_identifier()
        self.now = now
        self.election: ITopoElection | None = None
        self.views: dict[tuple[str, str], ShardView] = {}
        self.known: dict[str, Tablet] = {}
        self.last_failover: dict[tuple[str, str], float] = {}
        self.recent: list[str] = []  # recent recoveries, newest last
        self._loop: LoopingCall | None = None
        self._polling = False
        self._unsubscribe: Callable[[], None] | None = None

    # --- service ----------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.election = self.topo.election("vtorc", self.identifier)
        self._unsubscribe = self.election.add_listener(self._on_leadership)
        loop = LoopingCall(self._tick)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.settings.poll_interval, now=False).addErrback(
            lambda f: log.failure("vtorc loop stopped", f)
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.clients.close()
        if self.election is not None:
            election, self.election = self.election, None
            return election.resign()
        return None

    @property
    def leading(self) -> bool:
        """True while this instance holds the election."""
        return self.election is not None and self.election.is_leader()

    def _on_leadership(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        log.info(
            "vtorc {id}: {what}",
            id=self.identifier,
            what="now leading: repairs enabled" if leading else "not leading: observing only",
        )

    def _tick(self) -> None:
        if self._polling:
            return  # the previous poll is still running (slow tablets): skip this tick
        self._polling = True
        d = Deferred.fromCoroutine(self.poll())
        d.addErrback(lambda f: log.failure("vtorc poll failed", f))
        d.addBoth(self._polled)

    def _polled(self, _: object) -> None:
        self._polling = False

    # --- one poll ---------------------------------------------------------------------------

    def _shards(self) -> Iterable[Shard]:
        wanted = set(self.settings.keyspaces)
        for keyspace in sorted(self.cache.keyspaces()):
            if wanted and keyspace not in wanted:
                continue
            for _, shard in sorted(self.cache.shards(keyspace).items()):
                yield shard

    async def poll(self) -> None:
        """Observe every shard once; repair what needs it while leading."""
        start = self.clock.seconds()
        self.known.update(self.cache.tablets())
        shards = list(self._shards())
        ds = [Deferred.fromCoroutine(self._shard(shard)) for shard in shards]
        await DeferredList(ds, consumeErrors=True)
        self.metrics.poll_seconds.observe(self.clock.seconds() - start)

    async def observe(self, shard: Shard) -> Observation:
        """Everything ``analyze`` needs about ``shard``, read now."""
        live = {
            a: t
            for a, t in self.cache.tablets().items()
            if (t.keyspace, t.shard) == (shard.keyspace, shard.name)
        }
        known = {
            a: t
            for a, t in self.known.items()
            if (t.keyspace, t.shard) == (shard.keyspace, shard.name)
        }
        statuses: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}

        async def status(tablet: Tablet) -> None:
            try:
                statuses[tablet.alias] = await self.clients.manage(
                    tablet, "status", timeout=self.settings.status_timeout
                )
            except MySQLError as e:
                errors[tablet.alias] = e.message

        await DeferredList(
            [Deferred.fromCoroutine(status(t)) for t in live.values()], consumeErrors=True
        )
        greets: bool | None = None
        primary = known.get(shard.primary_alias or "")
        if shard.primary_alias and shard.primary_alias not in statuses and primary is not None:
            greets = await mysqld_reachable(
                self.reactor, primary.host, primary.mysql_port, self.settings.mysqld_timeout
            )
        return Observation(shard, live, known, statuses, errors, greets)

    async def _shard(self, shard: Shard) -> None:
        key = (shard.keyspace, shard.name)
        obs = await self.observe(shard)
        problems = analysis.analyze(obs)
        self.views[key] = ShardView(
            shard.keyspace,
            shard.name,
            shard.primary_alias,
            shard.primary_term,
            problems,
            self.now(),
        )
        for p in problems:
            self.metrics.detected.labels(shard.keyspace, shard.name, p.kind).inc()
        actionable = [p for p in problems if p.kind != analysis.PRIMARY_UNREACHABLE]
        if not actionable or not self.leading or not self.settings.repair:
            return
        await self._repair(shard)

    async def _repair(self, shard: Shard) -> None:
        try:
            lock: ITopoLock = await self.topo.lock_shard(
                shard.keyspace, shard.name, self.settings.lock_timeout, "vtorc repair"
            )
        except TopoError:
            return  # a reparent (or another vtorc) holds it: look again next poll
        try:
            try:
                fresh = await self.topo.get_shard(shard.keyspace, shard.name)
            except TopoError as e:
                log.warn("vtorc: cannot reread {ks}/{s}: {e}", ks=shard.keyspace, s=shard.name, e=e)
                return
            problems = analysis.analyze(await self.observe(fresh))
            for p in problems:
                if p.kind == analysis.DEAD_PRIMARY:
                    await lock.release()
                    await self._failover(fresh, p)
                    return
                if p.kind != analysis.PRIMARY_UNREACHABLE:
                    lock.check()
                    await self._fix(fresh, p)
        finally:
            await lock.release()

    async def _failover(self, shard: Shard, problem: Problem) -> None:
        key = (shard.keyspace, shard.name)
        name = f"{shard.keyspace}/{shard.name}"
        last = self.last_failover.get(key)
        now = self.clock.seconds()
        if not self.settings.emergency_reparent:
            log.warn("vtorc: {p}; emergency reparent disabled", p=problem.detail)
            return
        if last is not None and now - last < self.settings.recovery_block:
            self.metrics.blocked.labels(shard.keyspace, shard.name).inc()
            log.warn(
                "vtorc: {p}; no failover: {name} failed over {ago:.0f}s ago (recovery_block "
                "{block:g}s)",
                p=problem.detail,
                name=name,
                ago=now - last,
                block=self.settings.recovery_block,
            )
            return
        log.warn("vtorc: {p}; running an emergency reparent of {name}", p=problem.detail, name=name)
        self.last_failover[key] = now
        start = self.clock.seconds()
        try:
            report = await self.reparenter.emergency(shard.keyspace, shard.name)
        except (ReparentError, MySQLError, TopoError) as e:
            self._recovered(shard, "emergency_reparent", False, start, f"{name}: {e}")
            return
        self._recovered(
            shard,
            "emergency_reparent",
            True,
            start,
            f"{name}: promoted {report.new_primary} (term {report.term}) in {report.seconds:.2f}s"
            + (f"; warnings: {'; '.join(report.warnings)}" if report.warnings else ""),
        )

    async def _fix(self, shard: Shard, problem: Problem) -> None:
        tablet = self.cache.tablets().get(problem.alias)
        if tablet is None:
            return
        start = self.clock.seconds()
        action = "set_read_only"
        params: dict[str, object] = {"on": True}
        if problem.kind == analysis.PRIMARY_READ_ONLY:
            params = {"on": False}
        elif problem.kind == analysis.REPLICA_WRONG_SOURCE:
            primary = self.cache.tablets().get(shard.primary_alias or "")
            if primary is None:
                return
            keyspace = self.cache.keyspaces().get(shard.keyspace)
            action = "set_replication_source"
            params = {
                "host": primary.host,
                "port": primary.mysql_port,
                "semi_sync": keyspace is not None and keyspace.durability == "semi_sync",
            }
        try:
            await self.clients.manage(tablet, action, params)
        except MySQLError as e:
            self._recovered(shard, problem.kind, False, start, f"{problem.detail}: {e.message}")
            return
        self._recovered(shard, problem.kind, True, start, f"{problem.detail}: fixed ({action})")

    def _recovered(self, shard: Shard, kind: str, ok: bool, start: float, text: str) -> None:
        outcome = "ok" if ok else "failed"
        self.metrics.recoveries.labels(shard.keyspace, shard.name, kind, outcome).inc()
        self.metrics.recovery_seconds.labels(kind).observe(self.clock.seconds() - start)
        line = f"{time.strftime('%H:%M:%S')} {kind} {outcome}: {text}"
        (log.info if ok else log.error)("vtorc: {line}", line=line)
        self.recent.append(line)
        del self.recent[:-MAX_RECENT]
