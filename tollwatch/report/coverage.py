"""Do the CDR files cover the report's period? A report on a file that ends before the day (or
starts after it) must say so, not show a quiet day; days without any CDR are "missing", not 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from tollwatch.cdr_ingest import scan_cdrs
from tollwatch.config import Settings
from tollwatch.report.period import Period
from tollwatch.settings import cdr_options


@dataclass(frozen=True)
class Coverage:
    first: datetime | None  # first and last call start in the files (any row with a start)
    last: datetime | None

    def covers(self, period: Period) -> bool:
        if self.first is None or self.last is None:
            return False
        return self.first < period.utc_end and self.last >= period.utc_start

    def note(self, period: Period) -> str | None:
        """Why the report's figures are not a real quiet period, in words; None if covered."""
        if self.first is None or self.last is None:
            return f"the CDR files hold no calls: nothing is known about {period.title}"
        if self.covers(period):
            return None
        tz = period.tz
        first = self.first.astimezone(tz).date().isoformat()
        last = self.last.astimezone(tz).date().isoformat()
        return (f"the CDR files cover {first} to {last} only, not {period.title}: "
                "the report shows no data, not a quiet day (check the date or the files)")


def file_span(paths: Sequence[Path], settings: Settings) -> Coverage:
    """The first and last call start in the files (one streaming pass; files that cannot be
    read are left out: the figures' pass reports them)."""
    rows = scan_cdrs(list(paths), cdr_options(settings), on_file_error=lambda _why: None)
    span = (
        rows.filter(pl.col("problem").is_null())
        .select(pl.col("start").min().alias("first"), pl.col("start").max().alias("last"))
        .collect(engine="streaming")
    )
    first, last = span.row(0)
    return Coverage(first if isinstance(first, datetime) else None,
                    last if isinstance(last, datetime) else None)


def day_range(first: date, last: date) -> list[date]:
    out, d = [], first
    while d <= last:
        out.append(d)
        d += timedelta(days=1)
    return out


def days_in_words(days: Sequence[str], most: int = 8) -> str:
    """ISO dates (ascending) as runs of consecutive days, "2026-11-01, 2026-11-03 to
    2026-11-09", the first `most` runs and how many more: a long range without data stays one
    short line (the note also goes to the terminal and to Slack)."""
    runs: list[tuple[date, date]] = []
    for text in days:
        d = date.fromisoformat(text)
        if runs and d == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    words = [a.isoformat() if a == b else f"{a.isoformat()} to {b.isoformat()}"
             for a, b in runs[:most]]
    if len(runs) > most:
        rest = sum((b - a).days + 1 for a, b in runs[most:])
        words.append(f"and {rest} more day{'s' if rest > 1 else ''}")
    return ", ".join(words)

