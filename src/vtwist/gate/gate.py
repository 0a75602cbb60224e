"""What every client session of one gate shares: topology, discovery, policy, metrics.

``Gate`` is the ``IQueryHandlerFactory`` the MySQL server calls for each authenticated
client; it resolves targets to a keyspace and shard (for each statement: one that names
another keyspace goes there, one that needs no database runs without a target,
``qualify``), picks a tablet through the routing
policy, decodes (and caches) column definitions, and keeps the session table that
``SHOW PROCESSLIST`` and ``KILL`` read; its ``FailoverBuffer`` (``buffer``) holds
primary-bound statements while a shard has no serving primary. ``GateServerFactory`` is
the MySQL server factory with the gate's auth-failure throttling (``AuthThrottle``).

Errors (documented in the README):

- no serving tablet: ERROR 1105 (HY000) ``no healthy tablet available for
  'commerce/0@replica'`` (1105 rather than a client-side 2002: the client's own connection
  is fine, and the statement may be retried); for a primary, after the failover buffer's
  bounds: ERROR 1105 ``no primary is serving commerce/0 (a failover may be in progress)``;
- a throttled host: ERROR 1129 (HY000) ``Host 'x' is blocked because of many connection
  errors``, until ``auth.block_time`` has passed;
- no keyspace selected in a cluster of several, for a statement that may read the default
  database: ERROR 1046 (3D000); a statement naming two keyspaces: ERROR 1235 (42000).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from vtwist.gate.buffer import BufferSettings, FailoverBuffer
from vtwist.gate.classify import QueryInfo
from vtwist.gate.discovery import Discovery, NoServingTabletError, TabletHandle
from vtwist.gate.metrics import GateMetrics
from vtwist.gate.qualify import named_keyspaces, needs_database
from vtwist.gate.querystats import QueryStats
from vtwist.gate.target import PRIMARY, Target
from vtwist.interfaces import IQueryHandlerFactory, IRoutingPolicy, ITopoCache
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.mysql.messages import ColumnDefinition41
from vtwist.protocols.mysql.server import MySQLServerFactory
from vtwist.protocols.mysql.server_types import ClientInfo

if TYPE_CHECKING:
    from vtwist.gate.session import GateSession

log = Logger()

ER_HOST_IS_BLOCKED = 1129
MAX_COLUMN_CACHE = 4096
MAX_READY_WAITERS = 4096  # sessions waiting for the first topo read


@dataclass(frozen=True)
class StatsSettings:
    """The ``stats.*`` keys: query statistics by digest and recent errors."""

    query_digests: bool = True
    max_digests: int = 2000
    max_digest_length: int = 1024
    recent_errors: int = 50


@dataclass(frozen=True)
class GateSettings:
    """The gate's session behaviour (from the ``session.*``/``routing.*``/``buffer.*``
    config keys)."""

    default_tablet_type: str = PRIMARY
    query_timeout: float = 30.0
    stream_timeout: float = 3600.0
    version_comment: str = "vtwist gate"
    server_version: str = "5.7.9-vtwist"
    prepare_fields: bool = True
    autocommit_off_reads_in_transaction: bool = True
    max_local_infile_size: int = 1024 * 1024 * 1024
    olap_programs: frozenset[str] = frozenset(("mysqldump", "mysqlpump"))
    olap_markers: tuple[bytes, ...] = (b"/*!40001 SQL_NO_CACHE */",)
    topo_wait: float = 10.0
    buffer: BufferSettings = field(default_factory=BufferSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    extra: dict[str, Any] = field(default_factory=dict)


def no_tablet(keyspace: str, shard: str, tablet_type: str) -> NoServingTabletError:
    """ERROR 1105 when no tablet serves ``keyspace/shard@tablet_type`` right now."""
    hint = (
        "the shard has no serving primary (failover in progress?); retry shortly"
        if tablet_type == PRIMARY
        else f"use {keyspace}@primary, or wait for a {tablet_type} to catch up or start"
    )
    return NoServingTabletError(
        keyspace,
        shard,
        tablet_type,
        f"no healthy tablet available for '{keyspace}/{shard}@{tablet_type}': {hint}",
    )


@implementer(IQueryHandlerFactory)
class Gate:
    """The shared state of a gate's sessions (module docstring)."""

    def __init__(
        self,
        cache: ITopoCache,
        discovery: Discovery,
        policy: IRoutingPolicy,
        clock: IReactorTime,
        *,
        settings: GateSettings | None = None,
        metrics: GateMetrics | None = None,
    ) -> None:
        self.cache = cache
        self.discovery = discovery
        self.policy = policy
        self.clock = clock
        self.settings = settings or GateSettings()
        self.metrics = metrics or GateMetrics()
        self.buffer = FailoverBuffer(discovery, clock, self.metrics, self.settings.buffer)
        stats = self.settings.stats
        self.query_stats = QueryStats(
            max_digests=stats.max_digests,
            max_digest_length=stats.max_digest_length,
            recent_errors=stats.recent_errors,
        )
        # Sessions record each statement in ``query_stats`` only with stats.query_digests.
        self.digests = stats.query_digests
        self.shutting_down = False  # stopping (``shutdown``): /debug/health says 503
        self.sessions: dict[int, GateSession] = {}
        self.server: MySQLServerFactory | None = None
        self.started = clock.seconds()
        self.questions = 0
        discovery.on_change(self._release_reads)
        self._columns: dict[bytes, ColumnDefinition41] = {}
        self._heads: dict[tuple[bytes, ...], tuple[ColumnDefinition41, ...]] = {}
        # False from start until the topo cache has read everything once (``topo_loading``).
        self.topo_ready = True
        self._ready_waiters: list[Deferred[None]] = []
        # ``keyspaces()``, kept until the topo cache reports a change (``keyspace_names``).
        self._names: tuple[str, ...] | None = None
        cache.subscribe(self._topo_changed)

    # --- tablets that stop serving ----------------------------------------------------------

    def _release_reads(self) -> None:
        """A tablet's health changed: if one that stopped serving (a planned reparent or
        restart, which waits for its open transactions) holds idle transactions that an
        autocommit-off read opened and that have only read, roll them back now
        (``GateSession.release_reads``) rather than hold its drain for its grace period."""
        if not any(h.pinned > 0 and not h.serving for h in self.discovery.all()):
            return
        for session in list(self.sessions.values()):
            pin = session.tx
            if pin is not None and session.reads_only and not pin.handle.serving:
                session.release_reads()

    # --- topo readiness ---------------------------------------------------------------------

    def topo_loading(self) -> None:
        """The topo cache has not read everything yet: ``when_topo_ready`` waits."""
        self.topo_ready = False

    def topo_loaded(self) -> None:
        """The topo cache has read everything once."""
        self.topo_ready = True
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            if not d.called:
                d.callback(None)

    def when_topo_ready(self, timeout: float) -> Deferred[None]:
        """Fires once the topo was read, or after ``timeout`` s (never fails). A client that
        logs in right after the gate started waits for the keyspaces instead of getting
        ERROR 1049."""
        d: Deferred[None] = Deferred()
        if self.topo_ready or len(self._ready_waiters) >= MAX_READY_WAITERS:
            d.callback(None)
            return d
        self._ready_waiters.append(d)

        def expire() -> None:
            if not d.called:
                self._ready_waiters.remove(d)
                d.callback(None)

        timer = self.clock.callLater(timeout, expire)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        return d.addCallback(stop_timer)

    # --- sessions ---------------------------------------------------------------------------

    def open_session(self, info: ClientInfo) -> GateSession:
        """A new client's session handler."""
        from vtwist.gate.session import GateSession

        session = GateSession(self, info)
        self.sessions[info.connection_id] = session
        self.metrics.connections.set(len(self.sessions))
        return session

    def session_closed(self, session: GateSession) -> None:
        """``session`` ended (called by the session)."""
        if self.sessions.get(session.connection_id) is session:
            del self.sessions[session.connection_id]
        self.metrics.connections.set(len(self.sessions))

    # --- topology ---------------------------------------------------------------------------

    def keyspaces(self) -> list[str]:
        """Known keyspace names, sorted: the topo's, plus those of known tablets (so a topo
        re-read in progress never makes a served keyspace "unknown")."""
        names = set(self.cache.keyspaces())
        names.update(h.keyspace for h in self.discovery.handles.values())
        return sorted(names)

    def keyspace_names(self) -> tuple[str, ...]:
        """``keyspaces()``, computed again only after the topo cache changed (each
        statement asks, to see whether it names another keyspace)."""
        names = self._names
        if names is None:
            names = self._names = tuple(self.keyspaces())
        return names

    def _topo_changed(self, kind: str, key: tuple[str, ...]) -> None:
        self._names = None  # (tablets too: their keyspaces count, ``keyspaces``)

    def shards(self, keyspace: str) -> list[str]:
        """Known shard names of ``keyspace``, sorted."""
        return sorted(self.cache.shards(keyspace))

    def resolve(
        self,
        target: Target,
        info: QueryInfo | None = None,
        current: tuple[str, str] | None = None,
    ) -> tuple[str, str]:
        """The keyspace and shard ``target`` means (the only ones when it leaves them out),
        for ``info`` when given: a statement that names another keyspace's objects
        (``ks.table``, ``SHOW TABLES FROM ks``) goes to that keyspace; one that needs no
        database runs, when none is selected, on ``current`` (the keyspace and shard of the
        session's open transaction) or else on the first keyspace (``vtwist.gate.qualify``)."""
        keyspace = target.keyspace
        names = self.keyspace_names()
        if info is not None and len(names) > 1:
            named = named_keyspaces(info.sql, names)
            if len(named) > 1:
                raise MySQLError(
                    ErrorCode.NOT_SUPPORTED_YET,
                    f"the statement names keyspaces {', '.join(sorted(named))}; vtwist runs a "
                    "statement in one keyspace: query each one separately",
                    "42000",
                )
            if named and keyspace not in named:
                keyspace = named.pop()
                target = Target(keyspace, "", target.tablet_type)
            elif not keyspace and not needs_database(info):
                if current is not None:
                    return current
                keyspace = names[0]
                target = Target(keyspace, (self.shards(keyspace) or [""])[0], target.tablet_type)
        if not keyspace:
            if len(names) != 1:
                raise MySQLError(
                    ErrorCode.NO_DB,
                    "No database selected; USE a keyspace (SHOW DATABASES lists them) or name "
                    f"it (SELECT ... FROM {names[0] if names else 'commerce'}.t), e.g. "
                    f"USE {names[0] if names else 'commerce'}@replica",
                )
            keyspace = names[0]
        if target.shard:
            return keyspace, target.shard
        shards = self.shards(keyspace)
        if len(shards) == 1:
            return keyspace, shards[0]
        if not shards:
            # The topo may not list shards yet (or at all for this keyspace): fall back on
            # the tablets discovery knows.
            known = sorted({h.shard for h in self.discovery.all() if h.keyspace == keyspace})
            if len(known) == 1:
                return keyspace, known[0]
            if not known:
                raise no_tablet(keyspace, "0", target.tablet_type)
            shards = known
        raise MySQLError(
            ErrorCode.UNKNOWN_ERROR,
            f"keyspace {keyspace!r} has shards {', '.join(shards)}; this gate routes to one "
            f"shard at a time: USE {keyspace}:{shards[0]}@{target.tablet_type}",
        )

    def route(
        self,
        keyspace: str,
        shard: str,
        tablet_type: str,
        query: QueryInfo,
        prefer: Sequence[str] = (),
        exclude: TabletHandle | None = None,
    ) -> TabletHandle:
        """A serving tablet for ``query`` (one of ``prefer`` aliases when possible), not
        ``exclude``."""
        found = self.discovery.candidates(keyspace, shard, tablet_type)
        if exclude is not None:
            found = [h for h in found if h is not exclude]
        if not found:
            raise no_tablet(keyspace, shard, tablet_type)
        if prefer:
            preferred = [h for h in found if h.alias in prefer]
            if preferred:
                return preferred[0]
        if len(found) == 1:
            return found[0]
        try:
            chosen = self.policy.choose(found, query)
        except Exception:
            log.failure("routing policy choose failed; using the first candidate")
            return found[0]
        if not isinstance(chosen, TabletHandle) or chosen not in found:
            log.warn(
                "routing policy {name} returned a non-candidate; using the first",
                name=getattr(self.policy, "name", "?"),
            )
            return found[0]
        return chosen

    def column(self, payload: bytes) -> ColumnDefinition41:
        """The decoded column definition of ``payload`` (cached: results repeat them)."""
        col = self._columns.get(payload)
        if col is None:
            if len(self._columns) >= MAX_COLUMN_CACHE:
                self._columns.clear()
            col = ColumnDefinition41.decode(payload)
            self._columns[payload] = col
        return col

    def columns(self, payloads: Sequence[bytes]) -> tuple[ColumnDefinition41, ...]:
        """The decoded column definitions of a result, as a tuple that is the same object
        for the same definitions (cached): the MySQL server frames a tuple it saw last time
        only once (``Connection.send_result_set``)."""
        key = tuple(payloads)
        cols = self._heads.get(key)
        if cols is None:
            if len(self._heads) >= MAX_COLUMN_CACHE:
                self._heads.clear()
            cols = tuple([self.column(p) for p in payloads])
            self._heads[key] = cols
        return cols


class AuthThrottle:
    """Counts auth failures per host: ``max_failures`` within ``window`` seconds block the
    host for ``block_time`` seconds. At most ``max_hosts`` hosts are tracked (the oldest
    is forgotten first), so memory stays bounded."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_failures: int = 10,
        window: float = 60.0,
        block_time: float = 60.0,
        max_hosts: int = 10000,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.block_time = block_time
        self.max_hosts = max_hosts
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def failure(self, host: str) -> None:
        """Record a failed authentication from ``host``."""
        if self.max_failures <= 0:
            return
        now = self.clock.seconds()
        times = self._failures.pop(host, None) or deque(maxlen=self.max_failures)
        times.append(now)
        self._failures[host] = times
        if len(self._failures) > self.max_hosts:
            del self._failures[next(iter(self._failures))]
        if len(times) >= self.max_failures and now - times[0] <= self.window:
            self._blocked[host] = now + self.block_time
            if len(self._blocked) > self.max_hosts:
                del self._blocked[next(iter(self._blocked))]
            log.warn(
                "blocking MySQL clients from {host} for {seconds}s: {n} failed logins",
                host=host,
                seconds=self.block_time,
                n=len(times),
            )

    def success(self, host: str) -> None:
        """A successful authentication clears the host's failures."""
        self._failures.pop(host, None)

    def blocked(self, host: str) -> float:
        """Seconds left of ``host``'s block (0: not blocked)."""
        until = self._blocked.get(host)
        if until is None:
            return 0.0
        left = until - self.clock.seconds()
        if left <= 0:
            del self._blocked[host]
            self._failures.pop(host, None)
            return 0.0
        return left


class GateServerFactory(MySQLServerFactory):
    """The MySQL server factory of the gate: throttles hosts that fail auth too often."""

    def __init__(self, gate: Gate, *args: Any, throttle: AuthThrottle, **kwargs: Any) -> None:
        super().__init__(gate, *args, **kwargs)
        self.gate = gate
        self.throttle = throttle
        gate.server = self

    def accept_client(self, host: str) -> MySQLError | None:
        """ERROR 1129 for a blocked host."""
        left = self.throttle.blocked(host)
        if left:
            self.gate.metrics.blocked.inc()
            return MySQLError(
                ER_HOST_IS_BLOCKED,
                f"Host '{host}' is blocked because of many connection errors; retry in "
                f"{int(left) + 1} s with the right user and password",
            )
        return None

    def on_auth_failure(self, host: str, user: str) -> None:
        """Count the failure toward the host's throttle."""
        self.gate.metrics.auth_failures.inc()
        self.throttle.failure(host)

    def on_auth_success(self, host: str, user: str) -> None:
        """Clear the host's failures."""
        self.throttle.success(host)
