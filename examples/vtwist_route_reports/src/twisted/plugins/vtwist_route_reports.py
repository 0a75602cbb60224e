"""Registers the ``reports-to-replica`` routing policy with ``twisted.plugin.getPlugins``."""

from vtwist_route_reports.policy import ReportsToReplica

reports_to_replica = ReportsToReplica()
