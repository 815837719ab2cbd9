"""What a day is compared with: like days, and days with no CDRs shown as missing, not as 0.

Fraud clusters on weekends and holidays, when an office makes few calls: a Saturday compared with
the weekdays before it looks quiet whatever happens. So a day of the report is compared with the
most recent days *of its kind* — a working day with working days, a weekend day, public holiday
or closure day with other such days — up to `LIKE_DAYS` of them within `LOOK_BACK` days. A like
day on which the CDRs hold no row at all (the PBX or its CDR logging was down, a file is missing)
is not a quiet day: it is listed as missing and left out of the average. Days before the first
CDR in the files are not counted either. A period of several days is compared, per day, with
the `LIKE_DAYS` days before it (missing days left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from tollwatch.report.figures import Figures, Totals
from tollwatch.rules.calendar import BusinessCalendar

LIKE_DAYS = 7
LOOK_BACK = 28
WORKING = "working day"
CLOSED = "weekend or holiday"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def day_kind(calendar: BusinessCalendar, day: date) -> tuple[str, str]:
    """(WORKING or CLOSED, a few words: "Saturday", "public holiday (Sports Day)", ...)."""
    if day in calendar.closures:
        return CLOSED, "closure day"
    name = calendar.holiday(day)
    if name:
        return CLOSED, f"public holiday ({name})"
    weekday = day.strftime("%A")
    if not calendar.week[day.weekday()]:
        return CLOSED, weekday
    return WORKING, weekday


@dataclass
class Comparison:
    kind: str | None  # WORKING / CLOSED for one day; None: a period of several days
    dates: list[date] = field(default_factory=list)  # compared with (they have CDRs)
    missing: list[date] = field(default_factory=list)  # like days with no CDR row at all
    total: Totals = field(default_factory=Totals)

    @property
    def days(self) -> int:
        return len(self.dates)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "days": self.days,
            "dates": [d.isoformat() for d in self.dates],
            "missing": [d.isoformat() for d in self.missing],
            "total": self.total.as_dict(),
            "average": per_day(self.total, self.days) if self.days else None,
        }

    def words(self) -> str:
        """"the 4 previous weekend days or holidays" (for the page and the Slack summary)."""
        if self.kind is None:
            return f"{self.days} previous day(s)"
        what = "working days" if self.kind == WORKING else "weekend days or holidays"
        return f"{self.days} previous {what}"


def per_day(t: Totals, days: float) -> dict[str, Any]:
    d = t.as_dict()
    for key, value in list(d.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            d[key] = round(value / days, 2)
    return d


def first_cdr_day(figs: Figures) -> date | None:
    return min(figs.cdr_days) if figs.cdr_days else None


def compare(figs: Figures, calendar: BusinessCalendar) -> Comparison:
    """The like days (one-day period) or the days before (a longer period) to compare with."""
    p = figs.period
    first = first_cdr_day(figs)
    single = p.day is not None
    kind = day_kind(calendar, p.first_date)[0] if single else None
    out = Comparison(kind)
    if first is None:
        return out
    back = 0
    while len(out.dates) + len(out.missing) < LIKE_DAYS and back < (LOOK_BACK if single
                                                                     else LIKE_DAYS):
        back += 1
        d = p.first_date - timedelta(days=back)
        if d < first:
            break
        if kind is not None and day_kind(calendar, d)[0] != kind:
            continue
        if d not in figs.cdr_days:
            out.missing.append(d)
            continue
        out.dates.append(d)
        if d in figs.daily:
            out.total.add(figs.daily[d])
    return out


def daily_rows(figs: Figures, calendar: BusinessCalendar, days: int) -> list[dict[str, Any]]:
    """The `days` days before the period, each with its kind and figures, or missing (no CDR
    row at all that day, whatever the reason: not counted as 0)."""
    out = []
    for back in range(days, 0, -1):
        d = figs.period.first_date - timedelta(days=back)
        kind, detail = day_kind(calendar, d)
        row: dict[str, Any] = {"date": d.isoformat(), "weekday": _WEEKDAYS[d.weekday()],
                               "kind": kind, "what": detail}
        row["missing"] = d not in figs.cdr_days  # no CDR row at all: not a quiet day
        if not row["missing"]:
            row.update(figs.daily.get(d, Totals()).as_dict())
        out.append(row)
    return out
