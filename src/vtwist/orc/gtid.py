"""MariaDB GTID positions: parsing, ordering, and the errant-transaction check.

A MariaDB position is a comma-separated list of ``domain-server-seq``: per replication
domain, the last transaction applied. Sequence numbers grow within a domain whatever server
wrote them, so "more advanced" compares seqs domain by domain. A replica's own server id as
the author of its last transaction in a domain means it wrote locally while replicating
(an errant transaction) unless the primary's history has that same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gtid:
    """One ``domain-server-seq``."""

    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


Position = dict[int, Gtid]


def parse_position(text: str) -> Position:
    """``"0-101-5,1-102-3"`` -> {0: Gtid(0, 101, 5), 1: Gtid(1, 102, 3)}; ValueError if bad."""
    out: Position = {}
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split("-")
        if len(pieces) != 3 or not all(p.isdigit() for p in pieces):
            raise ValueError(f"not a MariaDB GTID: {part!r}")
        gtid = Gtid(int(pieces[0]), int(pieces[1]), int(pieces[2]))
        out[gtid.domain] = gtid
    return out


def format_position(position: Position) -> str:
    """The text form of ``position``, domains in order."""
    return ",".join(str(position[d]) for d in sorted(position))


def contains(have: Position, want: Position) -> bool:
    """True if ``have`` has applied everything of ``want`` (every domain's seq at least)."""
    return all(d in have and have[d].seq >= g.seq for d, g in want.items())


def advance_key(position: Position) -> tuple[int, ...]:
    """A sort key: more transactions in every domain sorts higher (sum, then per domain)."""
    seqs = [position[d].seq for d in sorted(position)]
    return (sum(seqs), *seqs)


def errant(position: Position, own_server_id: int, others: list[Position]) -> list[Gtid]:
    """The transactions of ``position`` that look written locally: authored by
    ``own_server_id`` and not present (same domain, seq and server) in any of ``others``."""
    found = []
    for gtid in position.values():
        if gtid.server != own_server_id:
            continue
        if any(o.get(gtid.domain) == gtid for o in others):
            continue
        if any(o.get(gtid.domain) is not None and o[gtid.domain].seq > gtid.seq for o in others):
            # Others went past it: it is history they replicated (from when this server was
            # a primary), not a transaction only this one has.
            continue
        found.append(gtid)
    return found
