"""Destination prefix lists: the high-risk list, allowlists and per-minute rates."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tollwatch.config.schema import Settings
from tollwatch.config.types import parse_prefix


@dataclass(frozen=True)
class RiskEntry:
    prefix: str  # E.164 digits
    label: str  # as written: "232", "1-876", "370-5200"
    name: str


def _read_tsv(text: str, source: str) -> list[RiskEntry]:
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(rows)), delimiter="\t")
    entries: dict[str, RiskEntry] = {}
    for i, row in enumerate(reader, start=2):
        raw = (row.get("calling_code") or row.get("prefix") or "").strip()
        try:
            prefix = parse_prefix(raw)
        except ValueError as exc:
            raise ValueError(f"{source}: row {i}: {exc}") from None
        name = (row.get("name_en") or row.get("name") or "").strip()
        if prefix in entries:  # +7 is listed twice (Russia, Kazakhstan): one prefix, both names
            old = entries[prefix]
            name = f"{old.name} / {name}" if name and name not in old.name else old.name
        entries[prefix] = RiskEntry(prefix, raw, name)
    return list(entries.values())


def shipped_high_risk() -> list[RiskEntry]:
    text = resources.files("tollwatch.config").joinpath("high_risk.tsv").read_text(encoding="utf-8")
    return _read_tsv(text, "config/high_risk.tsv")


def high_risk_list(settings: Settings) -> list[RiskEntry]:
    """The effective high-risk list: shipped (or the configured file), plus adds, less removes."""
    hr = settings.high_risk
    if hr.file is not None:
        entries = _read_tsv(_text(Path(hr.file)), str(hr.file))
    else:
        entries = shipped_high_risk()
    removed = {parse_prefix(p) for p in hr.remove}
    out = [e for e in entries if e.prefix not in removed]
    known = {e.prefix for e in out}
    for text in hr.add:
        digits = parse_prefix(text)
        if digits not in known:
            out.append(RiskEntry(digits, text, ""))
            known.add(digits)
    return out


def rate_table(settings: Settings) -> dict[str, float]:
    """Per-minute rates by E.164 prefix, from [rates] per_minute and an optional CSV file."""
    rates: dict[str, float] = {}
    if settings.rates.file is not None:
        path = Path(settings.rates.file)
        text = _text(path)
        for i, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not row or row[0].startswith("#") or row[0].strip().lower() == "prefix":
                continue
            try:
                prefix, rate = parse_prefix(row[0]), float(row[1])
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{i}: expected 'prefix,rate per minute'") from None
            if not 0 <= rate < math.inf:  # NaN, a negative or an infinite rate
                raise ValueError(f"{path}:{i}: {row[1].strip()!r} is not a rate per minute")
            rates[prefix] = rate
    rates.update(settings.rates.per_minute)
    return rates


def _text(path: Path) -> str:
    """A list file's text (ValueError naming it: missing, unreadable, not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
