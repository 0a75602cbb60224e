"""Real servers shared by the integration tests of one pytest session.

Each server is started on first use by the project's own launcher (the one ``vtwist up``
uses) and stopped by PID when the session ends (see ``tests/conftest.py``). Trial test
cases call these functions directly; pytest tests use the fixtures in conftest.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from vtwist.local.mariadb import MariaDB
from vtwist.local.zookeeper import ZooKeeper

_stoppers: list[Callable[[], None]] = []
_mariadb: MariaDB | None = None
_zookeeper: ZooKeeper | None = None
_root: Path | None = None


def scratch_dir(name: str) -> Path:
    """A fresh directory under this session's temporary root."""
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="vtwist-test-"))
        _stoppers.append(lambda: shutil.rmtree(str(_root), ignore_errors=True))
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_root))


def shared_mariadb() -> MariaDB:
    """The session's MariaDB (started on first use). Tests must not stop it."""
    global _mariadb
    if _mariadb is None or not _mariadb.running():
        _mariadb = MariaDB(scratch_dir("mariadb")).start()
        _stoppers.insert(0, _mariadb.stop)
    return _mariadb


def shared_zookeeper() -> ZooKeeper:
    """The session's standalone ZooKeeper (started on first use). Tests must not stop it;
    each test works under its own root path."""
    global _zookeeper
    if _zookeeper is None or not _zookeeper.running():
        _zookeeper = ZooKeeper(scratch_dir("zookeeper")).start()
        _stoppers.insert(0, _zookeeper.stop)
    return _zookeeper


def stop_all() -> None:
    """Stop every server this session started (by PID), newest first."""
    while _stoppers:
        fn = _stoppers.pop(0)
        try:
            fn()
        except Exception as e:  # keep stopping the others
            print(f"vtwist tests: stopping a server failed: {e!r}")


atexit.register(stop_all)
