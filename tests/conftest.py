"""pytest fixtures for real servers; see tests/support/servers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import servers
from vtwist.local.mariadb import MariaDB
from vtwist.local.zookeeper import ZooKeeper


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    yield servers.shared_mariadb()


@pytest.fixture(scope="session")
def zookeeper() -> Iterator[ZooKeeper]:
    yield servers.shared_zookeeper()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    servers.stop_all()
