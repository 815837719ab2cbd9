"""Options and the error type of cdr_ingest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

# A call's times must fall in these years: outside, the field is junk (a zeroed or wrapped
# clock, 0001-01-01, 9999-12-31, a duration of centuries) and a CDR row with one is a problem,
# named like a bad time, not a call; an AMI event stamped outside them is taken at its arrival.
# No window, baseline period (at most ten years, config.types) or time zone put on a time in
# range leaves the dates Python can hold.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
YEARS = f"years {EARLIEST.year}-{LATEST.year - 1}"  # how messages say it


def in_years(year: int) -> bool:
    """Whether a date or time of this year is one a call may have (EARLIEST..LATEST)."""
    return EARLIEST.year <= year < LATEST.year


@dataclass(frozen=True)
class CdrOptions:
    """How to read CDR files and which legs count as outbound calls."""

    timezone: str = "UTC"
    usegmtime: bool = False
    layout: str = "auto"
    columns: tuple[str, ...] = ()  # a headerless file's columns, as configured ([cdr] columns)
    trunks: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    max_extension_length: int = 6


class IngestError(Exception):
    """A CDR file is missing, unreadable or not a CDR file; str() is one line."""
