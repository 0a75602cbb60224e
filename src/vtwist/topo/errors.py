"""The errors every topo-server implementation raises (memory and ZooKeeper alike).

Backends translate their own failures into these, so callers (gate, tablet, orchestrator,
CLI) handle one set. Messages name the object and say what to do.
"""

from __future__ import annotations


class TopoError(Exception):
    """Base class of every topo-server error."""

    kind = "topo_error"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message


class NoNodeError(TopoError):
    """The object (keyspace, shard, tablet, VSchema...) does not exist."""

    kind = "not_found"


class NodeExistsError(TopoError):
    """The object already exists (create of an existing name)."""

    kind = "already_exists"


class BadVersionError(TopoError):
    """A compare-and-swap write lost: the object changed since it was read."""

    kind = "bad_version"


class NotEmptyError(TopoError):
    """A delete was refused because the object still has children."""

    kind = "not_empty"


class TopoUnavailableError(TopoError):
    """ZooKeeper cannot be reached (not connected, connection lost, session expired,
    timed out). Nothing was confirmed; the operation may be retried later."""

    kind = "unavailable"


class PermissionDeniedError(TopoError):
    """ZooKeeper refused the operation (ACL): configure the vtwist digest credentials."""

    kind = "permission_denied"


class LockTimeoutError(TopoError):
    """A lock (or election) could not be obtained within the timeout: another holder has it."""

    kind = "lock_timeout"


class LockLostError(TopoError):
    """A lock that was held is no longer held (its session expired or it was released)."""

    kind = "lock_lost"


class ClosedError(TopoError):
    """The topo-server client was closed."""

    kind = "closed"


class ValidationError(TopoError, ValueError):
    """A name or a value (keyspace, shard, alias, VSchema...) is invalid; the message says why."""

    kind = "invalid"


class InjectedError(TopoError):
    """A failure injected by a test into the in-memory topo-server."""

    kind = "injected"
