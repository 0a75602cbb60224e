"""Helpers of the client integration tests: the real reactor, connecting, polling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from twisted.internet import reactor as global_reactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from vtwist.local.mariadb import MariaDB
from vtwist.protocols.mysql.client import MySQLClient, connect

reactor = cast(Any, global_reactor)


async def connect_to(
    db: MariaDB,
    user: str | None = None,
    password: str | None = None,
    database: str | None = "vtwist_test",
    **kw: Any,
) -> MySQLClient:
    """A vtwist client logged in to ``db`` over TCP (the launcher's user by default)."""
    return await connect(
        reactor,
        ("127.0.0.1", db.port),
        db.user if user is None else user,
        db.password if password is None else password,
        database,
        **kw,
    )


async def sleep(seconds: float) -> None:
    await deferLater(cast(IReactorTime, reactor), seconds, lambda: None)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` every 50 ms until it is true (AssertionError after ``timeout``)."""
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await sleep(0.05)
    raise AssertionError(f"still not true after {timeout}s: {what}")
