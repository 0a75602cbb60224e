"""What is wrong with one shard, from what vtorc observed (pure: no I/O, no clock).

Input: the shard record, the tablet records in the topo now and the last ones seen (so a
primary whose ephemeral node vanished is still known), each reachable tablet's ``status``
report (``vtwist.tablet.manager``) or the error its call failed with, and whether the
primary's mysqld sent its greeting. Output: the problems, most serious first, each with
the repair vtorc runs.

=====================  =========================================================  ==========
problem                detected when                                              repair
=====================  =========================================================  ==========
dead_primary           the primary's tablet is gone or not serving, AND its        emergency
                       mysqld does not greet, AND every reachable replica says     reparent
                       its IO thread is not connected (at least one answered)
primary_unreachable    the primary's tablet is gone or not serving but the         none (the
                       evidence above is incomplete (mysqld greets, or a replica   gate buffers
                       still streams from it)                                      or errors)
primary_read_only      the recorded primary's tablet is primary, mysqld answers,   read_only
                       and it is read_only                                         OFF
replica_writable       a replica's mysqld is not read_only                          read_only ON
replica_wrong_source   the primary is healthy and a replica replicates from        repoint
                       another server, or from none
=====================  =========================================================  ==========
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vtwist.topo.records import Shard, Tablet

DEAD_PRIMARY = "dead_primary"
PRIMARY_UNREACHABLE = "primary_unreachable"
PRIMARY_READ_ONLY = "primary_read_only"
REPLICA_WRITABLE = "replica_writable"
REPLICA_WRONG_SOURCE = "replica_wrong_source"

PROBLEMS = (
    DEAD_PRIMARY,
    PRIMARY_UNREACHABLE,
    PRIMARY_READ_ONLY,
    REPLICA_WRITABLE,
    REPLICA_WRONG_SOURCE,
)


@dataclass(frozen=True)
class Problem:
    """One finding: its ``kind``, the tablet it is about, and why (for logs and the page)."""

    kind: str
    alias: str
    detail: str


@dataclass
class Observation:
    """What vtorc saw of one shard in one poll."""

    shard: Shard
    live: Mapping[str, Tablet]  # tablet records in the topo now (this shard)
    known: Mapping[str, Tablet]  # the last record seen of every tablet of the shard
    statuses: Mapping[str, Mapping[str, Any]]  # alias -> status report (reachable ones)
    errors: Mapping[str, str]  # alias -> why its status call failed
    primary_mysqld_greets: bool | None  # None: not checked / unknown address


def _io_connected(status: Mapping[str, Any]) -> bool:
    repl = status.get("replication") or {}
    return bool(repl) and repl.get("io_running") == "Yes"


def analyze(obs: Observation) -> list[Problem]:
    """The shard's problems, most serious first (see the module docstring)."""
    alias = obs.shard.primary_alias
    if not alias:
        return []
    primary_status = obs.statuses.get(alias)
    primary_live = obs.live.get(alias)
    replicas = [
        a for a, t in obs.live.items() if a != alias and t.tablet_type in ("replica", "rdonly")
    ]
    answered = [a for a in replicas if a in obs.statuses]
    if primary_status is None:
        why = "its tablet is gone" if primary_live is None else obs.errors.get(alias, "")
        if primary_live is not None and not primary_live.serving and not why:
            why = f"its tablet is not serving ({primary_live.health.error or 'no reason'})"
        streaming = [a for a in answered if _io_connected(obs.statuses[a])]
        if obs.primary_mysqld_greets is False and answered and not streaming:
            return [
                Problem(
                    DEAD_PRIMARY,
                    alias,
                    f"primary {alias}: {why}; its mysqld does not answer; replicas "
                    f"{', '.join(sorted(answered))} lost their stream from it",
                )
            ]
        evidence = []
        if obs.primary_mysqld_greets:
            evidence.append("its mysqld still answers")
        elif obs.primary_mysqld_greets is None:
            evidence.append("its mysqld address is unknown")
        if streaming:
            evidence.append(f"{', '.join(sorted(streaming))} still replicate from it")
        if not answered:
            evidence.append("no replica answered")
        return [
            Problem(
                PRIMARY_UNREACHABLE,
                alias,
                f"primary {alias}: {why or 'unreachable'}; no failover: {'; '.join(evidence)}",
            )
        ]
    problems: list[Problem] = []
    primary = obs.known.get(alias)
    healthy_primary = (
        primary_status is not None
        and primary_status.get("tablet_type") == "primary"
        and not primary_status.get("read_only")
    )
    if (
        primary_status is not None
        and primary_status.get("tablet_type") == "primary"
        and primary_status.get("read_only")
    ):
        problems.append(
            Problem(PRIMARY_READ_ONLY, alias, f"primary {alias} is read_only outside a reparent")
        )
    for a in sorted(answered):
        status = obs.statuses[a]
        if not status.get("read_only"):
            problems.append(Problem(REPLICA_WRITABLE, a, f"replica {a} is writable"))
        if not healthy_primary or primary is None:
            continue
        repl = status.get("replication") or {}
        source = (repl.get("host"), repl.get("port"))
        if not repl:
            problems.append(
                Problem(REPLICA_WRONG_SOURCE, a, f"replica {a} does not replicate; want {alias}")
            )
        elif source != (primary.host, primary.mysql_port):
            problems.append(
                Problem(
                    REPLICA_WRONG_SOURCE,
                    a,
                    f"replica {a} replicates from {source[0]}:{source[1]}, not from primary "
                    f"{alias} ({primary.host}:{primary.mysql_port})",
                )
            )
    return problems
