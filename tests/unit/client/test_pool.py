"""MySQLPool with fake connections and a task.Clock: checkout, the bounded wait queue and its
timeout, replacement of broken connections, idle/lifetime expiry, reset, close, no leaks."""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock

from tests.unit.client.scripted import error_of, result_of
from vtwist.protocols.mysql.errors import MySQLError
from vtwist.protocols.mysql.pool import MySQLPool, PooledConnection


class FakeConn:
    """A connection whose ping/reset answers are scripted."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.is_broken = False
        self.busy = False
        self.in_transaction = False
        self.ping_ok: bool | None = True  # None: the ping hangs until answered
        self.reset_ok = True
        self.pings: list[Deferred[None]] = []
        self.resets = 0
        self.closed = False

    def ping(self) -> Deferred[None]:
        if self.ping_ok is None:
            d: Deferred[None] = Deferred()
            self.pings.append(d)
            return d
        if self.ping_ok:
            return succeed(None)
        return fail(MySQLError(2013, "Lost connection to MySQL server during query"))

    def reset_connection(self) -> Deferred[None]:
        self.resets += 1
        if self.reset_ok:
            self.in_transaction = False
            return succeed(None)
        return fail(MySQLError(2013, "Lost connection to MySQL server during query"))

    def close(self) -> Deferred[None]:
        self.closed = True
        self.is_broken = True
        return succeed(None)


class Connector:
    """``connect_fn``: immediate fakes, or Deferreds the test fires (``manual``)."""

    def __init__(self, manual: bool = False) -> None:
        self.manual = manual
        self.made: list[FakeConn] = []
        self.pending: list[Deferred[FakeConn]] = []
        self.fail_next: MySQLError | None = None

    def __call__(self) -> Deferred[FakeConn]:
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            return fail(err)
        conn = FakeConn(len(self.made))
        self.made.append(conn)
        if self.manual:
            d: Deferred[FakeConn] = Deferred()
            self.pending.append(d)
            return d
        return succeed(conn)

    def finish(self) -> None:
        pending, self.pending = self.pending, []
        for d, conn in zip(pending, self.made[-len(pending) :], strict=True):
            d.callback(conn)


def make_pool(**kw: Any) -> tuple[MySQLPool[FakeConn], Connector, Clock]:
    clock = Clock()
    connector = kw.pop("connector", None) or Connector()
    args: dict[str, Any] = {
        "size": 2,
        "max_waiters": 2,
        "wait_timeout": 1.0,
        "idle_timeout": 60.0,
        "max_lifetime": 600.0,
        "ping_on_checkout_after": None,
        "name": "db1",
    }
    args.update(kw)
    return MySQLPool(connector, clock=clock, **args), connector, clock


def lend(pool: MySQLPool[FakeConn]) -> PooledConnection[FakeConn]:
    pc = result_of(pool.acquire())
    assert isinstance(pc, PooledConnection)
    return pc


def assert_no_leak(pool: MySQLPool[FakeConn], connector: Connector) -> None:
    st = pool.stats()
    assert st.in_use == 0 and st.waiters == 0
    assert st.open == st.idle
    live = [c for c in connector.made if not c.closed]
    assert len(live) == st.idle
    assert st.created - st.closed == st.idle


def test_checkout_release_and_reuse() -> None:
    pool, connector, _ = make_pool()
    a, b = lend(pool), lend(pool)
    assert a.client is not b.client
    st = pool.stats()
    assert (st.size, st.open, st.in_use, st.idle, st.created) == (2, 2, 2, 0, 2)
    a.release()
    c = lend(pool)
    assert c.client is a.client and c.uses == 2  # reused, not reopened
    b.release()
    c.release()
    assert pool.stats().idle == 2 and pool.stats().wait_count == 0
    assert_no_leak(pool, connector)


def test_try_acquire_prefers_the_connection_with_the_tag_asked_for() -> None:
    pool, connector, _ = make_pool(size=3)
    plain, a, b = lend(pool), lend(pool), lend(pool)
    a.tag, b.tag = (b"SET x=1",), (b"SET y=2",)
    for pc in (plain, a, b):  # b is the most recently used
        pc.release()
    got = pool.try_acquire((b"SET x=1",))
    assert got is a
    got.release()
    got = pool.try_acquire()
    assert got is plain  # untagged wanted: the untagged one, not the more recent ones
    got.release()
    got = pool.try_acquire((b"SET z=3",))
    assert got is plain  # nobody has it: the most recently used (the caller adapts it)
    got.release()
    assert_no_leak(pool, connector)


def test_exhaustion_queues_fifo_then_hands_over_on_release() -> None:
    pool, connector, clock = make_pool()
    a, b = lend(pool), lend(pool)
    first, second = pool.acquire(), pool.acquire()
    assert not first.called and pool.stats().waiters == 2
    clock.advance(0.25)
    b.release()
    got = result_of(first)
    assert got.client is b.client and not second.called
    clock.advance(0.5)
    a.release()
    assert result_of(second).client is a.client
    st = pool.stats()
    assert st.wait_count == 2 and st.total_wait_time == pytest.approx(0.25 + 0.75)
    assert len(connector.made) == 2
    got.release()
    result_of(second).release()
    assert_no_leak(pool, connector)


def test_wait_timeout_is_1203_with_a_clear_message() -> None:
    pool, connector, clock = make_pool(wait_timeout=2.5)
    a, b = lend(pool), lend(pool)
    d = pool.acquire()
    clock.advance(2.4)
    assert not d.called
    clock.advance(0.1)
    err = error_of(d, MySQLError)
    assert (err.code, err.sqlstate) == (1203, "42000")
    assert err.message == (
        "connection pool for db1 exhausted: 2 in use, waited 2.5s; raise pool size or wait_timeout"
    )
    st = pool.stats()
    assert st.wait_timeouts == 1 and st.waiters == 0
    a.release()
    b.release()
    assert_no_leak(pool, connector)


def test_1203_names_the_config_keys_of_a_pool_with_settings() -> None:
    pool, _, clock = make_pool(max_waiters=1, settings="pool.transaction")
    lend(pool), lend(pool)
    waiting = pool.acquire()
    full = error_of(pool.acquire(), MySQLError).message
    assert full.endswith("raise pool.transaction.size or pool.transaction.max_waiters"), full
    clock.advance(1.0)
    waited = error_of(waiting, MySQLError).message
    assert waited.endswith("raise pool.transaction.size or pool.transaction.wait_timeout"), waited


def test_abort_in_use_closes_lent_connections_only() -> None:
    pool, connector, _ = make_pool()
    a, b = lend(pool), lend(pool)
    b.release()  # idle: left open
    assert pool.abort_in_use() == 1
    assert a.client.closed and not b.client.closed
    a.release(broken=True)  # its borrower's statement failed: given back broken
    assert pool.stats().in_use == 0 and pool.abort_in_use() == 0
    assert_no_leak(pool, connector)


def test_full_queue_fails_at_once() -> None:
    pool, _, _ = make_pool(max_waiters=1)
    lend(pool), lend(pool)
    waiting = pool.acquire()
    err = error_of(pool.acquire(), MySQLError)
    assert err.code == 1203
    assert err.message.endswith("wait queue is full (1 waiting); raise pool size or max_waiters")
    assert pool.stats().rejected == 1 and not waiting.called
    no_queue, _, _ = make_pool(max_waiters=0)
    lend(no_queue), lend(no_queue)
    assert error_of(no_queue.acquire(), MySQLError).code == 1203


def test_broken_or_busy_connections_are_replaced() -> None:
    pool, connector, _ = make_pool()
    a, b = lend(pool), lend(pool)
    waiter = pool.acquire()
    a.client.busy = True  # returned with a command still running: abandoned
    a.release()
    assert a.client.closed
    c = result_of(waiter)
    assert c.client is connector.made[2]  # a fresh one for the waiter
    b.release(broken=True)
    assert b.client.closed
    c.client.is_broken = True  # lost while lent
    c.release()
    assert c.client.closed
    fresh = lend(pool)
    assert fresh.client is connector.made[3]
    fresh.release()
    assert pool.stats().closed == 3
    assert_no_leak(pool, connector)


def test_connection_broken_while_idle_is_replaced_on_checkout() -> None:
    pool, connector, _ = make_pool()
    a = lend(pool)
    a.release()
    a.client.is_broken = True  # mysqld's wait_timeout closed it
    b = lend(pool)
    assert b.client is not a.client and a.client.closed
    b.release()
    assert_no_leak(pool, connector)


def test_ping_on_checkout_after_idle_and_replacement_when_it_fails() -> None:
    pool, connector, clock = make_pool(ping_on_checkout_after=5.0)
    a = lend(pool)
    a.release()
    clock.advance(1)
    assert lend(pool).client is a.client  # recently used: no ping
    pool.release(pool._in_use.copy().pop())
    clock.advance(6)
    a.client.ping_ok = None
    d = pool.acquire()
    assert not d.called and len(a.client.pings) == 1
    a.client.pings[0].callback(None)
    got = result_of(d)
    assert got.client is a.client
    got.release()
    clock.advance(6)
    a.client.ping_ok = False
    got = lend(pool)
    assert got.client is connector.made[1] and a.client.closed
    got.release()
    assert_no_leak(pool, connector)


def test_idle_timeout_and_max_lifetime() -> None:
    pool, connector, clock = make_pool(idle_timeout=10.0, max_lifetime=25.0)
    a, b = lend(pool), lend(pool)
    a.release()
    clock.advance(5)
    b.release()
    clock.advance(5)  # a idle for 10s
    assert a.client.closed and not b.client.closed
    assert pool.stats().idle == 1
    c = lend(pool)
    assert c.client is b.client
    clock.advance(20)  # b now 25s old, while lent
    c.release()
    assert b.client.closed  # too old to go back
    d = lend(pool)
    clock.advance(9)
    d.release()
    clock.advance(9)
    assert not d.client.closed  # idle 9s
    clock.advance(7)  # lifetime 25s reached while idle
    assert d.client.closed
    assert pool.stats().open == 0 and not clock.getDelayedCalls()
    assert_no_leak(pool, connector)


def test_reset_on_release_and_after_a_transaction() -> None:
    pool, connector, _ = make_pool(reset_on_release=True)
    a = lend(pool)
    a.release()
    assert a.client.resets == 1 and pool.stats().idle == 1
    plain, plain_connector, _ = make_pool()
    b = lend(plain)
    b.client.in_transaction = True  # never lend an open transaction to someone else
    b.release()
    assert b.client.resets == 1 and not b.client.in_transaction
    c = lend(plain)
    c.release()
    assert c.client.resets == 1  # no transaction, no reset_on_release: no reset
    c2 = lend(pool)
    c2.client.reset_ok = False
    c2.release()
    assert c2.client.closed and pool.stats().idle == 0
    assert_no_leak(pool, connector)
    assert_no_leak(plain, plain_connector)


def test_connect_failure_reaches_the_waiter() -> None:
    pool, connector, _ = make_pool()
    connector.fail_next = MySQLError(2003, "Can't connect to MySQL server on 'db1:3306'")
    err = error_of(pool.acquire(), MySQLError)
    assert err.code == 2003
    assert pool.stats().connect_errors == 1 and pool.stats().open == 0
    a = lend(pool)
    a.release()
    assert_no_leak(pool, connector)


def test_slow_connects_count_toward_size() -> None:
    connector = Connector(manual=True)
    pool, _, _ = make_pool(connector=connector, max_waiters=3)
    d1, d2, d3 = pool.acquire(), pool.acquire(), pool.acquire()
    assert len(connector.pending) == 2  # never more than size
    assert pool.stats().open == 2
    connector.finish()
    a, b = result_of(d1), result_of(d2)
    assert not d3.called
    a.release()
    assert result_of(d3).client is a.client
    b.release()
    result_of(d3).release()
    assert_no_leak(pool, connector)


def test_cancelled_acquire_leaves_the_queue() -> None:
    pool, connector, clock = make_pool()
    a, b = lend(pool), lend(pool)
    d = pool.acquire()
    d.cancel()
    error_of(d, CancelledError)
    assert pool.stats().waiters == 0
    a.release()
    b.release()
    assert pool.stats().idle == 2 and not [c for c in clock.getDelayedCalls() if c.active()][1:]
    assert_no_leak(pool, connector)


def test_double_release_is_refused() -> None:
    pool, _, _ = make_pool()
    a = lend(pool)
    a.release()
    with pytest.raises(ValueError):
        a.release()


def test_close_fails_waiters_and_closes_everything() -> None:
    pool, connector, _ = make_pool()
    a, b = lend(pool), lend(pool)
    b.release()
    waiter = pool.acquire()
    assert result_of(waiter).client is b.client
    late = pool.acquire()
    closed = pool.close()
    err = error_of(late, MySQLError)
    assert err.code == 1053 and "closed" in err.message
    assert all(c.closed for c in connector.made)
    assert result_of(closed) is None
    assert error_of(pool.acquire(), MySQLError).code == 1053
    a.release()  # late releases are fine
    result_of(waiter).release()
    assert pool.stats().in_use == 0


def test_close_waits_for_connections_being_opened() -> None:
    connector = Connector(manual=True)
    pool, _, _ = make_pool(connector=connector)
    d = pool.acquire()
    closed = pool.close()
    error_of(d, MySQLError)
    fired: list[Any] = []
    closed.addBoth(fired.append)
    assert not fired
    connector.finish()  # the connection arrives after close(): closed at once
    assert fired == [None] and connector.made[0].closed


def test_run_and_the_context_manager_release() -> None:
    pool, connector, _ = make_pool(size=1)
    assert result_of(pool.run(lambda conn: conn.n)) == 0

    def duplicate(conn: FakeConn) -> Deferred[None]:
        return fail(MySQLError(1062, "Duplicate entry"))

    assert error_of(pool.run(duplicate), MySQLError).code == 1062
    assert not connector.made[0].closed  # mysqld's own error: the connection is fine

    def bug(conn: FakeConn) -> None:
        raise ZeroDivisionError

    error_of(pool.run(bug), ZeroDivisionError)
    assert connector.made[0].closed  # unknown state: discarded

    async def work() -> int:
        async with pool.connection() as conn:
            return conn.n

    assert result_of(Deferred.fromCoroutine(work())) == 1
    assert_no_leak(pool, connector)


def test_random_workload_leaves_no_leak() -> None:
    rnd = random.Random(7)
    pool, connector, clock = make_pool(size=4, max_waiters=8, ping_on_checkout_after=2.0)
    lent: list[PooledConnection[FakeConn]] = []
    errors = 0
    for _ in range(2000):
        op = rnd.random()
        if op < 0.45:
            d = pool.acquire()
            d.addCallbacks(lent.append, lambda f: None)
        elif op < 0.85 and lent:
            pc = lent.pop(rnd.randrange(len(lent)))
            if rnd.random() < 0.1:
                pc.client.is_broken = True
            if rnd.random() < 0.1:
                pc.client.in_transaction = True
            pc.release(broken=rnd.random() < 0.05)
        else:
            clock.advance(rnd.random() * 3)
        st = pool.stats()
        assert st.in_use + st.idle <= st.size and st.waiters <= 8
        errors += st.wait_timeouts
    for pc in lent:
        pc.release()
    clock.advance(5)
    assert_no_leak(pool, connector)
    assert errors > 0  # the workload did exhaust the pool at times
