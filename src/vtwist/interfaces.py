"""Every zope.interface of vtwist, in one place.

Providers declare ``@implementer(...)`` and have a ``verifyObject`` test. Interfaces here
import nothing from the gate, tablet or orchestrator, so every layer can depend on this
module.
"""

from __future__ import annotations

from zope.interface import Interface

# --- authentication (owned by the MySQL server side) -------------------------------------
# AUTH-SECTION

# --- topology (owned by vtwist.topo) ------------------------------------------------------
# TOPO-SECTION

__all__ = ["Interface"]
