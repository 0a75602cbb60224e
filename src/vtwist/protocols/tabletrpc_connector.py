"""The gate's long-lived link to one tablet: reconnects with bounded backoff, relays health.

``TabletRPCConnector`` is a Twisted ``Service`` keeping one ``TabletRPCClient`` connected to
an endpoint. It is a small state machine (stopped -> connecting -> connected -> waiting ->
connecting ...): a connection counts only once the tablet's HELLO arrived (at most
``hello_timeout`` after TCP connected), failed attempts back off exponentially from
``min_backoff`` to ``max_backoff`` seconds on the injected clock. Once connected it
subscribes to the tablet's health stream and relays every snapshot to its listeners; state
listeners hear ``True``/``False`` on connect/disconnect.

A tablet whose HELLO announces ``health_keepalive`` sends a health frame at least that
often. With ``health_timeout``, a stream silent for that long (at least three keepalives)
means a stalled tablet (stopped process, blocked reactor: its ZooKeeper session may live on
in kazoo's thread): the connector drops the connection, so calls waiting on it fail at once
with a clear 2013 instead of at their deadline, the gate routes elsewhere, and it reconnects
as after any loss. A timer that fires more than ``LATE_TIMER`` late means the gate itself
was stalled (its reactor runs timers before the reads that waited): it waits again.

(Twisted's ``ClientService`` is not used: a connection rejected by ``prepareConnection``
and closed afterwards trips its state machine, and it does not back off on such rejects.)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError
from vtwist.protocols.tabletrpc_client import TabletRPCClient, TabletRPCClientFactory

log = Logger()

DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 5.0
DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_HELLO_TIMEOUT = 5.0
DEFAULT_MAX_LISTENERS = 64
DEFAULT_MAX_WAITERS = 1024
#: A health timer that runs this much late (seconds) means the gate's own reactor was
#: stalled, not the tablet: it waits again rather than drop the link.
LATE_TIMER = 0.5

HealthCallback = Callable[[dict[str, Any]], object]
StateCallback = Callable[[bool], object]


class TabletRPCConnector(Service):
    """Keeps one RPC connection to a tablet; see the module docstring.

    Bounds: ``min_backoff``/``max_backoff``/``backoff_factor`` (reconnect delays, seconds;
    ``jitter()`` is added to each, default uniform in [0, min_backoff)), ``hello_timeout``
    (seconds from TCP connect to the tablet's HELLO), ``max_listeners`` (health plus state
    listeners) and ``max_waiters`` (pending ``when_connected`` calls).
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        *,
        client_factory: TabletRPCClientFactory | None = None,
        min_backoff: float = DEFAULT_MIN_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        jitter: Callable[[], float] | None = None,
        hello_timeout: float = DEFAULT_HELLO_TIMEOUT,
        watch_health: bool = True,
        health_timeout: float | None = None,
        max_listeners: int = DEFAULT_MAX_LISTENERS,
        max_waiters: int = DEFAULT_MAX_WAITERS,
        name: str = "",
    ) -> None:
        if not 0 < min_backoff <= max_backoff or backoff_factor < 1 or hello_timeout <= 0:
            raise ValueError(
                "need 0 < min_backoff <= max_backoff, backoff_factor >= 1, hello_timeout > 0"
            )
        self.endpoint = endpoint
        self.clock = clock
        self.label = name or str(endpoint)
        self.client_factory = client_factory or TabletRPCClientFactory(clock)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.backoff_factor = backoff_factor
        self.jitter = jitter or (lambda: random.random() * min_backoff)
        self.hello_timeout = hello_timeout
        self.watch_health = watch_health
        self.health_timeout = health_timeout
        self._silence: IDelayedCall | None = None
        self._silence_limit = 0.0
        self.max_listeners = max_listeners
        self.max_waiters = max_waiters
        self.client: TabletRPCClient | None = None
        self.last_health: dict[str, Any] | None = None
        self.failures = 0
        self._attempt: Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._waiters: list[Deferred[TabletRPCClient]] = []
        self._health_listeners: list[HealthCallback] = []
        self._state_listeners: list[StateCallback] = []

    # --- Service ----------------------------------------------------------------------------

    def startService(self) -> None:
        """Start connecting (and reconnecting)."""
        if self.running:
            return
        self.running = True
        self._connect()

    def stopService(self) -> Deferred[None]:
        """Stop reconnecting and close the connection; fires when it is closed."""
        self.running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._attempt is not None:
            self._attempt.cancel()
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.errback(self._not_connected())
        if self.client is not None:
            return self.client.close()
        return succeed(None)

    # --- what the gate uses -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a client is connected and has seen the tablet's HELLO."""
        return self.client is not None

    def _not_connected(self) -> MySQLError:
        return MySQLError(
            ErrorCode.CR_CONN_HOST_ERROR,
            f"tablet {self.label} is not connected; the gate retries in the background, "
            "route to another tablet meanwhile",
        )

    def require_client(self) -> TabletRPCClient:
        """The connected client; ``MySQLError`` 2003 when there is none right now."""
        client = self.client
        if client is None or client.closing:
            raise self._not_connected()
        return client

    def when_connected(self, timeout: float) -> Deferred[TabletRPCClient]:
        """The connected client, or the next one within ``timeout`` s (else 2003)."""
        if self.client is not None:
            return succeed(self.client)
        if not self.running or len(self._waiters) >= self.max_waiters:
            return fail(self._not_connected())
        d: Deferred[TabletRPCClient] = Deferred()
        self._waiters.append(d)
        timer = self.clock.callLater(timeout, self._waiter_timeout, d)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(stop_timer)
        return d

    def _waiter_timeout(self, d: Deferred[TabletRPCClient]) -> None:
        if d in self._waiters:
            self._waiters.remove(d)
            d.errback(self._not_connected())

    def subscribe_health(self, listener: HealthCallback) -> Callable[[], None]:
        """Call ``listener(snapshot)`` on each health push; return the unsubscriber."""
        return self._add(self._health_listeners, listener)

    def subscribe_state(self, listener: StateCallback) -> Callable[[], None]:
        """Call ``listener(connected)`` on each connect/disconnect; return the unsubscriber."""
        return self._add(self._state_listeners, listener)

    def _add(self, listeners: list[Any], listener: Any) -> Callable[[], None]:
        if len(self._health_listeners) + len(self._state_listeners) >= self.max_listeners:
            raise ValueError(f"more than {self.max_listeners} listeners on {self.label}")
        listeners.append(listener)

        def unsubscribe() -> None:
            if listener in listeners:
                listeners.remove(listener)

        return unsubscribe

    # --- the reconnect loop -----------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if not self.running or self.client is not None or self._attempt is not None:
            return
        attempt: Deferred[Any] = self.endpoint.connect(self.client_factory)
        self._attempt = attempt
        attempt.addCallback(self._handshake)
        attempt.addCallbacks(self._connected, self._attempt_failed)

    def _handshake(self, proto: Any) -> Deferred[TabletRPCClient]:
        assert isinstance(proto, TabletRPCClient)
        ready = proto.when_ready()
        ready.addTimeout(self.hello_timeout, self.clock)

        def not_ready(failure: Failure) -> Failure:
            # Never handed out: close it; its connectionLost concerns nobody.
            proto.close_connection()
            return failure

        return ready.addCallbacks(lambda _: proto, not_ready)

    def _attempt_failed(self, failure: Failure) -> None:
        self._attempt = None
        if not self.running:
            return
        self.failures += 1
        log.warn(
            "cannot connect to tablet {tablet} (attempt {n}): {why}",
            tablet=self.label,
            n=self.failures,
            why=failure.getErrorMessage(),
        )
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if not self.running or self._retry is not None:
            return
        steps = max(self.failures - 1, 0)
        delay = min(self.min_backoff * self.backoff_factor**steps, self.max_backoff)
        self._retry = self.clock.callLater(delay + self.jitter(), self._connect)

    def _connected(self, proto: TabletRPCClient) -> None:
        self._attempt = None
        if not self.running:
            proto.close_connection()
            return
        self.failures = 0
        self.client = proto
        proto.when_closed().addCallback(lambda _: self._disconnected(proto))
        log.info("connected to tablet {tablet}", tablet=self.label)
        self._notify_state(True)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(proto)
        if self.watch_health and self.client is proto:
            keepalive = proto.health_keepalive
            if self.health_timeout is not None and keepalive is not None:
                self._silence_limit = max(self.health_timeout, 3 * keepalive)
                self._arm_silence(proto)
            proto.stream_health(self._on_health).addErrback(self._health_ended, proto)

    def _arm_silence(self, proto: TabletRPCClient) -> None:
        limit = self._silence_limit
        self._silence = self.clock.callLater(limit, self._silent, proto, limit)

    def _silent(self, proto: TabletRPCClient, limit: float) -> None:
        """No health frame for ``limit`` seconds from a tablet that promised keepalives."""
        fired, self._silence = self._silence, None
        if self.client is not proto or fired is None:
            return
        late = self.clock.seconds() - fired.getTime()
        if late > LATE_TIMER:
            # The gate itself was stalled (timers run before the reads that waited): the
            # tablet's frames may be queued unread. Give it a fresh window instead.
            log.info(
                "health timer of tablet {tablet} ran {late:.1f}s late (the gate was busy); "
                "waiting again",
                tablet=self.label,
                late=late,
            )
            self._arm_silence(proto)
            return
        log.warn(
            "tablet {tablet} sent no health for {limit:g}s: taking it for stalled, closing "
            "the link (statements on it fail now) and reconnecting",
            tablet=self.label,
            limit=limit,
        )
        proto.abandon(
            MySQLError(
                ErrorCode.CR_SERVER_LOST,
                f"tablet {self.label} stopped answering (no health for {limit:g}s); the "
                "gate closed its link: the statement may or may not have run",
            )
        )

    def _disconnected(self, proto: TabletRPCClient) -> None:
        if self.client is not proto:
            return
        if self._silence is not None and self._silence.active():
            self._silence.cancel()
        self._silence = None
        self.client = None
        self.last_health = None
        self._notify_state(False)
        if self.running:
            log.info("lost tablet {tablet}; reconnecting", tablet=self.label)
            self.failures = 1  # first retry after min_backoff
            self._schedule_retry()

    def _health_ended(self, failure: Failure, proto: TabletRPCClient) -> None:
        if not proto.closed:
            log.warn(
                "health stream of tablet {tablet} ended: {why}",
                tablet=self.label,
                why=failure.getErrorMessage(),
            )

    def _on_health(self, snapshot: dict[str, Any]) -> None:
        self.last_health = snapshot
        silence = self._silence
        if silence is not None and silence.active():
            silence.reset(self._silence_limit)
        for listener in list(self._health_listeners):
            try:
                listener(snapshot)
            except Exception:
                log.failure("health listener of tablet {tablet} failed", tablet=self.label)

    def _notify_state(self, connected: bool) -> None:
        for listener in list(self._state_listeners):
            try:
                listener(connected)
            except Exception:
                log.failure("state listener of tablet {tablet} failed", tablet=self.label)
