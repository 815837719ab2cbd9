"""A baseline as JSON: the file `tollwatch learn` writes and the state store's table holds."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from tollwatch.cdr_ingest._types import YEARS, in_years
from tollwatch.config.schema import Settings
from tollwatch.rules.baseline import BUCKETS, Baseline, DayStats, Seen
from tollwatch.rules.calendar import BusinessCalendar

FORMAT = "tollwatch-baseline"
VERSION = 1


class BaselineError(Exception):
    """A baseline file that cannot be read (the message names it and why)."""


def _sparse(counts: list[int]) -> dict[str, int]:
    return {str(i): c for i, c in enumerate(counts) if c}


_MAX_COUNT = 10**9  # calls in one slot of one day: far above any PBX


def _dense(sparse: dict[str, int], size: int) -> list[int]:
    out = [0] * size
    for i, c in sparse.items():
        out[_index(i, size)] = _count(c)
    return out


def _index(text: str, size: int) -> int:
    n = int(text)
    if not 0 <= n < size:
        raise ValueError(f"slot {text!r} is not one of 0-{size - 1}")
    return n


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_COUNT:
        raise ValueError(f"{value!r} is not a count of calls")
    return value


def _day(text: str) -> date:
    """A learned day: an ISO date in the years CDR times may hold (cdr_ingest)."""
    found = date.fromisoformat(text)
    if not in_years(found.year):
        raise ValueError(f"day {text!r} is outside the {YEARS}")
    return found


def _seen_out(s: Seen) -> list[str | None]:
    return [s[0].isoformat() if s[0] else None, s[1].isoformat()]


def _seen_in(v: list[str | None]) -> Seen:
    if not isinstance(v, list) or len(v) != 2 or not isinstance(v[1], str):
        raise ValueError(f"{v!r} is not [day before, last day]")
    return (_day(v[0]) if v[0] else None, _day(v[1]))


def to_dict(b: Baseline, site: str = "") -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "site": site,
        "first_day": b.first_day.isoformat() if b.first_day else None,
        "last_day": b.last_day.isoformat() if b.last_day else None,
        "days": {
            d.isoformat(): {"kind": s.kind, "intl": _sparse(s.intl), "novel": _sparse(s.novel),
                            "conc": _sparse(s.conc)}
            for d, s in sorted(b.days.items())
        },
        "dest_days": {k: sorted(d.isoformat() for d in v) for k, v in b.dest_days.items()},
        "dest_sources": {k: {s: _seen_out(v) for s, v in inner.items()}
                         for k, inner in b.dest_sources.items()},
        "src_dests": {k: {s: _seen_out(v) for s, v in inner.items()}
                      for k, inner in b.src_dests.items()},
        "src_hours": {s: {str(h): sorted(d.isoformat() for d in days) for h, days in hrs.items()}
                      for s, hrs in b.src_hours.items()},
        "up": sorted(b.up),
    }


def fill(b: Baseline, data: dict[str, Any]) -> Baseline:
    """Load what to_dict wrote into a fresh baseline (settings and calendar are the site's)."""
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} version {VERSION}")
    day = _day
    b.first_day = day(data["first_day"]) if data.get("first_day") else None
    b.last_day = day(data["last_day"]) if data.get("last_day") else None
    b.days = {
        day(d): DayStats(_index(str(s["kind"]), 7), _dense(s["intl"], BUCKETS),
                         _dense(s["novel"], BUCKETS), _dense(s["conc"], 24))
        for d, s in data["days"].items()
    }
    b.dest_days = {k: {day(d) for d in v} for k, v in data["dest_days"].items()}
    b.dest_sources = {k: {s: _seen_in(v) for s, v in inner.items()}
                      for k, inner in data["dest_sources"].items()}
    b.src_dests = {k: {s: _seen_in(v) for s, v in inner.items()}
                   for k, inner in data["src_dests"].items()}
    b.src_hours = {s: {_index(h, 24): {day(d) for d in days} for h, days in hrs.items()}
                   for s, hrs in data["src_hours"].items()}
    b.up = set(data.get("up", []))
    b.forget_caches()
    return b


def dumps(b: Baseline, site: str = "") -> str:
    return json.dumps(to_dict(b, site), separators=(",", ":"))


_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError)


def loads(b: Baseline, text: str) -> Baseline:
    """BaselineError for anything but what `dumps` writes (the file, or the state store's)."""
    try:
        return fill(b, json.loads(text))
    except KeyError as exc:
        raise BaselineError(f"missing {exc}") from None
    except _MALFORMED as exc:
        raise BaselineError(str(exc)) from None


def save(b: Baseline, path: Path, site: str = "") -> None:
    """Write atomically (a temporary file renamed over the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(b, site), encoding="utf-8")
    tmp.replace(path)


def load(b: Baseline, path: Path) -> Baseline:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BaselineError(f"{path}: not a baseline file (not UTF-8 text)") from None
    try:
        return loads(b, text)
    except BaselineError as exc:
        raise BaselineError(f"{path}: not a baseline file written by `tollwatch learn` "
                            f"({exc})") from None


def new_baseline(settings: Settings) -> Baseline:
    """An empty baseline for the site (its calendar and [baseline] settings)."""
    return Baseline(settings.baseline, BusinessCalendar(settings))


def load_file(path: Path, settings: Settings) -> Baseline:
    """The baseline `tollwatch learn` wrote, for this site's settings."""
    return load(new_baseline(settings), path)
