"""Unit tests of TabletState and the health probe: the verdict rules, and how probe results
reach the state (and so the health stream) with a scripted mysqld and a task.Clock."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, globalLogPublisher

from tests.unit.tablet.test_tablet_health_fakes import (
    SLAVE_COLUMNS,
    FakeMysqld,
    advance,
    fake_pool,
    make_state,
    pump,
    result,
)
from vtwist.tablet.health import (
    MAX_OUTSTANDING,
    SHUTTING_DOWN,
    HealthProbe,
    ReplicationStatus,
    Sample,
    evaluate,
    parse_replication,
)
from vtwist.tablet.state import TabletState

# -- TabletState ---------------------------------------------------------------------------------


def test_state_notifies_once_per_change_and_not_when_unchanged() -> None:
    clock = Clock()
    state = make_state(clock)
    seen: list[dict[str, object]] = []
    unsubscribe = state.subscribe(seen.append)
    clock.advance(5)
    assert state.update(serving=True, error="") is True
    assert state.update(serving=True, error="") is False
    assert state.update(lag_s=0) is True  # None -> 0.0
    assert state.update(lag_s=0.0) is False
    assert len(seen) == 2
    assert seen[0]["serving"] is True and seen[0]["updated"] == 5.0
    assert seen[1]["lag_s"] == 0.0
    unsubscribe()
    unsubscribe()  # harmless twice
    state.update(serving=False)
    assert len(seen) == 2


def test_state_snapshot_is_plain_and_copied() -> None:
    state = make_state(Clock())
    snap = state.snapshot()
    assert set(snap) >= {
        "alias",
        "keyspace",
        "shard",
        "cell",
        "hostname",
        "tablet_type",
        "serving",
        "primary_term",
        "primary_term_start",
        "lag_s",
        "error",
        "read_only",
        "gtid_position",
        "ports",
        "updated",
    }
    assert snap["ports"] == {"rpc": 16100, "http": 15100, "mysql": 3306}
    ports = snap["ports"]
    assert isinstance(ports, dict)
    ports["rpc"] = 1
    assert state.ports["rpc"] == 16100


def test_state_rejects_unknown_fields_and_bad_types_without_applying_any() -> None:
    state = make_state(Clock())
    for bad in ({"nonsense": 1}, {"serving": 1}, {"primary_term": True}, {"tablet_type": "boss"}):
        try:
            state.update(error="x", **bad)
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError(f"accepted {bad}")
        assert state.error != "x"


def test_state_writable_only_for_a_serving_primary() -> None:
    state = make_state(Clock())
    assert not state.writable()  # not serving before the first probe
    state.update(serving=True)
    assert state.writable()
    state.update(tablet_type="replica")
    assert not state.writable()


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    state = make_state(Clock())
    seen: list[object] = []

    def bad(snapshot: dict[str, object]) -> None:
        raise RuntimeError("boom")

    state.subscribe(bad)
    state.subscribe(seen.append)
    state.update(serving=True)
    assert len(seen) == 1


# -- evaluate / parse ----------------------------------------------------------------------------

LAGS = {"degraded_lag": 30.0, "unhealthy_lag": 300.0}


def channel(**kw: object) -> ReplicationStatus:
    base: dict[str, object] = {"io_running": "Yes", "sql_running": "Yes", "seconds_behind": 0}
    base.update(kw)
    return ReplicationStatus(**base)  # type: ignore[arg-type]


def test_primary_serves_only_when_writable() -> None:
    ok = evaluate(Sample(read_only=False, gtid_position="0-1-5"), "primary", **LAGS)
    assert (ok.serving, ok.error) == (True, "")
    ro = evaluate(Sample(read_only=True, gtid_position=""), "primary", **LAGS)
    assert not ro.serving and "read_only" in ro.error


def test_replica_needs_running_replication() -> None:
    none = evaluate(Sample(read_only=True, gtid_position=""), "replica", **LAGS)
    assert not none.serving and "not configured" in none.error
    stopped = evaluate(
        Sample(True, "", (channel(io_running="No", last_io_error="access denied"),)),
        "rdonly",
        **LAGS,
    )
    assert not stopped.serving
    assert "Slave_IO_Running=No" in stopped.error and "access denied" in stopped.error
    sql_stopped = evaluate(Sample(True, "", (channel(sql_running="No"),)), "replica", **LAGS)
    assert not sql_stopped.serving and "START SLAVE" in sql_stopped.error


def test_replica_lag_thresholds() -> None:
    def at(lag: int | None) -> tuple[bool, float | None, str]:
        v = evaluate(Sample(True, "", (channel(seconds_behind=lag),)), "replica", **LAGS)
        return v.serving, v.lag_s, v.error

    assert at(0) == (True, 0.0, "")
    assert at(30) == (True, 30.0, "")
    assert at(31) == (True, 31.0, "")  # degraded: still serving, lag reported
    assert at(300) == (True, 300.0, "")
    serving, lag, error = at(301)
    assert not serving and lag == 301.0 and "health.unhealthy_lag" in error
    serving, lag, error = at(None)
    assert not serving and lag is None and "unknown" in error


def test_worst_channel_decides() -> None:
    v = evaluate(
        Sample(True, "", (channel(seconds_behind=3), channel(seconds_behind=50))),
        "replica",
        **LAGS,
    )
    assert v.serving and v.lag_s == 50.0


def test_parse_replication_reads_mariadb_and_mysql_column_names() -> None:
    maria = result(SLAVE_COLUMNS, [[b"", b"Yes", b"Connecting", b"", b"oops", None]])
    (ch,) = parse_replication(maria)
    assert ch == ReplicationStatus("", "Yes", "Connecting", None, "", "oops")
    mysql = result(
        ["Replica_IO_Running", "Replica_SQL_Running", "Seconds_Behind_Source"],
        [[b"Yes", b"Yes", b"7"]],
    )
    (ch,) = parse_replication(mysql)
    assert (ch.io_running, ch.sql_running, ch.seconds_behind) == ("Yes", "Yes", 7)
    assert parse_replication(result(SLAVE_COLUMNS, [])) == ()


# -- the probe -------------------------------------------------------------------------------------


def make_probe(
    clock: Clock,
    mysqld: FakeMysqld,
    state: TabletState,
    role_problem: str = "",
    timeout: float = 0.5,
) -> HealthProbe:
    probe = HealthProbe(
        state,
        fake_pool(mysqld, clock),
        clock,
        interval=1.0,
        probe_timeout=timeout,
        degraded_lag=30.0,
        unhealthy_lag=300.0,
        role_problem=lambda: role_problem,
    )
    probe.startService()
    pump(clock)
    return probe


def test_primary_flips_on_mysqld_down_and_back_and_notifies_once_per_change() -> None:
    clock = Clock()
    mysqld = FakeMysqld()
    state = make_state(clock)
    seen: list[dict[str, object]] = []
    state.subscribe(seen.append)
    probe = make_probe(clock, mysqld, state)
    assert state.serving and state.read_only is False and state.gtid_position == "0-1-10"
    assert len(seen) == 1
    advance(clock, 3)  # three more probes, same answers: nothing to notify
    assert probe.probes == 4 and len(seen) == 1

    mysqld.stop()
    advance(clock, 1)
    assert not state.serving and "mysqld unreachable" in state.error
    assert state.read_only is None
    assert len(seen) == 2
    advance(clock, 3)  # still down: the same failure is not re-notified
    assert len(seen) == 2

    mysqld.up = True
    advance(clock, 1)
    assert state.serving and state.error == ""
    assert len(seen) == 3
    assert [s["serving"] for s in seen] == [True, False, True]


def test_gtid_moves_are_notified() -> None:
    clock = Clock()
    mysqld = FakeMysqld()
    state = make_state(clock)
    make_probe(clock, mysqld, state)
    mysqld.gtid = "0-1-11"
    advance(clock, 1)
    assert state.gtid_position == "0-1-11"


def test_primary_read_only_flip() -> None:
    clock = Clock()
    mysqld = FakeMysqld()
    state = make_state(clock)
    make_probe(clock, mysqld, state)
    assert state.writable()
    mysqld.read_only = True
    advance(clock, 1)
    assert not state.serving and not state.writable() and state.read_only is True
    mysqld.read_only = False
    advance(clock, 1)
    assert state.writable()


def test_replica_replication_stopped_and_lagging() -> None:
    clock = Clock()
    mysqld = FakeMysqld(read_only=True)
    mysqld.replicating(lag=2)
    state = make_state(clock, "replica")
    make_probe(clock, mysqld, state)
    assert state.serving and state.lag_s == 2.0
    mysqld.replicating(io="No", sql="Yes", lag=None)
    advance(clock, 1)
    assert not state.serving and "replication is not running" in state.error
    assert "error connecting to master" in state.error
    mysqld.replicating(lag=100)
    advance(clock, 1)
    assert state.serving and state.lag_s == 100.0  # degraded but serving
    mysqld.replicating(lag=1000)
    advance(clock, 1)
    assert not state.serving and state.lag_s == 1000.0 and "1000s" in state.error


def test_hung_mysqld_times_out_and_outstanding_probes_are_bounded() -> None:
    clock = Clock()
    mysqld = FakeMysqld()
    state = make_state(clock)
    probe = make_probe(clock, mysqld, state, timeout=0.5)
    assert state.serving
    mysqld.hang = True
    advance(clock, 1.0)  # the probe at t=1 hangs
    advance(clock, 0.5)
    assert not state.serving and "timed out after 0.5s" in state.error
    advance(clock, 10)
    # One probe per tick until MAX_OUTSTANDING hang; then ticks are skipped.
    assert len(mysqld.pending) == MAX_OUTSTANDING
    # A late answer of an abandoned probe is ignored...
    mysqld.hang = False
    late = mysqld.pending.pop(0)
    late.callback(result(["ro", "gtid"], [[b"0", b"0-1-99"]]))
    pump(clock)
    assert not state.serving and state.gtid_position != "0-1-99"
    # ...and once a connection is free again, the next tick probes and recovers.
    advance(clock, 1)
    assert state.serving and state.gtid_position == "0-1-10"
    assert probe.failures >= 1


def watched_probe() -> tuple[Clock, FakeMysqld, TabletState, HealthProbe, list[int]]:
    """A probe with a 0.5 s timeout whose ``on_hung`` calls are counted in the list."""
    clock = Clock()
    mysqld = FakeMysqld()
    state = make_state(clock)
    probe = make_probe(clock, mysqld, state, timeout=0.5)
    calls: list[int] = []
    probe.on_hung = lambda: calls.append(1)
    return clock, mysqld, state, probe, calls


def test_a_timed_out_probe_calls_on_hung_and_a_failing_hook_is_logged() -> None:
    clock, mysqld, state, probe, calls = watched_probe()
    mysqld.up = False  # refused, not hung: no call
    advance(clock, 1.0)
    assert not state.serving and calls == []
    mysqld.up = True
    mysqld.hang = True
    advance(clock, 1.5)  # the next probe hangs past its timeout
    assert calls == [1]

    def broken() -> None:
        raise RuntimeError("hook failed")

    probe.on_hung = broken
    mysqld.pending.clear()
    advance(clock, 2.0)  # logged, and the probe goes on
    assert not state.serving and "timed out" in state.error


def test_a_probe_that_waited_for_a_dba_connection_does_not_call_on_hung() -> None:
    clock, _mysqld, state, probe, calls = watched_probe()
    held = [probe.pool.acquire() for _ in range(4)]  # every dba connection busy elsewhere
    advance(clock, 1.5)
    assert not state.serving and "timed out" in state.error  # (it is not serving, still)
    assert calls == []  # mysqld was never asked: no reason to break statements off
    assert len(held) == 4


def test_a_primary_being_demoted_stays_out_of_service() -> None:
    # Between a reparent's "stop serving" and its read_only=ON, mysqld still looks writable:
    # a probe then must not make the tablet serve again (it did, and new transactions came
    # in while the old primary drained; their writes then got 1290).
    clock = Clock()
    state = make_state(clock)
    make_probe(clock, FakeMysqld(), state)
    assert state.serving
    state.demoted = "demoted by a reparent"
    state.update(serving=False, error=state.demoted)
    advance(clock, 3)
    assert not state.serving and state.error == "demoted by a reparent"
    state.update(tablet_type="replica")  # the new role clears it
    assert state.demoted == ""


def test_unsettled_role_keeps_the_tablet_out_of_service() -> None:
    clock = Clock()
    state = make_state(clock)
    make_probe(clock, FakeMysqld(), state, role_problem="waiting for the shard record")
    assert not state.serving and state.error == "waiting for the shard record"
    assert state.read_only is False  # the probe still reports what it saw


def test_waiting_at_start_logs_info_and_a_later_stop_warns() -> None:
    clock = Clock()
    mysqld = FakeMysqld()
    problem = ["waiting for the shard record"]
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        probe = HealthProbe(
            make_state(clock),
            fake_pool(mysqld, clock),
            clock,
            interval=1.0,
            probe_timeout=0.5,
            degraded_lag=30.0,
            unhealthy_lag=300.0,
            role_problem=lambda: problem[0],
        )
        probe.startService()
        pump(clock)
        problem[0] = ""
        advance(clock, 1)
        problem[0] = "demoting"
        advance(clock, 1)
    finally:
        globalLogPublisher.removeObserver(observer)
    flips = [
        (e["log_level"].name, e["log_format"].split("{alias} ")[1])
        for e in events
        if "serving" in e.get("log_format", "")
    ]
    assert flips == [
        ("info", "is not serving yet: {error}"),
        ("info", "is serving"),
        ("warn", "is not serving: {error}"),
    ]


def test_probe_now_runs_at_once_or_after_the_probe_in_flight() -> None:
    clock = Clock()
    mysqld = FakeMysqld()
    state = make_state(clock)
    probe = make_probe(clock, mysqld, state)
    probe.probe_now()
    pump(clock)
    assert probe.probes == 2
    mysqld.hang = True
    advance(clock, 1)  # tick at t=1 hangs
    probe.probe_now()  # queued behind it
    assert probe.probes == 3
    mysqld.hang = False
    mysqld.pending.pop().callback(result(["ro", "gtid"], [[b"0", b"0-1-10"]]))
    pump(clock)
    assert probe.probes == 4


def test_stop_says_not_serving_at_once() -> None:
    clock = Clock()
    state = make_state(clock)
    probe = make_probe(clock, FakeMysqld(), state)
    assert state.serving
    probe.stopService()
    assert not state.serving and state.error == SHUTTING_DOWN
    n = probe.probes
    advance(clock, 5)
    assert probe.probes == n
