"""MariaDB GTID positions: parsing, containment, ordering and the errant check."""

from __future__ import annotations

import pytest

from vtwist.orc.gtid import Gtid, advance_key, contains, errant, format_position, parse_position


def test_parse_and_format_round_trip() -> None:
    pos = parse_position("1-102-3, 0-101-5\n")
    assert pos == {0: Gtid(0, 101, 5), 1: Gtid(1, 102, 3)}
    assert format_position(pos) == "0-101-5,1-102-3"
    assert parse_position("") == {}


@pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2-3", "0--1-2"])
def test_parse_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not a MariaDB GTID"):
        parse_position(bad)


def test_contains_and_advance() -> None:
    old = parse_position("0-100-25")
    newer = parse_position("0-101-26")
    assert contains(newer, old) and not contains(old, newer)
    assert contains(old, {})
    assert not contains({}, old)
    assert advance_key(newer) > advance_key(old)
    assert advance_key(parse_position("0-1-5,1-1-5")) > advance_key(parse_position("0-1-9"))


def test_errant_is_an_own_write_the_others_do_not_have() -> None:
    others = [parse_position("0-100-25")]
    # Replica 102 wrote 0-102-26 locally while replicating from 100.
    assert errant(parse_position("0-102-26"), 102, others) == [Gtid(0, 102, 26)]
    # Its last transaction came from the primary: nothing errant.
    assert errant(parse_position("0-100-25"), 102, others) == []
    # The same own transaction on another server (it was primary before): not errant.
    assert errant(parse_position("0-102-26"), 102, [parse_position("0-102-26")]) == []
    # Others went past it (history they replicated from it): not errant.
    assert errant(parse_position("0-102-20"), 102, [parse_position("0-100-25")]) == []
