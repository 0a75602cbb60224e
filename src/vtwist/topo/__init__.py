"""The topo-server: where tablets say who they are, and gates and vtorc learn the topology.

ARCHITECTURE section 2. Layers, bottom up:

- ``conn``: the storage primitives a backend provides (``TopoConn``, ``TopoState``);
  ``zk`` implements them over kazoo (the only module importing kazoo) and ``memory`` in
  process, with fault injection (``memory_recipes``: its lock and election);
- ``server.TopoServer``: the ``ITopoServer`` (``vtwist.interfaces``) over any backend:
  records, compare-and-swap, ephemeral tablets, recovery after reconnection/expiry;
- ``watch``: self-healing watches; ``cache.TopoCache``: the watch-fed mirror that gates,
  tablets and vtorc read (it keeps serving while ZooKeeper is down);
- ``records``, ``vschema``, ``names``, ``layout``, ``errors``: values, validation, paths;
- ``address``: ``zk:127.0.0.1:2181/vtwist`` / ``memory:`` and ``open_topo()``.

Importing this package does not import kazoo.
"""

from vtwist.topo.address import TopoAddress, open_topo, parse_topo_address
from vtwist.topo.cache import TopoCache
from vtwist.topo.conn import TopoState
from vtwist.topo.layout import DEFAULT_ROOT, Layout
from vtwist.topo.memory import MemoryTopoBackend, memory_topo
from vtwist.topo.records import FORMAT_VERSION, KeyRange, Keyspace, Shard, Tablet, TabletHealth
from vtwist.topo.server import TopoServer
from vtwist.topo.vschema import VSchema

__all__ = [
    "DEFAULT_ROOT",
    "FORMAT_VERSION",
    "KeyRange",
    "Keyspace",
    "Layout",
    "MemoryTopoBackend",
    "Shard",
    "Tablet",
    "TabletHealth",
    "TopoAddress",
    "TopoCache",
    "TopoServer",
    "TopoState",
    "VSchema",
    "memory_topo",
    "open_topo",
    "parse_topo_address",
]
