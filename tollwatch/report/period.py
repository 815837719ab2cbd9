"""The span a report covers: one local calendar day, or a range of instants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Period:
    """[start, end) as aware datetimes; `day` is set when it is exactly one local day."""

    start: datetime
    end: datetime
    tz: ZoneInfo
    day: date | None = None

    @classmethod
    def for_day(cls, day: date, tz: ZoneInfo) -> Period:
        return cls(local_midnight(day, tz), local_midnight(day + timedelta(days=1), tz), tz, day)

    @classmethod
    def between(cls, since: datetime, until: datetime, tz: ZoneInfo) -> Period:
        if since.tzinfo is None:
            since = since.replace(tzinfo=tz)
        if until.tzinfo is None:
            until = until.replace(tzinfo=tz)
        if until <= since:
            raise ValueError(f"empty range: {since.isoformat()} .. {until.isoformat()}")
        first = since.astimezone(tz)
        if first == local_midnight(first.date(), tz) and until == local_midnight(
            first.date() + timedelta(days=1), tz
        ):
            return cls.for_day(first.date(), tz)
        return cls(since, until, tz, None)

    @property
    def utc_start(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def utc_end(self) -> datetime:
        return self.end.astimezone(UTC)

    @property
    def first_date(self) -> date:
        return self.start.astimezone(self.tz).date()

    @property
    def last_date(self) -> date:
        """The local date of the last instant in the period."""
        return (self.end - timedelta(microseconds=1)).astimezone(self.tz).date()

    @property
    def days(self) -> float:
        """Length in days (a DST day is still one day)."""
        if self.day is not None:
            return 1.0
        return max((self.end - self.start).total_seconds() / 86400.0, 1e-9)

    @property
    def label(self) -> str:
        """Folder name: YYYY-MM-DD for a day, else first--last local date."""
        if self.day is not None:
            return self.day.isoformat()
        first, last = self.first_date, self.last_date
        return first.isoformat() if first == last else f"{first.isoformat()}--{last.isoformat()}"

    @property
    def title(self) -> str:
        if self.day is not None:
            return f"{self.day.strftime('%A')} {self.day.isoformat()}"
        fmt = "%Y-%m-%d %H:%M"
        return (
            f"{self.start.astimezone(self.tz).strftime(fmt)} – "
            f"{self.end.astimezone(self.tz).strftime(fmt)}"
        )


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local date (a day starting in a DST gap starts at the gap's end)."""
    naive = datetime.combine(day, time(0))
    aware = naive.replace(tzinfo=tz)
    # Round-trip through UTC: a non-existent local time resolves to the instant after the gap.
    utc = aware.astimezone(ZoneInfo("UTC"))
    back = utc.astimezone(tz)
    return back if back.date() == day else aware


def previous_day(now: datetime, tz: ZoneInfo) -> date:
    """The calendar day before `now`'s local date."""
    return now.astimezone(tz).date() - timedelta(days=1)
