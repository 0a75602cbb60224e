"""The tablet's serving state: one object the probe, the shard sync and the publisher write,
and the RPC health stream, the topo node and ``/debug/health`` read.

``TabletState`` holds who the tablet is (alias, keyspace, shard, cell, hostname, ports), its
role (``tablet_type``, ``primary_term``, ``primary_term_start``) and the last health probe
(``serving``, ``lag_s``, ``error``, ``read_only``, ``gtid_position``). Writers call
``update(...)``; when anything actually changes, every subscriber gets ``snapshot()`` at once,
synchronously, so the gate learns about a flip within the same reactor turn.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

#: The tablet types a tablet can report.
TABLET_TYPES = ("primary", "replica", "rdonly")

#: The attributes ``update`` may change, with the types each accepts.
_FIELDS: dict[str, tuple[type, ...]] = {
    "tablet_type": (str,),
    "serving": (bool,),
    "primary_term": (int,),
    "primary_term_start": (float, int),
    "lag_s": (float, int, type(None)),
    "error": (str,),
    "read_only": (bool, type(None)),
    "gtid_position": (str,),
    "ports": (dict,),
    "hostname": (str,),
}


class TabletState:
    """The tablet's serving state and health: what the topo node and the health stream carry.

    Identity (``alias``, ``keyspace``, ``shard``, ``cell``) is fixed at construction; every
    other attribute changes through ``update``. Read the attributes freely; never assign them
    directly (subscribers would not hear about it).
    """

    alias: str
    keyspace: str
    shard: str
    cell: str
    hostname: str
    tablet_type: str
    serving: bool
    primary_term: int
    primary_term_start: float
    lag_s: float | None
    error: str
    read_only: bool | None
    gtid_position: str
    demoted: str
    ports: dict[str, int]
    updated: float

    def __init__(
        self,
        *,
        alias: str,
        keyspace: str,
        shard: str,
        cell: str,
        hostname: str,
        tablet_type: str,
        clock: IReactorTime,
    ) -> None:
        _check_type(tablet_type)
        self._clock = clock
        self.alias = alias
        self.keyspace = keyspace
        self.shard = shard
        self.cell = cell
        self.hostname = hostname
        self.tablet_type = tablet_type
        # Not serving until the first good probe and a settled role say otherwise.
        self.serving = False
        self.primary_term = 0
        self.primary_term_start = 0.0
        self.lag_s = None
        self.error = "starting: no health probe yet"
        self.read_only = None
        self.gtid_position = ""
        self.ports = {}
        # Set by a reparent demoting this primary (why it must not serve): the health probe
        # keeps the tablet not serving, although mysqld still looks writable until read_only
        # goes on. Not published; a new tablet type clears it.
        self.demoted = ""
        self.updated = clock.seconds()
        self._subscribers: list[Callable[[dict[str, object]], object]] = []

    def snapshot(self) -> dict[str, object]:
        """Everything the state holds, as plain msgpack-able values, plus ``updated`` (the
        clock time of the last change)."""
        return {
            "alias": self.alias,
            "keyspace": self.keyspace,
            "shard": self.shard,
            "cell": self.cell,
            "hostname": self.hostname,
            "tablet_type": self.tablet_type,
            "serving": self.serving,
            "primary_term": self.primary_term,
            "primary_term_start": self.primary_term_start,
            "lag_s": self.lag_s,
            "error": self.error,
            "read_only": self.read_only,
            "gtid_position": self.gtid_position,
            "ports": dict(self.ports),
            "updated": self.updated,
        }

    def subscribe(self, cb: Callable[[dict[str, object]], object]) -> Callable[[], None]:
        """Call ``cb(snapshot())`` synchronously on every change; return the unsubscriber
        (safe to call twice). An exception from ``cb`` is logged and does not reach the
        writer or the other subscribers."""
        self._subscribers.append(cb)

        def unsubscribe() -> None:
            # Remove this registration only (the same callable may be subscribed twice).
            for i, existing in enumerate(self._subscribers):
                if existing is cb:
                    del self._subscribers[i]
                    return

        return unsubscribe

    def update(self, **changes: object) -> bool:
        """Apply ``changes`` (attribute name → new value); if any value differs, stamp
        ``updated``, notify every subscriber and return True. Unknown names or values of the
        wrong type raise TypeError (a bug in the writer), before anything is applied."""
        for name, value in changes.items():
            kinds = _FIELDS.get(name)
            if kinds is None:
                raise TypeError(f"TabletState.update: unknown field {name!r}")
            # bool is an int; only the boolean fields accept it.
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise TypeError(f"TabletState.update: {name}={value!r} has the wrong type")
            if name == "tablet_type":
                _check_type(str(value))
        changed = False
        if "tablet_type" in changes and changes["tablet_type"] != self.tablet_type:
            self.demoted = ""
        for name, value in changes.items():
            if name in ("lag_s", "primary_term_start") and isinstance(value, int):
                value = float(value)
            if isinstance(value, dict):
                value = dict(value)  # ports: our own copy, the caller may mutate theirs
            if getattr(self, name) != value:
                setattr(self, name, value)
                changed = True
        if changed:
            self.updated = self._clock.seconds()
            self._notify()
        return changed

    def writable(self) -> bool:
        """True when the tablet may take writes: it is the primary and it is serving."""
        return self.tablet_type == "primary" and self.serving

    def _notify(self) -> None:
        snap = self.snapshot()
        for cb in list(self._subscribers):
            try:
                cb({**snap, "ports": dict(self.ports)})
            except Exception:
                log.failure("tablet state subscriber {cb!r} failed", cb=cb)

    def __repr__(self) -> str:
        return (
            f"<TabletState {self.alias} {self.tablet_type} "
            f"serving={self.serving} term={self.primary_term} error={self.error!r}>"
        )


def _check_type(tablet_type: str) -> None:
    if tablet_type not in TABLET_TYPES:
        raise ValueError(f"tablet type {tablet_type!r} is not one of {', '.join(TABLET_TYPES)}")
