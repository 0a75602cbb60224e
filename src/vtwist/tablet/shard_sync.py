"""The tablet's role: primary or not, decided by the shard record (``primary_alias``,
``primary_term``) and enforced on mysqld (``read_only``).

At start the tablet watches its shard record and does not serve until the first value
arrives (``role_problem()`` says why). Then:

* the record names this tablet: it is the primary with the record's term; mysqld is made
  writable (``SET GLOBAL read_only=OFF``);
* the record names another tablet: it is a replica (a tablet configured as primary is
  demoted to replica; rdonly stays rdonly); mysqld is made read-only;
* the record names no primary (or does not exist): the configured type is kept; replicas
  make mysqld read-only. **Init primary**: a tablet configured as primary, with
  ``role.init_primary`` on, claims the shard: it writes ``primary_alias=<self>`` and
  ``primary_term=<old term + 1>`` with a compare-and-swap on the record (creating the record
  with term 1 if the keyspace exists but the shard does not), then becomes primary and makes
  mysqld writable. If another tablet claims first, the CAS fails and this one follows the
  record. With ``role.init_primary`` off it waits, not serving, for a reparent to name a
  primary.

While running, each new value of the record is compared with the tablet's role:

* a term newer than (or equal to) the tablet's own that names another tablet, or a newer
  term naming nobody, demotes a primary at once: ``tablet_type`` becomes ``replica`` and
  ``serving`` False in the same reactor turn (writes are refused from then on), then
  ``SET GLOBAL read_only=ON`` is sent through the dba pool and retried every
  ``role.retry_interval`` until mysqld takes it. A tablet that saw a newer term naming
  someone else therefore never stays writable;
* a newer term naming this tablet (a reparent promoted it, and has already made mysqld
  writable) makes it primary with that term and ``primary_term_start`` now; mysqld is not
  touched;
* an older term is a stale value and is ignored (logged).

After a role change the probe runs at once (``on_role_change``), so ``serving`` follows the
new role's rules within one probe. ``read_only`` is only enforced on those transitions, not
continuously: a reparent makes the candidate writable before it records the new term, and a
tablet fighting that would break the reparent (repairing a writable replica is vtorc's job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from vtwist.interfaces import ITopoServer, ITopoWatch
from vtwist.protocols.mysql.pool import MySQLPool
from vtwist.tablet.manager import kill_user_connections
from vtwist.tablet.state import TabletState
from vtwist.topo.errors import BadVersionError, NodeExistsError, NoNodeError
from vtwist.topo.records import Shard

log = Logger()

#: Compare-and-swap conflicts retried at once before waiting ``retry_interval``.
MAX_CAS_RETRIES = 3


class ShardSync(Service):
    """Keep ``state.tablet_type``/``primary_term`` in line with the shard record, and
    mysqld's ``read_only`` in line with the role (see the module docstring)."""

    #: Called after every role change (the probe's ``probe_now``).
    on_role_change: Callable[[], object] | None = None

    def __init__(
        self,
        state: TabletState,
        topo: ITopoServer,
        pool: MySQLPool[Any],
        clock: IReactorTime,
        *,
        init_primary: bool,
        retry_interval: float,
        app_user: str = "",
    ) -> None:
        self.state = state
        self.topo = topo
        self.pool = pool
        self.clock = clock
        self.init_primary = init_primary
        self.retry_interval = retry_interval
        #: Whose connections a demotion kills before read_only (empty: none).
        self.app_user = app_user
        self.initial_type = state.tablet_type
        self.settled = False
        #: The last shard record seen (None: absent or not read yet).
        self.last_record: Shard | None = None
        #: Counters, for metrics and tests.
        self.promotions = 0
        self.demotions = 0
        self.claims = 0
        self.read_only_failures = 0
        self._problem = f"waiting for the shard record {self._name} from the topo"
        self._watch: ITopoWatch | None = None
        self._want_read_only: bool | None = None
        self._applied_read_only: bool | None = None
        self._enforcing = False
        self._kill_first = False
        self._claiming = False
        self._sleeps: set[Deferred[None]] = set()

    @property
    def _name(self) -> str:
        return f"{self.state.keyspace}/{self.state.shard}"

    def role_problem(self) -> str:
        """Why the role is not settled yet ("" once it is): the tablet does not serve then."""
        return "" if self.settled else self._problem

    # -- service -------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._watch = self.topo.watch_shard(self.state.keyspace, self.state.shard, self._on_shard)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for d in list(self._sleeps):
            d.cancel()
        return None

    # -- deciding ------------------------------------------------------------------------------

    def _on_shard(self, record: Shard | None) -> None:
        if not self.running:
            return
        self.last_record = record
        alias = self.state.alias
        named = record.primary_alias if record is not None else None
        term = record.primary_term if record is not None else 0
        is_primary = self.state.tablet_type == "primary"
        if named == alias:
            if is_primary and term == self.state.primary_term:
                return  # what we already know (e.g. our own claim coming back)
            if is_primary and term < self.state.primary_term:
                log.warn(
                    "shard {shard}: ignoring stale record (term {term} < ours {ours})",
                    shard=self._name,
                    term=term,
                    ours=self.state.primary_term,
                )
                return
            self._promote(term, at_start=not self.settled)
        elif named is not None:
            if is_primary and term < self.state.primary_term and self.settled:
                log.warn(
                    "shard {shard}: ignoring stale record naming {other} (term {term} < ours"
                    " {ours})",
                    shard=self._name,
                    other=named,
                    term=term,
                    ours=self.state.primary_term,
                )
                return
            if is_primary:
                self._demote(f"shard {self._name} term {term} names {named} as its primary")
            elif not self.settled:
                self._settle_non_primary()
        elif not self.settled:
            if self.initial_type != "primary":
                self._settle_non_primary()
            elif self.init_primary:
                self._set_problem(f"claiming shard {self._name} as its first primary")
                self._start_claim()
            else:
                self._set_problem(
                    f"shard {self._name} names no primary and role.init_primary is off:"
                    " run a reparent to name one"
                )
        elif is_primary and term > self.state.primary_term:
            self._demote(f"shard {self._name} term {term} names no primary")

    def _promote(self, term: int, *, at_start: bool) -> None:
        was_primary = self.state.tablet_type == "primary"
        self.settled = True
        self.promotions += 0 if at_start else 1
        changes: dict[str, object] = {
            "tablet_type": "primary",
            "primary_term": term,
            "primary_term_start": self.clock.seconds(),
        }
        if not was_primary:
            # Not serving until the probe has seen mysqld writable under the new role.
            changes.update(serving=False, error=f"became primary (term {term}): checking mysqld")
        self.state.update(**changes)
        log.info(
            "tablet {alias} is the primary of {shard} (term {term})",
            alias=self.state.alias,
            shard=self._name,
            term=term,
        )
        if at_start:
            # The record says we are the primary: our mysqld must take writes.
            self._set_read_only(False)
        self._role_changed()

    def _demote(self, why: str) -> None:
        self.settled = True
        self.demotions += 1
        # Synchronously: from this line on, state.writable() is False and writes are refused.
        self.state.update(
            tablet_type="replica",
            primary_term=0,
            primary_term_start=0.0,
            serving=False,
            error=f"demoted to replica: {why}",
        )
        log.warn("tablet {alias} demoted to replica: {why}", alias=self.state.alias, why=why)
        # Its app connections go first: a commit of the old term waiting for a semi-sync ack
        # that will never come holds the commit lock, so read_only could not be set behind it
        # (and, were semi-sync later switched off, it would return OK to its client).
        self._kill_first = True
        self._set_read_only(True)
        self._role_changed()

    def _settle_non_primary(self) -> None:
        self.settled = True
        self._set_read_only(True)
        self._role_changed()

    def _set_problem(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            self._role_changed()  # the probe puts the new reason in the state at once

    def _role_changed(self) -> None:
        if self.on_role_change is not None:
            self.on_role_change()

    # -- claiming the shard (init primary) -----------------------------------------------------

    def _start_claim(self) -> None:
        if self._claiming:
            return
        self._claiming = True
        d = Deferred.fromCoroutine(self._claim())
        d.addErrback(lambda f: log.failure("shard {shard}: claim failed", f, shard=self._name))

    async def _claim(self) -> None:
        alias = self.state.alias
        conflicts = 0
        try:
            while self.running and not self.settled:
                try:
                    written = await self._claim_once(alias)
                except (BadVersionError, NodeExistsError):
                    # Another writer got there between our read and our write: re-read.
                    conflicts += 1
                    if conflicts <= MAX_CAS_RETRIES:
                        continue
                    await self._sleep(self.retry_interval)
                    continue
                except CancelledError:
                    return
                except Exception as e:
                    self._set_problem(f"cannot claim shard {self._name} as its first primary: {e}")
                    log.warn("{problem}; retrying", problem=self._problem)
                    await self._sleep(self.retry_interval)
                    continue
                if written is not None:
                    self.claims += 1
                    log.info(
                        "tablet {alias} claimed shard {shard} (term {term})",
                        alias=alias,
                        shard=self._name,
                        term=written.primary_term,
                    )
                    self._on_shard(written)
                return
        except CancelledError:
            return
        finally:
            self._claiming = False

    async def _claim_once(self, alias: str) -> Shard | None:
        """One read + CAS write; the record written, or None when it already names a
        primary (then it was handed to ``_on_shard``)."""
        try:
            current: Shard | None = await self.topo.get_shard(self.state.keyspace, self.state.shard)
        except NoNodeError:
            current = None
        if current is None:
            try:
                return await self.topo.create_shard(
                    replace(
                        Shard.new(self.state.keyspace, self.state.shard),
                        primary_alias=alias,
                        primary_term=1,
                    )
                )
            except NoNodeError:
                raise NoNodeError(
                    f"keyspace {self.state.keyspace} does not exist: create it first"
                    f" (vtwist keyspace create {self.state.keyspace})"
                ) from None
        if current.primary_alias is not None:
            self._on_shard(current)
            return None
        return await self.topo.update_shard(
            replace(current, primary_alias=alias, primary_term=current.primary_term + 1)
        )

    # -- read_only on mysqld ---------------------------------------------------------------------

    def _set_read_only(self, read_only: bool) -> None:
        self._want_read_only = read_only
        if not self._enforcing:
            self._enforcing = True
            d = Deferred.fromCoroutine(self._enforce())
            d.addErrback(lambda f: log.failure("read_only enforcement failed", f))

    async def _enforce(self) -> None:
        try:
            while self.running and self._want_read_only != self._applied_read_only:
                want = self._want_read_only
                sql = f"SET GLOBAL read_only = {'ON' if want else 'OFF'}"
                try:
                    if want and self._kill_first and self.app_user:
                        await self.pool.run(kill_user_connections(self.app_user))
                        self._kill_first = False
                    await self.pool.run(_run_sql(sql))
                except CancelledError:
                    return
                except Exception as e:
                    self.read_only_failures += 1
                    log.warn(
                        "tablet {alias}: {sql} failed ({error}); retrying in {retry}s",
                        alias=self.state.alias,
                        sql=sql,
                        error=e,
                        retry=self.retry_interval,
                    )
                    await self._sleep(self.retry_interval)
                    continue
                self._applied_read_only = want
                log.info("tablet {alias}: {sql}", alias=self.state.alias, sql=sql)
                self._role_changed()  # let the probe see the new read_only at once
        except CancelledError:
            return
        finally:
            self._enforcing = False

    async def _sleep(self, seconds: float) -> None:
        d: Deferred[None] = deferLater(self.clock, seconds, lambda: None)
        self._sleeps.add(d)
        try:
            await d
        finally:
            self._sleeps.discard(d)


def _run_sql(sql: str) -> Callable[[Any], Deferred[Any]]:
    """What ``pool.run`` calls: run ``sql`` on the borrowed connection."""

    def run(client: Any) -> Deferred[Any]:
        result: Deferred[Any] = client.query(sql)
        return result

    return run
