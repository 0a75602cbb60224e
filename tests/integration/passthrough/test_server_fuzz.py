"""Fuzzing vtwist's MySQL server with mutated and random packets.

The server (``fuzz_server``: the real ``MySQLServerFactory`` with the in-test echo handler,
1 MiB maximum packet size) runs in a child process. ``CASES`` connections each send one
attack, before the login or after a valid one:

* random bytes;
* a valid packet (login, or a command: query, prepare + execute with parameters, long
  data, fetch, reset, close, field list, init db, set option, change user, statistics,
  ping, unknown command bytes) mutated by bit flips, truncation, appended garbage, a
  length field that lies (0, a bit more or less, a random 24-bit value, 0xFFFFFF), or a
  wrong sequence id;
* several packets in one write (pipelined), one of them mutated.

Checks: no hang (after a half-close, every connection is closed by the server within
``CASE_DEADLINE``; a packet over the maximum size or out of sequence is answered by ERR
and a close *without* the half-close); no crash (the process lives, logs no traceback,
and a real client, PyMySQL, still logs in and queries afterwards); bounded memory (the
resident set grows by less than ``RSS_GROWTH_LIMIT`` between the warm-up and the end).
The seed is fixed (``VTWIST_FUZZ_SEED`` overrides it) so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from tests.integration.passthrough.fuzz_server import MAX_PACKET_SIZE
from tests.support import servers
from tests.support.passthrough import write_users_file
from vtwist.local.procs import stop_pid
from vtwist.protocols.mysql.auth import native_password_response
from vtwist.protocols.mysql.commands import (
    ComChangeUser,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
)
from vtwist.protocols.mysql.connection import NEED_DATA, Connection, Role
from vtwist.protocols.mysql.constants import CLIENT_CAPABILITIES, Capability, ColumnType
from vtwist.protocols.mysql.messages import HandshakeResponse41, HandshakeV10, Ok

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "fuzz-Pa55"
CASES = 2000
WARMUP = 200
CASE_DEADLINE = 5.0
RSS_GROWTH_LIMIT_KB = 50 * 1024
SEED = int(os.environ.get("VTWIST_FUZZ_SEED", "20261122"))
CAPS = int(CLIENT_CAPABILITIES) & ~int(Capability.CONNECT_ATTRS)
RNG = random.Random  # type alias for readability below


def frame(payload: bytes, seq: int) -> bytes:
    """One packet: 3-byte length, sequence id, payload (< 16 MiB)."""
    return len(payload).to_bytes(3, "little") + bytes((seq & 0xFF,)) + payload


def _execute(params: int = 2) -> bytes:
    """A COM_STMT_EXECUTE of statement 1 with ``params`` LONGLONG/VARCHAR parameters."""
    types = tuple(
        (int(ColumnType.LONGLONG if i % 2 == 0 else ColumnType.VAR_STRING), False)
        for i in range(params)
    )
    values = b"".join(
        (7).to_bytes(8, "little") if i % 2 == 0 else b"\x03abc" for i in range(params)
    )
    bitmap = bytes((params + 7) // 8)
    return ComStmtExecute(1, 0, 1, bitmap, True, types, values).encode()


# Command sequences a logged-in client sends (payloads; each packet gets sequence id 0).
COMMANDS: list[list[bytes]] = [
    [ComQuery(b"select 1").encode()],
    [ComQuery(b"select 'a'; select 'b'").encode()],
    [ComQuery(b"select big 40").encode()],
    [ComQuery(b"select error").encode()],
    [ComStmtPrepare(b"select ?, ?").encode(), _execute()],
    [
        ComStmtPrepare(b"select ?, ?").encode(),
        ComStmtSendLongData(1, 1, b"long").encode(),
        _execute(),
    ],
    [ComStmtPrepare(b"select ?").encode(), _execute(1), ComStmtFetch(1, 10).encode()],
    [ComStmtPrepare(b"select ?").encode(), ComStmtReset(1).encode(), ComStmtClose(1).encode()],
    [ComFieldList("t", "%").encode()],
    [ComInitDB("shop").encode()],
    [ComSetOption(0).encode(), ComSetOption(1).encode()],
    [ComStatistics().encode(), ComPing().encode(), ComResetConnection().encode()],
    [ComChangeUser("app", b"\x01" * 20, "", 45, "mysql_native_password").encode(CAPS)],
    [bytes((0x1D,)) + b"\x00" * 4],  # an unknown command
]


@dataclass
class Case:
    """One attack: the bytes, whether to log in first, and what the server must do."""

    data: bytes
    login: bool
    closes_by_itself: bool  # ERR + close expected without our half-close
    what: str


def _mutate(rng: RNG, packet: bytes) -> tuple[bytes, bool, str]:
    """A mutated packet, whether the server must close on its own, and how."""
    kind = rng.randrange(7)
    if kind == 0:
        b = bytearray(packet)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b), False, "bit flips"
    if kind == 1:
        return packet[: rng.randrange(len(packet))], False, "truncated"
    if kind == 2:
        return packet + rng.randbytes(rng.randint(1, 64)), False, "garbage appended"
    if kind == 3:
        n = len(packet) - 4
        lie = rng.choice([0, n + 1, max(0, n - 1), n + rng.randint(2, 500), rng.randrange(1 << 24)])
        return lie.to_bytes(3, "little") + packet[3:], lie > MAX_PACKET_SIZE, f"length {lie}"
    if kind == 4:
        huge = rng.choice([0xFFFFFF, MAX_PACKET_SIZE + 1, 0xFFFFFE])
        return huge.to_bytes(3, "little") + packet[3:], True, f"length {huge}"
    if kind == 5:
        seq = (packet[3] + rng.randint(1, 255)) & 0xFF
        return packet[:3] + bytes((seq,)) + packet[4:], True, f"sequence id {seq}"
    payload = packet[4:5] + rng.randbytes(max(0, len(packet) - 5))
    return frame(payload, packet[3]), False, "random payload"


def cases(rng: RNG) -> Iterator[Case]:
    """``CASES`` attacks, pre- and post-login (see the module docstring)."""
    login_packet = frame(
        HandshakeResponse41(
            CAPS, 1 << 24, 45, "app", b"\x02" * 20, "", "mysql_native_password"
        ).encode(),
        1,
    )
    for _ in range(CASES):
        kind = rng.randrange(10)
        if kind == 0:
            yield Case(rng.randbytes(rng.randint(0, 300)), False, False, "random before login")
        elif kind <= 2:
            data, closes, how = _mutate(rng, login_packet)
            yield Case(data, False, closes, f"login packet: {how}")
        elif kind == 3:
            payload = bytes((rng.randrange(256),)) + rng.randbytes(rng.randint(0, 200))
            yield Case(frame(payload, 0), True, False, f"command byte {payload[0]:#x}")
        else:
            seq = rng.choice(COMMANDS)
            packets = [frame(p, 0) for p in seq]
            i = rng.randrange(len(packets))
            mutated, closes, how = _mutate(rng, packets[i])
            # Packets after a mutated one may be read as part of it: only the last
            # packet's verdict is certain.
            closes = closes and i == len(packets) - 1
            data = b"".join([*packets[:i], mutated, *packets[i + 1 :]])
            yield Case(data, True, closes, f"{len(packets)} commands, #{i} {how}")


class FuzzClient:
    """One connection to the fuzzed server."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CASE_DEADLINE)

    def login(self) -> None:
        conn = Connection(Role.CLIENT)
        greeting = self._next(conn)
        assert isinstance(greeting, HandshakeV10), greeting
        auth = native_password_response(PASSWORD, greeting.auth_plugin_data)
        login = HandshakeResponse41(CAPS, 1 << 24, 45, "app", auth, "", "mysql_native_password")
        self.sock.sendall(conn.send(login))
        ok = self._next(conn)
        assert isinstance(ok, Ok), ok

    def _next(self, conn: Connection) -> object:
        while True:
            ev = conn.next_event()
            if ev is not NEED_DATA:
                return ev
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed during login")
            conn.receive_data(data)

    def closed_within(self, deadline: float) -> bool:
        """Read (and drop) what the server sends until it closes; False on timeout."""
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True


def rss_kb(pid: int) -> int:
    """The resident set size of ``pid`` (kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def fuzz_server() -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """The server process, its port and its log file."""
    d = servers.scratch_dir("fuzz")
    users = write_users_file(d / "users.toml", PASSWORD, [("app", "mysql_native_password")])
    port_file, log = d / "port", d / "server.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.passthrough.fuzz_server",
                f"--users={users}",
                f"--port-file={port_file}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the fuzz server did not start"
            time.sleep(0.05)
        yield proc, int(port_file.read_text()), log
    finally:
        stop_pid(proc.pid)
        proc.wait(timeout=10)


def run_case(port: int, case: Case, fail: Callable[[str], None]) -> None:
    """Send one attack and check the server ends the connection in time."""
    c = FuzzClient(port)
    try:
        if case.login:
            c.login()
        try:
            c.sock.sendall(case.data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the server already closed: that is an answer too
        if not case.closes_by_itself:
            c.sock.shutdown(socket.SHUT_WR)
        if not c.closed_within(CASE_DEADLINE):
            fail(f"the server did not close the connection within {CASE_DEADLINE}s")
    finally:
        c.sock.close()


def test_fuzzed_packets_neither_crash_hang_nor_leak(
    fuzz_server: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    proc, port, log = fuzz_server
    rng = random.Random(SEED)
    before = 0
    for n, case in enumerate(cases(rng)):

        def fail(why: str, n: int = n, case: Case = case) -> None:
            pytest.fail(f"seed {SEED}, case {n} ({case.what}, login={case.login}): {why}")

        if n == WARMUP:
            before = rss_kb(proc.pid)
        run_case(port, case, fail)
        if proc.poll() is not None:
            fail(f"the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    after = rss_kb(proc.pid)
    assert after - before < RSS_GROWTH_LIMIT_KB, (before, after)
    # Still serving a real client.
    conn = pymysql.connect(
        host="127.0.0.1", port=port, user="app", password=PASSWORD, connect_timeout=10
    )
    try:
        with conn.cursor() as cur:
            cur.execute("select 1")
            assert cur.fetchall() == ((1,),)
    finally:
        conn.close()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Unhandled" not in text, text[-5000:]
