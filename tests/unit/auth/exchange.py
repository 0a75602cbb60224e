"""Drive a ServerAuth with a client, recording the exchange (test helper, no I/O).

Two clients: vtwist's ``ClientAuth``, and ``PyMySQLClient`` which answers with PyMySQL's
own auth functions, following PyMySQL's caching_sha2 flow, as an independent oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pymysql._auth as pm_auth

from vtwist.protocols.mysql.auth import (
    ClientAuth,
    Failure,
    SendMoreData,
    SendSwitch,
    ServerAuth,
    Step,
    Success,
)
from vtwist.protocols.mysql.constants import CACHING_SHA2_PASSWORD, NATIVE_PASSWORD


class Client(Protocol):
    plugin: str

    def initial_response(self) -> bytes: ...

    def feed_switch(self, plugin: str, data: bytes) -> bytes: ...

    def feed_more_data(self, data: bytes) -> bytes | None: ...


@dataclass
class PyMySQLClient:
    """What PyMySQL sends, computed with ``pymysql._auth``."""

    password: bytes
    scramble: bytes
    plugin: str
    secure: bool
    server_public_key: bytes | None = None
    _awaiting_key: bool = field(default=False, init=False)

    def initial_response(self) -> bytes:
        return self._respond()

    def _respond(self) -> bytes:
        if self.plugin == CACHING_SHA2_PASSWORD:
            return bytes(pm_auth.scramble_caching_sha2(self.password, self.scramble))
        if self.plugin == NATIVE_PASSWORD:
            return bytes(pm_auth.scramble_native_password(self.password, self.scramble))
        return self.password + b"\0"  # mysql_clear_password

    def feed_switch(self, plugin: str, data: bytes) -> bytes:
        self.plugin = plugin
        if plugin != "mysql_clear_password":
            self.scramble = data[:-1] if data.endswith(b"\0") else data
        return self._respond()

    def feed_more_data(self, data: bytes) -> bytes | None:
        if self._awaiting_key:
            self.server_public_key = data
            return bytes(pm_auth.sha2_rsa_encrypt(self.password, self.scramble, data))
        if data == b"\x03":
            return None
        assert data == b"\x04", data
        if self.secure:
            return self.password + b"\0"
        if self.server_public_key is None:
            self._awaiting_key = True
            return b"\x02"
        return bytes(pm_auth.sha2_rsa_encrypt(self.password, self.scramble, self.server_public_key))


@dataclass
class Run:
    """The outcome of an exchange and what the server sent on the way."""

    result: Success | Failure
    trace: list[str]

    @property
    def ok(self) -> bool:
        return isinstance(self.result, Success)


def run(server: ServerAuth, client: Client, client_plugin: str | None = None) -> Run:
    """Play the exchange to its end; ``client_plugin`` overrides the name the client sends."""
    trace: list[str] = []
    plugin = client.plugin if client_plugin is None else client_plugin
    step: Step = server.start(plugin, client.initial_response())
    for _ in range(10):
        if isinstance(step, SendSwitch):
            trace.append(f"switch {step.plugin}")
            step = server.feed(client.feed_switch(step.plugin, step.data))
        elif isinstance(step, SendMoreData):
            trace.append("key" if step.data.startswith(b"-----BEGIN") else f"more {step.data!r}")
            reply = client.feed_more_data(step.data)
            assert reply is not None
            trace.append(f"client {reply!r}" if len(reply) < 4 else "client <data>")
            step = server.feed(reply)
        else:
            if isinstance(step, Success) and step.more_data is not None:
                trace.append(f"more {step.more_data!r}")
                assert client.feed_more_data(step.more_data) is None
            trace.append("ok" if isinstance(step, Success) else f"err {step.error.code}")
            assert server.done
            return Run(step, trace)
    raise AssertionError(f"exchange did not end: {trace}")


def make_client(
    kind: str, password: str, scramble: bytes, plugin: str, secure: bool, key: bytes | None = None
) -> Client:
    """A ``ClientAuth`` ("vtwist") or a ``PyMySQLClient`` ("pymysql")."""
    if kind == "vtwist":
        return ClientAuth(password, scramble, plugin, secure, key)
    return PyMySQLClient(password.encode(), scramble, plugin, secure, key)
