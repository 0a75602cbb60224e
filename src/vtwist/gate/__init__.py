"""vtgate: the MySQL server applications connect to, routing each query to a tablet.

Modules: ``target`` (Vitess target syntax), ``classify`` (cheap statement classification),
``discovery`` (the live tablet view), ``policies`` (routing policy plugins), ``session``
(one client's ``IQueryHandler``), ``answers`` (gate-owned results), ``gate`` (shared state
of all sessions), ``metrics``, ``config`` and ``tap`` (``twistd vtgate``).
"""
