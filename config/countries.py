"""What a home country implies: its dial plan and emergency numbers (from phonenumbers)."""

from __future__ import annotations

import re
from functools import cache

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

# Emergency and vital service numbers per home country. Always never-blockable; 112 and 999 are
# added everywhere because GSM handsets and many carriers route them to emergency services.
_EMERGENCY: dict[str, tuple[str, ...]] = {
    "JP": ("110", "118", "119"),
    "US": ("911", "988"),
    "CA": ("911", "988"),
    "GB": ("999", "112", "111"),
    "AU": ("000", "112", "106"),
    "NZ": ("111",),
    "IN": ("100", "101", "102", "108", "112"),
    "CN": ("110", "119", "120", "122"),
    "KR": ("112", "119"),
    "TW": ("110", "119"),
    "HK": ("999",),
    "SG": ("995", "999"),
    "MX": ("911",),
    "BR": ("190", "192", "193"),
    "ZA": ("10111", "10177", "112"),
}
_NANP = {r for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]}
_ALWAYS = ("112", "999", "911")


@cache
def holiday_countries() -> frozenset[str]:
    """The country codes the holidays package knows (its aliases too: UK, USA...), read off its
    registry. `holidays.list_supported_countries()` gives the same codes but imports all ~250
    country modules to list their subdivisions: ~70 ms on every command that loads settings."""
    try:
        from holidays.registry import EntityLoader

        return frozenset(EntityLoader.get_country_codes())
    except (ImportError, AttributeError):  # the registry moved: the slow public way
        from holidays import list_supported_countries

        return frozenset(list_supported_countries())


def metadata(country: str) -> PhoneMetadata:
    md = PhoneMetadata.metadata_for_region(country)
    if md is None:
        raise ValueError(f"no numbering plan known for {country}")
    return md


def expand_pattern(pattern: str, limit: int = 400) -> list[str] | None:
    """All strings a finite digit regex matches (e.g. "0[0-3]\\d"), or None if not finite/small."""
    try:
        parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]
    except re.error:
        return None

    def expand(items: list[tuple[object, object]]) -> list[str] | None:
        out = [""]
        for op, arg in items:
            alts = expand_op(op, arg)
            if alts is None:
                return None
            out = [a + b for a in out for b in alts]
            if len(out) > limit:
                return None
        return out

    def expand_op(op: object, arg: object) -> list[str] | None:
        c = re._constants  # type: ignore[attr-defined]
        if op is c.LITERAL:
            return [chr(arg)]  # type: ignore[arg-type]
        if op is c.IN:
            chars: list[str] = []
            for kind, val in arg:  # type: ignore[attr-defined]
                if kind is c.LITERAL:
                    chars.append(chr(val))
                elif kind is c.RANGE:
                    chars.extend(chr(x) for x in range(val[0], val[1] + 1))
                elif kind is c.CATEGORY and val is c.CATEGORY_DIGIT:
                    chars.extend("0123456789")
                else:
                    return None
            return chars
        if op is c.SUBPATTERN:
            return expand(list(arg[-1]))  # type: ignore[index]
        if op is c.BRANCH:
            out: list[str] = []
            for branch in arg[1]:  # type: ignore[index]
                sub = expand(list(branch))
                if sub is None:
                    return None
                out.extend(sub)
            return out
        if op is c.MAX_REPEAT or op is c.MIN_REPEAT:
            lo: int = arg[0]  # type: ignore[index]
            hi: int = arg[1]  # type: ignore[index]
            body: object = arg[2]  # type: ignore[index]
            if hi > 4:
                return None
            inner = expand(list(body))  # type: ignore[call-overload]
            if inner is None:
                return None
            out = []
            for n in range(lo, hi + 1):
                combos = [""]
                for _ in range(n):
                    combos = [a + b for a in combos for b in inner]
                out.extend(combos)
            return out
        return None

    result = expand(list(parsed))
    if result is None:
        return None
    return sorted(set(result))


@cache
def international_prefixes(country: str) -> tuple[str, ...]:
    md = metadata(country)
    found: list[str] = []
    for pat in (md.preferred_international_prefix, md.international_prefix):
        if not pat:
            continue
        expanded = expand_pattern(pat.replace("~", ""))
        if expanded:
            found.extend(p for p in expanded if p not in found)
    found.extend(p for p in _MORE_INTERNATIONAL.get(country, ()) if p not in found)
    return tuple(found) or ("00",)


@cache
def national_prefix(country: str) -> str:
    return metadata(country).national_prefix or ""


def country_code(country: str) -> int:
    code = metadata(country).country_code
    assert code is not None
    return int(code)


def emergency_numbers(country: str) -> tuple[str, ...]:
    own = _EMERGENCY.get(country, ())
    if not own and country in _NANP:
        own = ("911",)
    return tuple(dict.fromkeys((*own, *_ALWAYS)))


# Codes dialed before a number that the home network takes off before routing it. A PBX whose
# route sends whatever was dialed passes them to the carrier, which still connects the call:
# read as part of the number, "184 010 232 ..." looked domestic and passed a block on +232.
# Caller-ID privacy: 184 (withhold) and 186 (send) in Japan, 141 and 1470 in the UK, 141 and
# 142 in Ireland, 3651 in France, 1831 and 1832 in Australia.
_DIAL_PREFIXES: dict[str, tuple[str, ...]] = {
    "JP": ("184", "186"),
    "GB": ("141", "1470"),
    "IE": ("141", "142"),
    "FR": ("3651",),
    "AU": ("1831", "1832"),
}
# International prefixes the numbering metadata does not list: Japan's carrier selection, the
# carrier's code before 010 (KDDI 001, NTT Communications 0033, SoftBank 0041 and 0061).
_MORE_INTERNATIONAL: dict[str, tuple[str, ...]] = {
    "JP": ("001010", "0033010", "0041010", "0061010"),
}


def dial_prefixes(country: str) -> tuple[str, ...]:
    return _DIAL_PREFIXES.get(country, ())


def domestic_regions(country: str) -> tuple[str, ...]:
    """Regions a call to is domestic. The US and Canada bill each other as long distance."""
    if country in ("US", "CA"):
        return ("US", "CA", "PR", "VI", "GU", "AS", "MP")
    return (country,)
