"""MySQL temporal values that Python's ``datetime`` cannot hold, and their wire forms.

MySQL allows zero dates (``0000-00-00``), partial zeros (``2024-00-15``), year 0 and
negative or >24h ``TIME`` values (``-838:59:59`` .. ``838:59:59``); Python's ``date``,
``datetime`` and ``timedelta`` cannot carry all of these, so the codecs in ``values`` use
the exact types below. Each one has ``to_python()`` (``None`` when Python cannot represent
it), ``from_python()``, ``parse()`` of MySQL's text form, and ``__str__``/``format()``
producing that text form.

The binary-protocol packing helpers (``pack_*``/``unpack_*``) live here too because they
are pure field layout. Sans-IO: nothing here imports Twisted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

__all__ = [
    "MAX_TIME_HOURS",
    "DateTimeValue",
    "DateValue",
    "TimeValue",
    "pack_date",
    "pack_datetime",
    "pack_time",
    "unpack_datetime_fields",
    "unpack_time",
]

MAX_TIME_HOURS = 838  # TIME's range is -838:59:59.000000 .. 838:59:59.000000

_DATE_RE = re.compile(rb"(\d{4})-(\d{2})-(\d{2})")
_DATETIME_RE = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?)?"
)
_TIME_RE = re.compile(rb"(-?)(\d{2,3}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?")


def _ascii(text: bytes | str) -> bytes:
    return text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)


def _fraction(digits: bytes | None) -> int:
    """Microseconds from 1..6 fraction digits (``b"5"`` is 500000)."""
    if not digits:
        return 0
    return int(digits) * _SCALE[len(digits)]


_SCALE = (1_000_000, 100_000, 10_000, 1_000, 100, 10, 1)


def _format_fraction(microsecond: int, decimals: int | None) -> str:
    """``.ffffff`` cut to ``decimals`` digits; with None, six digits only if nonzero."""
    if decimals is None:
        return f".{microsecond:06d}" if microsecond else ""
    if not 0 <= decimals <= 6:
        raise ValueError(f"decimals must be 0..6, not {decimals}")
    if decimals == 0:
        return ""
    return "." + f"{microsecond:06d}"[:decimals]


def _check(name: str, value: int, high: int) -> None:
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be 0..{high}, not {value}")


@dataclass(frozen=True, slots=True, order=True)
class DateValue:
    """A MySQL ``DATE``; zero and partly-zero dates (``0000-00-00``, ``2024-02-00``) allowed."""

    year: int
    month: int
    day: int

    def __post_init__(self) -> None:
        _check("year", self.year, 9999)
        _check("month", self.month, 12)
        _check("day", self.day, 31)

    @property
    def is_zero(self) -> bool:
        """True for ``0000-00-00``, which the binary protocol sends with length 0."""
        return not (self.year or self.month or self.day)

    def to_python(self) -> date | None:
        """The ``datetime.date``, or None when Python has none (zero parts, year 0, Feb 30)."""
        try:
            return date(self.year, self.month, self.day)
        except ValueError:
            return None

    @classmethod
    def from_python(cls, value: date) -> DateValue:
        """From a ``date`` (a ``datetime``'s time of day is dropped)."""
        return cls(value.year, value.month, value.day)

    @classmethod
    def parse(cls, text: bytes | str) -> DateValue:
        """Parse MySQL's text form ``YYYY-MM-DD``; ValueError if it is not that."""
        m = _DATE_RE.fullmatch(_ascii(text))
        if m is None:
            raise ValueError(f"not a MySQL DATE: {text!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


@dataclass(frozen=True, slots=True, order=True)
class DateTimeValue:
    """A MySQL ``DATETIME``/``TIMESTAMP`` with microseconds; zero dates allowed."""

    year: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0
    microsecond: int = 0

    def __post_init__(self) -> None:
        _check("year", self.year, 9999)
        _check("month", self.month, 12)
        _check("day", self.day, 31)
        _check("hour", self.hour, 23)
        _check("minute", self.minute, 59)
        _check("second", self.second, 59)
        _check("microsecond", self.microsecond, 999_999)

    @property
    def is_zero(self) -> bool:
        """True for ``0000-00-00 00:00:00`` (binary length 0)."""
        return not (
            self.year
            or self.month
            or self.day
            or self.hour
            or self.minute
            or self.second
            or self.microsecond
        )

    def date_part(self) -> DateValue:
        """The date part."""
        return DateValue(self.year, self.month, self.day)

    def to_python(self) -> datetime | None:
        """A naive ``datetime``, or None when Python has none (zero date parts, year 0...)."""
        try:
            return datetime(
                self.year,
                self.month,
                self.day,
                self.hour,
                self.minute,
                self.second,
                self.microsecond,
            )
        except ValueError:
            return None

    @classmethod
    def from_python(cls, value: date) -> DateTimeValue:
        """From a ``datetime`` (tzinfo ignored: wall-clock fields) or a ``date`` (midnight)."""
        if isinstance(value, datetime):
            return cls(
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        return cls(value.year, value.month, value.day)

    @classmethod
    def parse(cls, text: bytes | str) -> DateTimeValue:
        """Parse ``YYYY-MM-DD[ HH:MM:SS[.f..]]`` (1..6 fraction digits); else ValueError."""
        m = _DATETIME_RE.fullmatch(_ascii(text))
        if m is None:
            raise ValueError(f"not a MySQL DATETIME: {text!r}")
        y, mo, d, h, mi, s, f = m.groups()
        if h is None:
            return cls(int(y), int(mo), int(d))
        return cls(int(y), int(mo), int(d), int(h), int(mi), int(s), _fraction(f))

    def format(self, decimals: int | None = None) -> str:
        """Text form; the fraction has ``decimals`` digits (None: six digits, only if nonzero)."""
        return (
            f"{self.year:04d}-{self.month:02d}-{self.day:02d} "
            f"{self.hour:02d}:{self.minute:02d}:{self.second:02d}"
            + _format_fraction(self.microsecond, decimals)
        )

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, slots=True)
class TimeValue:
    """A MySQL ``TIME``: a signed duration, -838:59:59 .. 838:59:59 (hours may exceed 24).

    A negative zero is stored as positive. Values order by signed duration.
    """

    negative: bool
    hours: int
    minutes: int = 0
    seconds: int = 0
    microseconds: int = 0

    def __post_init__(self) -> None:
        _check("hours", self.hours, MAX_TIME_HOURS)
        _check("minutes", self.minutes, 59)
        _check("seconds", self.seconds, 59)
        _check("microseconds", self.microseconds, 999_999)
        if (
            self.hours == MAX_TIME_HOURS
            and self.minutes == self.seconds == 59
            and self.microseconds
        ):
            raise ValueError("TIME is limited to 838:59:59.000000")
        if self.negative and not (self.hours or self.minutes or self.seconds or self.microseconds):
            object.__setattr__(self, "negative", False)
        elif not isinstance(self.negative, bool):
            object.__setattr__(self, "negative", bool(self.negative))

    @classmethod
    def clipped(
        cls, negative: bool, hours: int, minutes: int, seconds: int, microseconds: int = 0
    ) -> TimeValue:
        """Like the constructor, but an out-of-range duration becomes ±838:59:59 (as mysqld)."""
        if hours > MAX_TIME_HOURS or (
            hours == MAX_TIME_HOURS and (minutes, seconds, microseconds) > (59, 59, 0)
        ):
            _check("minutes", minutes, 59)
            _check("seconds", seconds, 59)
            _check("microseconds", microseconds, 999_999)
            return cls(negative, MAX_TIME_HOURS, 59, 59, 0)
        return cls(negative, hours, minutes, seconds, microseconds)

    @property
    def is_zero(self) -> bool:
        """True for ``00:00:00`` (binary length 0)."""
        return not (self.hours or self.minutes or self.seconds or self.microseconds)

    def total_microseconds(self) -> int:
        """The signed duration in microseconds."""
        total = ((self.hours * 60 + self.minutes) * 60 + self.seconds) * 1_000_000
        total += self.microseconds
        return -total if self.negative else total

    def to_python(self) -> timedelta:
        """The ``timedelta`` (every TIME fits)."""
        return timedelta(microseconds=self.total_microseconds())

    @classmethod
    def from_python(cls, value: timedelta | time) -> TimeValue:
        """From a ``timedelta`` or a ``time`` of day; ValueError outside ±838:59:59."""
        if isinstance(value, time):
            return cls(False, value.hour, value.minute, value.second, value.microsecond)
        return cls.from_microseconds(value // timedelta(microseconds=1))

    @classmethod
    def from_microseconds(cls, total: int) -> TimeValue:
        """From a signed duration in microseconds; ValueError outside ±838:59:59."""
        negative = total < 0
        rest, us = divmod(abs(total), 1_000_000)
        rest, s = divmod(rest, 60)
        h, m = divmod(rest, 60)
        if h > MAX_TIME_HOURS:
            raise ValueError("TIME is limited to -838:59:59 .. 838:59:59")
        return cls(negative, h, m, s, us)

    @classmethod
    def parse(cls, text: bytes | str) -> TimeValue:
        """Parse MySQL's text form ``[-]HH[H]:MM:SS[.f..]``; else ValueError."""
        m = _TIME_RE.fullmatch(_ascii(text))
        if m is None:
            raise ValueError(f"not a MySQL TIME: {text!r}")
        sign, h, mi, s, f = m.groups()
        return cls(sign == b"-", int(h), int(mi), int(s), _fraction(f))

    def format(self, decimals: int | None = None) -> str:
        """Text form; the fraction has ``decimals`` digits (None: six digits, only if nonzero)."""
        sign = "-" if self.negative else ""
        return f"{sign}{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}" + _format_fraction(
            self.microseconds, decimals
        )

    def __str__(self) -> str:
        return self.format()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, TimeValue):
            return NotImplemented
        return self.total_microseconds() < other.total_microseconds()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, TimeValue):
            return NotImplemented
        return self.total_microseconds() <= other.total_microseconds()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, TimeValue):
            return NotImplemented
        return self.total_microseconds() > other.total_microseconds()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, TimeValue):
            return NotImplemented
        return self.total_microseconds() >= other.total_microseconds()


# -- binary protocol layout ---------------------------------------------------------------
# DATE/DATETIME/TIMESTAMP: length byte (0, 4, 7 or 11), year(2) month day [hour minute
# second [microsecond(4)]]. The shortest length that holds the value is used; a zero date
# MUST be length 0 (clients reject a 4-byte 0000-00-00; Vitess #20348).
# TIME: length byte (0, 8 or 12), negative(1) days(4) hour minute second [microsecond(4)].


def pack_datetime(v: DateTimeValue) -> bytes:
    """Length byte + fields of a DATETIME/TIMESTAMP, shortest form."""
    head = bytes((v.year & 0xFF, v.year >> 8, v.month, v.day))
    if v.microsecond:
        tail = bytes((v.hour, v.minute, v.second)) + v.microsecond.to_bytes(4, "little")
        return b"\x0b" + head + tail
    if v.hour or v.minute or v.second:
        return b"\x07" + head + bytes((v.hour, v.minute, v.second))
    if v.year or v.month or v.day:
        return b"\x04" + head
    return b"\x00"


def pack_date(v: DateValue) -> bytes:
    """Length byte + fields of a DATE (length 4, or 0 for the zero date)."""
    if v.year or v.month or v.day:
        return bytes((4, v.year & 0xFF, v.year >> 8, v.month, v.day))
    return b"\x00"


def unpack_datetime_fields(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """The 7 fields from a 0/4/7/11-byte body (no length byte); ValueError on other lengths."""
    n = len(data)
    if n == 0:
        return 0, 0, 0, 0, 0, 0, 0
    if n == 4:
        return data[0] | data[1] << 8, data[2], data[3], 0, 0, 0, 0
    if n == 7:
        return data[0] | data[1] << 8, data[2], data[3], data[4], data[5], data[6], 0
    if n == 11:
        us = int.from_bytes(data[7:11], "little")
        return data[0] | data[1] << 8, data[2], data[3], data[4], data[5], data[6], us
    raise ValueError(f"DATE/DATETIME value of length {n} (must be 0, 4, 7 or 11)")


def pack_time(v: TimeValue) -> bytes:
    """Length byte + fields of a TIME, shortest form (hours split into days and hours)."""
    if v.is_zero:
        return b"\x00"
    days, hour = divmod(v.hours, 24)
    body = bytes((1 if v.negative else 0,)) + days.to_bytes(4, "little")
    body += bytes((hour, v.minutes, v.seconds))
    if v.microseconds:
        return b"\x0c" + body + v.microseconds.to_bytes(4, "little")
    return b"\x08" + body


def unpack_time(data: bytes) -> TimeValue:
    """A TIME from a 0/8/12-byte body (no length byte), clipped to ±838:59:59 like mysqld.

    ValueError on other lengths or impossible minutes/seconds/microseconds.
    """
    n = len(data)
    if n == 0:
        return _ZERO_TIME
    if n != 8 and n != 12:
        raise ValueError(f"TIME value of length {n} (must be 0, 8 or 12)")
    hours = int.from_bytes(data[1:5], "little") * 24 + data[5]
    us = int.from_bytes(data[8:12], "little") if n == 12 else 0
    return TimeValue.clipped(data[0] != 0, hours, data[6], data[7], us)


_ZERO_TIME = TimeValue(False, 0)
