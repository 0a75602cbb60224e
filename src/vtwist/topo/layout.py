"""Where each record lives in the topo tree, under a configurable root (default ``/vtwist``).

```
<root>/global/keyspaces/<ks>                  Keyspace
<root>/global/keyspaces/<ks>/vschema          VSchema
<root>/global/keyspaces/<ks>/shards/<shard>   Shard (CAS by znode version)
<root>/global/locks/<ks>/<shard>              shard lock (kazoo Lock)
<root>/global/elections/<name>                election (kazoo Election)
<root>/cells/<cell>/tablets/<alias>           Tablet (EPHEMERAL)
```
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from vtwist.topo.errors import ValidationError
from vtwist.topo.names import (
    alias_cell,
    validate_cell_name,
    validate_keyspace_name,
    validate_shard_name,
    validate_tablet_alias,
)

DEFAULT_ROOT = "/vtwist"
_ROOT = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
_ELECTION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def validate_root(root: str) -> str:
    """Return ``root`` normalised (no trailing slash) if it is an absolute znode path."""
    root = root.rstrip("/") if root != "/" else root
    if not _ROOT.match(root) or posixpath.normpath(root) != root:
        raise ValidationError(
            f"topo root {root!r} is invalid: use an absolute path like '/vtwist'"
            " (letters, digits, '_', '.', '-' in each component)"
        )
    return root


@dataclass(frozen=True)
class Layout:
    """The paths of every topo record under ``root``. Arguments are validated names."""

    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        validate_root(self.root)

    @property
    def global_dir(self) -> str:
        return f"{self.root}/global"

    @property
    def keyspaces_dir(self) -> str:
        return f"{self.root}/global/keyspaces"

    def keyspace(self, keyspace: str) -> str:
        return f"{self.keyspaces_dir}/{validate_keyspace_name(keyspace)}"

    def vschema(self, keyspace: str) -> str:
        return f"{self.keyspace(keyspace)}/vschema"

    def shards_dir(self, keyspace: str) -> str:
        return f"{self.keyspace(keyspace)}/shards"

    def shard(self, keyspace: str, shard: str) -> str:
        return f"{self.shards_dir(keyspace)}/{validate_shard_name(shard)}"

    def shard_lock(self, keyspace: str, shard: str) -> str:
        ks, sh = validate_keyspace_name(keyspace), validate_shard_name(shard)
        return f"{self.root}/global/locks/{ks}/{sh}"

    def election(self, name: str) -> str:
        if not _ELECTION.match(name):
            raise ValidationError(
                f"election name {name!r} is invalid: letters, digits, '_', '.', '-' only"
            )
        return f"{self.root}/global/elections/{name}"

    @property
    def cells_dir(self) -> str:
        return f"{self.root}/cells"

    def tablets_dir(self, cell: str) -> str:
        return f"{self.cells_dir}/{validate_cell_name(cell)}/tablets"

    def tablet(self, alias: str) -> str:
        validate_tablet_alias(alias)
        return f"{self.tablets_dir(alias_cell(alias))}/{alias}"
