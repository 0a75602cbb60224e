"""vtorc's pure analysis: which problem, from which evidence."""

from __future__ import annotations

from typing import Any

from vtwist.orc.analysis import (
    DEAD_PRIMARY,
    PRIMARY_READ_ONLY,
    PRIMARY_UNREACHABLE,
    REPLICA_WRITABLE,
    REPLICA_WRONG_SOURCE,
    Observation,
    analyze,
)
from vtwist.topo.records import Shard, Tablet

P, R1, R2 = "zone1-0000000100", "zone1-0000000101", "zone1-0000000102"
PORTS = {P: 3300, R1: 3301, R2: 3302}


def tablet(alias: str, tablet_type: str = "replica", serving: bool = True) -> Tablet:
    return Tablet(
        alias=alias,
        keyspace="commerce",
        shard="0",
        tablet_type=tablet_type,
        mysql_port=PORTS[alias],
        serving=serving,
    )


def replica_status(source: str = P, io: str = "Yes", read_only: bool = True) -> dict[str, Any]:
    return {
        "tablet_type": "replica",
        "read_only": read_only,
        "replication": {"host": "127.0.0.1", "port": PORTS[source], "io_running": io},
    }


def primary_status(read_only: bool = False) -> dict[str, Any]:
    return {"tablet_type": "primary", "read_only": read_only, "replication": None}


def observe(
    live: dict[str, Tablet],
    statuses: dict[str, dict[str, Any]],
    errors: dict[str, str] | None = None,
    greets: bool | None = None,
) -> Observation:
    known = {P: tablet(P, "primary"), R1: tablet(R1), R2: tablet(R2)}
    shard = Shard("commerce", "0", primary_alias=P, primary_term=3)
    return Observation(shard, live, known, statuses, errors or {}, greets)


HEALTHY_LIVE = {P: tablet(P, "primary"), R1: tablet(R1), R2: tablet(R2)}


def test_healthy_shard_has_no_problem() -> None:
    obs = observe(HEALTHY_LIVE, {P: primary_status(), R1: replica_status(), R2: replica_status()})
    assert analyze(obs) == []


def test_no_primary_recorded_means_nothing_to_do() -> None:
    obs = observe(HEALTHY_LIVE, {})
    obs.shard = Shard("commerce", "0")
    assert analyze(obs) == []


def test_dead_primary_needs_all_three_kinds_of_evidence() -> None:
    live = {P: tablet(P, "primary", serving=False), R1: tablet(R1), R2: tablet(R2)}
    lost = {R1: replica_status(io="Connecting"), R2: replica_status(io="No")}
    errors = {P: "Can't connect to MySQL server"}
    (p,) = analyze(observe(live, lost, errors, greets=False))
    assert p.kind == DEAD_PRIMARY and p.alias == P and "lost their stream" in p.detail
    # The tablet node gone counts the same as not serving.
    (p,) = analyze(observe({R1: tablet(R1), R2: tablet(R2)}, lost, greets=False))
    assert p.kind == DEAD_PRIMARY and "tablet is gone" in p.detail


def test_no_failover_without_full_evidence() -> None:
    live = {R1: tablet(R1), R2: tablet(R2)}  # the primary's tablet died
    lost = {R1: replica_status(io="Connecting"), R2: replica_status(io="Connecting")}
    # mysqld still greets: only the tablet is down.
    (p,) = analyze(observe(live, lost, greets=True))
    assert p.kind == PRIMARY_UNREACHABLE and "still answers" in p.detail
    # A replica still streams from it.
    streaming = {R1: replica_status(io="Yes"), R2: replica_status(io="Connecting")}
    (p,) = analyze(observe(live, streaming, greets=False))
    assert p.kind == PRIMARY_UNREACHABLE and R1 in p.detail
    # No replica answered: nothing confirms it.
    (p,) = analyze(observe(live, {}, greets=False))
    assert p.kind == PRIMARY_UNREACHABLE and "no replica answered" in p.detail
    # Address unknown (never seen): not enough either.
    (p,) = analyze(observe(live, lost, greets=None))
    assert p.kind == PRIMARY_UNREACHABLE


def test_small_repairs() -> None:
    statuses = {
        P: primary_status(read_only=True),
        R1: replica_status(read_only=False),
        R2: replica_status(source=R1),
    }
    kinds = {(p.kind, p.alias) for p in analyze(observe(HEALTHY_LIVE, statuses))}
    assert kinds == {(PRIMARY_READ_ONLY, P), (REPLICA_WRITABLE, R1)}
    # A replica pointed elsewhere (or nowhere) is repointed only under a healthy primary.
    statuses = {P: primary_status(), R1: replica_status(source=R2), R2: {"read_only": True}}
    kinds = {(p.kind, p.alias) for p in analyze(observe(HEALTHY_LIVE, statuses))}
    assert kinds == {(REPLICA_WRONG_SOURCE, R1), (REPLICA_WRONG_SOURCE, R2)}
