"""A bounded pool of MySQL client connections (the tablet's connections to its mysqld).

``MySQLPool(connect_fn, size, max_waiters, wait_timeout, ...)`` opens at most ``size``
connections with ``connect_fn`` (usually a ``functools.partial`` of ``client.connect``) and
lends them out: ``acquire()`` fires with a ``PooledConnection`` (its ``client`` is the
connection), ``release(conn)`` (or ``conn.release()``) gives it back. ``run(fn)`` and
``async with pool.connection() as client`` do both around a piece of work.

Rules:

* Checkout order is FIFO. When every connection is in use, ``acquire`` waits in a queue of
  at most ``max_waiters`` for at most ``wait_timeout`` seconds; a full queue fails at once
  and an expired wait fails, both with ``MySQLError`` 1203 / 42000
  (ER_TOO_MANY_USER_CONNECTIONS) saying how to fix it. Why 1203: it is what Vitess
  answers for a RESOURCE_EXHAUSTED pool, so tools that know Vitess recognise it; and
  unlike 1040 "Too many connections" (SQLSTATE 08004, "server rejected the connection")
  it does not make drivers believe their own connection failed.
* Idle connections are reused most-recent-first (so the surplus ones age out) and closed
  after ``idle_timeout`` seconds unused; every connection is closed after ``max_lifetime``
  seconds (on release, or in the idle list). One that sat idle for more than
  ``ping_on_checkout_after`` seconds is pinged before it is lent out.
* A connection is never lent out again if it is broken (lost, timed out, failed ping), if
  it comes back with a command still running or queued (an abandoned command), or if the
  borrower says ``broken=True``: it is closed and a new one is opened for waiters. One
  returned inside a transaction, or any with ``reset_on_release``, is reset with
  COM_RESET_CONNECTION first, so no session state leaks to the next borrower; a failed
  reset discards it.
* ``close()`` fails the waiters (1053, 08S01), closes idle and lent connections, and fires
  once every connection the pool opened is closed.

``stats()`` gives the counters for metrics. The pool only needs the ``PoolableConnection``
protocol from its connections, so tests drive it with fakes and a ``task.Clock``.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, overload

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError

__all__ = [
    "MySQLPool",
    "PoolStats",
    "PoolableConnection",
    "PooledConnection",
]

log = Logger()

DEFAULT_SIZE = 16
DEFAULT_MAX_WAITERS = 1000
DEFAULT_WAIT_TIMEOUT = 5.0
DEFAULT_IDLE_TIMEOUT = 600.0
DEFAULT_MAX_LIFETIME = 3600.0
DEFAULT_PING_AFTER = 5.0


class PoolableConnection(Protocol):
    """What the pool needs from a connection (``client.MySQLClient`` provides it)."""

    @property
    def is_broken(self) -> bool:
        """True once the connection is unusable."""

    @property
    def busy(self) -> bool:
        """True while a command runs or is queued."""

    @property
    def in_transaction(self) -> bool:
        """True when mysqld reported an open transaction."""

    def ping(self) -> Deferred[None]:
        """COM_PING."""

    def reset_connection(self) -> Deferred[None]:
        """COM_RESET_CONNECTION (plus whatever restores the connection's settings)."""

    def close(self) -> Deferred[None]:
        """Close; fires once closed."""


C = TypeVar("C", bound=PoolableConnection)
T = TypeVar("T")


@dataclass(eq=False)
class PooledConnection(Generic[C]):
    """A connection lent by a pool; ``release()`` gives it back."""

    client: C
    pool: MySQLPool[C] = field(repr=False)
    created_at: float
    last_used: float
    uses: int = 0
    lent: bool = False
    closing: bool = False
    #: What the borrower left in the connection's session on purpose (e.g. the SET
    #: statements a tablet ran); ``try_acquire`` prefers an idle connection with the tag
    #: asked for. The pool never reads it otherwise: whoever sets it resets it.
    tag: tuple[bytes, ...] = ()

    def release(self, broken: bool = False) -> None:
        """Give the connection back (``broken=True``: never reuse it)."""
        self.pool.release(self, broken)


@dataclass(frozen=True)
class PoolStats:
    """Counters of one pool (gauges first, then totals since the pool was made)."""

    name: str
    size: int  # the configured maximum
    open: int  # connections opened and not closed, plus those being opened
    in_use: int
    idle: int
    checking: int  # being pinged or reset before reuse
    waiters: int
    created: int
    closed: int
    connect_errors: int
    wait_count: int  # checkouts that had to queue
    total_wait_time: float  # seconds spent queued by checkouts that got a connection
    wait_timeouts: int
    rejected: int  # checkouts refused because the wait queue was full


@dataclass(eq=False)
class _Waiter:
    deferred: Deferred[Any]
    since: float
    timer: IDelayedCall | None = None
    queued: bool = False


class MySQLPool(Generic[C]):
    """A bounded connection pool; see the module docstring."""

    def __init__(
        self,
        connect_fn: Callable[[], Deferred[C]],
        size: int = DEFAULT_SIZE,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
        *,
        clock: IReactorTime,
        reset_on_release: bool = False,
        ping_on_checkout_after: float | None = DEFAULT_PING_AFTER,
        name: str = "mysqld",
        settings: str | None = None,
    ) -> None:
        if size < 1 or max_waiters < 0 or wait_timeout <= 0:
            raise ValueError("need size >= 1, max_waiters >= 0 and wait_timeout > 0")
        self.connect_fn = connect_fn
        self.size = size
        self.max_waiters = max_waiters
        self.wait_timeout = wait_timeout
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.clock = clock
        self.reset_on_release = reset_on_release
        self.ping_on_checkout_after = ping_on_checkout_after
        self.name = name
        #: Config prefix of this pool's keys (``pool.transaction``), named in 1203 errors.
        self.settings = settings
        self._idle: list[PooledConnection[C]] = []  # most recently used last
        self._in_use: set[PooledConnection[C]] = set()
        self._busy = 0  # being opened, pinged or reset: counts toward ``size``
        self._opening = 0
        self._live: set[PooledConnection[C]] = set()  # opened and not closed yet
        self._waiters: deque[_Waiter] = deque()
        self._reaper: IDelayedCall | None = None
        self._reaper_at = 0.0  # when the armed reaper fires (meaningful while it is active)
        self._closed = False
        self._close_waiters: list[Deferred[None]] = []
        self._created = self._closed_count = self._connect_errors = 0
        self._wait_count = self._wait_timeouts = self._rejected = 0
        self._total_wait = 0.0

    # -- checkout ----------------------------------------------------------------------------

    @property
    def _open(self) -> int:
        return len(self._idle) + len(self._in_use) + self._busy

    def try_acquire(self, tag: tuple[bytes, ...] = ()) -> PooledConnection[C] | None:
        """An idle connection lent at once, or None (then ``acquire`` and wait).

        The per-query fast path: no waiter, timer or Deferred. The most recently used idle
        connection with ``tag`` is taken (the most recently used one of all when none has
        it), and only when nobody queues before us and it needs no ping
        (``ping_on_checkout_after``); ``acquire`` handles every other case.
        """
        idle = self._idle
        if not idle or self._waiters or self._closed:
            return None
        i = len(idle) - 1
        pc = idle[i]
        if pc.tag != tag:
            for j in range(i - 1, -1, -1):
                if idle[j].tag == tag:
                    i, pc = j, idle[j]
                    break
        now = self.clock.seconds()
        after = self.ping_on_checkout_after
        life = self.max_lifetime
        if (
            pc.client.is_broken
            or (life is not None and now - pc.created_at >= life)  # (``_expired``)
            or (after is not None and now - pc.last_used >= after)
        ):
            return None
        del idle[i]
        pc.lent = True
        pc.uses += 1
        pc.last_used = now
        self._in_use.add(pc)
        return pc

    def acquire(self) -> Deferred[PooledConnection[C]]:
        """A connection, now or after waiting (MySQLError 1203 when the pool is exhausted)."""
        if self._closed:
            return fail(self._closed_error())
        pc = self.try_acquire()
        if pc is not None:
            return succeed(pc)
        can_serve = not self._waiters and (self._idle or self._open < self.size)
        if not can_serve and len(self._waiters) >= self.max_waiters:
            self._rejected += 1
            full = f"the wait queue is full ({self.max_waiters} waiting)"
            return fail(self._exhausted(full, "max_waiters"))
        w = _Waiter(Deferred(lambda d: self._drop_waiter(w)), self.clock.seconds())
        self._waiters.append(w)
        self._dispatch()
        if not w.deferred.called and w in self._waiters:
            w.queued = True
            self._wait_count += 1
            w.timer = self.clock.callLater(self.wait_timeout, self._wait_expired, w)
        return w.deferred

    def abort_in_use(self) -> int:
        """Close every lent connection now: the commands running on them fail with 2013
        (mysqld stopped answering; nothing else would end them before their timeouts).
        Their borrowers give them back broken, and they are replaced. Returns how many."""
        lent = list(self._in_use)
        for pc in lent:
            pc.client.close()
        return len(lent)

    def _drop_waiter(self, w: _Waiter) -> None:
        if w in self._waiters:
            self._waiters.remove(w)
        if w.timer is not None and w.timer.active():
            w.timer.cancel()

    def _wait_expired(self, w: _Waiter) -> None:
        w.timer = None
        if w in self._waiters:
            self._waiters.remove(w)
            self._wait_timeouts += 1
            w.deferred.errback(self._exhausted(f"waited {self.wait_timeout:g}s", "wait_timeout"))

    def _exhausted(self, detail: str, limit: str) -> MySQLError:
        """ERROR 1203 naming what to raise: the size, and the ``limit`` that was reached."""
        if self.settings is None:
            hint = f"raise pool size or {limit}"
        else:
            hint = f"raise {self.settings}.size or {self.settings}.{limit}"
        return MySQLError(
            ErrorCode.TOO_MANY_USER_CONNECTIONS,
            f"connection pool for {self.name} exhausted: {len(self._in_use)} in use, "
            f"{detail}; {hint}",
            "42000",
        )

    def _closed_error(self) -> MySQLError:
        return MySQLError(
            ErrorCode.SERVER_SHUTDOWN,
            f"connection pool for {self.name} is closed (shutting down); retry elsewhere",
        )

    def _expired(self, pc: PooledConnection[C], now: float) -> bool:
        return self.max_lifetime is not None and now - pc.created_at >= self.max_lifetime

    def _dispatch(self) -> None:
        """Serve waiters from idle connections; open new ones for those left over."""
        if self._closed or not self._waiters:  # (nobody waits: the per-query case)
            return
        now = self.clock.seconds()
        while self._waiters and self._idle and len(self._waiters) > self._busy:
            pc = self._idle.pop()
            if pc.client.is_broken or self._expired(pc, now):
                self._discard(pc)
                continue
            after = self.ping_on_checkout_after
            if after is not None and now - pc.last_used >= after:
                self._verify(pc)
                continue
            self._lend(pc)
        while len(self._waiters) > self._busy and self._open < self.size:
            self._create()

    def _lend(self, pc: PooledConnection[C]) -> None:
        w = self._waiters.popleft()
        if w.timer is not None and w.timer.active():
            w.timer.cancel()
        now = self.clock.seconds()
        if w.queued:
            self._total_wait += now - w.since
        pc.lent = True
        pc.uses += 1
        pc.last_used = now
        self._in_use.add(pc)
        w.deferred.callback(pc)

    def _available(self, pc: PooledConnection[C], now: float | None = None) -> None:
        """``pc`` is ready for reuse: give it to the first waiter or keep it idle."""
        if self._closed:
            self._discard(pc)
            return
        if self._waiters:
            self._lend(pc)
            self._dispatch()
            return
        pc.last_used = self.clock.seconds() if now is None else now
        self._idle.append(pc)
        deadline = self._deadline(pc)
        reaper = self._reaper
        # (``_reap_by``'s early return inlined: the reaper is usually armed early enough)
        if deadline is not None and (
            reaper is None or not reaper.active() or self._reaper_at > deadline
        ):
            self._reap_by(deadline)

    def _track(self, d: Deferred[Any], pc: PooledConnection[C], what: str) -> None:
        """Run a ping/reset of ``pc``: reusable on success, discarded on failure."""
        self._busy += 1

        def ok(_: object) -> None:
            self._busy -= 1
            self._available(pc)

        def failed(f: Failure) -> None:
            self._busy -= 1
            log.info(
                "pool {pool}: {what} failed, replacing the connection: {error}",
                pool=self.name,
                what=what,
                error=f.getErrorMessage(),
            )
            self._discard(pc)
            self._dispatch()

        d.addCallbacks(ok, failed)

    def _verify(self, pc: PooledConnection[C]) -> None:
        self._track(_call(pc.client.ping), pc, "ping")

    def _create(self) -> None:
        self._busy += 1
        self._opening += 1

        def opened(client: C) -> None:
            self._busy -= 1
            self._opening -= 1
            self._created += 1
            now = self.clock.seconds()
            pc = PooledConnection(client, self, now, now)
            self._live.add(pc)
            self._available(pc)

        def failed(f: Failure) -> None:
            self._busy -= 1
            self._opening -= 1
            self._connect_errors += 1
            log.warn(
                "pool {pool}: cannot open a connection: {error}",
                pool=self.name,
                error=f.getErrorMessage(),
            )
            # The first waiter learns why (e.g. 2003), rather than waiting for its timeout.
            if self._waiters and len(self._waiters) > self._busy:
                w = self._waiters.popleft()
                if w.timer is not None and w.timer.active():
                    w.timer.cancel()
                w.deferred.errback(f)
            self._maybe_closed()
            self._dispatch()

        _call(self.connect_fn).addCallbacks(opened, failed)

    # -- return ------------------------------------------------------------------------------

    def release(self, pc: PooledConnection[C], broken: bool = False) -> None:
        """Give ``pc`` back; ``broken=True`` (or a broken/busy connection) closes it."""
        if pc.pool is not self or not pc.lent:
            raise ValueError("release() of a connection this pool has not lent out")
        pc.lent = False
        self._in_use.discard(pc)
        client = pc.client
        now = self.clock.seconds()
        if broken or client.is_broken or client.busy or self._closed or self._expired(pc, now):
            self._discard(pc)
            self._dispatch()
        elif self.reset_on_release or client.in_transaction:
            self._track(_call(client.reset_connection), pc, "reset")
        else:
            self._available(pc, now)

    def _discard(self, pc: PooledConnection[C]) -> None:
        """Close ``pc`` for good."""
        if pc.closing:
            return
        pc.closing = True
        self._closed_count += 1

        def closed(_: object) -> None:
            self._live.discard(pc)
            self._maybe_closed()

        _call(pc.client.close).addBoth(closed)

    # -- idle and lifetime expiry ------------------------------------------------------------

    def _deadline(self, pc: PooledConnection[C]) -> float | None:
        """When idle ``pc`` must be closed (idle timeout or lifetime), if ever."""
        idle, life = self.idle_timeout, self.max_lifetime
        if idle is None:
            return None if life is None else pc.created_at + life
        if life is None:
            return pc.last_used + idle
        return min(pc.last_used + idle, pc.created_at + life)

    def _reap_by(self, deadline: float | None) -> None:
        """Make sure the reaper runs no later than ``deadline`` (O(1) per release).

        The one reaper timer is only moved earlier, never rescanned here: a connection
        leaving the idle list merely makes the timer fire early, and ``_reap`` then
        rescans once and re-arms it for the earliest deadline left.
        """
        if deadline is None or self._closed:
            return
        if self._reaper is not None and self._reaper.active():
            if self._reaper_at <= deadline:
                return
            self._reaper.cancel()
        self._reaper_at = deadline
        self._reaper = self.clock.callLater(max(0.0, deadline - self.clock.seconds()), self._reap)

    def _reap(self) -> None:
        self._reaper = None
        now = self.clock.seconds()
        keep = []
        earliest: float | None = None
        for pc in self._idle:
            deadline = self._deadline(pc)
            if deadline is not None and deadline <= now:
                self._discard(pc)
            else:
                keep.append(pc)
                if deadline is not None and (earliest is None or deadline < earliest):
                    earliest = deadline
        self._idle = keep
        self._reap_by(earliest)
        self._dispatch()

    # -- helpers around the pool -------------------------------------------------------------

    @overload
    def run(self, fn: Callable[[C], Awaitable[T]]) -> Deferred[T]: ...

    @overload
    def run(self, fn: Callable[[C], T]) -> Deferred[T]: ...

    def run(self, fn: Callable[[C], Any]) -> Deferred[Any]:
        """Acquire, call ``fn(client)`` (it may return a Deferred or a coroutine), release.

        The connection is discarded when ``fn`` fails with anything but an error mysqld
        reported (codes below 2000): its state is then unknown.
        """
        return Deferred.fromCoroutine(self._run(fn))

    async def _run(self, fn: Callable[[C], Any]) -> Any:
        pc = await self.acquire()
        broken = True
        try:
            result = fn(pc.client)
            if inspect.isawaitable(result):
                result = await result
            broken = False
            return result
        except MySQLError as e:
            broken = e.code >= 2000
            raise
        finally:
            if pc.lent:
                self.release(pc, broken)

    def connection(self) -> _Borrow[C]:
        """``async with pool.connection() as client:`` (released as ``run`` does)."""
        return _Borrow(self)

    def stats(self) -> PoolStats:
        """The counters, for metrics."""
        return PoolStats(
            name=self.name,
            size=self.size,
            open=len(self._live) + self._opening,
            in_use=len(self._in_use),
            idle=len(self._idle),
            checking=self._busy - self._opening,
            waiters=len(self._waiters),
            created=self._created,
            closed=self._closed_count,
            connect_errors=self._connect_errors,
            wait_count=self._wait_count,
            total_wait_time=self._total_wait,
            wait_timeouts=self._wait_timeouts,
            rejected=self._rejected,
        )

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def close(self) -> Deferred[None]:
        """Fail the waiters, close every connection; fires once all are closed."""
        if not self._closed:
            self._closed = True
            if self._reaper is not None and self._reaper.active():
                self._reaper.cancel()
            self._reaper = None
            waiters, self._waiters = self._waiters, deque()
            for w in waiters:
                if w.timer is not None and w.timer.active():
                    w.timer.cancel()
                w.deferred.errback(self._closed_error())
            idle, self._idle = self._idle, []
            for pc in idle:
                self._discard(pc)
            for pc in list(self._in_use):
                self._discard(pc)
        d: Deferred[None] = Deferred()
        self._close_waiters.append(d)
        self._maybe_closed()
        return d

    def _maybe_closed(self) -> None:
        if self._closed and not self._live and not self._opening:
            waiters, self._close_waiters = self._close_waiters, []
            for d in waiters:
                d.callback(None)


class _Borrow(Generic[C]):
    """The async context manager of ``MySQLPool.connection()``."""

    def __init__(self, pool: MySQLPool[C]) -> None:
        self.pool = pool
        self.pc: PooledConnection[C] | None = None

    async def __aenter__(self) -> C:
        self.pc = await self.pool.acquire()
        return self.pc.client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pc, self.pc = self.pc, None
        if pc is None or not pc.lent:
            return
        broken = exc is not None and not (isinstance(exc, MySQLError) and exc.code < 2000)
        self.pool.release(pc, broken)


def _call(fn: Callable[[], Deferred[T]]) -> Deferred[T]:
    """``fn()``, with a synchronous exception turned into a failed Deferred."""
    try:
        return fn()
    except Exception as e:
        return fail(e)
