"""The sans-IO tablet RPC codec: golden frames, round trips, malformed and oversized input."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtwist.protocols.mysql.errors import ErrorCode, MySQLError, RemoteProtocolError
from vtwist.protocols.tabletrpc_client import _raw_text
from vtwist.protocols.tabletrpc_codec import (
    DEFAULT_MAX_FRAME_SIZE,
    Cancel,
    Chunk,
    Credit,
    Error,
    FrameDecoder,
    FrameTooLargeError,
    Health,
    Hello,
    InfileData,
    InfileError,
    InfileMore,
    MalformedMessageError,
    Message,
    Reply,
    Request,
    check_max_frame_size,
    decode_message,
    encode_chunk,
    encode_error,
    encode_frame,
    encode_infile_data,
    encode_message,
    encode_reply,
    encode_request,
)
from vtwist.protocols.tabletrpc_ops import (
    OPS,
    BeginArgs,
    ExecuteArgs,
    KillArgs,
    Note,
    QueryResult,
    ReleaseArgs,
    ReserveArgs,
    ReserveResult,
    TransactionArgs,
    args_to_wire,
    op_spec,
    parse_args,
)

# --- golden frames (bytes worked out by hand from the msgpack spec) ---------------------------

GOLDEN: list[tuple[Message, str]] = [
    # 28-byte payload: fixarray(5) kind=1 id=1 fixstr(7)"execute" fixmap(1){"sql": "select 1"}
    # uint16 1500
    (
        Request(1, "execute", {"sql": "select 1"}, 1500),
        "0000001c950101a76578656375746581a373716ca873656c6563742031cd05dc",
    ),
    # fixarray(3) kind=0 version=1 {"max_frame": uint16 1024}
    (Hello(1, {"max_frame": 1024}), "0000001193000181a96d61785f6672616d65cd0400"),
    # fixarray(5) kind=5 id=3 uint16 1317 "70100" "stop"
    (Error(3, 1317, "70100", "stop"), "00000011950503cd0525a53730313030a473746f70"),
    # fixarray(4) kind=6 id=2 [bin8 "f"] [bin8 "\x011"]
    (Chunk(2, [b"f"], [b"\x011"]), "0000000c94060291c4016691c4020131"),
    (Cancel(9), "00000003920209"),
    (Credit(9, 4), "0000000493030904"),
    # fixarray(3) kind=8 id=9 uint16 1000
    (InfileMore(9, 1000), "00000006930809cd03e8"),
    # fixarray(4) kind=9 id=9 bin8 "ab" nil
    (InfileData(9, b"ab"), "00000008940909c4026162c0"),
    # the end of the file: an empty bin8
    (InfileData(9, b""), "00000006940909c400c0"),
    # fixarray(4) kind=9 id=9 bin8 "" fixarray(3)[uint16 1153 "08S01" "big"]
    (
        InfileData(9, b"", InfileError(1153, "08S01", "big")),
        "00000013940909c40093cd0481a53038533031a3626967",
    ),
]


@pytest.mark.parametrize(("msg", "hexframe"), GOLDEN)
def test_golden_frames(msg: Message, hexframe: str) -> None:
    frame = bytes.fromhex(hexframe)
    assert encode_message(msg) == frame
    [payload] = FrameDecoder().feed(frame)
    assert decode_message(payload) == msg


def test_golden_reply_with_query_result() -> None:
    frame = encode_reply(4, QueryResult([b"f"], [b"r"], 1, 2, 3, 4, "ok"))
    # fixarray(3) kind=4 id=4 fixarray(9)[ [bin"f"], [bin"r"], 1, 2, 3, 4, "ok", [], [] ]
    assert frame.hex() == "000000159304049991c4016691c4017201020304a26f6b9090"
    [payload] = FrameDecoder().feed(frame)
    msg = decode_message(payload)
    assert isinstance(msg, Reply)
    assert OPS["execute"].decode_result(msg.result) == QueryResult([b"f"], [b"r"], 1, 2, 3, 4, "ok")


def test_golden_reply_with_notes() -> None:
    notes = (Note("Warning", 1292, "Truncated"),)
    frame = encode_reply(4, QueryResult([], [], 0, 0, 1, 0, "", notes))
    # ... 1 (warnings), 0, "", [ ["Warning", 1292, "Truncated"] ], []
    notes_hex = "9193a75761726e696e67cd050ca95472756e6361746564"
    assert frame.hex().endswith("0001" + "00a0" + notes_hex + "90")
    [payload] = FrameDecoder().feed(frame)
    msg = decode_message(payload)
    assert isinstance(msg, Reply)
    assert OPS["execute"].decode_result(msg.result).notes == notes


def test_a_calls_result_sets_travel_in_more() -> None:
    second = QueryResult([b"g"], [b"s1", b"s2"], 0, 0, 0, 2)
    result = QueryResult([b"f"], [b"r"], 0, 0, 0, 10, "", (), (second,))
    [payload] = FrameDecoder().feed(encode_reply(4, result))
    msg = decode_message(payload)
    assert isinstance(msg, Reply)
    assert OPS["execute"].decode_result(msg.result) == result
    # Only the first result carries others; an old tablet's 8 fields are refused.
    nested = [[], [], 0, 0, 0, 0, "", [], [[[], [], 0, 0, 0, 0, "", [], [[]]]]]
    for wire in (nested, [[], [], 0, 0, 0, 0, "", []]):
        with pytest.raises(MySQLError) as e:
            OPS["execute"].decode_result(wire)
        assert e.value.code == ErrorCode.CR_MALFORMED_PACKET


@pytest.mark.parametrize(
    "bad",
    [["Warning", 1292], ["Warning", "1292", "x"], [None, 1, "x"], "Warning 1292 x"],
)
def test_malformed_note_is_refused(bad: object) -> None:
    wire = [[], [], 0, 0, 1, 0, "", [bad], []]
    with pytest.raises(MySQLError) as e:
        OPS["execute"].decode_result(wire)
    assert e.value.code == ErrorCode.CR_MALFORMED_PACKET


def test_fast_path_encoders_match_generic() -> None:
    assert encode_request(5, "begin", {"rsv": 3}, 10) == encode_message(
        Request(5, "begin", {"rsv": 3}, 10)
    )
    assert encode_chunk(5, None, [b"x"]) == encode_message(Chunk(5, None, [b"x"]))
    assert encode_reply(5, None) == encode_message(Reply(5, None))
    assert encode_infile_data(5, b"xy") == encode_message(InfileData(5, b"xy"))
    assert encode_infile_data(5, b"") == encode_message(InfileData(5, b""))
    error = MySQLError(1153, "too long", "08S01")
    assert encode_infile_data(5, b"", error) == encode_message(
        InfileData(5, b"", InfileError(1153, "08S01", "too long"))
    )


def test_infile_data_error_is_made_sendable() -> None:
    with pytest.raises(ValueError, match="no data"):
        encode_infile_data(5, b"x", MySQLError(1105, "x"))
    message = b"bad '\xe9' ".decode("utf-8", "surrogateescape") + "m" * 5000
    msg = decode_message(encode_infile_data(5, b"", MySQLError(1153, message, "08S01"))[4:])
    assert isinstance(msg, InfileData) and msg.error is not None
    assert msg.error.message.startswith("bad '\ufffd' m") and len(msg.error.message) == 1000
    assert msg.error.to_exception().code == 1153
    # A code or SQLSTATE the wire does not carry becomes a plain 1105.
    for error in (MySQLError(70000, "x"), MySQLError(1105, "x", "HY")):
        msg = decode_message(encode_infile_data(5, b"", error)[4:])
        assert isinstance(msg, InfileData)
        assert msg.error == InfileError(1105, "HY000", "x")


# --- framing ------------------------------------------------------------------------------


def test_decoder_reassembles_byte_by_byte_and_splits_batches() -> None:
    frames = [encode_message(Cancel(i)) for i in range(1, 6)]
    stream = b"".join(frames)
    dec = FrameDecoder()
    got: list[bytes] = []
    for i in range(len(stream)):
        got.extend(dec.feed(stream[i : i + 1]))
    assert [decode_message(p) for p in got] == [Cancel(i) for i in range(1, 6)]
    assert dec.buffered == 0
    assert [decode_message(p) for p in FrameDecoder().feed(stream)] == [
        Cancel(i) for i in range(1, 6)
    ]


def test_decoder_keeps_only_the_incomplete_tail() -> None:
    frame = encode_message(Cancel(1))
    dec = FrameDecoder()
    assert dec.feed(frame + frame[:3]) == [frame[4:]]
    assert dec.buffered == 3
    assert dec.feed(frame[3:]) == [frame[4:]]
    assert dec.buffered == 0


def test_oversized_header_is_refused_before_buffering() -> None:
    dec = FrameDecoder(max_frame_size=1024)
    with pytest.raises(FrameTooLargeError) as info:
        dec.feed(struct.pack(">I", 1025))  # only the header: nothing of the payload yet
    assert info.value.error_code == ErrorCode.NET_PACKET_TOO_LARGE
    assert "max_frame_size" in str(info.value)
    assert dec.buffered == 0


def test_frame_at_the_limit_is_accepted() -> None:
    payload = b"\xc4" + b"x" * 63  # any bytes: framing does not look inside
    assert FrameDecoder(max_frame_size=64).feed(encode_frame(payload)) == [payload]


@pytest.mark.parametrize("size", [0, 63, 2**31])
def test_max_frame_size_config_is_bounded(size: int) -> None:
    with pytest.raises(ValueError, match="max_frame_size"):
        check_max_frame_size(size)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 50))
def test_random_bytes_never_crash_and_stay_bounded(data: bytes, step: int) -> None:
    dec = FrameDecoder(max_frame_size=256)
    for i in range(0, len(data), step):
        try:
            payloads = dec.feed(data[i : i + step])
        except FrameTooLargeError:
            return
        assert dec.buffered <= 256 + 4 + step
        for payload in payloads:
            with contextlib.suppress(RemoteProtocolError):
                decode_message(payload)


# --- malformed messages ------------------------------------------------------------------


def _payload(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    ("payload", "request_id"),
    [
        (b"\xc1", 0),  # a byte msgpack never uses
        (b"\x95\x01", 0),  # truncated array
        (_payload({"kind": 1}), 0),
        (_payload([]), 0),
        (_payload(["1", 2]), 0),
        (_payload([99, 1]), 0),  # unknown kind
        (_payload([1, -1, "execute", {}, 0]), 0),
        (_payload([1, True, "execute", {}, 0]), 0),  # a bool is not an id
        (_payload([1, 0, "execute", {}, 0]), 0),  # id 0 is for connection errors
        (_payload([1, 2**63, "execute", {}, 0]), 0),
        (_payload([1, 7, "execute", [], 0]), 7),
        (_payload([1, 7, "execute", {1: 2}, 0]), 0),  # non-str map key: msgpack refuses
        (_payload([1, 7, "execute", {}, -5]), 7),
        (_payload([1, 7, "execute", {}, 10**12]), 7),
        (_payload([1, 7, "execute", {}]), 7),
        (_payload([6, 7, None, ["row"]]), 7),  # rows must be bin, not str
        (_payload([6, 7, [b"f"], None]), 7),
        (_payload([7, 7, ["not a dict"]]), 7),
        (_payload([5, 7, 99999, "HY000", "x"]), 7),
        (_payload([5, 7, 1105, "HY0", "x"]), 7),
        (_payload([3, 7, 0]), 7),  # zero credit
        (_payload([2, 7, 1]), 7),
        (_payload([0, "1", {}]), 0),
        (b"\x92\xa2\xff\xfe\x01", 0),  # invalid UTF-8 in a str
        (_payload([4, 1, msgpack.ExtType(5, b"x")]) + b"extra", 0),  # trailing bytes
        (b"\x91" * 5000, 0),  # deep nesting
        (_payload([10, 7]), 0),  # unknown kind (after INFILE_DATA)
        (_payload([8, 0, 5]), 0),  # INFILE_MORE about the connection
        (_payload([8, 7, 0]), 7),  # nothing asked
        (_payload([8, 7, -1]), 7),
        (_payload([8, 7, 2**30 + 1]), 7),  # more than any frame
        (_payload([8, 7, "5"]), 7),
        (_payload([8, 7, True]), 7),
        (_payload([8, 7]), 7),
        (_payload([8, 7, 5, 5]), 7),
        (_payload([9, 7, "text", None]), 7),  # data must be bin
        (_payload([9, 7, None, None]), 7),
        (_payload([9, 7, b"x"]), 7),
        (_payload([9, 7, b"", "an error string"]), 7),
        (_payload([9, 7, b"", [1105, "HY0", "x"]]), 7),
        (_payload([9, 7, b"", [0, "HY000", "x"]]), 7),
        (_payload([9, 7, b"", [65536, "HY000", "x"]]), 7),
        (_payload([9, 7, b"", [1105, "HY000"]]), 7),
        (_payload([9, 7, b"", [1105, "HY000", b"x"]]), 7),
        (_payload([9, 7, b"", ["1105", "HY000", "x"]]), 7),
        (_payload([9, 7, b"data", [1105, "HY000", "x"]]), 7),  # an error carries no data
    ],
)
def test_malformed_messages_raise_remote_errors(payload: bytes, request_id: int) -> None:
    with pytest.raises(MalformedMessageError) as info:
        decode_message(payload)
    assert info.value.request_id == request_id
    assert info.value.error_code == ErrorCode.MALFORMED_PACKET


# --- round trips -------------------------------------------------------------------------

ids = st.integers(1, 2**63 - 1)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary()
str_dicts = st.dictionaries(st.text(max_size=8), scalars, max_size=4)
byte_lists = st.lists(st.binary(max_size=40), max_size=8)

messages = st.one_of(
    st.builds(Hello, st.integers(0, 10), str_dicts),
    st.builds(Request, ids, st.text(max_size=16), str_dicts, st.integers(0, 86_400_000)),
    st.builds(Cancel, ids),
    st.builds(Credit, ids, st.integers(1, 1 << 20)),
    st.builds(Reply, ids, scalars),
    st.builds(
        Error,
        st.integers(0, 2**63 - 1),
        st.integers(1, 65535),
        st.text(alphabet="0123456789ABCDEFHSXY", min_size=5, max_size=5),
        st.text(),
    ),
    st.builds(Chunk, ids, st.none() | byte_lists, byte_lists),
    st.builds(Health, ids, str_dicts),
    st.builds(InfileMore, ids, st.integers(1, 2**30)),
    st.builds(InfileData, ids, st.binary(max_size=100), st.none()),
    st.builds(
        InfileData,
        ids,
        st.just(b""),
        st.builds(
            InfileError,
            st.integers(1, 65535),
            st.text(alphabet="0123456789ABCDEFHSXY", min_size=5, max_size=5),
            st.text(),
        ),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, min_size=1, max_size=5), st.integers(1, 64))
def test_messages_round_trip_through_any_split(msgs: list[Message], step: int) -> None:
    stream = b"".join(encode_message(m) for m in msgs)
    dec = FrameDecoder(DEFAULT_MAX_FRAME_SIZE)
    out: list[Message] = []
    for i in range(0, len(stream), step):
        out.extend(decode_message(p) for p in dec.feed(stream[i : i + step]))
    assert out == msgs


execute_args = st.builds(
    ExecuteArgs,
    st.text(min_size=1, max_size=40),
    st.none() | st.dictionaries(st.text(max_size=5), scalars | st.lists(scalars, max_size=3)),
    st.none() | st.text(min_size=1, max_size=10),
    st.integers(0, 2**63 - 1),
    st.integers(0, 2**63 - 1),
    st.integers(0, 10**6),
    st.none() | st.dictionaries(st.text(max_size=5), scalars, min_size=1),
    st.integers(0, 100),
    st.none() | st.lists(st.text(min_size=1, max_size=10), max_size=3),
    st.none() | st.binary(max_size=20),
    st.booleans(),
).map(lambda a: a._replace(infile_stream=False) if a.infile is not None else a)


@settings(max_examples=200, deadline=None)
@given(execute_args)
def test_execute_args_round_trip(args: ExecuteArgs) -> None:
    wire = msgpack.unpackb(msgpack.packb(args_to_wire(args)), raw=False)
    got = parse_args("execute", wire)
    # Empty containers travel as "absent".
    assert got == args._replace(
        bind_vars=args.bind_vars or None,
        options=args.options or None,
        target=args.target,
        settings=args.settings or None,
    )


def test_other_args_round_trip() -> None:
    cases: list[tuple[str, Any]] = [
        ("begin", BeginArgs("ks@primary", 3, {"workload": "oltp"})),
        ("begin", BeginArgs("ks@primary", 0, None, ["set sql_mode = ''"])),
        ("commit", TransactionArgs(5, "ks")),
        ("rollback", TransactionArgs(6)),
        ("reserve", ReserveArgs("ks", ["set @a=1"], True, 0, None)),
        ("release", ReleaseArgs(0, 9)),
        ("kill", KillArgs(0, 4, 0, True)),
    ]
    for op, args in cases:
        assert parse_args(op, args_to_wire(args)) == args


def test_infile_arguments() -> None:
    streamed = ExecuteArgs("load data local infile 'f' into table t", infile_stream=True)
    assert args_to_wire(streamed) == {"sql": streamed.sql, "infile_stream": True}
    assert parse_args("execute", args_to_wire(streamed)) == streamed
    whole = ExecuteArgs("load", infile=b"")  # an empty file is still a file
    assert args_to_wire(whole) == {"sql": "load", "infile": b""}
    assert parse_args("execute", args_to_wire(whole)) == whole
    assert parse_args("execute", {"sql": "x", "infile_stream": False}) == ExecuteArgs("x")


def test_unknown_keys_are_ignored() -> None:
    assert parse_args("execute", {"sql": "select 1", "from_the_future": [1, 2]}) == ExecuteArgs(
        "select 1"
    )


@pytest.mark.parametrize(
    ("op", "wire", "key"),
    [
        ("execute", {}, "sql"),
        ("execute", {"sql": ""}, "sql"),
        ("execute", {"sql": 5}, "sql"),
        ("execute", {"sql": "x", "bind": {"a": {"nested": 1}}}, "bind[a]"),
        ("execute", {"sql": "x", "bind": [1]}, "bind"),
        ("execute", {"sql": "x", "tx": -1}, "tx"),
        ("execute", {"sql": "x", "tx": True}, "tx"),
        ("execute", {"sql": "x", "max_rows": "9"}, "max_rows"),
        ("execute", {"sql": "x", "opts": {"a": [1]}}, "opts"),
        ("execute", {"sql": "x", "target": 1}, "target"),
        ("execute", {"sql": "x", "window": -1}, "window"),
        ("execute", {"sql": "x", "settings": ["set a=1", 2]}, "settings"),
        ("execute", {"sql": "x", "infile": "text"}, "infile"),
        ("execute", {"sql": "x", "infile_stream": 1}, "infile_stream"),
        ("execute", {"sql": "x", "infile_stream": None}, "infile_stream"),
        ("execute", {"sql": "x", "infile_stream": True, "infile": b"f"}, "infile_stream"),
        ("begin", {"settings": "set a=1"}, "settings"),
        ("commit", {}, "tx"),
        ("reserve", {"settings": "set x=1"}, "settings"),
        ("reserve", {"begin": 1}, "begin"),
        ("release", {}, "tx/rsv"),
        ("kill", {}, "req/tx/rsv"),
    ],
)
def test_bad_args_give_wrong_arguments(op: str, wire: dict[str, Any], key: str) -> None:
    with pytest.raises(MySQLError) as info:
        parse_args(op, wire)
    assert info.value.code == ErrorCode.WRONG_ARGUMENTS
    assert repr(key) in info.value.message


def test_unknown_op_is_not_supported() -> None:
    with pytest.raises(MySQLError) as info:
        op_spec("teleport")
    assert (info.value.code, info.value.sqlstate) == (1235, "42000")
    assert "upgrade" in info.value.message


@pytest.mark.parametrize(
    ("op", "wire"),
    [
        ("execute", [[b"f"], [b"r"], 0, 0, 0, 0]),
        ("execute", [["f"], [b"r"], 0, 0, 0, 0, ""]),
        ("execute", [[b"f"], [b"r"], -1, 0, 0, 0, ""]),
        ("begin", "7"),
        ("reserve", [1]),
        ("release", 0),
        ("kill", 1),
    ],
)
def test_bad_results_fail_locally(op: str, wire: Any) -> None:
    with pytest.raises(MySQLError) as info:
        OPS[op].decode_result(wire)
    assert info.value.code == ErrorCode.CR_MALFORMED_PACKET


def test_results_encode_and_decode() -> None:
    assert OPS["reserve"].decode_result(OPS["reserve"].encode_result(ReserveResult(3, 4))) == (
        ReserveResult(3, 4)
    )
    assert OPS["kill"].decode_result(OPS["kill"].encode_result(True)) is True
    with pytest.raises(TypeError):
        OPS["execute"].encode_result("rows")
    with pytest.raises(TypeError):
        OPS["begin"].encode_result(-1)


def test_sql_that_is_not_utf8_travels_as_its_bytes() -> None:
    # A latin1 client's 'é' is the byte 0xE9, kept by the MySQL side as a surrogate.
    sql = b"SELECT '\xe9'".decode("utf-8", "surrogateescape")
    setting = b"SET @@session.sql_mode = '\xe9'".decode("utf-8", "surrogateescape")
    wire = _raw_text({"sql": sql, "settings": [setting, "SET x = 1"], "target": "ks"})
    assert wire["sql"] == b"SELECT '\xe9'" and wire["target"] == "ks"
    got = parse_args("execute", msgpack.unpackb(msgpack.packb(wire), raw=False))
    assert got.sql == sql and got.settings == [setting, "SET x = 1"]
    assert parse_args("begin", {"settings": [b"SET a = '\xe9'"]}).settings == [
        b"SET a = '\xe9'".decode("utf-8", "surrogateescape")
    ]


def test_error_message_quoting_bytes_that_are_not_utf8_is_still_sent() -> None:
    message = b"near '\xe9' at line 1".decode("utf-8", "surrogateescape")
    frame = encode_error(7, MySQLError(1064, message, "42000"))
    msg = decode_message(frame[4:])
    assert isinstance(msg, Error) and msg.code == 1064
    assert msg.message == "near '\ufffd' at line 1"
