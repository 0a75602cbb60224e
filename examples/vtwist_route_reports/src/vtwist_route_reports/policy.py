"""``reports-to-replica``: plain reads matching a pattern are redirected to ``@replica``.

The pattern is ``VTWIST_REPORTS_PATTERN`` (a Python regular expression, matched against the
statement's text) read when the policy is created; by default a ``/* report */`` comment.
Candidates are chosen by fewest requests in flight.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from vtwist.interfaces import IRoutingPolicy

DEFAULT_PATTERN = r"/\*\s*report\s*\*/"


@implementer(IPlugin, IRoutingPolicy)
class ReportsToReplica:
    """Redirects matching reads to replicas; picks the least busy candidate."""

    name = "reports-to-replica"

    def __init__(self, pattern: str | None = None) -> None:
        text = pattern or os.environ.get("VTWIST_REPORTS_PATTERN") or DEFAULT_PATTERN
        self.pattern = re.compile(text.encode(), re.IGNORECASE)

    def choose(self, candidates: Sequence[Any], query: Any) -> Any:
        """The candidate with the fewest requests in flight (random among ties)."""
        low = min(c.inflight for c in candidates)
        return random.choice([c for c in candidates if c.inflight == low])

    def redirect(self, query: Any) -> str | None:
        """``@replica`` for a read whose SQL matches the pattern."""
        return "@replica" if self.pattern.search(query.sql) else None
