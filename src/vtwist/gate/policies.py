"""Routing policies: the built-in ``IRoutingPolicy`` plugins and how the gate finds one.

Built-ins (also registered as plugins in ``twisted/plugins/vtwist_plugins.py``):

- ``random``: a uniformly random candidate;
- ``least-in-flight``: the candidate with the fewest requests in flight from this gate
  (ties broken at random);
- ``lag-aware``: replicas weighted by freshness (the least lagging preferred; the choice is
  random among those within ``LAG_SLACK`` seconds of the best).

``load_policy(name)`` finds the policy: built-ins first, then every plugin visible to
``twisted.plugin.getPlugins(IRoutingPolicy)`` (the ``twisted.plugins`` package, which
third-party packages extend, e.g. ``examples/vtwist_route_reports``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.plugin import IPlugin, getPlugins
from zope.interface import implementer

from vtwist.interfaces import IRoutingPolicy

LAG_SLACK = 1.0


@implementer(IPlugin, IRoutingPolicy)
class RandomPolicy:
    """Any candidate, uniformly at random."""

    name = "random"

    def __init__(self, rng: Callable[[int], int] | None = None) -> None:
        self._rng = rng or (lambda n: random.randrange(n))

    def choose(self, candidates: Sequence[Any], query: Any) -> Any:
        """A random candidate."""
        return candidates[self._rng(len(candidates))] if len(candidates) > 1 else candidates[0]

    def redirect(self, query: Any) -> str | None:
        """Never redirects."""
        return None


@implementer(IPlugin, IRoutingPolicy)
class LeastInFlightPolicy:
    """The candidate with the fewest of this gate's requests in flight."""

    name = "least-in-flight"

    def choose(self, candidates: Sequence[Any], query: Any) -> Any:
        """The least busy candidate (random among ties)."""
        if len(candidates) == 1:
            return candidates[0]
        low = min(c.inflight for c in candidates)
        best = [c for c in candidates if c.inflight == low]
        return random.choice(best)

    def redirect(self, query: Any) -> str | None:
        """Never redirects."""
        return None


@implementer(IPlugin, IRoutingPolicy)
class LagAwarePolicy:
    """The freshest replicas: random among those within ``LAG_SLACK`` s of the least lag."""

    name = "lag-aware"

    def choose(self, candidates: Sequence[Any], query: Any) -> Any:
        """A candidate among the least lagging ones (unknown lag counts as 0)."""
        if len(candidates) == 1:
            return candidates[0]
        lags = [(c.lag_s or 0.0, c) for c in candidates]
        best = min(lag for lag, _ in lags)
        return random.choice([c for lag, c in lags if lag <= best + LAG_SLACK])

    def redirect(self, query: Any) -> str | None:
        """Never redirects."""
        return None


random_choice = RandomPolicy()
least_inflight = LeastInFlightPolicy()
lag_aware = LagAwarePolicy()
BUILTINS: dict[str, IRoutingPolicy] = {
    p.name: p for p in (random_choice, least_inflight, lag_aware)
}


def available_policies() -> dict[str, IRoutingPolicy]:
    """Every policy by name: built-ins and installed plugins (plugins cannot shadow them)."""
    import twisted.plugins

    found: dict[str, IRoutingPolicy] = {}
    for plugin in getPlugins(IRoutingPolicy, twisted.plugins):
        name = getattr(plugin, "name", None)
        if isinstance(name, str) and name not in BUILTINS:
            found.setdefault(name, plugin)
    return {**found, **BUILTINS}


def load_policy(name: str) -> IRoutingPolicy:
    """The policy called ``name``; ``KeyError`` listing the known ones otherwise."""
    if name in BUILTINS:
        return BUILTINS[name]
    policies = available_policies()
    try:
        return policies[name]
    except KeyError:
        known = ", ".join(sorted(policies))
        raise KeyError(
            f"no routing policy {name!r}; installed: {known} (a plugin package must put its "
            "module in a twisted/plugins/ directory on sys.path)"
        ) from None
