"""Throw-away MariaDB servers: ``mariadb-install-db`` + ``mariadbd`` on a free loopback port.

Each instance lives in its own directory, listens on 127.0.0.1 only, has no anonymous
users and no test database, and gets a dedicated TCP user (``vtwist`` by default) with
all privileges. The instance is stopped by its PID. Replication settings (server id,
binary log, GTID strict mode) are on from the start, so the local cluster can chain
instances without restarting them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pymysql

from vtwist.local.procs import (
    LOOPBACK,
    LaunchError,
    free_port,
    pid_alive,
    port_open,
    read_pidfile,
    stop_pid,
    wait_until,
)


def _find(*names: str) -> str:
    for name in names:
        for d in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/usr/bin"]:
            candidate = Path(d) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise LaunchError(
        f"none of {', '.join(names)} found: install the Debian package mariadb-server"
    )


@dataclass
class MariaDB:
    """One private MariaDB server. ``start()`` creates it; ``stop()`` stops it by PID."""

    base_dir: Path
    port: int = 0
    server_id: int = 1
    user: str = "vtwist"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    extra_args: list[str] = field(default_factory=list)
    startup_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_path(self) -> Path:
        return self.base_dir / "mysqld.sock"

    @property
    def tmpdir(self) -> Path:
        """mysqld's own temporary directory: a shared /tmp lets two instances being
        installed at the same moment clash on their temporary table files."""
        return self.base_dir / "tmp"

    @property
    def pidfile(self) -> Path:
        return self.base_dir / "mysqld.pid"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "mysqld.log"

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def pid(self) -> int | None:
        return read_pidfile(self.pidfile)

    def server_args(self) -> list[str]:
        """The ``mariadbd`` command line (without the binary)."""
        args = [
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--bind-address={LOOPBACK}",
            f"--socket={self.socket_path}",
            f"--tmpdir={self.tmpdir}",
            f"--pid-file={self.pidfile}",
            f"--log-error={self.log_path}",
            f"--server-id={self.server_id}",
            f"--log-bin={self.base_dir / 'binlog' / 'mysql-bin'}",
            f"--relay-log={self.base_dir / 'binlog' / 'relay-bin'}",
            "--log-slave-updates=ON",
            "--gtid-strict-mode=ON",
            "--binlog-format=ROW",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=32M",
            "--max-connections=500",
            "--max-allowed-packet=64M",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_general_ci",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        return args + self.extra_args

    def start(self) -> MariaDB:
        """Create the data directory if needed, start mariadbd, and create the TCP user."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "binlog").mkdir(exist_ok=True)
        self.tmpdir.mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port()
        fresh = not (self.datadir / "mysql").is_dir()
        if fresh:
            self._install_db()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child inherits it
        try:
            self.proc = subprocess.Popen(
                [_find("mariadbd", "mysqld"), *self.server_args()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            wait_until(
                lambda: self.socket_path.exists() and port_open(LOOPBACK, self.port),
                self.startup_timeout,
                f"mariadbd on port {self.port}",
                self.proc,
                self.log_path,
            )
            if fresh:
                self._create_users()
        except BaseException:
            self.stop()
            raise
        return self

    def _install_db(self) -> None:
        cmd = [
            _find("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            f"--tmpdir={self.tmpdir}",  # passed on to the bootstrap mariadbd
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise LaunchError(f"mariadb-install-db failed: {out.stderr.strip()[-2000:]}")

    def admin_connect(self) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A PyMySQL connection as root over the private unix socket."""
        return pymysql.connect(
            unix_socket=str(self.socket_path), user="root", autocommit=True, charset="utf8mb4"
        )

    def _create_users(self) -> None:
        conn = self.admin_connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT user, host FROM mysql.user WHERE user = ''")
                for _user, host in cur.fetchall():
                    cur.execute("DROP USER ''@%s", (host,))
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(
                        "CREATE USER %s@%s IDENTIFIED BY %s", (self.user, host, self.password)
                    )
                    cur.execute(
                        "GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION",
                        (self.user, host),
                    )
                cur.execute("CREATE DATABASE IF NOT EXISTS vtwist_test")
        finally:
            conn.close()
        # Keep the credentials beside the data, so a later process can reuse the instance.
        (self.base_dir / "credentials").write_text(f"{self.user}\n{self.password}\n")
        os.chmod(self.base_dir / "credentials", 0o600)

    def connect(
        self, password: str | None = None, database: str | None = None
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        """A PyMySQL connection as the TCP user (what real clients use)."""
        return pymysql.connect(
            host=LOOPBACK,
            port=self.port,
            user=self.user,
            password=self.password if password is None else password,
            database=database,
            autocommit=True,
            charset="utf8mb4",
        )

    def running(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop mariadbd by PID (SIGTERM, SIGKILL after ``timeout``)."""
        pid = self.proc.pid if self.proc is not None else self.pid
        if pid is not None:
            stop_pid(pid, timeout)
        if self.proc is not None:
            self.proc.wait(timeout=5)
            self.proc = None

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> MariaDB:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()
