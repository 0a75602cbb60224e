"""Durations in configuration: ``"1.5s"``, ``"500ms"``, ``"2m"``, ``"1h30m"`` <-> float seconds.

Read through exact decimals, so whole milliseconds come back as the very float they were
written from (``"9ms"`` is ``0.009``, not ``9 * 1e-3``); that keeps example files stable.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Final

# Exact decimal factors: "9ms" must read back as exactly 0.009, not 9 * 1e-3.
_UNITS: Final = {
    u: Decimal(f)
    for u, f in {
        "h": "3600",
        "m": "60",
        "s": "1",
        "ms": "0.001",
        "us": "0.000001",
        "µs": "0.000001",
        "ns": "0.000000001",
    }.items()
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE_RE = re.compile(_NUMBER)
# Longest units first so "ms" is not read as "m" followed by garbage.
_PART_RE = re.compile(rf"({_NUMBER})(ms|us|µs|ns|h|m|s)")


def parse_duration(text: str) -> float:
    """Parse a duration into seconds: ``"1.5s"``, ``"500ms"``, ``"2m"``, ``"1h30m"``, ``"5"``.

    A bare number is seconds. Units: h, m, s, ms, us (or µs), ns; parts may be chained
    (``"1m30s"``). Negative values are refused. Raises ``ValueError`` saying what is wrong.
    """
    s = text.strip()
    if not s:
        raise ValueError("expected a duration such as '1.5s', '500ms' or '2m', got ''")
    if _BARE_RE.fullmatch(s):
        return float(s)
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _PART_RE.match(s, pos)
        if m is None:
            raise ValueError(
                f"expected a duration such as '1.5s', '500ms' or '2m' "
                f"(units h, m, s, ms, us, ns), got {text!r}"
            )
        total += Decimal(m[1]) * _UNITS[m[2]]
        pos = m.end()
    return float(total)


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest readable duration ``parse_duration`` reads back.

    ``0.5 -> "500ms"``, ``1.5 -> "1.5s"``, ``90 -> "1m30s"``, ``5400 -> "1h30m"``.
    """
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"cannot format duration {seconds!r}")
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    if ms == 0 or not math.isclose(ms / 1000, seconds, rel_tol=1e-12, abs_tol=0.0):
        # Finer than a millisecond: plain decimal seconds, never an exponent.
        text = format(Decimal(repr(seconds)), "f")
        return (text.rstrip("0").rstrip(".") if "." in text else text) + "s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if rest:
        if out or rest >= 1000:
            secs, frac = divmod(rest, 1000)
            out += f"{secs}.{frac:03d}".rstrip("0").rstrip(".") + "s"
        else:
            out += f"{rest}ms"
    return out
