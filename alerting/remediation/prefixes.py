"""Block prefixes as people type them: E.164 only, checked, with the country they cover.

`read_prefix("010232", classifier)` -> `PrefixCheck("232", note=...)`: a dialed form with the
site's international prefix (or `00`) is converted and the note says so; `+0...`, a leading 0
that is not an international prefix, or anything shorter than a full calling code (`2`, `3`:
a whole world zone) is refused (`PrefixError`, the message says the form to use). A whole
country's code is accepted and `what` names the country ("the whole of Sierra Leone (+232)").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from tollwatch.rules import numbering
from tollwatch.rules.destinations import Classifier

MAX_PREFIX = 8  # the dialplan looks up prefixes of 1..8 digits
_SEPARATORS = re.compile(r"[\s\-().]")


class PrefixError(ValueError):
    """A prefix that cannot be blocked as given; str() says why and what to type instead."""


@dataclass(frozen=True)
class PrefixCheck:
    digits: str  # E.164 prefix digits, no "+"
    what: str  # "the whole of Sierra Leone (+232)", "numbers starting +232 7654"
    note: str = ""  # set when the input was converted (a dialed form)


def calling_code(digits: str) -> str | None:
    """The calling code an E.164 prefix starts with (None: it is shorter than any)."""
    codes = numbering.calling_codes()
    for n in (1, 2, 3):
        if digits[:n] in codes and len(digits) >= n:
            return digits[:n]
    return None


def country_words(code: str) -> str:
    """"Sierra Leone (+232)"; shared codes list their countries ("+1: United States, ...")."""
    regions = [r for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(code), ())
               if r != "001"]  # fmt: skip
    names = [numbering.region_name(r) for r in regions]
    if len(names) == 1:
        return f"{names[0]} (+{code})"
    if not names:
        return f"+{code}"
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"+{code} ({shown})"


def describe(digits: str) -> str:
    code = calling_code(digits)
    if code is None:
        return f"+{digits}"
    if digits == code:
        return f"the whole of {country_words(code)}"
    region = numbering.region_for(digits)
    where = numbering.region_name(region) if region else country_words(code)
    return f"numbers starting +{code} {digits[len(code):]} ({where})"


def read_prefix(text: str, classifier: Classifier) -> PrefixCheck:
    """Check and convert a prefix typed by an administrator (or chosen by the policy)."""
    raw = text.strip()
    body = _SEPARATORS.sub("", raw)
    plus = body.startswith("+")
    digits = body[1:] if plus else body
    if not digits or not digits.isascii() or not digits.isdigit():
        raise PrefixError(f"{raw!r} is not an E.164 prefix: give digits like +232 or +1876")
    note = ""
    if plus and digits.startswith("0"):
        raise PrefixError(
            f"{raw!r} is not E.164: after + comes the calling code, which never starts with 0"
            f"{_hint(digits.lstrip('0'))}"
        )
    if not plus and digits.startswith("0"):
        intl = sorted({*classifier.intl_prefixes, "00"}, key=len, reverse=True)
        dialed = next((p for p in intl if digits.startswith(p) and len(digits) > len(p)), None)
        if dialed is None:
            raise PrefixError(
                f"{raw!r} looks dialed (calling codes never start with 0); give the E.164 "
                f"prefix{_hint(digits.lstrip('0'))}"
            )
        digits = digits[len(dialed):]
        if digits.startswith("0"):
            raise PrefixError(f"{raw!r}: no calling code starts with 0 after {dialed}")
        note = f"{raw} is the dialed form (international prefix {dialed}); using +{digits}"
    if len(digits) > MAX_PREFIX:
        raise PrefixError(
            f"+{digits} is longer than {MAX_PREFIX} digits (the dialplan checks 1..{MAX_PREFIX}); "
            f"block +{digits[:MAX_PREFIX]}"
        )
    code = calling_code(digits)
    if code is None:
        longer = sorted(c for c in numbering.calling_codes() if c.startswith(digits))
        example = ", ".join(f"+{c}" for c in longer[:3])
        raise PrefixError(
            f"+{digits} is shorter than a calling code: it would block every country whose "
            f"code starts with {digits} ({len(longer)} codes: {example}, ...); "
            "give a full calling code or longer"
        )
    return PrefixCheck(digits, describe(digits), note)


def _hint(rest: str) -> str:
    if rest and calling_code(rest):
        return f", e.g. +{rest}"
    return ", e.g. +232"
