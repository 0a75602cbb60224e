"""The tablet's EPHEMERAL topo node: registered at start, rewritten in place when what it
shows changes, unregistered at stop.

The node (``vtwist.topo.records.Tablet``) carries the tablet's identity, ports, type,
serving flag, primary term and health (lag, error, when). The topo is a small-write-volume
store, so the publisher does not write on every probe, only when the node would change:

* type, host, ports, serving, primary term or error differ from the last written node; or
* the replication lag alone moved by at least ``publish.lag_step`` seconds (or appeared or
  vanished): a replica's lag wobbles by a second all the time, and the gate takes its live
  lag from the health stream anyway;

and at most once per ``publish.min_interval``: changes arriving faster coalesce into one
write of the latest state when the interval is over. One write is in flight at a time.

When ZooKeeper is unreachable the tablet keeps serving: ``TopoServer`` keeps the last record
handed to ``register_tablet``/``update_tablet`` even when the write fails, and writes it
again after reconnecting (re-creating the ephemeral node after a session expiry), so the
latest state is what reappears. Any other failure (e.g. a previous run of this tablet whose
session has not expired yet still owns the node) is retried every ``role.retry_interval``.
``stopService`` waits for the write in flight, then unregisters the node (bounded by
``STOP_TIMEOUT``; closing the topo session removes it anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.interfaces import ITopoServer
from vtwist.tablet.state import TabletState
from vtwist.topo.errors import TopoUnavailableError
from vtwist.topo.records import Tablet, TabletHealth

log = Logger()

#: Longest wait in ``stopService`` for the last write and the unregistration.
STOP_TIMEOUT = 5.0


def tablet_record(state: TabletState) -> Tablet:
    """The topo record that describes ``state`` now."""
    ports = state.ports
    return Tablet(
        alias=state.alias,
        keyspace=state.keyspace,
        shard=state.shard,
        tablet_type=state.tablet_type,
        host=state.hostname,
        rpc_port=ports.get("rpc", 0),
        http_port=ports.get("http", 0),
        mysql_port=ports.get("mysql", 0),
        serving=state.serving,
        primary_term=state.primary_term,
        health=TabletHealth(
            lag_s=state.lag_s, error=state.error or None, updated=float(state.updated)
        ),
    )


def _shown(t: Tablet) -> tuple[object, ...]:
    return (
        t.tablet_type,
        t.host,
        t.rpc_port,
        t.http_port,
        t.mysql_port,
        t.serving,
        t.primary_term,
        t.health.error,
    )


def worth_writing(new: Tablet, old: Tablet | None, lag_step: float) -> bool:
    """Whether ``new`` differs from the node last written (``old``) in a way the node shows."""
    if old is None or _shown(new) != _shown(old):
        return True
    a, b = new.health.lag_s, old.health.lag_s
    if (a is None) != (b is None):
        return True
    return a is not None and b is not None and abs(a - b) >= lag_step


class TopoPublisher(Service):
    """Keep the tablet's ephemeral topo node equal to ``state`` (see the module docstring)."""

    def __init__(
        self,
        state: TabletState,
        topo: ITopoServer,
        clock: IReactorTime,
        *,
        min_interval: float,
        lag_step: float,
        retry_interval: float,
    ) -> None:
        self.state = state
        self.topo = topo
        self.clock = clock
        self.min_interval = min_interval
        self.lag_step = lag_step
        self.retry_interval = retry_interval
        #: The last record handed to the topo (written, or kept by it for the reconnection).
        self.published: Tablet | None = None
        #: Writes attempted and failed (for metrics and tests).
        self.writes = 0
        self.write_failures = 0
        self._registered = False
        self._dirty = False
        self._in_flight: Deferred[None] | None = None
        self._timer: IDelayedCall | None = None
        self._not_before = 0.0
        self._unsubscribe: Callable[[], None] | None = None
        self._unlisten: Callable[[], None] | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        tablet_record(self.state)  # a bad alias/keyspace/shard fails the start, not later
        self._unsubscribe = self.state.subscribe(self._state_changed)
        self._unlisten = self.topo.add_state_listener(self._topo_state)
        self._dirty = True
        self._schedule()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        for undo in (self._unsubscribe, self._unlisten):
            if undo is not None:
                undo()
        self._unsubscribe = self._unlisten = None
        self._cancel_timer()
        return _bounded(self.clock, Deferred.fromCoroutine(self._unregister()), STOP_TIMEOUT)

    async def _unregister(self) -> None:
        if self._in_flight is not None:
            # A write still running could re-create the node after we delete it.
            await self._in_flight
        if not self._registered:
            return
        self._registered = False
        try:
            await self.topo.unregister_tablet(self.state.alias)
        except Exception as e:
            log.warn(
                "tablet {alias}: could not unregister from the topo ({error}); the node goes"
                " when the topo session closes",
                alias=self.state.alias,
                error=e,
            )

    # -- deciding when to write ----------------------------------------------------------------

    def _state_changed(self, snapshot: dict[str, object]) -> None:
        if worth_writing(tablet_record(self.state), self.published, self.lag_step):
            self._dirty = True
            self._schedule()

    def _topo_state(self, topo_state: str) -> None:
        if topo_state == "connected" and self._dirty and self._in_flight is None:
            # Back online with a pending retry: do not wait for the retry timer.
            self._not_before = 0.0
            self._cancel_timer()
            self._schedule()

    def _schedule(self) -> None:
        if not self.running or not self._dirty or self._in_flight is not None:
            return
        if self._timer is not None:
            return  # already waiting for the interval to pass
        delay = self._not_before - self.clock.seconds()
        if delay > 0:
            self._timer = self.clock.callLater(delay, self._timer_fired)
        else:
            self._write()

    def _timer_fired(self) -> None:
        self._timer = None
        self._schedule()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- writing ----------------------------------------------------------------------------------

    def _write(self) -> None:
        self._dirty = False
        self._not_before = self.clock.seconds() + self.min_interval
        record = tablet_record(self.state)
        self.writes += 1
        d = Deferred.fromCoroutine(self._do_write(record))
        self._in_flight = d
        d.addBoth(self._written)

    async def _do_write(self, record: Tablet) -> None:
        try:
            if self._registered:
                await self.topo.update_tablet(record)
            else:
                await self.topo.register_tablet(record)
                self._registered = True
                log.info("tablet {alias} registered in the topo", alias=record.alias)
        except TopoUnavailableError:
            # TopoServer kept the record and writes it after reconnecting.
            self._registered = True
        except Exception as e:
            self.write_failures += 1
            self._dirty = True
            self._not_before = self.clock.seconds() + max(self.min_interval, self.retry_interval)
            log.warn(
                "tablet {alias}: topo write failed ({error}); retrying in {retry}s",
                alias=record.alias,
                error=e,
                retry=self.retry_interval,
            )
            return
        self.published = record

    def _written(self, result: Failure | None) -> None:
        self._in_flight = None
        if isinstance(result, Failure):
            log.failure("tablet topo publisher failed", result)
        self._schedule()


def _bounded(clock: IReactorTime, d: Deferred[None], timeout: float) -> Deferred[None]:
    """A Deferred firing with ``d``'s success or after ``timeout`` seconds, whichever first
    (``d`` is not cancelled: topo writes cannot be taken back half-way)."""
    if d.called:
        return succeed(None) if not isinstance(d.result, Failure) else d
    out: Deferred[None] = Deferred()

    def done(result: Any) -> None:
        if call.active():
            call.cancel()
        if not out.called:
            out.callback(None)
        if isinstance(result, Failure):
            log.failure("tablet publisher stop failed", result)

    def expired() -> None:
        if not out.called:
            log.warn("tablet publisher: unregistering took more than {t}s", t=timeout)
            out.callback(None)

    call = clock.callLater(timeout, expired)
    d.addBoth(done)
    return out
