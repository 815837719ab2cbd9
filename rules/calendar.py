"""Business hours, weekends, public holidays and closure days, in the site's time zone."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import holidays

from tollwatch.config.schema import Settings
from tollwatch.config.types import TimeRange
from tollwatch.rules.model import TWO_DIGITS

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def holidays_in_english(country: str, subdiv: str | None = None) -> holidays.HolidayBase:
    """The country's public holidays, named in English whatever the process's locale.

    Without a `language` the holidays package names them in the language of the environment
    (LANGUAGE, LC_ALL, LC_MESSAGES, LANG), so the same calls gave "public holiday (Culture
    Day)" in one process and "(文化の日)" in another: gettext reads LANG=C.UTF-8 as en_US
    under Python 3.11 and as C (the names' original language) from 3.12, and a daemon under
    systemd sees yet another locale. Reasons are English: the country's own English when it
    is one (en_GB, en_IN), else en_US where the package has it, else the original names."""
    found = holidays.country_holidays(country, subdiv=subdiv)
    kind = type(found)
    default: str | None = getattr(kind, "default_language", None)
    supported: tuple[str, ...] = tuple(getattr(kind, "supported_languages", ()))
    language = default
    if not (default or "").startswith("en") and "en_US" in supported:
        language = "en_US"
    return holidays.country_holidays(country, subdiv=subdiv, language=language)


class BusinessCalendar:
    def __init__(self, settings: Settings) -> None:
        self.tz = ZoneInfo(settings.site.timezone)
        h = settings.hours
        self.week: list[list[TimeRange]] = [h.for_weekday(i) for i in range(7)]
        self.closures = set(h.closures)
        self._last: tuple[datetime, datetime] | None = None  # (when, local): one-entry memo
        self._holidays: holidays.HolidayBase | None = None
        self._holiday_names: dict[date, str | None] = {}
        self._special: dict[date, tuple[str, str] | None] = {}  # closures, holidays: words
        self._plans: list[tuple[bytes, str, str] | None] = [None] * 7  # per weekday (_plan)
        if h.holidays_country:
            try:
                self._holidays = holidays_in_english(h.holidays_country, h.holidays_subdivision)
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
        """Why the office is closed at `when`, in words, or None during business hours.

        Hours are minute-grained: the answer is the one for the start of `when`'s minute."""
        local = self.local(when)  # the conversion the baseline then reuses (one-entry memo)
        if local.second != when.second:  # zone offsets apart by seconds (historic dates)
            return self._closed_reason_of(self.local(when.replace(second=0, microsecond=0)))
        day = local.date()
        two = TWO_DIGITS
        try:
            special = self._special[day]
        except KeyError:
            special = self._special_day(day)
        if special is not None:
            return f"{special[0]}{two[local.hour]}:{two[local.minute]}{special[1]}"
        wd = local.weekday()
        plan = self._plans[wd]
        if plan is None:
            plan = self._plan(wd)
        if plan[0][local.hour * 60 + local.minute]:
            return None
        return f"{plan[1]}{two[local.hour]}:{two[local.minute]}{plan[2]}"

    def _special_day(self, day: date) -> tuple[str, str] | None:
        """A closure day's or holiday's reason (the words before and after the time), else
        None."""
        head = f"{_DAYS[day.weekday()]} {day.isoformat()} "
        found: tuple[str, str] | None = None
        if day in self.closures:
            found = (head, ", a closure day")
        else:
            name = self.holiday(day)
            if name:
                found = (head, f", public holiday ({name})")
        if len(self._special) > 10_000:
            self._special.clear()
        self._special[day] = found
        return found

    def _plan(self, wd: int) -> tuple[bytes, str, str]:
        """For one weekday: which of its 1,440 minutes are business hours, and the words (before
        and after the time) for a minute that is not. Hours are minute-grained (HH:MM)."""
        ranges = self.week[wd]
        before = self.week[(wd - 1) % 7]
        open_at = bytes(
            any(r.contains(t) for r in ranges) or any(r.spills(t) for r in before)
            for t in (time(m // 60, m % 60) for m in range(1440))
        )
        weekday = _DAYS[wd]
        if not ranges:
            words = ", office closed"
        else:
            words = f", outside business hours ({', '.join(str(r) for r in ranges)})"
        plan = self._plans[wd] = (open_at, f"{weekday} ", words)
        return plan

    def _closed_reason_of(self, local: datetime) -> str | None:
        """The same answer, worked out from the local time directly."""
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
