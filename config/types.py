"""Small value types shared by the settings schema: durations, prefixes, time ranges."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, PlainValidator

_DURATION_PART = re.compile(r"(\d+)\s*([smhdw])")
_DURATION_FULL = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# The longest duration a setting may hold: "99999999d" is a valid timedelta, but a window or a
# period that long put before a call's time leaves the dates Python can hold (a crash on the
# first call), and no setting here means anything beyond a few years.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: Any) -> timedelta:
    """Parse "90s", "10m", "1h30m", "7d" (or a number of seconds) into a timedelta, at most
    MAX_DURATION (ten years)."""
    seconds: float
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or (isinstance(value, float) and value != value):  # NaN
        raise ValueError(f"{value!r} is not a duration like \"10m\"")
    elif isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{value!r} is not a duration like \"10m\" (negative)")
        seconds = value
    elif isinstance(value, str) and _DURATION_FULL.match(value):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"{_show(value)} is not a duration like \"10m\"")
    if not 0 <= seconds <= MAX_DURATION.total_seconds():  # inf and 1e20 too
        raise ValueError(f"{_show(value)} is not a duration from 0s to 3650d (ten years)")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value + '"'
    return repr(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


def at_least(minimum: timedelta) -> AfterValidator:
    """For a Duration that is an interval of the daemon's (a poll, a status write): 0s would
    make it a loop that never waits."""

    def check(value: timedelta) -> timedelta:
        if value < minimum:
            raise ValueError(f"{format_duration(value)} is shorter than "
                             f"{format_duration(minimum)}")
        return value

    return AfterValidator(check)


Interval = Annotated[Duration, at_least(timedelta(seconds=1))]


def parse_prefix(value: Any) -> str:
    """Normalize a destination prefix: "232", "1-876", "+370 5200" -> digits of the E.164 prefix."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a prefix like \"232\" or \"1-876\"")
    digits = re.sub(r"[\s\-+().]", "", value)
    if not digits.isdigit() or not 1 <= len(digits) <= 15:
        raise ValueError(f"{_show(value)} is not a prefix like \"232\" or \"1-876\"")
    return digits


Prefix = Annotated[str, BeforeValidator(parse_prefix)]


def _checked_prefix_text(value: Any) -> str:
    parse_prefix(value)
    return str(value).strip()


# A prefix kept as the user wrote it ("1-876"), for showing; parse_prefix gives its digits.
PrefixText = Annotated[str, BeforeValidator(_checked_prefix_text)]


def parse_dial_string(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not re.fullmatch(r"[0-9*#]{1,12}", value):
        raise ValueError(f"{_show(value)} is not a string of dial digits like \"0\" or \"011\"")
    return value


DialString = Annotated[str, BeforeValidator(parse_dial_string)]


class TimeRange:
    """A daily time range such as 09:00-18:00 (end exclusive; 24:00 allowed as end).

    An overnight range such as 19:00-08:00 (end before start) runs past midnight: on the day it
    is listed under it covers 19:00-24:00, and 00:00-08:00 of the next day (`spills`)."""

    __slots__ = ("end", "start")

    def __init__(self, start: time, end: time | None) -> None:
        self.start = start
        self.end = end  # None means midnight at the end of the day

    @property
    def overnight(self) -> bool:
        return self.end is not None and self.end <= self.start

    def contains(self, t: time) -> bool:
        """Whether `t` on the day the range is listed under is inside it."""
        if t < self.start:
            return False
        return self.end is None or self.overnight or t < self.end

    def spills(self, t: time) -> bool:
        """Whether `t` on the next day is inside this (overnight) range."""
        return self.overnight and self.end is not None and t < self.end

    def __str__(self) -> str:
        end = "24:00" if self.end is None else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"

    def __repr__(self) -> str:
        return f"TimeRange({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TimeRange) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse_time_range(value: Any) -> TimeRange:
    """"09:00-18:00", "00:00-24:00", or overnight "19:00-08:00" (into the next day)."""
    if isinstance(value, TimeRange):
        return value
    m = _RANGE.match(value) if isinstance(value, str) else None
    if m:
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 < 24 and m1 < 60 and m2 < 60 and (h2 < 24 or (h2 == 24 and m2 == 0)):
            start = time(h1, m1)
            end = None if h2 == 24 else time(h2, m2)
            if end != start:
                return TimeRange(start, end)
    raise ValueError(f"{_show(value)} is not a time range like \"09:00-18:00\" "
                     "(or \"19:00-08:00\" overnight)")


HoursRange = Annotated[
    TimeRange,
    PlainValidator(parse_time_range),
    PlainSerializer(str, return_type=str),
]


def https_or_local(url: str) -> bool:
    """Whether a secret may be sent to `url`: https://, or http:// to this host only (a test
    stand-in); anything else would carry it in clear text, or is no URL at all."""
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return bool(parts.hostname) and (parts.scheme == "https" or (parts.scheme == "http" and local))


def one_line(text: str) -> bool:
    """No control character (a line end above all): what goes into an AMI header or an HTTP
    request as written, where one would end that header and start another."""
    return not any(c < " " or c == "\x7f" for c in text)

