"""The bounds-checked Reader and the wire writers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtwist.protocols.mysql.errors import ErrorCode, RemoteProtocolError
from vtwist.protocols.mysql.wire import (
    Reader,
    int1,
    int2,
    int3,
    int4,
    int8,
    lenenc_int,
    lenenc_int_size,
    lenenc_str,
    nul_str,
)

LENENC_GOLDENS = [
    (0, b"\x00"),
    (250, b"\xfa"),
    (251, b"\xfc\xfb\x00"),
    (0xFFFF, b"\xfc\xff\xff"),
    (0x10000, b"\xfd\x00\x00\x01"),
    (0xFFFFFF, b"\xfd\xff\xff\xff"),
    (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
    (2**64 - 1, b"\xfe" + b"\xff" * 8),
]


@pytest.mark.parametrize("n,data", LENENC_GOLDENS)
def test_lenenc_int_goldens(n: int, data: bytes) -> None:
    assert lenenc_int(n) == data
    assert lenenc_int_size(n) == len(data)
    r = Reader(data)
    assert r.lenenc_int() == n and r.at_end()


def test_fixed_ints() -> None:
    data = int1(0xAB) + int2(0x1234) + int3(0x56789A) + int4(0xDEADBEEF) + int8(2**63 + 5)
    assert data[:3] == b"\xab\x34\x12"
    r = Reader(data)
    assert [r.int1(), r.int2(), r.int3(), r.int4(), r.int8()] == [
        0xAB, 0x1234, 0x56789A, 0xDEADBEEF, 2**63 + 5,
    ]  # fmt: skip
    assert r.remaining == 0


def test_strings() -> None:
    data = lenenc_str(b"abc") + nul_str(b"def") + b"\x03xyzrest"
    r = Reader(data)
    assert r.lenenc_str() == b"abc"
    assert r.nul_str() == b"def"
    assert r.peek() == 3
    assert r.fixed(4) == b"\x03xyz"
    assert r.rest() == b"rest"
    assert r.rest() == b""
    assert lenenc_str(b"x" * 300)[:3] == b"\xfc\x2c\x01"
    assert Reader(b"abc").nul_str_or_rest() == b"abc"
    assert Reader(b"ab\0c").nul_str_or_rest() == b"ab"


@pytest.mark.parametrize(
    "read",
    [
        lambda r: r.int1(),
        lambda r: r.int2(),
        lambda r: r.int3(),
        lambda r: r.int4(),
        lambda r: r.int8(),
        lambda r: r.lenenc_int(),
        lambda r: r.lenenc_str(),
        lambda r: r.fixed(9),
        lambda r: r.nul_str(),
    ],
)
def test_overruns_are_malformed_packet_errors(read: object) -> None:
    for data in (b"", b"\xfe\x01", b"\x05ab"):
        r = Reader(data, 0)
        try:
            while True:
                read(r)  # type: ignore[operator]
        except RemoteProtocolError as e:
            assert e.error_code == ErrorCode.MALFORMED_PACKET
        else:  # pragma: no cover
            raise AssertionError("no error")


def test_peek_at_end() -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(b"").peek()


@pytest.mark.parametrize("marker", [b"\xfb", b"\xff"])
def test_null_and_ff_are_not_integers(marker: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(marker).lenenc_int()


def test_memoryview_and_bytearray_input() -> None:
    data = b"\x00\x03abc" + b"nul\0" + b"tail"
    for buf in (memoryview(data), bytearray(data)):
        r = Reader(buf)
        assert r.int1() == 0
        assert r.lenenc_str() == b"abc"
        assert r.nul_str() == b"nul"
        got = r.rest()
        assert got == b"tail" and type(got) is bytes


@given(st.integers(0, 2**64 - 1))
def test_lenenc_int_round_trip(n: int) -> None:
    assert Reader(lenenc_int(n)).lenenc_int() == n


@given(st.lists(st.binary(max_size=70000), max_size=4))
def test_lenenc_str_round_trip(items: list[bytes]) -> None:
    r = Reader(b"".join(lenenc_str(b) for b in items))
    assert [r.lenenc_str() for _ in items] == items
    assert r.at_end()
