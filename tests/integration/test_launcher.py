"""The MariaDB launcher gives a real server with a TCP user and no anonymous users."""

from __future__ import annotations

import pymysql
import pytest

from vtwist.local.mariadb import MariaDB
from vtwist.local.procs import pid_alive

pytestmark = pytest.mark.integration


def test_tcp_user_and_no_anonymous_users(mariadb: MariaDB) -> None:
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER(), @@port, @@bind_address")
            user, port, bind = cur.fetchone()  # type: ignore[misc]
            assert user == "vtwist@127.0.0.1"
            assert port == mariadb.port
            assert bind == "127.0.0.1"
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE user = ''")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_wrong_password_refused(mariadb: MariaDB) -> None:
    with pytest.raises(pymysql.err.OperationalError) as e:
        mariadb.connect(password="wrong")
    assert e.value.args[0] == 1045


def test_stop_by_pid(tmp_path: object) -> None:
    from pathlib import Path

    m = MariaDB(Path(str(tmp_path)) / "db").start()
    pid = m.pid
    assert pid is not None and pid_alive(pid)
    m.stop()
    assert not pid_alive(pid)
