"""Business hours, weekends, public holidays and closure days, in the site's time zone."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import holidays

from tollwatch.config.schema import Settings
from tollwatch.config.types import TimeRange

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class BusinessCalendar:
    def __init__(self, settings: Settings) -> None:
        self.tz = ZoneInfo(settings.site.timezone)
        h = settings.hours
        self.week: list[list[TimeRange]] = [h.for_weekday(i) for i in range(7)]
        self.closures = set(h.closures)
        self._cache: dict[int, str | None] = {}  # by epoch minute: hours are minute-grained
        self._last: tuple[datetime, datetime] | None = None  # (when, local): one-entry memo
        self._holidays: holidays.HolidayBase | None = None
        self._holiday_names: dict[date, str | None] = {}
        if h.holidays_country:
            try:
                self._holidays = holidays.country_holidays(
                    h.holidays_country, subdiv=h.holidays_subdivision
                )
            except NotImplementedError:
                self._holidays = None

    def holiday(self, day: date) -> str | None:
        if self._holidays is None:
            return None
        try:
            return self._holiday_names[day]
        except KeyError:
            pass
        name = self._holidays.get(day)
        found = self._holiday_names[day] = str(name) if name else None
        return found

    def local(self, when: datetime) -> datetime:
        last = self._last
        if last is not None and last[0] is when:  # the same event time asked again
            return last[1]
        local = when.astimezone(self.tz)
        self._last = (when, local)
        return local

    def closed_reason(self, when: datetime) -> str | None:
        """Why the office is closed at `when`, in words, or None during business hours."""
        if when.tzinfo is None:
            return self._closed_reason(when.replace(second=0, microsecond=0))
        minute = int(when.timestamp()) // 60
        try:
            return self._cache[minute]
        except KeyError:
            pass
        reason = self._closed_reason(when.replace(second=0, microsecond=0))
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[minute] = reason
        return reason

    def _closed_reason(self, when: datetime) -> str | None:
        local = self.local(when)
        day = local.date()
        stamp = f"{local.hour:02d}:{local.minute:02d}"
        weekday = _DAYS[local.weekday()]
        if day in self.closures:
            return f"{weekday} {day.isoformat()} {stamp}, a closure day"
        name = self.holiday(day)
        if name:
            return f"{weekday} {day.isoformat()} {stamp}, public holiday ({name})"
        ranges = self.week[local.weekday()]
        t = local.time()
        if any(r.contains(t) for r in ranges):
            return None
        # an overnight range listed under the day before ("19:00-08:00") runs into today
        if any(r.spills(t) for r in self.week[(local.weekday() - 1) % 7]):
            return None
        if not ranges:
            return f"{weekday} {stamp}, office closed"
        hours = ", ".join(str(r) for r in ranges)
        return f"{weekday} {stamp}, outside business hours ({hours})"
