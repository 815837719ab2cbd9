"""Are the dialed numbers real numbers under the site's dial plan? A wrong country or a missing
outside-line access code turns every international call into a "domestic" one, silently.

`check_numbers` classifies a sample of distinct dialed numbers (up to 10k, off the hot path:
after a scan, or from `check-config --sample FILE`), checks every outbound one (domestic,
international or unknown) with libphonenumber's `is_valid_number`, and when more than 5% are
invalid tries the likely fixes (an access code, another home country) on the same sample and
names the one that makes the most numbers valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers
import polars as pl

from tollwatch.alerting.textsafe import clip
from tollwatch.background import in_background
from tollwatch.config import ConfigError, Settings, load_settings
from tollwatch.config.countries import metadata
from tollwatch.rules.destinations import Classifier

SAMPLE = 10_000
LIMIT = 0.05  # warn above this share of invalid outbound numbers
OUTBOUND = ("domestic", "international", "unknown")
_COMMON = ("US", "GB", "JP", "DE", "FR", "AU", "IN", "CN", "BR", "IT", "ES", "NL")


@lru_cache(maxsize=65536)
def valid_e164(e164: str | None) -> bool:
    """Whether libphonenumber knows `+<digits>` as a valid number."""
    if not e164:
        return False
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(e164, None)))
    except phonenumbers.NumberParseException:
        return False


@lru_cache(maxsize=8192)  # ~250 regions x 30 numbers: one check's worth (< 3 MB)
def _valid_in(dialed: str, region: str) -> bool:
    """Whether `dialed`, read as dialed in `region`, is a valid number (any region of its
    calling code). Cached: a report, a fleet or a test run checks the same numbers again."""
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(dialed, region)))
    except phonenumbers.NumberParseException:
        return False


@dataclass
class Validity:
    checked: int = 0  # distinct outbound numbers checked
    invalid: int = 0
    examples: list[str] = field(default_factory=list)  # a few invalid dialed strings
    fix: str | None = None  # the likely fix, in words (only computed when over the limit)

    @property
    def share(self) -> float:
        return self.invalid / self.checked if self.checked else 0.0

    @property
    def too_many(self) -> bool:
        return self.checked > 0 and self.share > LIMIT

    def warning(self, settings: Settings) -> str | None:
        """A one-line warning when more than 5% of outbound numbers are invalid, else None."""
        if not self.too_many:
            return None
        codes = ",".join(settings.dialplan.access_codes) or "none"
        text = (f"{self.invalid} of {self.checked} distinct outbound numbers "
                f"({self.share:.0%}) are not valid numbers under country "
                f"{settings.site.country}, access code(s) {codes} "
                f"(e.g. {', '.join(clip(e, 32) for e in self.examples[:3])})")
        return text + (f"; likely fix: {self.fix}" if self.fix else
                       "; no other country or access code does better (fraud destinations are "
                       "often numbers outside any published plan)")


@dataclass
class _Score:
    checked: int
    bad: list[str]  # invalid dialed strings
    resolved: int  # valid, or international to a known country (fraud ranges are often
    # numbers libphonenumber does not list; a wrong dial plan gives domestic nonsense instead)


def _count(classifier: Classifier, numbers: list[str]) -> _Score:
    frame = classifier.classify_df(pl.DataFrame({"dst": numbers}, schema={"dst": pl.String}))
    frame = frame.filter(pl.col("dest_class").is_in(OUTBOUND))
    bad: list[str] = []
    resolved = 0
    for dialed, e164, cls, region in frame.select("dst", "e164", "dest_class",
                                                  "region").iter_rows():
        ok = valid_e164(e164)
        if not ok:
            bad.append(dialed)
        if ok or (cls == "international" and e164 and region):
            resolved += 1
    return _Score(frame.height, bad, resolved)


def check_numbers(settings: Settings, numbers: Iterable[str], sample: int = SAMPLE,
                  classifier: Classifier | None = None) -> Validity:
    """Check up to `sample` distinct dialed numbers; suggest a fix when too many are invalid."""
    distinct: list[str] = []
    seen: set[str] = set()
    for n in numbers:
        if n and n not in seen:
            seen.add(n)
            distinct.append(n)
            if len(distinct) >= sample:
                break
    score = _count(classifier or Classifier(settings), distinct)
    result = Validity(score.checked, len(score.bad), score.bad[:5])
    if result.too_many:
        result.fix = likely_fix(settings, distinct, score)
    return result


class EarlyCheck:
    """`check_numbers` of a scan's sample (the first `sample` distinct dialed numbers in file
    order), started in a thread as soon as the sample is full: on a big file that is during
    its first batches, and the check (~0.2-0.3 s of libphonenumber, more when too many numbers
    are invalid and fixes are tried) runs while the scan waits for polars to read the rest
    instead of after the replay. A scan whose sample never fills checks at the end, as
    before. Same numbers, same result: the sample does not change once full."""

    def __init__(self, settings: Settings, sample: int = SAMPLE) -> None:
        self.settings = settings
        self.sample = sample
        self._check: Future[Validity] | None = None

    @property
    def started(self) -> bool:
        return self._check is not None

    def offer(self, numbers: set[str]) -> None:
        """The sample so far; the check starts (once) when it holds `sample` numbers."""
        if self._check is None and len(numbers) >= self.sample:
            distinct = sorted(numbers)
            # a Classifier of its own: the scan's is in use meanwhile
            self._check = in_background(
                lambda: check_numbers(self.settings, distinct, self.sample), "tollwatch-validity"
            )

    def result(self, numbers: set[str], classifier: Classifier | None = None) -> Validity:
        """The check's result (waiting for the thread), or the check now if it never started."""
        if self._check is None:
            return check_numbers(self.settings, sorted(numbers), self.sample, classifier)
        return self._check.result()


def _candidates(settings: Settings, invalid: list[str]) -> list[tuple[str, str | None]]:
    """(country, access code) pairs worth trying, most plausible first."""
    here = settings.site.country or "US"
    out: list[tuple[str, str | None]] = []
    leads = {n[:1] for n in invalid if n}
    for code in ("0", "9", "8"):
        if code in leads and code not in settings.dialplan.access_codes:
            out.append((here, code))
    votes: dict[str, int] = {}
    for region in phonenumbers.SUPPORTED_REGIONS:
        try:
            md = metadata(region)
        except ValueError:
            continue
        pattern = md.international_prefix
        if not pattern or region == here:
            continue
        rx = re.compile(f"^(?:{pattern})[1-9]")
        hits = 2 * sum(1 for n in invalid[:200] if rx.match(n) or rx.match(n[1:]))
        hits += sum(1 for n in invalid[:30] if _valid_in(n, region))  # national numbers
        if hits:
            votes[region] = hits
    best = sorted(votes, key=lambda r: (-votes[r], r not in _COMMON, r))[:3]
    for region in best:
        out.append((region, None))
        for code in ("0", "9"):
            if code in leads:
                out.append((region, code))
    return out[:8]


def likely_fix(settings: Settings, numbers: list[str], now: _Score) -> str | None:
    """The change of country and/or access code that makes the most numbers valid (or at least
    international to a known country), in words as command-line options; None if nothing tried
    does clearly better."""
    best: tuple[int, str] | None = None  # most resolved; ties: the more plausible candidate
    for country, code in _candidates(settings, now.bad):
        over: dict[str, Any] = {"site": {"country": country, "timezone": "UTC"}}
        codes = list(settings.dialplan.access_codes) + ([code] if code else [])
        over["dialplan"] = {"access_codes": codes}
        try:
            alt = load_settings(None, over)
        except ConfigError:
            continue
        alt_score = _count(Classifier(alt), numbers)
        valid = alt_score.checked - len(alt_score.bad)
        key = alt_score.resolved
        better = (valid - (now.checked - len(now.bad)) > len(now.bad) / 2
                  or alt_score.resolved - now.resolved > len(now.bad) / 2)
        if better and (best is None or key > best[0]):
            words = []
            if country != settings.site.country:
                words.append(f"--country {country} (site.country)")
            if code:
                words.append(f"--access-code {code} (dialplan.access_codes)")
            best = (key, " and ".join(words))
    return best[1] if best else None

