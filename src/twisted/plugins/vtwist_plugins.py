# ServiceMaker is unannotated.
# mypy: disable-error-code="no-untyped-call"
"""vtwist's twistd plugins: one ``ServiceMaker`` per role, each loading its tap lazily."""

from twisted.application.service import ServiceMaker

vttablet = ServiceMaker(
    "vttablet",
    "vtwist.tablet.tap",
    "vtwist tablet: pooled, health-publishing middleware in front of one mysqld.",
    "vttablet",
)

vtgate = ServiceMaker(
    "vtgate",
    "vtwist.gate.tap",
    "vtwist gate: the MySQL server applications use, routing queries to tablets.",
    "vtgate",
)

vtorc = ServiceMaker(
    "vtorc",
    "vtwist.orc.tap",
    "vtwist orchestrator: detects dead primaries and broken replication, and repairs them.",
    "vtorc",
)

# vtwist's reactor (twistd --reactor=vtwist-epoll): see vtwist.reactor.
from twisted.application.reactors import Reactor  # noqa: E402

vtwist_epoll = Reactor(
    "vtwist-epoll",
    "vtwist.reactor",
    "epoll reactor without the per-event log context (vtwist's roles run on it)",
)

# The gate's built-in routing policies (IRoutingPolicy plugins; vtwist.gate.policies is light).
from vtwist.gate.policies import lag_aware, least_inflight, random_choice  # noqa: E402, F401
