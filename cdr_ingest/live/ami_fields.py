"""What the AMI call tracker reads out of event fields: event times (Timestamp, EventTV),
the remote address of a security event, a CoreShowChannel duration, a Dial's lastdata."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

from tollwatch.cdr_ingest._types import in_years

_EVENT_TV = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r"([+-])([0-9]{2})([0-5][0-9])\Z"
)

def lastdata_of(dest_channel: str, dial_string: str) -> str:
    """What Master.csv writes as lastdata for a Dial: TECH/ + the AMI DialString."""
    if not dial_string:
        return ""
    return f"{dest_channel.split('/', 1)[0]}/{dial_string}"


def remote_ip(address: str) -> str:
    """IPV4/UDP/127.0.0.1/5061 -> 127.0.0.1; IPV6/UDP/[::1]/5061 -> ::1."""
    parts = address.split("/", 2)
    if len(parts) < 3:
        return ""
    host = parts[2].rpartition("/")[0] or parts[2]
    return host.strip("[]")


# How far a security event's EventTV may be from its arrival and still be taken (see feed).
EVENT_TV_SKEW = timedelta(seconds=2)


def event_time(msg: Mapping[str, str], at: datetime, skew: timedelta | None = None) -> datetime:
    """Timestamp (timestampevents=yes) or EventTV when present and valid, else `at`; with
    `skew`, an EventTV further than that from `at` is not taken either."""
    stamp = msg.get("Timestamp", "")
    if stamp:
        try:
            when = datetime.fromtimestamp(float(stamp), UTC)
        except (ValueError, OverflowError, OSError):
            pass
        else:
            if in_years(when.year):  # the years a CDR row's times may hold
                return when
    tv = event_tv(msg, at)
    if skew is not None and abs(tv - at) > skew:
        return at
    return tv


def event_tv(msg: Mapping[str, str], at: datetime) -> datetime:
    """A security event's EventTV (the PBX's clock) when present and valid, else `at`."""
    tv = msg.get("EventTV", "")
    if tv:
        m = _EVENT_TV.match(tv)  # the usual shape, without strptime (~10 µs a call)
        if m is not None:
            y, mo, d, h, mi, sec, frac, sign, oh, om = m.groups()
            try:
                offset = timedelta(hours=int(oh), minutes=int(om))
                zone = timezone(-offset if sign == "-" else offset)
                micro = int(frac.ljust(6, "0")) if frac else 0
                local = datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec), micro, zone)
                when = local.astimezone(UTC)
                return when if in_years(when.year) else at
            except (ValueError, OverflowError):
                pass  # strptime below says the same (or not: then it decides)
        for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
            try:
                when = datetime.strptime(tv, fmt).astimezone(UTC)
            except (ValueError, OverflowError):  # 0001-01-01T00:00:00+0900: before year 1
                continue
            return when if in_years(when.year) else at
    return at


def channel_duration(text: str) -> timedelta:
    """CoreShowChannel Duration HH:MM:SS (hours may exceed 24)."""
    try:
        h, m, s = (int(p) for p in text.split(":"))
    except ValueError:
        return timedelta(0)
    return timedelta(hours=h, minutes=m, seconds=s)
