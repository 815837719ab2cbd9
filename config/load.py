"""Load settings: shipped defaults, then the user's file, then command-line overrides."""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tollwatch.config import countries
from tollwatch.config.schema import Settings

SECRET_WORDS = ("secret", "token", "password", "webhook")
DEFAULT_PATH = Path("/etc/tollwatch/tollwatch.toml")
ENV_PATH = "TOLLWATCH_CONFIG"


def default_path() -> Path | None:
    """The settings file a command reads when none is given: $TOLLWATCH_CONFIG, else
    /etc/tollwatch/tollwatch.toml if it exists, else none (defaults and options only)."""
    env = os.environ.get(ENV_PATH)
    if env:
        return Path(env)
    return DEFAULT_PATH if DEFAULT_PATH.is_file() else None


def host_zone() -> str:
    """The host's IANA time zone (tzlocal), UTC if it cannot be told."""
    try:
        import tzlocal

        name = tzlocal.get_localzone_name()
    except Exception:
        return "UTC"
    if not name:
        return "UTC"
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(name)
    except Exception:
        return "UTC"
    return name


class ConfigError(Exception):
    """One or more problems with the settings; each names its path and what is wrong."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        self.errors = errors
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(errors))


def shipped_defaults() -> dict[str, Any]:
    text = resources.files("tollwatch.config").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def read_toml(path: Path) -> dict[str, Any]:
    """A settings file: UTF-8 TOML (a leading byte-order mark, as Windows editors write, is
    allowed); every failure is a ConfigError naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    try:
        text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line "
                           f"{line}); save it as UTF-8"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None


def _rules_by_name(value: Any, errors: list[str]) -> dict[str, dict[str, Any]]:
    """Accept `[[rules]]` (a list, named by `name` or `type`) or `[rules.NAME]` tables."""
    out: dict[str, dict[str, Any]] = {}
    if isinstance(value, Mapping):
        for name, body in value.items():
            if not isinstance(body, Mapping):
                errors.append(f"rules.{name}: must be a table")
                continue
            out[str(name)] = dict(body)
        return out
    if not isinstance(value, list):
        errors.append("rules: must be a list of [[rules]] tables")
        return out
    for i, body in enumerate(value):
        if not isinstance(body, Mapping):
            errors.append(f"rules[{i}]: must be a table")
            continue
        entry = dict(body)
        name = entry.pop("name", None) or entry.get("type")
        if not isinstance(name, str):
            errors.append(f"rules[{i}]: needs a name or a type")
            continue
        out[name] = entry
    return out


def merge(base: dict[str, Any], override: Mapping[str, Any], errors: list[str]) -> dict[str, Any]:
    """Deep-merge override into base. Rules merge by name, option by option."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if key == "rules":
            rules = _rules_by_name(result.get("rules", {}), errors)
            for name, body in _rules_by_name(value, errors).items():
                rules[name] = {**rules.get(name, {}), **body}
            result["rules"] = rules
        elif isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value, errors)
        else:
            result[key] = copy.deepcopy(value)
    return result


def format_validation_error(
    exc: ValidationError, prefix: str = "", unknown: str = "unknown setting"
) -> list[str]:
    """One line per problem: its dotted path, then what is wrong in words."""
    found: dict[str, tuple[bool, str]] = {}  # path -> (our own words?, line)
    for err in exc.errors():
        # a value that fits no member of a union is told once, at its own path: pydantic
        # names each member tried ("function-before[parse_dial_string(), str]", "literal['']")
        loc = prefix + ".".join(str(p) for p in err["loc"] if not _union_member(p))
        msg = err["msg"]
        ours = msg.startswith("Value error, ")
        if ours:
            msg = msg[len("Value error, ") :]
        elif err["type"] == "extra_forbidden":
            msg = unknown
        elif "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{err['input']!r}: {msg}"
        if loc not in found or (ours and not found[loc][0]):
            found[loc] = (ours, f"{loc}: {msg}")
    return [line for _, line in found.values()]


def _union_member(part: object) -> bool:
    return isinstance(part, str) and part.endswith("]") and (
        part.startswith(("function-", "literal[", "union[", "tagged-union[", "nullable["))
        or ("[" in part and "(" in part))


def raw_checks(data: Mapping[str, Any]) -> list[str]:
    """Checks across sections on the merged data, so they are listed even when another
    section does not validate: a missing country, emergency numbers removed."""
    errors: list[str] = []
    site = data.get("site") if isinstance(data.get("site"), Mapping) else {}
    country = site.get("country") if isinstance(site, Mapping) else None
    if country is None:
        errors.append("site.country: required (an ISO 3166 code such as JP or US); "
                      "set it in the config file or pass --country")
        return errors
    em = data.get("emergency")
    numbers = em.get("numbers") if isinstance(em, Mapping) else None
    if isinstance(country, str) and isinstance(numbers, list):
        try:
            wanted = countries.emergency_numbers(country.upper())
        except ValueError:
            return errors
        gone = [n for n in wanted if n not in {str(x) for x in numbers}]
        if gone:
            errors.append(f"emergency.numbers: leaves out {', '.join(gone)}: emergency numbers "
                          "of the home country are never removed (add others with `extra`)")
    return errors


def resolve(settings: Settings) -> list[str]:
    """Fill in what the home country implies, and the zone. Returns problems found."""
    errors: list[str] = []
    country = settings.site.country
    if country is None:
        return ["site.country: required (an ISO 3166 code such as JP or US); "
                "set it in the config file or pass --country"]
    if not settings.site.timezone:
        if len(settings.ami) + len(settings.csv_sources) > 1:
            errors.append("site.timezone: required when several PBXes are watched (a fleet): "
                          "state the zone of the site, e.g. \"Asia/Tokyo\"")
        settings.site.timezone = host_zone()
        settings.site._zone_origin = "host"
    dp = settings.dialplan
    if dp.international_prefixes is None:
        dp.international_prefixes = list(countries.international_prefixes(country))
    if dp.national_prefix is None:
        dp.national_prefix = countries.national_prefix(country)
    if dp.dial_prefixes is None:
        dp.dial_prefixes = list(countries.dial_prefixes(country))
    if dp.domestic_regions is None:
        dp.domestic_regions = list(countries.domestic_regions(country))
    em = settings.emergency
    if em.numbers is None:
        em.numbers = list(countries.emergency_numbers(country))
    hours = settings.hours
    if hours.holidays_country is None:
        # a home country the holidays package does not know: no public holidays (check-config
        # says so)
        hours.holidays_country = country if country in countries.holiday_countries() else ""
    if hours.holidays_country and hours.holidays_subdivision:
        import holidays

        try:
            holidays.country_holidays(hours.holidays_country, subdiv=hours.holidays_subdivision)
        except NotImplementedError:
            errors.append(f'hours.holidays_subdivision: "{hours.holidays_subdivision}" is not a '
                          f"subdivision of {hours.holidays_country} the holidays package knows")
    for ac in dp.access_codes:
        if ac in dp.international_prefixes:
            errors.append(f'dialplan.access_codes: "{ac}" is also an international prefix')
    leads = [*dp.international_prefixes, *([dp.national_prefix] if dp.national_prefix else [])]
    for p in dp.dial_prefixes:
        if not p.isdigit():  # the reading of a number stops at * and #: it would do nothing
            errors.append(f'dialplan.dial_prefixes: "{p}" is not digits only (a code with * or '
                          "# is a feature code for the PBX, not a prefix the network takes off)")
        elif any(x.startswith(p) for x in leads):  # "0", "01", "010" where 010 goes abroad
            errors.append(f'dialplan.dial_prefixes: "{p}" would take off the start of the '
                          f"international or national prefix ({', '.join(leads)})")
    return errors


def load_settings(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    rule_checks: Callable[[Mapping[str, Mapping[str, Any]]], list[str]] | None = None,
    check_secrets: bool = False,
) -> Settings:
    """Validate defaults + file + overrides; raise ConfigError listing every problem at once.

    rule_checks validates each rule's options by its type (the rules package knows them).
    check_secrets: also report referenced env vars / secret files that cannot be read.
    """
    errors: list[str] = []
    data = shipped_defaults()
    source = str(path) if path else None
    if path is not None:
        own = read_toml(path)
        if "pbx" in own:
            raise ConfigError(["pbx: a fleet file ([[pbx]] entries): use `tollwatch scan --fleet "
                               "FILE`, or `tollwatch check-config FILE` to see each PBX"], source)
        data = merge(data, own, errors)
    if overrides:
        data = merge(data, overrides, errors)
    data["rules"] = _rules_by_name(data.get("rules", {}), errors)
    if rule_checks is not None:
        errors.extend(rule_checks(data["rules"]))
    errors.extend(raw_checks(data))
    if check_secrets:
        from tollwatch.config.secrets import missing_secrets

        errors.extend(missing_secrets(data))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(errors + format_validation_error(exc), source) from None
    errors.extend(resolve(settings))
    errors = list(dict.fromkeys(errors))  # raw_checks and resolve may say the same
    if errors:
        raise ConfigError(errors, source)
    return settings


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with anything secret masked."""

    def mask(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: ("****" if any(w in k.lower() for w in SECRET_WORDS) and v else mask(v))
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [mask(v) for v in obj]
        return obj

    return mask(settings.model_dump(mode="json", exclude_none=True))  # type: ignore[no-any-return]
