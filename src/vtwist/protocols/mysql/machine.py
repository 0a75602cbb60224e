"""The MySQL protocol's states and its one transition table, shared by both ends.

``Machine`` holds what the conversation has established (state, capabilities, prepared
statements, last status) and one transition per (state, event type). A transition runs
for an event whether this end sent it or received it, so client and server follow the
same rules; it never touches bytes. ``connection.Connection`` adds framing, encoding and
decoding on top. A transition that finds the event invalid raises ``RuleError``, which the
connection reports as LocalProtocolError (we sent it) or RemoteProtocolError (the peer did).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final

from vtwist.protocols.mysql.commands import (
    ComChangeUser,
    ComFieldList,
    ComInitDB,
    ComPing,
    ComQuery,
    ComQuit,
    ComResetConnection,
    ComSetOption,
    ComStatistics,
    ComStmtClose,
    ComStmtExecute,
    ComStmtFetch,
    ComStmtPrepare,
    ComStmtReset,
    ComStmtSendLongData,
    ParamType,
    UnknownCommand,
)
from vtwist.protocols.mysql.constants import Capability, ServerStatus
from vtwist.protocols.mysql.errors import (
    ErrorCode,
    PacketTooLargeError,
)
from vtwist.protocols.mysql.events import (
    Column,
    ResultSetDone,
    ResultSetStart,
    Row,
)
from vtwist.protocols.mysql.messages import (
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    Err,
    HandshakeResponse41,
    HandshakeV10,
    LocalInfileData,
    LocalInfileRequest,
    Ok,
    SSLRequest,
    StatisticsResponse,
    StmtPrepareOK,
)
from vtwist.protocols.mysql.wire import Message

__all__ = [
    "CLIENT_EVENTS",
    "CLIENT_STATES",
    "SERVER_EVENTS",
    "SERVER_STATES",
    "TABLE",
    "Machine",
    "PreparedStatement",
    "RuleError",
    "State",
]

_SSL: Final = int(Capability.SSL)
_PROTOCOL_41: Final = int(Capability.PROTOCOL_41)
_DEPRECATE_EOF: Final = int(Capability.DEPRECATE_EOF)
_MORE: Final = int(ServerStatus.MORE_RESULTS_EXISTS)
_QUERY: Final = 0x03
_EXECUTE: Final = 0x17
_RESET_CONNECTION: Final = 0x1F
_MALFORMED: Final = int(ErrorCode.MALFORMED_PACKET)


class State(enum.IntEnum):
    """Where the conversation is (see the module docstring).

    An IntEnum only because its members hash in C: states are looked up per packet.
    """

    GREETING = 0
    LOGIN = 1
    TLS = 2
    AUTH = 3
    IDLE = 4
    RESULT = 5
    INFILE = 6
    COLUMNS = 7
    COLUMNS_END = 8  # classic mode: the EOF after the columns is still due
    ROWS = 9
    PREPARE = 10
    PREPARE_PARAMS = 11
    PARAMS_END = 12  # classic mode: the EOF after the parameter definitions is due
    PREPARE_COLUMNS = 13
    PREPARE_COLUMNS_END = 14
    FIELDS = 15
    SIMPLE = 16
    SET_OPTION = 17
    STATISTICS = 18
    CLOSED = 19
    ERROR = 20


_S = State
# Members as module constants: a global is read faster than an enum class attribute.
_S_GREETING: Final = State.GREETING
_S_LOGIN: Final = State.LOGIN
_S_TLS: Final = State.TLS
_S_AUTH: Final = State.AUTH
_S_IDLE: Final = State.IDLE
_S_RESULT: Final = State.RESULT
_S_INFILE: Final = State.INFILE
_S_COLUMNS: Final = State.COLUMNS
_S_COLUMNS_END: Final = State.COLUMNS_END
_S_ROWS: Final = State.ROWS
_S_PREPARE: Final = State.PREPARE
_S_PREPARE_PARAMS: Final = State.PREPARE_PARAMS
_S_PARAMS_END: Final = State.PARAMS_END
_S_PREPARE_COLUMNS: Final = State.PREPARE_COLUMNS
_S_PREPARE_COLUMNS_END: Final = State.PREPARE_COLUMNS_END
_S_FIELDS: Final = State.FIELDS
_S_SIMPLE: Final = State.SIMPLE
_S_SET_OPTION: Final = State.SET_OPTION
_S_STATISTICS: Final = State.STATISTICS
_S_CLOSED: Final = State.CLOSED


class PreparedStatement:
    """What the connection knows of one prepared statement."""

    __slots__ = ("long_data", "long_data_size", "num_columns", "num_params", "param_types")

    def __init__(self, num_params: int, num_columns: int) -> None:
        self.num_params = num_params
        self.num_columns = num_columns
        self.param_types: tuple[ParamType, ...] = ()
        self.long_data: dict[int, bytearray] = {}
        self.long_data_size = 0


class RuleError(Exception):
    """A transition rule was broken: LocalProtocolError on send, Remote on receive."""

    def __init__(self, message: str, code: int = _MALFORMED) -> None:
        super().__init__(message)
        self.code = code


SERVER_EVENTS: Final = frozenset(
    {
        HandshakeV10,
        Err,
        Ok,
        AuthSwitchRequest,
        AuthMoreData,
        ResultSetStart,
        Column,
        Row,
        ResultSetDone,
        StmtPrepareOK,
        LocalInfileRequest,
        StatisticsResponse,
    }
)
CLIENT_EVENTS: Final = frozenset(
    {
        SSLRequest,
        HandshakeResponse41,
        AuthData,
        LocalInfileData,
        ComQuery,
        ComInitDB,
        ComFieldList,
        ComSetOption,
        ComPing,
        ComQuit,
        ComStatistics,
        ComResetConnection,
        ComChangeUser,
        ComStmtPrepare,
        ComStmtExecute,
        ComStmtSendLongData,
        ComStmtClose,
        ComStmtReset,
        ComStmtFetch,
        UnknownCommand,
    }
)
# States in which the client (resp. the server) may send (AUTH: see _auth_client_turn).
CLIENT_STATES: Final = frozenset({_S.LOGIN, _S.IDLE, _S.INFILE, _S.AUTH})
SERVER_STATES: Final = frozenset(
    {
        _S.GREETING,
        _S.AUTH,
        _S.IDLE,  # only an unsolicited Err
        _S.RESULT,
        _S.COLUMNS,
        _S.COLUMNS_END,
        _S.ROWS,
        _S.PREPARE,
        _S.PREPARE_PARAMS,
        _S.PARAMS_END,
        _S.PREPARE_COLUMNS,
        _S.PREPARE_COLUMNS_END,
        _S.FIELDS,
        _S.SIMPLE,
        _S.SET_OPTION,
        _S.STATISTICS,
    }
)

_Handler = Callable[["Machine", Any], None]


class Machine:
    """The protocol state of one connection and its transitions (see the module docstring)."""

    def __init__(self, server: bool, max_packet_size: int) -> None:
        self.max_packet_size = max_packet_size
        self._server = server
        #: The current state (read it; only the machine's transitions change it). A plain
        #: attribute, not a property: the glue reads it several times per query.
        self.state: State = _S_GREETING
        self._seq = 0
        self._server_caps = 0
        self._client_caps = 0
        self._caps = 0
        self._deprecate_eof = False
        self._tls = False
        self._cmd = -1
        self._remaining = 0
        self._prep_columns = 0
        self._stmts: dict[int, PreparedStatement] = {}
        self._status = 0
        self._auth_client_turn = False
        self._change_user = False
        self.handshake: HandshakeV10 | None = None
        self.handshake_response: HandshakeResponse41 | None = None

    # -- transitions (shared by send and receive) ------------------------------------------

    def _idle(self) -> None:
        self.state = _S_IDLE
        self._seq = 0

    def _t_greeting(self, ev: HandshakeV10) -> None:
        self.handshake = ev
        # Plain ints: an IntFlag here would make every later ``caps & FLAG`` a Python call.
        self._server_caps = int(ev.capabilities)
        self.state = _S_LOGIN

    def _t_closing_err(self, ev: Err) -> None:
        self.state = _S_CLOSED

    def _t_ssl(self, ev: SSLRequest) -> None:
        if self._tls or not self._server_caps & _SSL:
            raise RuleError(
                "SSL connection requested but the server did not offer it",
                ErrorCode.HANDSHAKE_ERROR,
            )
        self.state = _S_TLS

    def _t_login(self, ev: HandshakeResponse41) -> None:
        if not ev.capabilities & _PROTOCOL_41:
            raise RuleError(
                "Client does not support authentication protocol requested by server; "
                "consider upgrading MySQL client",
                ErrorCode.NOT_SUPPORTED_AUTH_MODE,
            )
        self.handshake_response = ev
        self._client_caps = int(ev.capabilities)
        self._caps = self._server_caps & self._client_caps
        self._deprecate_eof = bool(self._caps & _DEPRECATE_EOF)
        self._change_user = False
        self._auth_client_turn = False
        self.state = _S_AUTH

    def _t_auth_request(self, ev: Message) -> None:
        self._auth_client_turn = True

    def _t_auth_data(self, ev: AuthData) -> None:
        if not self._auth_client_turn:
            raise RuleError("auth data sent before the server asked for it")
        self._auth_client_turn = False

    def _t_auth_ok(self, ev: Ok) -> None:
        self._status = ev.status
        if self._change_user:
            self._stmts.clear()
        self._idle()

    def _t_auth_err(self, ev: Err) -> None:
        if self._change_user:
            self._idle()  # mysqld keeps the previous user after a failed COM_CHANGE_USER
        else:
            self.state = _S_CLOSED

    def _command(self, ev: Message, state: State) -> None:
        self._cmd = ev.CODE  # type: ignore[attr-defined]
        self.state = state

    def _t_query(self, ev: ComQuery) -> None:
        self._cmd = _QUERY
        self.state = _S_RESULT

    def _t_execute(self, ev: ComStmtExecute) -> None:
        self._cmd = _EXECUTE
        st = self._stmts.get(ev.stmt_id)
        if st is not None:
            if ev.new_params_bound:
                st.param_types = ev.param_types
            if st.long_data:
                st.long_data = {}
                st.long_data_size = 0
        self.state = _S_RESULT

    def _t_prepare(self, ev: ComStmtPrepare) -> None:
        self._command(ev, _S_PREPARE)

    def _t_field_list(self, ev: ComFieldList) -> None:
        self._command(ev, _S_FIELDS)

    def _t_statistics(self, ev: ComStatistics) -> None:
        self._command(ev, _S_STATISTICS)

    def _t_set_option(self, ev: ComSetOption) -> None:
        self._command(ev, _S_SET_OPTION)

    def _t_simple(self, ev: Message) -> None:
        self._cmd = ev.code if type(ev) is UnknownCommand else ev.CODE  # type: ignore[attr-defined]
        self.state = _S_SIMPLE

    def _t_stmt_reset(self, ev: ComStmtReset) -> None:
        st = self._stmts.get(ev.stmt_id)
        if st is not None:
            st.long_data = {}
            st.long_data_size = 0
        self._command(ev, _S_SIMPLE)

    def _t_fetch(self, ev: ComStmtFetch) -> None:
        self._command(ev, _S_ROWS)

    def _t_stmt_close(self, ev: ComStmtClose) -> None:
        self._stmts.pop(ev.stmt_id, None)
        self._idle()

    def _t_long_data(self, ev: ComStmtSendLongData) -> None:
        st = self._stmts.get(ev.stmt_id)
        if self._server and st is not None and ev.param_id < st.num_params:
            size = st.long_data_size + len(ev.data)
            if size > self.max_packet_size:
                raise PacketTooLargeError(size, self.max_packet_size)
            st.long_data.setdefault(ev.param_id, bytearray()).extend(ev.data)
            st.long_data_size = size
        self._idle()

    def _t_quit(self, ev: ComQuit) -> None:
        self.state = _S_CLOSED

    def _t_change_user(self, ev: ComChangeUser) -> None:
        self._cmd = ComChangeUser.CODE
        self._change_user = True
        self._auth_client_turn = False
        self.state = _S_AUTH

    def _t_result_ok(self, ev: Ok) -> None:
        self._status = ev.status
        if ev.status & _MORE:
            self.state = _S_RESULT
        else:
            self._idle()

    def _t_command_err(self, ev: Err) -> None:
        self._idle()

    def _t_result_set(self, ev: ResultSetStart) -> None:
        if ev.column_count <= 0:
            raise RuleError("a result set needs at least one column (send Ok instead)")
        self._remaining = ev.column_count
        self.state = _S_COLUMNS

    def _t_infile_request(self, ev: LocalInfileRequest) -> None:
        self.state = _S_INFILE

    def _t_infile_data(self, ev: LocalInfileData) -> None:
        if not ev.data:
            self.state = _S_RESULT

    def _t_column(self, ev: Column) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            self.state = _S_ROWS if self._deprecate_eof else _S_COLUMNS_END

    def _t_first_row(self, ev: Row) -> None:
        self.state = _S_ROWS

    def _t_row(self, ev: Row) -> None:
        pass

    def _t_done(self, ev: ResultSetDone) -> None:
        self._status = ev.status
        if ev.status & _MORE and (self._cmd == _QUERY or self._cmd == _EXECUTE):
            self.state = _S_RESULT
        else:
            self._idle()

    def _t_field(self, ev: Column) -> None:
        pass

    def _t_prepare_ok(self, ev: StmtPrepareOK) -> None:
        self._stmts[ev.statement_id] = PreparedStatement(ev.num_params, ev.num_columns)
        self._prep_columns = ev.num_columns
        if ev.num_params:
            self._remaining = ev.num_params
            self.state = _S_PREPARE_PARAMS
        elif ev.num_columns:
            self._remaining = ev.num_columns
            self.state = _S_PREPARE_COLUMNS
        else:
            self._idle()

    def _t_param_def(self, ev: Column) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            if not self._deprecate_eof:
                self.state = _S_PARAMS_END
            elif self._prep_columns:
                self._remaining = self._prep_columns
                self.state = _S_PREPARE_COLUMNS
            else:
                self._idle()

    def _t_prep_column(self, ev: Column) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            if self._deprecate_eof:
                self._idle()
            else:
                self.state = _S_PREPARE_COLUMNS_END

    def _eof_done(self) -> None:
        """The classic EOF owed in a *_END state was sent or received."""
        s = self.state
        if s is _S_COLUMNS_END:
            self.state = _S_ROWS
        elif s is _S_PARAMS_END and self._prep_columns:
            self._remaining = self._prep_columns
            self.state = _S_PREPARE_COLUMNS
        else:
            self._idle()

    def _t_simple_ok(self, ev: Ok) -> None:
        self._status = ev.status
        if self._cmd == _RESET_CONNECTION:
            self._stmts.clear()
        self._idle()

    def _t_set_option_ok(self, ev: Ok) -> None:
        self._status = ev.status
        self._idle()

    def _t_statistics_reply(self, ev: StatisticsResponse) -> None:
        self._idle()


_M = Machine

# The one transition table: state -> event type -> transition, for both directions.
TABLE: Final[dict[State, dict[type[Message], _Handler]]] = {
    State.GREETING: {HandshakeV10: _M._t_greeting, Err: _M._t_closing_err},
    State.LOGIN: {SSLRequest: _M._t_ssl, HandshakeResponse41: _M._t_login},
    State.TLS: {},
    State.AUTH: {
        AuthSwitchRequest: _M._t_auth_request,
        AuthMoreData: _M._t_auth_request,
        AuthData: _M._t_auth_data,
        Ok: _M._t_auth_ok,
        Err: _M._t_auth_err,
    },
    State.IDLE: {
        ComQuery: _M._t_query,
        ComStmtExecute: _M._t_execute,
        ComStmtPrepare: _M._t_prepare,
        ComFieldList: _M._t_field_list,
        ComStatistics: _M._t_statistics,
        ComSetOption: _M._t_set_option,
        ComPing: _M._t_simple,
        ComInitDB: _M._t_simple,
        ComResetConnection: _M._t_simple,
        UnknownCommand: _M._t_simple,
        ComStmtReset: _M._t_stmt_reset,
        ComStmtFetch: _M._t_fetch,
        ComStmtClose: _M._t_stmt_close,
        ComStmtSendLongData: _M._t_long_data,
        ComQuit: _M._t_quit,
        ComChangeUser: _M._t_change_user,
        Err: _M._t_closing_err,  # unsolicited, from the server
    },
    State.RESULT: {
        Ok: _M._t_result_ok,
        Err: _M._t_command_err,
        ResultSetStart: _M._t_result_set,
        LocalInfileRequest: _M._t_infile_request,
    },
    State.INFILE: {LocalInfileData: _M._t_infile_data},
    State.COLUMNS: {Column: _M._t_column},
    State.COLUMNS_END: {Row: _M._t_first_row, ResultSetDone: _M._t_done, Err: _M._t_command_err},
    State.ROWS: {Row: _M._t_row, ResultSetDone: _M._t_done, Err: _M._t_command_err},
    State.PREPARE: {StmtPrepareOK: _M._t_prepare_ok, Err: _M._t_command_err},
    State.PREPARE_PARAMS: {Column: _M._t_param_def},
    State.PARAMS_END: {},
    State.PREPARE_COLUMNS: {Column: _M._t_prep_column},
    State.PREPARE_COLUMNS_END: {},
    State.FIELDS: {Column: _M._t_field, ResultSetDone: _M._t_done, Err: _M._t_command_err},
    State.SIMPLE: {Ok: _M._t_simple_ok, Err: _M._t_command_err},
    State.SET_OPTION: {Ok: _M._t_set_option_ok, Err: _M._t_command_err},
    State.STATISTICS: {StatisticsResponse: _M._t_statistics_reply, Err: _M._t_command_err},
    State.CLOSED: {},
    State.ERROR: {},
}
