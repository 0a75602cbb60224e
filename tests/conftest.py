"""pytest fixtures for real servers; see tests/support/servers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import servers
from vtwist.local.mariadb import MariaDB


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    yield servers.shared_mariadb()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    servers.stop_all()
