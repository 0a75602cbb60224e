# twisted.application.service and twisted.web (Resource, Request, Site) are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Helpers for a role's ``makeService``: listeners, the role's MultiService, logging, SIGHUP.

- ``ListenerService``: listen on a Twisted endpoint string while running (what
  ``strports.service`` does) and tell when and where it listens (``whenListening()``), so
  tests and ``vtwist up`` can use ``tcp:0``; ``backlog`` sets the kernel's queue of
  connections not yet accepted (``with_backlog``) unless the string sets its own.
- ``role_service``: the ``MultiService`` a ``makeService`` returns; with ``sequential``
  a ``SequentialMultiService``, which stops its children one at a time, last started
  first (a role whose stop has steps: drain, then close).
- Logging: every module has its own ``log = Logger()`` (``twisted.logger``) and logs with
  structured fields. Under twistd, twistd owns the log destination (``--logfile``,
  ``--syslog``, ``--logger``); ``log_observer``/``start_logging`` are for other programs
  (the ``vtwist`` CLI, tools) and add a minimum level.
- Signals: twistd's reactor installs its own SIGINT and SIGTERM handlers (a clean shutdown
  that stops every service) and twistd uses SIGUSR1 to reopen its log file; SIGHUP is free.
  ``on_sighup`` lets several components (user file, TLS certificates) each register a reload
  callback; the handler only schedules them with ``reactor.callFromThread`` (safe from a
  signal handler, as Twisted's own SIGINT handler does), so they run on the reactor thread.
  ``SignalHookService`` ties a hook to a service's lifetime.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import IO, Any, cast

from twisted.application.service import IService, MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorFromThreads,
    IStreamServerEndpoint,
)
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python.failure import Failure

log = Logger()

#: Log level names accepted by ``parse_log_level`` (for a ``ChoiceOption``).
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def _global_reactor() -> Any:
    # Imported late: importing the reactor installs one, and twistd picks it first.
    from twisted.internet import reactor

    return reactor


# ---------------------------------------------------------------------------------------------
# Listeners
# ---------------------------------------------------------------------------------------------


#: Endpoint types whose parser takes ``backlog=`` (Twisted's default for them is 50).
_BACKLOG_TYPES = ("tcp", "tcp6", "ssl", "unix")
_BACKLOG_SET = re.compile(r"(?<!\\):backlog=")


def with_backlog(description: str, backlog: int | None) -> str:
    """``description`` with ``:backlog=N`` added, when its type takes one and it has none.

    Twisted listens with a backlog of 50: a burst of connections (an application starting
    its pool, clients coming back after a restart) overflows it, and each connection past
    it waits for the client's SYN retry, one second or more. A ``backlog=`` the operator
    wrote in the string wins.
    """
    kind = description.split(":", 1)[0].lower()
    if backlog is None or kind not in _BACKLOG_TYPES or _BACKLOG_SET.search(description):
        return description
    return f"{description}:backlog={backlog}"


class ListenerService(Service):
    """Listen with ``factory`` on the endpoint string ``description`` while running.

    A listen that fails at once (port in use, bad interface) raises from
    ``privilegedStartService``, so twistd stops at start with the reason, as with
    ``strports.service``. ``reactor`` defaults to the global one, looked up at start.
    ``backlog``, when given, is added to ``description`` by ``with_backlog``.
    """

    def __init__(
        self,
        description: str,
        factory: IProtocolFactory,
        *,
        reactor: IReactorCore | None = None,
        name: str | None = None,
        backlog: int | None = None,
    ) -> None:
        self.description = with_backlog(description, backlog)
        self.factory = factory
        self._reactor = reactor
        self._port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None
        self._waiters: list[Deferred[IListeningPort]] = []
        if name is not None:
            self.setName(name)

    @property
    def port(self) -> IListeningPort | None:
        """The listening port while listening, else None."""
        return self._port

    def whenListening(self) -> Deferred[IListeningPort]:
        """Fires with the ``IListeningPort`` once listening (at once if already)."""
        if self._port is not None:
            return succeed(self._port)
        d: Deferred[IListeningPort] = Deferred()
        self._waiters.append(d)
        return d

    def privilegedStartService(self) -> None:
        """Start listening (before twistd drops privileges, so low ports work)."""
        super().privilegedStartService()
        if self._listening is not None or self._port is not None:
            return
        reactor = self._reactor if self._reactor is not None else _global_reactor()
        endpoint = cast(
            IStreamServerEndpoint,
            endpoints.serverFromString(reactor, self.description),
        )
        failed: list[Failure] = []
        d = endpoint.listen(self.factory)
        self._listening = d
        d.addCallbacks(self._listened, failed.append)
        if failed:
            self._listening = None
            failed[0].raiseException()
        # A listen that fails later (rare: endpoints that resolve or adopt asynchronously).
        if not d.called:
            d.addErrback(self._listen_failed)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self._port = port
        self._listening = None
        log.info(
            "listening on {address} ({description})",
            address=port.getHost(),
            description=self.description,
        )
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.callback(port)
        return port

    def _listen_failed(self, failure: Failure) -> None:
        self._listening = None
        if not failure.check(CancelledError):  # stopService cancelled it: not a fault
            log.failure("cannot listen on {description}", failure, description=self.description)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.errback(failure)

    def startService(self) -> None:
        """Listen, unless ``privilegedStartService`` already did."""
        super().startService()
        self.privilegedStartService()

    def stopService(self) -> Deferred[None]:
        """Stop listening; fires when the port is closed."""
        super().stopService()
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        result = port.stopListening()
        if isinstance(result, Deferred):
            return result.addCallback(lambda _: None)
        return succeed(None)


class SequentialMultiService(MultiService):
    """A MultiService that stops its children one at a time, last started first, each
    once the previous one's stop is over (``MultiService`` stops them all at once)."""

    def stopService(self) -> Deferred[None]:
        """Stop each child in reverse order, waiting for each (a failure is logged)."""
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_all(list(reversed(list(self)))))

    async def _stop_all(self, services: list[IService]) -> None:
        for service in services:
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                log.failure("stopping {service!r} failed", service=service)


def role_service(name: str, *children: IService, sequential: bool = False) -> MultiService:
    """A named ``MultiService`` holding ``children`` (what a role's ``makeService`` returns);
    ``sequential``: a ``SequentialMultiService``."""
    top = SequentialMultiService() if sequential else MultiService()
    top.setName(name)
    for child in children:
        child.setServiceParent(top)
    return top


# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------


def parse_log_level(name: str) -> LogLevel:
    """``"info"`` -> ``LogLevel.info``; raises ValueError naming the accepted levels."""
    try:
        level: LogLevel = LogLevel.levelWithName(name.strip().lower())
    except Exception:
        raise ValueError(
            f"unknown log level {name!r}; use one of {', '.join(LOG_LEVELS)}"
        ) from None
    return level


def log_observer(
    stream: IO[Any], *, level: LogLevel = LogLevel.info, json: bool = False
) -> ILogObserver:
    """An observer writing events of ``level`` and above to ``stream`` as text or JSON lines."""
    base = jsonFileLogObserver(stream) if json else textFileLogObserver(stream)
    return FilteringLogObserver(base, [LogLevelFilterPredicate(defaultLogLevel=level)])


def start_logging(
    stream: IO[Any] | None = None, *, level: LogLevel = LogLevel.info, json: bool = False
) -> ILogObserver:
    """Begin global logging to ``stream`` (stderr by default) outside twistd; once per process."""
    observer = log_observer(stream if stream is not None else sys.stderr, level=level, json=json)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return observer


# ---------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------

SignalCallback = Callable[[], object]
_Handler = Callable[[int, FrameType | None], Any] | int | None


class _Dispatcher:
    """The one handler of one signal, fanning out to every registered callback."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.hooks: list[tuple[SignalCallback, IReactorFromThreads]] = []
        self.previous: _Handler = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread, possibly inside the reactor:
        # do nothing here but queue the callbacks for the reactor's next iteration.
        for callback, reactor in list(self.hooks):
            reactor.callFromThread(_run_hook, signum, callback)

    def close(self) -> None:
        signal.signal(self.signum, self.previous)


def _run_hook(signum: int, callback: SignalCallback) -> None:
    try:
        callback()
    except Exception:
        log.failure("signal {signal} hook {hook!r} failed", signal=signum, hook=callback)


_dispatchers: dict[int, _Dispatcher] = {}


def on_signal(
    signum: int, callback: SignalCallback, *, reactor: IReactorFromThreads | None = None
) -> Callable[[], None]:
    """Run ``callback()`` on the reactor thread each time ``signum`` arrives.

    Returns a function that removes the hook (the previous handler comes back with the last
    hook). Must be called from the main thread (a rule of ``signal.signal``). A callback that
    raises is logged, and the other hooks still run.
    """
    r = reactor if reactor is not None else _global_reactor()
    dispatcher = _dispatchers.get(signum)
    if dispatcher is None:
        dispatcher = _dispatchers[signum] = _Dispatcher(signum)
    entry = (callback, r)
    dispatcher.hooks.append(entry)

    def remove() -> None:
        d = _dispatchers.get(signum)
        if d is None or entry not in d.hooks:
            return
        d.hooks.remove(entry)
        if not d.hooks:
            del _dispatchers[signum]
            d.close()

    return remove


def on_sighup(
    callback: SignalCallback, *, reactor: IReactorFromThreads | None = None
) -> Callable[[], None]:
    """``on_signal(SIGHUP, callback)``: the conventional "reload your files" hook."""
    return on_signal(signal.SIGHUP, callback, reactor=reactor)


class SignalHookService(Service):
    """Registers ``callback`` for ``signum`` while the service runs (SIGHUP by default)."""

    def __init__(
        self,
        callback: SignalCallback,
        *,
        signum: int = signal.SIGHUP,
        reactor: IReactorFromThreads | None = None,
    ) -> None:
        self.callback = callback
        self.signum = signum
        self._reactor = reactor
        self._remove: Callable[[], None] | None = None

    def startService(self) -> None:
        """Install the hook."""
        super().startService()
        if self._remove is None:
            self._remove = on_signal(self.signum, self.callback, reactor=self._reactor)

    def stopService(self) -> None:
        """Remove the hook."""
        super().stopService()
        if self._remove is not None:
            self._remove()
            self._remove = None
