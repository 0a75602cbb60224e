"""native_password_hash agrees with MariaDB's own PASSWORD() (a real server as oracle)."""

from __future__ import annotations

import pytest

from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.auth import native_password_hash

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("password", ["x", "app-secret", "pässwörd ✓", "a" * 200])
def test_native_hash_equals_mariadb_password(mariadb: MariaDB, password: str) -> None:
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET NAMES utf8mb4")
            cur.execute("SELECT PASSWORD(%s)", (password,))
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    assert native_password_hash(password) == row[0]
