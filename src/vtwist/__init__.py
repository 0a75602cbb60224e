"""vtwist: the proxy tier of Vitess (gate, tablet, orchestrator) as a Twisted plugin framework."""

__version__ = "0.1.0"
