"""One timer for the deadlines of every call in flight on a tablet RPC connection.

Both peers bound each call by a deadline (the gate's client fails it with 1317, the tablet's
server cancels it). A timer per call costs a DelayedCall, a heap insertion and a cancel per
statement; ``DeadlineTimer`` keeps one, armed for the earliest deadline. ``add`` re-arms it
for an earlier deadline, an answer does not touch it, ``stop`` cancels it (the owner calls it
when nothing is in flight any more). When it fires it calls the owner's ``expire_due(now)``,
which ends the overdue calls and returns the earliest deadline left (``math.inf``: none),
for which it re-arms.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["DeadlineTimer"]


class DeadlineTimer:
    """The earliest of many deadlines, on ``clock`` (see the module docstring)."""

    __slots__ = ("_at", "_clock", "_expire_due", "_timer")

    def __init__(self, clock: IReactorTime, expire_due: Callable[[float], float]) -> None:
        self._clock = clock
        self._expire_due = expire_due
        self._timer: IDelayedCall | None = None
        self._at = math.inf  # when the timer fires (inf: not armed)

    def add(self, at: float, now: float) -> None:
        """A call with a deadline at ``at`` (clock seconds; ``now`` is the clock's time)."""
        if at < self._at:
            self._arm(at, now)

    def stop(self) -> None:
        """Nothing is in flight: cancel the timer."""
        timer, self._timer = self._timer, None
        self._at = math.inf
        if timer is not None and timer.active():
            timer.cancel()

    def _arm(self, at: float, now: float) -> None:
        self._at = at
        delay = max(0.0, at - now)
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(delay)
        else:
            self._timer = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._at = math.inf
        now = self._clock.seconds()
        earliest = self._expire_due(now)
        if earliest < math.inf:
            self._arm(earliest, now)
