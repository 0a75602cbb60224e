"""The authentication phase of a MySQL server connection: login and COM_CHANGE_USER.

``Authenticator`` runs the sans-IO ``auth.ServerAuth`` exchange against the factory's
``IAuthServer`` (native, caching_sha2 fast path and full authentication over TLS or RSA,
clear password over TLS only, auth switches, one error for unknown users and wrong
passwords), enforces ``require_secure_transport``, and on success opens the session: the
handler factory's ``open_session``, then ``init_db`` for the login packet's database,
then OK. A failed login is answered with ERR and closes the connection; a failed
COM_CHANGE_USER keeps the session as it was (as mysqld does). The factory's
``on_auth_failure``/``on_auth_success`` hooks and metrics see every outcome.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from vtwist.interfaces import IQueryHandler
from vtwist.protocols.mysql.auth import (
    Failure,
    SendMoreData,
    SendSwitch,
    ServerAuth,
    Step,
    Success,
)
from vtwist.protocols.mysql.commands import ComChangeUser
from vtwist.protocols.mysql.constants import Capability
from vtwist.protocols.mysql.errors import ErrorCode
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    Err,
    HandshakeResponse41,
    Ok,
)
from vtwist.protocols.mysql.server_session import ServerSession
from vtwist.protocols.mysql.server_sink import call_handler, to_mysql_error
from vtwist.protocols.mysql.server_types import ClientInfo

if TYPE_CHECKING:
    from vtwist.protocols.mysql.server import MySQLServerProtocol

__all__ = ["INSECURE_TRANSPORT_MESSAGE", "Authenticator"]

log = Logger()

_WITH_DB: Final = int(Capability.CONNECT_WITH_DB)
INSECURE_TRANSPORT_MESSAGE: Final = (
    "Connections using insecure transport are prohibited while --require_secure_transport=ON."
)


class Authenticator:
    """Authentication exchanges of one connection (see the module docstring)."""

    def __init__(self, proto: MySQLServerProtocol) -> None:
        self.proto = proto
        self.factory = proto.factory
        self._auth: ServerAuth | None = None
        self._change_user: ComChangeUser | None = None

    def _new_exchange(self, user: str) -> ServerAuth:
        proto = self.proto
        self._auth = ServerAuth.for_store(
            self.factory.auth,
            user=user,
            host=proto.peer_host,
            scramble=proto.scramble,
            secure=proto.conn.tls,
            rsa_key=self.factory.rsa_key,
        )
        return self._auth

    def login(self, ev: HandshakeResponse41) -> None:
        """The client's login packet arrived."""
        if self.factory.require_secure_transport and not self.proto.conn.tls:
            self.factory.metrics.auth_finished(False, "")
            err = Err(ErrorCode.SECURE_TRANSPORT_REQUIRED, INSECURE_TRANSPORT_MESSAGE, "HY000")
            self.proto.send_events([err])
            self.proto.close()
            return
        auth = self._new_exchange(ev.user)
        self._step(auth.start(ev.auth_plugin_name, ev.auth_response))

    def change_user(self, ev: ComChangeUser) -> None:
        """COM_CHANGE_USER: authenticate again (with the greeting's scramble, as mysqld)."""
        self._change_user = ev
        auth = self._new_exchange(ev.user)
        self._step(auth.start(ev.auth_plugin_name, ev.auth_response))

    def auth_data(self, ev: AuthData) -> None:
        """The client's answer to an auth switch or to more data."""
        if self._auth is None:  # pragma: no cover - the connection only allows it mid-auth
            raise RuntimeError("auth data without an exchange in progress")
        self._step(self._auth.feed(ev.data))

    def _step(self, step: Step) -> None:
        proto = self.proto
        if isinstance(step, SendSwitch):
            proto.send_events([AuthSwitchRequest(step.plugin, step.data)])
        elif isinstance(step, SendMoreData):
            proto.send_events([AuthMoreData(step.data)])
        elif isinstance(step, Success):
            self._auth = None
            if step.more_data is not None:
                proto.send_events([AuthMoreData(step.more_data)])
            self.factory.metrics.auth_finished(True, step.plugin)
            self.factory.on_auth_success(proto.peer_host, step.user)
            change, self._change_user = self._change_user, None
            if change is None:
                proto.begin(Deferred.fromCoroutine(self._open_session(step)))
            else:
                assert proto.session is not None
                info = self._change_user_info(change, step)
                proto.begin(Deferred.fromCoroutine(proto.session.change_user(info)))
        else:
            assert isinstance(step, Failure)
            user = self._auth.user if self._auth is not None else ""
            self._auth = None
            self.factory.metrics.auth_finished(False, "")
            self.factory.on_auth_failure(proto.peer_host, user)
            log.info(
                "MySQL client {host} failed to authenticate as {user!r}: {error}",
                host=proto.peer_host,
                user=user,
                error=step.error.message,
            )
            proto.send_events([Err.from_error(step.error)])
            if self._change_user is None:
                proto.close()
            self._change_user = None  # a failed COM_CHANGE_USER keeps the session

    def _change_user_info(self, ev: ComChangeUser, step: Success) -> ClientInfo:
        old = self.proto.info
        assert old is not None
        return replace(
            old,
            user=step.user,
            database=ev.database,
            charset=ev.charset or old.charset,
            attrs=dict(ev.connect_attrs) if ev.connect_attrs else old.attrs,
            auth_plugin=step.plugin,
        )

    async def _open_session(self, step: Success) -> None:
        proto = self.proto
        resp = proto.conn.handshake_response
        assert resp is not None
        caps = proto.conn.capabilities
        info = ClientInfo(
            connection_id=proto.connection_id,
            user=step.user,
            host=proto.peer_host,
            port=proto.peer_port,
            database=resp.database if caps & _WITH_DB else "",
            capabilities=caps,
            charset=resp.charset,
            attrs=dict(resp.connect_attrs),
            secure=proto.conn.tls,
            auth_plugin=step.plugin,
        )
        try:
            handler = await call_handler(self.factory.handler_factory.open_session, info)
        except CancelledError:
            raise
        except Exception as e:
            # The connection is CLOSED after this ERR: the protocol closes the transport.
            proto.send_events([Err.from_error(to_mysql_error(e, "open_session"))])
            return
        if not IQueryHandler.providedBy(handler):
            log.error("open_session returned {handler!r}, not an IQueryHandler", handler=handler)
        session = ServerSession(
            handler,
            info,
            proto,
            self.factory.sink_limits,
            max_prepared_statements=self.factory.max_prepared_statements,
            param_string_encoding=self.factory.param_string_encoding,
        )
        proto.session = session  # from now on, connectionLost closes the handler
        if info.database:
            err = await session.init_db_at_login(info.database)
            if err is not None:
                proto.send_events([Err.from_error(err)])
                return
        proto.handshake_done()
        proto.send_events([Ok(status=session.status())])
        log.debug(
            "MySQL connection {id}: {user}@{host} logged in",
            id=info.connection_id,
            user=info.user,
            host=info.host,
            tls=info.secure,
        )
