"""The calendar's per-weekday minute table gives the answer worked out from the local time."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import settings
from tollwatch.rules.calendar import BusinessCalendar

UTC = ZoneInfo("UTC")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@st.composite
def a_range(draw: st.DrawFn) -> str:
    start = draw(st.integers(0, 23 * 60 + 59))
    end = draw(st.integers(0, 24 * 60).filter(lambda e: e != start))
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


hours_strategy = st.fixed_dictionaries(
    {d: st.lists(a_range(), max_size=2) for d in DAYS},
)


@pytest.mark.fuzz
@hsettings(max_examples=40, deadline=None)
@given(
    hours=hours_strategy,
    tz=st.sampled_from(["Asia/Tokyo", "Europe/Berlin", "America/New_York", "Asia/Kolkata",
                        "Australia/Lord_Howe", "UTC"]),
    country=st.sampled_from(["", "JP", "DE", "US"]),
    closures=st.lists(st.dates(date(2026, 3, 1), date(2026, 12, 31)), max_size=3),
    offsets=st.lists(st.integers(0, 300 * 24 * 3600), min_size=1, max_size=60),
)
def test_closed_reason_equals_the_direct_answer(
    hours: dict[str, list[str]], tz: str, country: str, closures: list[date],
    offsets: list[int],
) -> None:
    s = settings("JP", tz, hours={**hours, "holidays_country": country, "closures": closures})
    cal = BusinessCalendar(s)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    for off in offsets:
        when = base + timedelta(seconds=off)
        minute = when.replace(second=0, microsecond=0)
        expected = cal._closed_reason_of(minute.astimezone(cal.tz))  # the direct way
        assert cal.closed_reason(when) == expected
        assert cal.closed_reason(when.astimezone(ZoneInfo(tz))) == expected  # any zone in


def test_the_reason_words() -> None:
    s = settings("JP", "Asia/Tokyo", hours={"monday": ["09:00-18:00"], "tuesday": [],
                                             "holidays_country": "JP",
                                             "closures": [date(2026, 12, 29)]})
    cal = BusinessCalendar(s)
    tz = ZoneInfo("Asia/Tokyo")
    assert cal.closed_reason(datetime(2026, 11, 30, 9, 0, tzinfo=tz)) is None
    assert cal.closed_reason(datetime(2026, 11, 30, 8, 59, 30, tzinfo=tz)) == (
        "Monday 08:59, outside business hours (09:00-18:00)")
    assert cal.closed_reason(datetime(2026, 12, 1, 10, 0, tzinfo=tz)) == (
        "Tuesday 10:00, office closed")
    assert cal.closed_reason(datetime(2026, 12, 29, 10, 0, tzinfo=tz)) == (
        "Tuesday 2026-12-29 10:00, a closure day")
    assert cal.closed_reason(datetime(2026, 11, 23, 10, 0, tzinfo=tz)) == (
        "Monday 2026-11-23 10:00, public holiday (Labor Thanksgiving Day)")


@pytest.mark.fuzz
@hsettings(max_examples=300, deadline=None)
@given(when=st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)))
def test_stamp_is_each_field_formatted_04d_and_02d(when: datetime) -> None:
    """Incident ids' stamp (the fields looked up in a table) as the format specs give it,
    years below 1000 included."""
    from tollwatch.rules.model import stamp

    early = when.replace(day=min(when.day, 28))  # (no 29 February in those years)
    for at in (when, early.replace(year=999), early.replace(year=5), when.replace(tzinfo=UTC)):
        assert stamp(at) == (f"{at.year:04d}{at.month:02d}{at.day:02d}T"
                             f"{at.hour:02d}{at.minute:02d}{at.second:02d}Z")


def test_holiday_names_are_english_whatever_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The holidays package names holidays in the environment's language unless told: the
    same calls gave "Culture Day" under Python 3.11 and "文化の日" under 3.12 (LANG=C.UTF-8
    read as en_US, then as C), and the language of a Japanese or German host otherwise."""
    seen: dict[str, list[str | None]] = {}
    for lang in ("C.UTF-8", "ja_JP.UTF-8", "de_DE.UTF-8", "fr_FR.UTF-8", ""):
        for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
            monkeypatch.setenv(var, lang)
        for country, tz in (("JP", "Asia/Tokyo"), ("DE", "Europe/Berlin"), ("GB", "Europe/London"),
                            ("FR", "Europe/Paris")):
            cal = BusinessCalendar(settings(country, tz))
            seen.setdefault(country, []).append(cal.holiday(date(2026, 12, 25)))
            seen.setdefault(f"{country} new year", []).append(cal.holiday(date(2026, 1, 1)))
        jp = BusinessCalendar(settings("JP", "Asia/Tokyo"))
        assert jp.holiday(date(2026, 11, 3)) == "Culture Day"
        assert "public holiday (Culture Day)" in (
            jp.closed_reason(datetime(2026, 11, 3, 1, 0, tzinfo=UTC)) or "")
    for country, names in seen.items():
        assert len(set(names)) == 1, (country, names)  # the same in every locale
    assert seen["JP new year"][0] == "New Year's Day"
    assert seen["DE"][0] == "Christmas Day" and seen["GB"][0] == "Christmas Day"
