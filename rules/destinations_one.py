"""`Classifier.expressions` for ONE dialed string, step by step in Python.

The live daemon classifies each new number as its call starts (DialBegin -> decision): the
polars plan on a one-row frame costs milliseconds there (eight eager steps), this microseconds.
Same steps, same tables (the classifier's merged prefix table, calling codes, short-number
cache), same order of `when` branches; tests/test_destinations_one.py holds it to the polars
plan on generated numbers under several dial plans. Only ASCII strings are taken (None
otherwise: the caller runs the polars plan): Unicode digits and spaces are defined by each
regex engine's own Unicode tables, which may differ.
"""

from __future__ import annotations

import re
import weakref
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from tollwatch.rules.destinations import Classifier

_LOCAL_MIN = 7  # as destinations._LOCAL_MIN
_NOISE = re.compile(r"[\t\n\x0b\x0c\r \-().]")  # the plan's [\s\-().] on ASCII (\s: Rust's)
_DIGITS = re.compile(r"[0-9]+\Z")
_KEYPAD = re.compile(r"[0-9*#]+\Z")
_SENT = re.compile(r"\+?[0-9]+#\Z")
_PARAMS = re.compile(r"\+?[0-9]+#?;")
_BY_LEN: weakref.WeakKeyDictionary[Classifier, list[tuple[int, dict[str, int]]]] = (
    weakref.WeakKeyDictionary()
)


def row_one(c: Classifier, dialed: str) -> dict[str, Any] | None:
    """DEST_COLUMNS for one dialed string, as `Classifier._apply` gives them; None if the
    string is not ASCII."""
    if not dialed.isascii():
        return None
    norm = _NOISE.sub("", dialed)
    if _PARAMS.match(norm):  # the number and SIP URI parameters: the number (as the plan)
        norm = norm[: norm.index(";")]
    if _SENT.match(norm):  # the number and the send key: the number (as the plan)
        norm = norm[:-1]
    plus = norm.startswith("+")
    digits = norm[1:] if plus else norm
    isdig = _DIGITS.match(digits) is not None
    cand = _candidate(c, digits, plus)
    em = c.emergency
    emerg = not plus and (
        digits in em
        or cand in em
        or any(digits.startswith(ac) and digits[len(ac) :] in em for ac in c.access_codes)
    )
    short = not plus and len(cand) <= c.max_ext
    d_short = short and isdig
    e164 = _e164(c, cand, plus) if isdig and not short and not emerg else None
    ident = _lookup_id(c, e164)
    calling_code = _calling_code(c, e164)
    short_kind = _short_kind(c, cand) if d_short and not emerg else None
    attr = c._attr
    region = attr["region"].get(ident) if ident is not None else None
    risk = attr["risk"].get(ident) if ident is not None else None
    allow = bool(attr["allow"].get(ident, False)) if ident is not None else False
    rate = attr["rate"].get(ident) if ident is not None else None
    local = isdig and not d_short and e164 is None and not emerg
    dest_class: str | None
    if norm == "":
        dest_class = "unknown"
    elif emerg:
        dest_class = "emergency"
    elif _KEYPAD.match(digits) and not isdig:
        dest_class = "internal"  # feature codes such as *97
    elif not isdig:
        dest_class = "unknown"
    elif d_short:
        dest_class = short_kind
    elif local:
        dest_class = "domestic"
    elif region is None or (e164 is not None and len(e164) < 5):
        dest_class = "unknown"
    elif region in c.domestic:
        dest_class = "domestic"
    else:
        dest_class = "international"
    if local:
        region, calling_code = c.country, c.cc
    risk_prefix = None if dest_class == "domestic" else risk
    return {
        "dest_class": dest_class,
        "e164": None if e164 is None else "+" + e164,
        "calling_code": calling_code,
        "region": region,
        "region_name": c._names.get(region, region) if region is not None else None,
        "high_risk": risk_prefix is not None,
        "risk_prefix": risk_prefix,
        "allowlisted": allow,
        "rate": None if rate is None else float(rate),
    }


def _strong(c: Classifier, x: str) -> bool:
    return any(x.startswith(ip) for ip in c.intl_prefixes) or bool(
        c.national_prefix and x.startswith(c.national_prefix)
    )


def _candidate(c: Classifier, digits: str, plus: bool) -> str:
    if not c.access_codes or plus:
        return digits
    for code, lead in c.code_leads:
        if digits.startswith(code + lead):
            return digits[len(code) :]
    if _strong(c, digits):
        return digits
    for ac in c.access_codes:
        if digits.startswith(ac) and len(digits) - len(ac) >= _LOCAL_MIN:
            return digits[len(ac) :]
    return digits


def _e164(c: Classifier, cand: str, plus: bool) -> str | None:
    if plus:
        return cand
    for ip in c.intl_prefixes:
        if cand.startswith(ip):
            return cand[len(ip) :]
    np_ = c.national_prefix
    if np_:
        if cand.startswith(np_):
            return c.cc + cand[len(np_) :]
    elif len(cand) >= _LOCAL_MIN:
        return c.cc + cand
    if c.cc == "1" and len(cand) == 10:
        return "1" + cand
    return None


def _lookup_id(c: Classifier, e164: str | None) -> int | None:
    if e164 is None:
        return None
    by_len = _BY_LEN.get(c)
    if by_len is None:
        by_len = _BY_LEN[c] = sorted(c._by_len.items(), reverse=True)
    for n, table in by_len:
        if len(e164) >= n:
            hit = table.get(e164[:n])
            if hit is not None:
                return hit
    return None


def _calling_code(c: Classifier, e164: str | None) -> str | None:
    if e164 is None:
        return None
    for n in (3, 2, 1):
        if len(e164) >= n and e164[:n] in c._codes:
            return e164[:n]
    return None


def _short_kind(c: Classifier, cand: str) -> str | None:
    """emergency / service / internal of a short string: the plan's own function (cached)."""
    kind = c._short_cache.get(cand)
    if kind is not None:
        return kind
    out: str | None = c._short_kind(pl.Series("v", [cand], dtype=pl.String)).item()
    return out
