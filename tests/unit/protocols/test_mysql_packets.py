"""Packet framing: 16 MiB splitting, reassembly, sequence ids, size limits, buffering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtwist.protocols.mysql.errors import ErrorCode, PacketTooLargeError, RemoteProtocolError
from vtwist.protocols.mysql.packets import MAX_CHUNK, PacketReader, encode_packets, frame_into

BIG_LIMIT = 3 * MAX_CHUNK


def headers(data: bytes) -> list[tuple[int, int]]:
    """(length, seq) of each packet header in ``data``."""
    out = []
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 3], "little")
        out.append((n, data[pos + 3]))
        pos += 4 + n
    return out


def read_all(reader: PacketReader) -> list[tuple[int, int, bytes]]:
    out = []
    while (pkt := reader.next_packet()) is not None:
        out.append(pkt)
    return out


def test_small_packet() -> None:
    data, nxt = encode_packets(b"\x0e", 0)
    assert data == b"\x01\x00\x00\x00\x0e" and nxt == 1
    assert encode_packets(b"", 255) == (b"\x00\x00\x00\xff", 0)


@pytest.mark.parametrize(
    "size,expected",
    [
        (MAX_CHUNK - 1, [MAX_CHUNK - 1]),
        (MAX_CHUNK, [MAX_CHUNK, 0]),
        (MAX_CHUNK + 1, [MAX_CHUNK, 1]),
        (2 * MAX_CHUNK, [MAX_CHUNK, MAX_CHUNK, 0]),
    ],
    ids=["below", "exact", "above", "double"],
)
def test_16mib_boundaries(size: int, expected: list[int]) -> None:
    payload = b"\x01" + bytes(size - 2) + b"\x02"
    data, nxt = encode_packets(payload, 254)
    seqs = [(254 + i) & 0xFF for i in range(len(expected))]
    assert headers(data) == list(zip(expected, seqs, strict=True))
    assert nxt == (254 + len(expected)) & 0xFF
    reader = PacketReader(BIG_LIMIT)
    # Fed in uneven pieces, including one that splits a header.
    cut1, cut2 = MAX_CHUNK + 2, MAX_CHUNK + 6
    for piece in (data[:cut1], data[cut1:cut2], data[cut2:]):
        reader.feed(piece)
    assert read_all(reader) == [(254, seqs[-1], payload)]
    assert reader.buffered == 0


def test_frame_into_collects_parts() -> None:
    out: list[bytes] = []
    seq = frame_into(out, b"ab", 7)
    seq = frame_into(out, b"c", seq)
    assert b"".join(out) == b"\x02\x00\x00\x07ab\x01\x00\x00\x08c" and seq == 9


def test_zero_length_packet() -> None:
    reader = PacketReader(100)
    reader.feed(b"\x00\x00\x00\x03")
    assert reader.next_packet() == (3, 3, b"")


def test_byte_by_byte() -> None:
    data = encode_packets(b"hello", 1)[0] + encode_packets(b"world!", 2)[0]
    reader = PacketReader(100)
    got = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        got += read_all(reader)
    assert got == [(1, 1, b"hello"), (2, 2, b"world!")]


def test_too_large_is_refused_from_the_header_alone() -> None:
    reader = PacketReader(1000)
    reader.feed(b"\xe9\x03\x00\x00")  # declares 1001 bytes
    with pytest.raises(PacketTooLargeError) as e:
        reader.next_packet()
    assert e.value.error_code == ErrorCode.NET_PACKET_TOO_LARGE
    assert (e.value.size, e.value.limit) == (1001, 1000)


def test_split_payload_over_the_limit_is_refused_at_the_second_header() -> None:
    reader = PacketReader(MAX_CHUNK + 10)
    reader.feed(b"\xff\xff\xff\x00" + bytes(MAX_CHUNK))
    assert reader.next_packet() is None
    reader.feed(b"\x0b\x00\x00\x01")
    with pytest.raises(PacketTooLargeError) as e:
        reader.next_packet()
    assert e.value.size == MAX_CHUNK + 11


def test_buffering_is_bounded_by_the_declared_length() -> None:
    reader = PacketReader(1000)
    reader.feed(b"\xe8\x03\x00\x00" + b"x" * 10)  # 1000 declared, 10 present
    assert reader.next_packet() is None
    for _ in range(99):
        reader.feed(b"x" * 10)
        assert reader.next_packet() is None or reader.buffered == 0
    assert reader.buffered <= 1004


def test_sequence_gap_inside_a_split_payload() -> None:
    data = b"\xff\xff\xff\x05" + bytes(MAX_CHUNK) + b"\x01\x00\x00\x07x"
    reader = PacketReader(BIG_LIMIT)
    reader.feed(data)
    with pytest.raises(RemoteProtocolError):
        read_all(reader)


def test_take_buffered_after_a_packet() -> None:
    reader = PacketReader(100)
    reader.feed(encode_packets(b"ssl", 1)[0] + b"\x16\x03\x01")
    assert reader.next_packet() == (1, 1, b"ssl")
    reader.feed(b"more")
    assert reader.take_buffered() == b"\x16\x03\x01more"
    assert reader.buffered == 0 and reader.next_packet() is None


def test_negative_limit_refused() -> None:
    with pytest.raises(ValueError):
        PacketReader(-1)


@settings(max_examples=200)
@given(
    st.lists(st.binary(max_size=600), max_size=12),
    st.integers(0, 255),
    st.lists(st.integers(1, 700), min_size=1, max_size=30),
)
def test_round_trip_with_arbitrary_chunking(
    payloads: list[bytes], seq0: int, cuts: list[int]
) -> None:
    out: list[bytes] = []
    seq = seq0
    expected = []
    for p in payloads:
        expected.append((seq, seq, p))
        seq = frame_into(out, p, seq)
    data = b"".join(out)
    reader = PacketReader(1000)
    got = []
    pos = 0
    i = 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        reader.feed(data[pos : pos + n])
        pos += n
        i += 1
        got += read_all(reader)
    assert got == expected
    assert reader.buffered == 0
