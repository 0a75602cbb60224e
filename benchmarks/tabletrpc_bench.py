"""Micro-benchmark of the gate <-> tablet RPC over real loopback TCP.

A trivial tablet (one-row answer to every ``execute``) runs in a child process; this
process keeps 16 calls in flight on one connection for a few seconds and prints calls/s and
the client's CPU time per call (the figure that matters for the gate). Not a test.

    .venv/bin/python benchmarks/tabletrpc_bench.py [--seconds 5] [--inflight 16]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from zope.interface import implementer

from vtwist.interfaces import IRowSink, ITabletRPCRequest, ITabletService
from vtwist.protocols.tabletrpc_client import (
    TabletRPCClient,
    TabletRPCClientFactory,
)
from vtwist.protocols.tabletrpc_ops import (
    BeginArgs,
    ExecuteArgs,
    KillArgs,
    ManageArgs,
    QueryResult,
    ReleaseArgs,
    ReserveArgs,
    ReserveResult,
    TransactionArgs,
)
from vtwist.protocols.tabletrpc_server import TabletRPCServerFactory

reactor = cast(Any, _reactor)

# One BIGINT column "id", one row "1": realistic sizes for a point select.
FIELD = b"\x03def\x02db\x01t\x01t\x02id\x02id\x0c?\x00\x14\x00\x00\x00\x08\x03B\x00\x00\x00"
ROW = b"\x011"


@implementer(ITabletService)
class TrivialService:
    """Answers every execute with the same one-row result."""

    result = QueryResult([FIELD], [ROW], 0, 0, 0, 2, "")

    def execute(self, request: ITabletRPCRequest, args: ExecuteArgs) -> QueryResult:
        return self.result

    def stream_execute(
        self, request: ITabletRPCRequest, args: ExecuteArgs, sink: IRowSink
    ) -> QueryResult:
        sink.send_fields([FIELD])
        sink.send_rows([ROW])
        return QueryResult([], [])

    def begin(self, request: ITabletRPCRequest, args: BeginArgs) -> int:
        return 1

    def commit(self, request: ITabletRPCRequest, args: TransactionArgs) -> int:
        return 0

    def rollback(self, request: ITabletRPCRequest, args: TransactionArgs) -> int:
        return 0

    def reserve(self, request: ITabletRPCRequest, args: ReserveArgs) -> ReserveResult:
        return ReserveResult(1, 0)

    def release(self, request: ITabletRPCRequest, args: ReleaseArgs) -> None:
        return None

    def kill(self, request: ITabletRPCRequest, args: KillArgs) -> bool:
        return False

    def manage(self, request: ITabletRPCRequest, args: ManageArgs) -> Deferred[dict[str, Any]]:
        return succeed({})

    def health(self) -> Mapping[str, Any]:
        return {"serving": True}

    def subscribe_health(
        self, listener: Callable[[Mapping[str, Any]], object]
    ) -> Callable[[], None]:
        return lambda: None


def serve() -> None:
    """Child process: listen on an ephemeral loopback port, print it, serve forever."""
    factory = TabletRPCServerFactory(TrivialService(), reactor)
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")  # type: ignore[no-untyped-call]
    d = endpoint.listen(factory)  # type: ignore[no-untyped-call]
    d.addCallback(lambda port: print(port.getHost().port, flush=True))
    reactor.run()


class Driver:
    """Keeps ``inflight`` calls running; counts completions inside the measured window."""

    def __init__(self, client: TabletRPCClient, inflight: int, warmup: float, seconds: float):
        self.client = client
        self.inflight = inflight
        self.warmup = warmup
        self.seconds = seconds
        self.calls = 0
        self.errors = 0
        self.measuring = False
        self.stopping = False
        self.cpu0 = self.wall0 = 0.0
        self.cpu = self.wall = 0.0

    def start(self) -> None:
        for _ in range(self.inflight):
            self._one()
        reactor.callLater(self.warmup, self._begin)

    def _begin(self) -> None:
        self.measuring = True
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        reactor.callLater(self.seconds, self._end)

    def _end(self) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0
        self.measuring = False
        self.stopping = True
        reactor.callLater(0.2, reactor.stop)

    def _one(self) -> None:
        if self.stopping:
            return
        d = self.client.execute("select id from t where id = 1", deadline=reactor.seconds() + 10)
        d.addCallbacks(self._done, self._failed)

    def _done(self, result: QueryResult) -> None:
        if self.measuring:
            self.calls += 1
        self._one()

    def _failed(self, failure: Any) -> None:
        self.errors += 1
        self._one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve:
        serve()
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        drivers: list[Driver] = []

        def connected(client: TabletRPCClient) -> None:
            driver = Driver(client, opts.inflight, opts.warmup, opts.seconds)
            drivers.append(driver)
            client.when_ready().addCallback(lambda _: driver.start())

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        endpoint.connect(TabletRPCClientFactory(reactor)).addCallbacks(
            connected, lambda f: (print(f), reactor.stop())
        )
        reactor.run()
    finally:
        child.terminate()  # our own child, by its PID
        child.wait()
    [d] = drivers
    print(
        f"tablet RPC, {opts.inflight} in flight, loopback TCP, one-row reply: "
        f"{d.calls / d.wall:,.0f} calls/s, client CPU {d.cpu / d.calls * 1e6:.1f} us/call "
        f"({d.calls} calls in {d.wall:.1f} s, {d.errors} errors)"
    )


if __name__ == "__main__":
    main()
