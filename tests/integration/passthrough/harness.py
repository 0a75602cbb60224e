"""What the passthrough tests share: the shared MariaDB, a users file, TLS certificates, an
in-process passthrough per test, and helpers to run blocking clients in threads.

``PassthroughCase`` (a trial TestCase) starts ``tests.support.passthrough`` on the global
reactor for each test (plain TCP and TLS on the same port, an RSA key for
caching_sha2_password over plain TCP) and stops it afterwards, waiting until every client
and backend connection is closed, so the reactor is clean. Blocking clients (PyMySQL,
mysqlclient, mysql-connector-python) run in the reactor's thread pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pymysql
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import PrivateCertificate
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.integration.server.certs import ServerCerts, make_certs
from tests.support import servers
from tests.support.passthrough import (
    Backend,
    RunningPassthrough,
    start_passthrough,
    write_users_file,
)
from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.auth import RsaKey, generate_rsa_key
from vtwist.protocols.mysql.server import ServerMetrics
from vtwist.users import StaticUsers

reactor = cast(Any, global_reactor)
T = TypeVar("T")

PASSWORD = "pass-Thr0ugh"
DB = "vtwist_pt"  # the passthrough tests' own database on the shared MariaDB
USERS = (
    ("app", "mysql_native_password"),
    ("app2", "mysql_native_password"),
    ("sha2", "caching_sha2_password"),
)

_rsa_key: RsaKey | None = None


def rsa_key() -> RsaKey:
    """One RSA key for the whole session (generating one takes a while)."""
    global _rsa_key
    if _rsa_key is None:
        _rsa_key = generate_rsa_key()
    return _rsa_key


def direct(db: MariaDB, **kw: Any) -> pymysql.connections.Connection[Any]:
    """PyMySQL straight to MariaDB as the launcher's user (the reference results)."""
    kw.setdefault("database", DB)
    kw.setdefault("charset", "utf8mb4")
    return pymysql.connect(host="127.0.0.1", port=db.port, user=db.user, password=db.password, **kw)


def ensure_database(db: MariaDB) -> None:
    """Create the tests' database if needed."""
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
    finally:
        conn.close()


class CommandCounter(ServerMetrics):
    """Counts the commands the server dispatched, by message class name."""

    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()

    def command(self, name: str) -> None:
        self.commands[name] += 1


class PassthroughCase(unittest.TestCase):
    """A passthrough listening for each test (see the module docstring)."""

    timeout = 120
    server_options: dict[str, Any] = {}

    def setUp(self) -> Deferred[None]:  # type: ignore[override]  # trial waits for it
        self.db = servers.shared_mariadb()
        ensure_database(self.db)
        self.dir = servers.scratch_dir("passthrough")
        users_file = write_users_file(self.dir / "users.toml", PASSWORD, USERS)
        self.users = StaticUsers(users_file)
        self.certs: ServerCerts = make_certs(self.dir)
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        pem = self.certs.cert_pem + self.certs.key_pem
        tls = PrivateCertificate.loadPEM(pem).options()  # type: ignore[no-untyped-call]
        backend = Backend("127.0.0.1", self.db.port, self.db.user, self.db.password)
        self.metrics = CommandCounter()
        self.pt: RunningPassthrough = await start_passthrough(
            reactor,
            backend,
            self.users,
            tls=tls,
            rsa_key=rsa_key(),
            metrics=self.metrics,
            **self.server_options,
        )
        self.port = self.pt.port
        self.addCleanup(lambda: Deferred.fromCoroutine(self.pt.stop()))

    @property
    def ca(self) -> str:
        """The test CA's file (for clients verifying the passthrough's certificate)."""
        return str(self.certs.ca_file)

    def in_thread(self, fn: Callable[[], T]) -> Deferred[T]:
        """Run a blocking client function in the reactor's thread pool."""
        return deferToThread(fn)

    def pymysql(self, **kw: Any) -> pymysql.connections.Connection[Any]:
        """PyMySQL through the passthrough (user ``app``, no TLS unless asked)."""
        kw.setdefault("user", "app")
        kw.setdefault("password", PASSWORD)
        kw.setdefault("charset", "utf8mb4")
        if "ssl" not in kw:
            kw.setdefault("ssl_disabled", True)
        return pymysql.connect(host="127.0.0.1", port=self.port, connect_timeout=10, **kw)

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``check`` on the reactor until it is true (fail after ``timeout``)."""
        deadline = reactor.seconds() + timeout
        while not check():
            if reactor.seconds() > deadline:
                self.fail("condition not reached")
            await deferLater(cast(IReactorTime, reactor), 0.01, lambda: None)
