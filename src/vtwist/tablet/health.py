"""The health probe of the local mysqld, and ``build_health_services`` (probe, topo publisher,
shard sync) for the tablet's tap.

Every ``health.interval`` the probe borrows one dba connection and asks mysqld: COM_PING,
``@@global.read_only`` and the GTID position (``@@global.gtid_current_pos`` on MariaDB,
``@@global.gtid_executed`` on MySQL), then the replication threads and lag (``SHOW ALL SLAVES
STATUS``; ``SHOW SLAVE STATUS`` where that does not parse). ``evaluate`` turns the answers into
a verdict, given the tablet's current type:

* a primary serves when mysqld answers and is writable (``read_only`` OFF);
* a replica (or rdonly) serves when mysqld answers, replication is configured, both threads
  run and the lag is known and at most ``health.unhealthy_lag``; past
  ``health.degraded_lag`` it still serves and reports its lag (the gate prefers others);
* mysqld unreachable, or a probe slower than ``health.probe_timeout``: not serving, and the
  error says why.

One failed probe flips the tablet to not serving at once and the first good one flips it
back: the gate must learn within a second that a mysqld died, and a local mysqld does not
fail probes by chance. A role that the shard sync has not settled yet also keeps the tablet
out of service. The verdict goes to ``TabletState.update``, which notifies the health stream
in the same reactor turn.

A probe that times out after asking mysqld (not while it waited for a dba connection) also
calls ``on_hung`` (the tablet's, for a replica or rdonly: the
statements running on its pooled connections to that mysqld are broken off, so the gate
runs those reads on another tablet instead of waiting for their timeouts).

A probe that outlives its timeout is abandoned (its late answer is ignored), but it still
holds a dba connection until the client's read timeout breaks it, so at most
``MAX_OUTSTANDING`` probes are ever outstanding; ticks are skipped beyond that.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.config import Config
from vtwist.interfaces import ITopoServer
from vtwist.protocols.mysql.client_commands import Result
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.pool import MySQLPool
from vtwist.tablet.health_keys import (
    HEALTH_DEGRADED_LAG,
    HEALTH_INTERVAL,
    HEALTH_PROBE_TIMEOUT,
    HEALTH_UNHEALTHY_LAG,
    PUBLISH_LAG_STEP,
    PUBLISH_MIN_INTERVAL,
    ROLE_INIT_PRIMARY,
    ROLE_RETRY_INTERVAL,
)
from vtwist.tablet.publish import TopoPublisher
from vtwist.tablet.shard_sync import ShardSync
from vtwist.tablet.state import TabletState

log = Logger()

#: Probes that may hold a dba connection at once (one live, one abandoned after a timeout).
MAX_OUTSTANDING = 2

SHUTTING_DOWN = "tablet is shutting down"


class QueryClient(Protocol):
    """What the probe needs from a dba connection (``MySQLClient`` provides it)."""

    def ping(self) -> Deferred[None]: ...

    def query(self, sql: str) -> Deferred[Result]: ...


@dataclass(frozen=True)
class ReplicationStatus:
    """One replication channel as ``SHOW ALL SLAVES STATUS`` describes it."""

    connection_name: str = ""
    io_running: str = "No"  # Yes | No | Connecting
    sql_running: str = "No"  # Yes | No
    seconds_behind: int | None = None
    last_io_error: str = ""
    last_sql_error: str = ""


@dataclass(frozen=True)
class Sample:
    """What one probe read from mysqld."""

    read_only: bool
    gtid_position: str
    replication: tuple[ReplicationStatus, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The serving decision for one sample: serving, why not, and the replication lag."""

    serving: bool
    error: str
    lag_s: float | None


def evaluate(
    sample: Sample, tablet_type: str, *, degraded_lag: float, unhealthy_lag: float
) -> Verdict:
    """Decide whether a tablet of ``tablet_type`` serves, given what mysqld answered."""
    if tablet_type == "primary":
        if sample.read_only:
            return Verdict(
                False,
                "mysqld is read_only but this tablet is the primary: a reparent may be under"
                " way; otherwise run SET GLOBAL read_only=OFF on the primary",
                None,
            )
        return Verdict(True, "", None)
    if not sample.replication:
        return Verdict(
            False,
            "replication is not configured on this replica's mysqld: vtorc repoints it at the"
            " primary, or run CHANGE MASTER TO ... MASTER_USE_GTID=current_pos; START SLAVE",
            None,
        )
    lag: float | None = 0.0
    for ch in sample.replication:
        name = f" (connection {ch.connection_name!r})" if ch.connection_name else ""
        if ch.io_running != "Yes" or ch.sql_running != "Yes":
            detail = "; ".join(
                e
                for e in (
                    f"last IO error: {ch.last_io_error}" if ch.last_io_error else "",
                    f"last SQL error: {ch.last_sql_error}" if ch.last_sql_error else "",
                )
                if e
            )
            return Verdict(
                False,
                f"replication is not running{name}: Slave_IO_Running={ch.io_running},"
                f" Slave_SQL_Running={ch.sql_running}"
                + (f"; {detail}" if detail else "; start it with START SLAVE"),
                None,
            )
        if ch.seconds_behind is None:
            lag = None
        elif lag is not None:
            lag = max(lag, float(ch.seconds_behind))
    if lag is None:
        return Verdict(False, "replication lag is unknown (Seconds_Behind_Master is NULL)", None)
    if lag > unhealthy_lag:
        return Verdict(
            False,
            f"replication lag {lag:g}s exceeds health.unhealthy_lag ({unhealthy_lag:g}s)",
            lag,
        )
    # Past health.degraded_lag the replica still serves; the reported lag lets the gate
    # prefer fresher replicas.
    return Verdict(True, "", lag)


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", "replace")


def _rows_as_dicts(result: Result) -> list[dict[str, str | None]]:
    names = [c.name for c in result.columns]
    return [
        {n: (None if v is None else _text(v)) for n, v in zip(names, row, strict=False)}
        for row in result.rows
    ]


def _pick(row: dict[str, str | None], *names: str) -> str | None:
    for n in names:
        if n in row:
            return row[n]
    return None


def parse_replication(result: Result) -> tuple[ReplicationStatus, ...]:
    """The channels of a ``SHOW [ALL] SLAVES|SLAVE|REPLICA STATUS`` result."""
    channels = []
    for row in _rows_as_dicts(result):
        behind = _pick(row, "Seconds_Behind_Master", "Seconds_Behind_Source")
        channels.append(
            ReplicationStatus(
                connection_name=_pick(row, "Connection_name") or "",
                io_running=_pick(row, "Slave_IO_Running", "Replica_IO_Running") or "No",
                sql_running=_pick(row, "Slave_SQL_Running", "Replica_SQL_Running") or "No",
                seconds_behind=int(behind) if behind not in (None, "") else None,
                last_io_error=_pick(row, "Last_IO_Error") or "",
                last_sql_error=_pick(row, "Last_SQL_Error") or "",
            )
        )
    return tuple(channels)


class _Flavor:
    """Which statements this mysqld understands (learned at the first probe)."""

    gtid_sql = "SELECT @@global.read_only, @@global.gtid_current_pos"
    replication_sql = "SHOW ALL SLAVES STATUS"


async def collect(client: QueryClient, flavor: _Flavor | None = None) -> Sample:
    """Run one probe on ``client``: ping, read_only and GTID position, replication status."""
    flavor = flavor or _Flavor()
    await client.ping()
    try:
        top = await client.query(flavor.gtid_sql)
    except MySQLError as e:
        if e.code != ErrorCode.UNKNOWN_SYSTEM_VARIABLE:
            raise
        flavor.gtid_sql = "SELECT @@global.read_only, @@global.gtid_executed"  # MySQL
        top = await client.query(flavor.gtid_sql)
    try:
        repl = await client.query(flavor.replication_sql)
    except MySQLError as e:
        if e.code != ErrorCode.PARSE_ERROR:
            raise
        flavor.replication_sql = "SHOW SLAVE STATUS"  # MySQL has no ALL SLAVES
        repl = await client.query(flavor.replication_sql)
    row = top.rows[0] if top.rows else [None, None]
    return Sample(
        read_only=_text(row[0]) not in ("", "0", "OFF"),
        gtid_position=_text(row[1]),
        replication=parse_replication(repl),
    )


def describe_error(exc: BaseException) -> str:
    """Why mysqld could not be probed, for the health error (what a person reads)."""
    if isinstance(exc, MySQLError):
        if exc.code >= 2000:  # client-side: no connection, or it broke
            return f"mysqld unreachable: {exc.message} ({exc.code})"
        return f"mysqld health probe failed: {exc.code} ({exc.sqlstate}) {exc.message}"
    if isinstance(exc, ConnectError):
        return f"mysqld unreachable: {exc}".strip()
    return f"mysqld health probe failed: {type(exc).__name__}: {exc}"


class HealthProbe(Service):
    """Probe the local mysqld every ``interval`` seconds and publish the verdict in ``state``.

    ``role_problem()`` returns why the role is not settled yet ("" when it is); while it is
    not, the tablet does not serve. ``probe_now()`` runs a probe at once (the shard sync
    calls it after a role change, so serving follows the new role's rules immediately).
    """

    def __init__(
        self,
        state: TabletState,
        pool: MySQLPool[Any],
        clock: IReactorTime,
        *,
        interval: float,
        probe_timeout: float,
        degraded_lag: float,
        unhealthy_lag: float,
        role_problem: Callable[[], str] = lambda: "",
        on_hung: Callable[[], object] | None = None,
    ) -> None:
        self.state = state
        self.on_hung = on_hung
        self.pool = pool
        self.clock = clock
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.degraded_lag = degraded_lag
        self.unhealthy_lag = unhealthy_lag
        self.role_problem = role_problem
        self.last_sample: Sample | None = None
        #: Probes run, and those that failed or timed out (for metrics).
        self.probes = 0
        self.failures = 0
        self._flavor = _Flavor()
        self._loop: LoopingCall | None = None
        self._seq = 0
        self._live: int | None = None  # the probe whose answer will be applied
        self._timer: IDelayedCall | None = None
        self._outstanding = 0
        self._again = False
        self._logged: tuple[bool, str] | None = None
        self._served = False  # a probe found it serving since start

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        loop = LoopingCall(self._tick)
        loop.clock = self.clock
        self._loop = loop
        loop.start(self.interval, now=True).addErrback(
            lambda f: log.failure("health probe loop failed", f)
        )

    def stopService(self) -> Deferred[None] | None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._cancel_timer()
        self._live = None
        self._again = False
        # Gates hear at once that this tablet is going away and drain it before it vanishes.
        self.state.update(serving=False, error=SHUTTING_DOWN)
        return None

    def probe_now(self) -> None:
        """Probe at once (or right after the probe in flight)."""
        if not self.running:
            return
        if self._live is not None:
            self._again = True
        else:
            self._tick()

    def _tick(self) -> None:
        if self._live is not None:
            return  # the previous probe is still within its timeout
        if self._outstanding >= MAX_OUTSTANDING:
            return  # timed-out probes still hold connections: do not take more
        self._seq += 1
        seq = self._seq
        self._live = seq
        self._outstanding += 1
        self.probes += 1
        asked: list[bool] = []  # mysqld was asked (the probe got a dba connection)

        def probe(client: Any) -> Coroutine[Any, Any, Sample]:
            asked.append(True)
            return collect(client, self._flavor)

        self._timer = self.clock.callLater(self.probe_timeout, self._timed_out, seq, asked)
        d = self.pool.run(probe)
        d.addBoth(self._finished, seq)

    def _finished(self, result: Sample | Failure, seq: int) -> None:
        self._outstanding -= 1
        if seq != self._live:
            return  # abandoned after its timeout, or the service stopped: ignore it
        self._live = None
        self._cancel_timer()
        if isinstance(result, Failure):
            self._failed(describe_error(result.value or Exception("unknown failure")))
        else:
            self._succeeded(result)
        self._maybe_again()

    def _timed_out(self, seq: int, asked: list[bool]) -> None:
        self._timer = None
        if seq != self._live:
            return
        self._live = None
        self._failed(
            f"mysqld health probe timed out after {self.probe_timeout:g}s"
            " (health.probe_timeout): mysqld is hung or overloaded"
        )
        if self.on_hung is not None and asked:  # (not when it waited for a dba connection)
            try:
                self.on_hung()
            except Exception:
                log.failure("health probe: on_hung failed")
        self._maybe_again()

    def _maybe_again(self) -> None:
        if self._again and self.running:
            self._again = False
            self._tick()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _succeeded(self, sample: Sample) -> None:
        self.last_sample = sample
        verdict = evaluate(
            sample,
            self.state.tablet_type,
            degraded_lag=self.degraded_lag,
            unhealthy_lag=self.unhealthy_lag,
        )
        serving, error = verdict.serving, verdict.error
        problem = self.role_problem()
        if not problem and self.state.demoted:
            problem = self.state.demoted  # a reparent is demoting it (``TabletState.demoted``)
        settling = bool(problem) and serving
        if settling:
            serving, error = False, problem
        self.state.update(
            serving=serving,
            error=error,
            lag_s=verdict.lag_s,
            read_only=sample.read_only,
            gtid_position=sample.gtid_position,
        )
        self._log_flip(serving, error, settling)

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_sample = None
        self.state.update(serving=False, error=error, lag_s=None, read_only=None)
        self._log_flip(False, error)

    def _log_flip(self, serving: bool, error: str, settling: bool = False) -> None:
        # Log transitions only: one line per flip, not one per probe. ``settling``: mysqld
        # is fine but the role is not settled yet; before the tablet first served (at
        # start, while the shard record loads) that is expected, so info, not a warning.
        if self._logged == (serving, error):
            return
        self._logged = (serving, error)
        if serving:
            self._served = True
            log.info("tablet {alias} is serving", alias=self.state.alias)
        elif settling and not self._served:
            log.info(
                "tablet {alias} is not serving yet: {error}", alias=self.state.alias, error=error
            )
        else:
            log.warn("tablet {alias} is not serving: {error}", alias=self.state.alias, error=error)


def build_health_services(
    config: Config,
    state: TabletState,
    topo: ITopoServer,
    dba_pool: MySQLPool[Any],
    clock: IReactorTime,
) -> list[IService]:
    """The tablet's health, publication and role services, in start order: the topo
    publisher (registers the node), the shard sync (settles the role), the probe.

    Add them to the role's MultiService in this order: it stops them in reverse, so the probe
    says "not serving" first and the node is unregistered last.
    """
    publisher = TopoPublisher(
        state,
        topo,
        clock,
        min_interval=config.value(PUBLISH_MIN_INTERVAL),
        lag_step=config.value(PUBLISH_LAG_STEP),
        retry_interval=config.value(ROLE_RETRY_INTERVAL),
    )
    sync = ShardSync(
        state,
        topo,
        dba_pool,
        clock,
        init_primary=config.value(ROLE_INIT_PRIMARY),
        retry_interval=config.value(ROLE_RETRY_INTERVAL),
        app_user=str(config["mysql.app_user"]) if "mysql.app_user" in config else "",
    )
    probe = HealthProbe(
        state,
        dba_pool,
        clock,
        interval=config.value(HEALTH_INTERVAL),
        probe_timeout=config.value(HEALTH_PROBE_TIMEOUT),
        degraded_lag=config.value(HEALTH_DEGRADED_LAG),
        unhealthy_lag=config.value(HEALTH_UNHEALTHY_LAG),
        role_problem=sync.role_problem,
    )
    sync.on_role_change = probe.probe_now
    return [publisher, sync, probe]
