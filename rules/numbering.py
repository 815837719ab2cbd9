"""World numbering tables built once from phonenumbers (libphonenumber's metadata).

- calling codes (1 to 3 digits) and the regions that share each;
- E.164 prefixes that pick a region inside a shared code (+1 876 Jamaica, +7 7 Kazakhstan),
  from each region's leading-digits pattern, and Canada's area codes from its number pattern;
- English region names.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

from tollwatch.config.countries import expand_pattern


@cache
def calling_codes() -> dict[str, str]:
    """Calling code (as digits) -> its main region."""
    out: dict[str, str] = {}
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        main = regions[0]
        for r in regions:
            md = PhoneMetadata.metadata_for_region(r)
            if md is not None and md.main_country_for_code:
                main = r
        out[str(code)] = main
    return out


def _area_codes_by_pattern(code: str, region: str) -> list[str]:
    """Three-digit prefixes valid for a region that has no leading-digits pattern (Canada)."""
    md = PhoneMetadata.metadata_for_region(region)
    desc = md.fixed_line if md is not None else None
    if desc is None or not desc.national_number_pattern:
        return []
    pattern = re.compile(desc.national_number_pattern)
    found = []
    for npa in range(200, 1000):
        if pattern.fullmatch(f"{npa}2345678") or pattern.fullmatch(f"{npa}5550100"):
            found.append(code + str(npa))
    return found


@cache
def region_prefixes() -> dict[str, str]:
    """E.164 digit prefix -> region; look up by longest prefix."""
    table: dict[str, str] = dict(calling_codes())
    for code_int, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items():
        if len(regions) < 2:
            continue
        code = str(code_int)
        main = table[code]
        others = [r for r in regions if r != main]
        for region in others:
            md = PhoneMetadata.metadata_for_region(region)
            if md is not None and md.leading_digits:
                for lead in expand_pattern(md.leading_digits, limit=2000) or []:
                    table.setdefault(code + lead, region)
        if code == "1":  # Canada has no leading digits; its area codes come from its pattern
            for region in others:
                md = PhoneMetadata.metadata_for_region(region)
                if md is not None and not md.leading_digits:
                    for prefix in _area_codes_by_pattern(code, region):
                        table.setdefault(prefix, region)
    return table


# Regions libphonenumber's English locale data leaves unnamed.
_MISSING_NAMES = {"XK": "Kosovo", "AC": "Ascension Island", "TA": "Tristan da Cunha"}


@cache
def _locale_data() -> dict[str, Any]:
    """phonenumbers' region names (phonenumbers/geodata/locale.py). Loaded from its file:
    importing it as `phonenumbers.geodata.locale` first runs the package's __init__, which
    loads 40 MB of geocoding data (~1 s and ~100 MB on every start) that we do not use."""
    origin = getattr(phonenumbers, "__file__", None)
    path = Path(origin).parent / "geodata" / "locale.py" if origin else None
    spec = None
    if path is not None and path.is_file():
        spec = importlib.util.spec_from_file_location("phonenumbers.geodata.locale", path)
    if spec is None or spec.loader is None:
        from phonenumbers.geodata.locale import LOCALE_DATA

        return dict(LOCALE_DATA)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.LOCALE_DATA)


@cache
def region_name(region: str) -> str:
    names = _locale_data().get(region)
    if not names or not names.get("en"):
        return _MISSING_NAMES.get(region, region)
    name = names.get("en", region) or region
    seen = 0
    while name.startswith("*") and seen < 5:
        name = names.get(name[1:], region)
        seen += 1
    return str(name)


def region_for(e164_digits: str) -> str | None:
    """Longest-prefix region of an E.164 number given as digits (no '+')."""
    table = region_prefixes()
    for n in range(min(len(e164_digits), 8), 0, -1):
        hit = table.get(e164_digits[:n])
        if hit is not None:
            return hit
    return None
