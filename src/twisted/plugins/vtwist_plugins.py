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
