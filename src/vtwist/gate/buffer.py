"""Failover buffering: primary-bound statements wait out a reparent instead of failing.

``FailoverBuffer`` owns the statements held while a shard has no serving primary (the old
primary's tablet stopped serving or its link is gone, and the new one has not yet reported
serving with a higher term). The session hands it the primary-bound statements it runs
outside a transaction (``run``); reads sent to replicas and statements inside an open
transaction never come here. A statement waits when:

- routing finds no serving primary (``NoServingTabletError``), or
- the primary refused it before running it (``refused``): ERROR 1290 (read-only: it is
  being demoted, or mysqld became read_only) or the tablet's own "not serving" refusal
  (sent before the gate saw its health push); it then waits until discovery shows a
  primary other than the one that refused (or that one serving again after it stopped),
  and is retried once.

Waiting ends on a discovery change (``Discovery.on_change``) that shows a serving primary
for the shard: every statement buffered for it is released and goes through routing again.
Bounds, from the ``buffer.*`` config keys: one statement waits at most ``window`` s in
all; a shard stays in buffering mode at most ``max_failover_duration`` s, after which what
it holds fails and later statements fail at once until a primary serves again; at most
``size`` statements wait across the gate (more fail at once). Past a bound the client gets
ERROR 1105 naming the shard. With ``enabled`` off statements fail as they would without the
buffer. Timers use the injected clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from vtwist.gate.discovery import Discovery, NoServingTabletError, TabletHandle
from vtwist.gate.target import PRIMARY
from vtwist.protocols.mysql.errors import ErrorCode, MySQLError

if TYPE_CHECKING:
    from vtwist.gate.metrics import GateMetrics

log = Logger()

T = TypeVar("T")

REASON_WINDOW = "window"
REASON_SIZE = "size"
REASON_DURATION = "duration"
REASON_DISABLED = "disabled"
MAX_REFUSED_RETRIES = 1  # a statement refused with 1290 is retried once
NOT_SERVING_MARK = " is not serving ("  # in the tablet's refusal (tablet/policies.py)


class NotExecutedError(MySQLError):
    """ERROR 1105 for a statement that certainly did not run: the tablet (or the gate's
    link to it) could not even connect (2002/2003), e.g. its mysqld was just killed."""


def refused(error: MySQLError) -> bool:
    """True when a tablet refused a statement without running it: ERROR 1290 (read-only),
    the tablet's not-serving refusal (1105 ``vttablet ALIAS is not serving (...)``), or a
    ``NotExecutedError``."""
    if error.code == ErrorCode.OPTION_PREVENTS_STATEMENT or isinstance(error, NotExecutedError):
        return True
    return (
        error.code == ErrorCode.UNKNOWN_ERROR
        and error.message.startswith("vttablet ")
        and NOT_SERVING_MARK in error.message
    )


@dataclass(frozen=True)
class BufferSettings:
    """The ``buffer.*`` config keys."""

    enabled: bool = True
    window: float = 10.0
    max_failover_duration: float = 20.0
    size: int = 1000


@dataclass
class _Waiter:
    """One buffered statement."""

    d: Deferred[None]
    timer: IDelayedCall | None = None
    # After a 1290: the primary that refused (handle, generation, term), and whether it
    # has since stopped being a candidate.
    refused: tuple[TabletHandle, int, int] | None = None
    refused_gone: bool = False

    def ready(self, candidates: list[TabletHandle]) -> bool:
        if not candidates:
            return False
        if self.refused is None or self.refused_gone:
            return True
        handle, generation, term = self.refused
        return any(
            c is not handle or c.generation != generation or c.primary_term != term
            for c in candidates
        )


@dataclass
class _ShardBuffer:
    """A shard in buffering mode: since when, what waits, the max-duration timer."""

    keyspace: str
    shard: str
    since: float
    waiters: list[_Waiter] = field(default_factory=list)
    timer: IDelayedCall | None = None
    expired: bool = False  # max_failover_duration passed: fail at once until a primary serves


class FailoverBuffer:
    """Holds primary-bound statements while their shard has no serving primary (module
    docstring)."""

    def __init__(
        self,
        discovery: Discovery,
        clock: IReactorTime,
        metrics: GateMetrics,
        settings: BufferSettings | None = None,
    ) -> None:
        self.discovery = discovery
        self.clock = clock
        self.metrics = metrics
        self.settings = settings or BufferSettings()
        self.shards: dict[tuple[str, str], _ShardBuffer] = {}
        self.count = 0  # statements buffered now, across shards
        discovery.on_change(self._on_change)

    # --- what the session calls -------------------------------------------------------------

    def run(
        self,
        keyspace: str,
        shard: str,
        route: Callable[[], TabletHandle],
        attempt: Callable[[TabletHandle], Awaitable[T]],
        *,
        retry_refused: bool = True,
        track: Callable[[Deferred[Any]], object] | None = None,
    ) -> Coroutine[Any, Any, T]:
        """``attempt(route())`` for a primary-bound statement outside a transaction, waiting
        in the buffer while routing finds no primary or the primary refuses it (``refused``;
        only when ``retry_refused``: nothing reached the client yet). ``track`` is given
        each wait's Deferred (cancelling it ends the wait with ERROR 1317)."""
        return self._run(keyspace, shard, route, attempt, retry_refused, track, None, 0)

    async def resume(
        self,
        keyspace: str,
        shard: str,
        route: Callable[[], TabletHandle],
        attempt: Callable[[TabletHandle], Awaitable[T]],
        error: MySQLError,
        by: tuple[TabletHandle, int, int],
        *,
        track: Callable[[Deferred[Any]], object] | None = None,
    ) -> T:
        """``run`` (with ``retry_refused``) after a first attempt made without it (the
        session's fast path): the primary ``by`` (handle, generation and term before the
        attempt) refused the statement with ``error`` (``refused``); wait and retry as
        ``run`` would have."""
        deadline = self._refusal(keyspace, shard, error, by[0], None)
        await self._wait(keyspace, shard, deadline, error, by, track)
        return await self._run(keyspace, shard, route, attempt, True, track, deadline, 1)

    async def _run(
        self,
        keyspace: str,
        shard: str,
        route: Callable[[], TabletHandle],
        attempt: Callable[[TabletHandle], Awaitable[T]],
        retry_refused: bool,
        track: Callable[[Deferred[Any]], object] | None,
        deadline: float | None,
        refusals: int,
    ) -> T:
        while True:
            try:
                handle = route()
            except NoServingTabletError as e:
                if (e.keyspace, e.shard, e.tablet_type) != (keyspace, shard, PRIMARY):
                    raise
                if deadline is None:
                    deadline = self.clock.seconds() + self.settings.window
                await self._wait(keyspace, shard, deadline, e, None, track)
                continue
            generation, term = handle.generation, handle.primary_term
            try:
                return await attempt(handle)
            except MySQLError as e:
                if not (retry_refused and refused(e)) or refusals >= MAX_REFUSED_RETRIES:
                    raise
                refusals += 1
                deadline = self._refusal(keyspace, shard, e, handle, deadline)
                await self._wait(keyspace, shard, deadline, e, (handle, generation, term), track)

    def _refusal(
        self, keyspace: str, shard: str, e: MySQLError, handle: TabletHandle, deadline: float | None
    ) -> float:
        log.info(
            "primary {alias} of {ks}/{shard} refused a statement ({code}); "
            "buffering it until a primary serves",
            code=e.code,
            alias=handle.alias,
            ks=keyspace,
            shard=shard,
        )
        return self.clock.seconds() + self.settings.window if deadline is None else deadline

    def buffering(self) -> list[tuple[str, str, float, int, bool]]:
        """Shards in buffering mode: keyspace, shard, since, statements waiting, and
        whether max_failover_duration passed (for /debug/status)."""
        return [
            (b.keyspace, b.shard, b.since, len(b.waiters), b.expired)
            for _, b in sorted(self.shards.items())
        ]

    # --- waiting ----------------------------------------------------------------------------

    async def _wait(
        self,
        keyspace: str,
        shard: str,
        deadline: float,
        cause: MySQLError,
        refused: tuple[TabletHandle, int, int] | None,
        track: Callable[[Deferred[Any]], object] | None,
    ) -> None:
        settings = self.settings
        if not settings.enabled:
            self._failed(keyspace, shard, REASON_DISABLED)
            raise cause
        key = (keyspace, shard)
        state = self.shards.get(key)
        if state is not None and state.expired:
            self._failed(keyspace, shard, REASON_DURATION)
            raise self._error(keyspace, shard, REASON_DURATION, refused)
        waiter = _Waiter(Deferred(lambda d: self._cancelled(key, waiter)), refused=refused)
        candidates = self.discovery.candidates(keyspace, shard, PRIMARY)
        if waiter.ready(candidates):
            return  # the primary changed while the statement ran: retry at once
        if refused is not None and not any(c is refused[0] for c in candidates):
            waiter.refused_gone = True
        now = self.clock.seconds()
        if now >= deadline:
            self._failed(keyspace, shard, REASON_WINDOW)
            raise self._error(keyspace, shard, REASON_WINDOW, refused)
        if self.count >= settings.size:
            self._failed(keyspace, shard, REASON_SIZE)
            raise self._error(keyspace, shard, REASON_SIZE, refused)
        if state is None:
            state = _ShardBuffer(keyspace, shard, now)
            state.timer = self.clock.callLater(settings.max_failover_duration, self._expire, key)
            self.shards[key] = state
            log.warn(
                "no serving primary for {ks}/{shard}: buffering its primary-bound statements "
                "(a failover may be in progress)",
                ks=keyspace,
                shard=shard,
            )
        waiter.timer = self.clock.callLater(deadline - now, self._timed_out, key, waiter)
        state.waiters.append(waiter)
        self.count += 1
        self.metrics.buffer_statements.set(self.count)
        self.metrics.buffered.labels(keyspace, shard).inc()
        if track is not None:
            track(waiter.d)
        await waiter.d

    def _on_change(self) -> None:
        for key, state in list(self.shards.items()):
            candidates = self.discovery.candidates(state.keyspace, state.shard, PRIMARY)
            if state.expired:
                if candidates:
                    self._end(key, state)
                continue
            for waiter in list(state.waiters):
                if waiter.refused is not None and not any(
                    c is waiter.refused[0] for c in candidates
                ):
                    waiter.refused_gone = True
                if waiter.ready(candidates):
                    self._release(state, waiter)
                    self.metrics.drained.labels(state.keyspace, state.shard).inc()
                    waiter.d.callback(None)
            if candidates and not state.waiters:
                self._end(key, state)

    def _timed_out(self, key: tuple[str, str], waiter: _Waiter) -> None:
        state = self.shards.get(key)
        if state is None or waiter not in state.waiters:
            return
        waiter.timer = None
        self._release(state, waiter)
        self._failed(state.keyspace, state.shard, REASON_WINDOW)
        waiter.d.errback(self._error(state.keyspace, state.shard, REASON_WINDOW, waiter.refused))

    def _expire(self, key: tuple[str, str]) -> None:
        state = self.shards.get(key)
        if state is None:
            return
        state.timer = None
        state.expired = True
        log.warn(
            "{ks}/{shard} had no serving primary for buffer.max_failover_duration ({s}s): "
            "failing its buffered statements",
            ks=state.keyspace,
            shard=state.shard,
            s=self.settings.max_failover_duration,
        )
        for waiter in list(state.waiters):
            self._release(state, waiter)
            self._failed(state.keyspace, state.shard, REASON_DURATION)
            waiter.d.errback(
                self._error(state.keyspace, state.shard, REASON_DURATION, waiter.refused)
            )
        if self.discovery.candidates(state.keyspace, state.shard, PRIMARY):
            self._end(key, state)

    def _cancelled(self, key: tuple[str, str], waiter: _Waiter) -> None:
        state = self.shards.get(key)
        if state is not None and waiter in state.waiters:
            self._release(state, waiter)
        waiter.d.errback(
            MySQLError(
                ErrorCode.QUERY_INTERRUPTED,
                f"Query execution was interrupted while waiting for a primary of {key[0]}/{key[1]}",
            )
        )

    def _release(self, state: _ShardBuffer, waiter: _Waiter) -> None:
        state.waiters.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        waiter.timer = None
        self.count -= 1
        self.metrics.buffer_statements.set(self.count)

    def _end(self, key: tuple[str, str], state: _ShardBuffer) -> None:
        if self.shards.get(key) is not state:
            return
        if state.timer is not None and state.timer.active():
            state.timer.cancel()
        del self.shards[key]
        log.info(
            "{ks}/{shard} has a serving primary again after {s:.1f}s; buffering ended",
            ks=state.keyspace,
            shard=state.shard,
            s=self.clock.seconds() - state.since,
        )

    def _failed(self, keyspace: str, shard: str, reason: str) -> None:
        self.metrics.buffer_failed.labels(keyspace, shard, reason).inc()

    def _error(
        self,
        keyspace: str,
        shard: str,
        reason: str,
        refused: tuple[TabletHandle, int, int] | None = None,
    ) -> MySQLError:
        s = self.settings
        why = {
            REASON_WINDOW: f"the statement waited buffer.window ({s.window:g}s) for a new one",
            REASON_SIZE: f"the failover buffer is full (buffer.size {s.size} statements)",
            REASON_DURATION: (
                "it has had none for longer than buffer.max_failover_duration "
                f"({s.max_failover_duration:g}s)"
            ),
        }[reason]
        what = f"no primary is serving {keyspace}/{shard}"
        if refused is not None:
            what += f" (its primary {refused[0].alias} refused the statement)"
        return MySQLError(
            ErrorCode.UNKNOWN_ERROR,
            f"{what}; a failover may be in progress and {why}; retry the statement, and "
            "check SHOW VITESS_TABLETS for the shard's tablets",
        )
