"""A fleet of PBXes in one settings file: `[[pbx]]` entries over shared top-level defaults.

Each PBX's effective settings are the shipped defaults, then the file's top level (shared by
every PBX), then command-line overrides, then its own `[[pbx]]` entry: the same merge as a
single-site file (tables key by key, rules by name, lists replaced). An entry holds any
per-site section (`site`, `dialplan`, `hours`, `high_risk`, `allowlist`, `emergency`,
`outbound`, `cdr`, `incidents`, `rates`, `rules`, `slack`, `remediation`, `report`) and one
optional `ami` connection table; `daemon` stays shared. Errors name `pbx[<name>].<path>`; a PBX
with bad settings is reported and the others still resolve.

The directory convention (`ROOT/<pbx>/Master.csv*`, optional `ROOT/<pbx>/tollwatch.toml` with
an entry's keys) resolves the same way, shared defaults from `ROOT/tollwatch.toml`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tollwatch.config.load import (
    ConfigError,
    _rules_by_name,
    format_validation_error,
    merge,
    read_toml,
    resolve,
    shipped_defaults,
)
from tollwatch.config.schema import Settings

RuleChecks = Callable[[Mapping[str, Mapping[str, Any]]], list[str]]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}\Z")
SHARED_ONLY = frozenset({"daemon"})  # one daemon for the fleet
PER_PBX_ONLY = frozenset({"ami", "csv_sources"})  # a connection belongs to one PBX
ENTRY_KEYS = frozenset(Settings.model_fields) - SHARED_ONLY - {"csv_sources"}
SETTINGS_FILE = "tollwatch.toml"
PATH_KEYS = (
    ("cdr", "files"), ("cdr", "custom_conf"), ("cdr", "password_file"), ("baseline", "file"),
    ("high_risk", "file"), ("rates", "file"), ("slack", "token_file"), ("slack", "webhook_file"),
    ("ami", "secret_file"),
)
CDR_GLOB = "Master.csv*"


@dataclass
class Entry:
    """One PBX as written: its name, its own keys, and where relative paths start."""

    name: str
    body: dict[str, Any]
    base: Path
    default_files: list[Path] = field(default_factory=list)  # the directory convention's


@dataclass
class Fleet:
    """Resolved PBXes in file order: effective settings, or the errors that stopped them."""

    source: str
    settings: dict[str, Settings] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)  # defaults + top level + overrides

    @property
    def ok(self) -> bool:
        return not self.errors


def is_fleet_file(path: Path) -> bool:
    """True when the file has `[[pbx]]` entries (read errors: False, the loader reports)."""
    try:
        return "pbx" in read_toml(path)
    except ConfigError:
        return False


def load_fleet(
    path: Path,
    overrides: Mapping[str, Any] | None = None,
    rule_checks: RuleChecks | None = None,
    shared: Path | None = None,
) -> Fleet:
    """Resolve a fleet file, or a fleet directory (ROOT/<pbx>/Master.csv*).

    `shared`: a settings file with the shared defaults (a directory's default is
    ROOT/tollwatch.toml if present; a fleet file's top level is its own). Raises ConfigError
    for problems of the whole fleet; per-PBX problems are in `Fleet.errors`.
    """
    if path.is_dir():
        top, entries = _from_directory(path, shared)
    else:
        top, entries = _from_file(path)
        if shared is not None:
            top = merge(_shared(shared), top, [])
    return resolve_fleet(top, entries, str(path), overrides, rule_checks)


def _shared(path: Path) -> dict[str, Any]:
    data = read_toml(path)
    if "pbx" in data:
        raise ConfigError(["pbx: the shared settings file cannot have [[pbx]] entries"], str(path))
    return absolute_paths(data, path.parent.resolve())


def absolute_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative file paths of a fleet's settings start at the directory of the file (or the
    PBX directory) they are written in, so tasks find them wherever they run."""
    for section, key in PATH_KEYS:
        table = data.get(section)
        if not isinstance(table, dict) or key not in table:
            continue
        value = table[key]
        if isinstance(value, str):
            table[key] = str(base / value)
        elif isinstance(value, list):
            table[key] = [str(base / v) if isinstance(v, str) else v for v in value]
    return data


def _from_file(path: Path) -> tuple[dict[str, Any], list[Entry]]:
    data = absolute_paths(read_toml(path), path.parent.resolve())
    raw = data.pop("pbx", None)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(["pbx: a fleet file needs [[pbx]] entries (an array of tables)"],
                          str(path))
    errors: list[str] = []
    entries = []
    for i, body in enumerate(raw):
        if not isinstance(body, Mapping):
            errors.append(f"pbx[#{i + 1}]: must be a table")
            continue
        body = dict(body)
        name = body.pop("name", None)
        if not isinstance(name, str) or not NAME.match(name):
            errors.append(f"pbx[#{i + 1}].name: required, 1-40 letters, digits, '_', '.', '-' "
                          f"(not starting with '.', '_' or '-'); got {name!r}")
            continue
        entries.append(Entry(name, absolute_paths(body, path.parent.resolve()),
                             path.parent.resolve()))
    if errors:
        raise ConfigError(errors, str(path))
    return data, entries


def _from_directory(root: Path, shared: Path | None) -> tuple[dict[str, Any], list[Entry]]:
    shared = shared or (root / SETTINGS_FILE if (root / SETTINGS_FILE).is_file() else None)
    top = _shared(shared) if shared is not None else {}
    entries = []
    skipped = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(sub.glob(CDR_GLOB))
        own = sub / SETTINGS_FILE
        if not files and not own.is_file():
            continue
        if not NAME.match(sub.name):
            skipped.append(f"{sub}: not a PBX name (letters, digits, '_', '.', '-')")
            continue
        body = absolute_paths(read_toml(own), sub.resolve()) if own.is_file() else {}
        body.pop("name", None)
        entries.append(Entry(sub.name, body, sub.resolve(), [f.resolve() for f in files]))
    if skipped:
        raise ConfigError(skipped, str(root))
    if not entries:
        raise ConfigError([f"no PBX directories ({root}/<pbx>/{CDR_GLOB} or "
                           f"{root}/<pbx>/{SETTINGS_FILE})"], str(root))
    return top, entries


def resolve_fleet(
    top: dict[str, Any],
    entries: list[Entry],
    source: str,
    overrides: Mapping[str, Any] | None = None,
    rule_checks: RuleChecks | None = None,
) -> Fleet:
    """Per-PBX effective settings: shipped defaults -> top level -> overrides -> entry."""
    errors = [f"{key}: set it in each [[pbx]] entry (a connection belongs to one PBX)"
              for key in sorted(PER_PBX_ONLY & top.keys())]
    cdr = top.get("cdr")
    if isinstance(cdr, Mapping) and "files" in cdr:
        errors.append("cdr.files: set it in each [[pbx]] entry")
    counts = Counter(e.name for e in entries)
    errors += [f"pbx[{n}]: defined {c} times" for n, c in counts.items() if c > 1]
    if errors:
        raise ConfigError(errors, source)
    base = merge(shipped_defaults(), top, errors)
    if overrides:
        base = merge(base, overrides, errors)
    if errors:
        raise ConfigError(errors, source)
    fleet = Fleet(source, shared=base)
    for entry in entries:
        fleet.order.append(entry.name)
        settings, problems = _resolve_entry(base, entry, rule_checks)
        if settings is not None:
            fleet.settings[entry.name] = settings
        else:
            fleet.errors[entry.name] = problems
    _raise_if_shared(fleet)
    return fleet


def _resolve_entry(
    base: dict[str, Any], entry: Entry, rule_checks: RuleChecks | None
) -> tuple[Settings | None, list[str]]:
    head = f"pbx[{entry.name}]."
    errors: list[str] = []
    body = dict(entry.body)
    unknown = sorted(set(body) - ENTRY_KEYS)
    errors += [f"{head}{k}: not a per-PBX setting" + (" (shared: set it at the top level)"
               if k in SHARED_ONLY else "") for k in unknown]
    ami = body.pop("ami", None)
    body = {k: v for k, v in body.items() if k in ENTRY_KEYS}
    data = merge(base, body, errors)
    site = data.setdefault("site", {})
    own_site = body.get("site")
    if isinstance(site, dict) and not (isinstance(own_site, Mapping) and "name" in own_site):
        site["name"] = entry.name
    data["ami"] = []
    if ami is not None:
        if isinstance(ami, Mapping):
            data["ami"] = [{"name": entry.name, **ami}]
        else:
            errors.append(f"{head}ami: must be a table (host, port, username, secret_env)")
    _files(data, entry)
    data["rules"] = _rules_by_name(data.get("rules", {}), errors)
    if rule_checks is not None:
        errors += rule_checks(data["rules"])
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors += format_validation_error(exc, unknown="unknown setting")
        return None, [_prefixed(head, e) for e in errors]
    if not settings.site.timezone:  # the host's zone is only a single site's default
        errors.append("site.timezone: required for each PBX of a fleet (here or at the top "
                      'level), e.g. "Asia/Tokyo"')
    errors += resolve(settings)
    if errors:
        return None, [_prefixed(head, e) for e in errors]
    return settings, []


def _prefixed(head: str, error: str) -> str:
    if error.startswith(head):
        return error
    return head + re.sub(r"^ami\.0(?=[.:])", "ami", error)


def _files(data: dict[str, Any], entry: Entry) -> None:
    """The directory convention's files, unless the entry names its own CDR source."""
    cdr = data.setdefault("cdr", {})
    if isinstance(cdr, dict) and cdr.get("files") is None and not cdr.get("database"):
        cdr["files"] = [str(f) for f in entry.default_files]


def _raise_if_shared(fleet: Fleet) -> None:
    """An error every PBX has comes from the shared part: report it once, as the whole fleet's."""
    if len(fleet.errors) != len(fleet.order) or len(fleet.order) < 2:
        return
    per_pbx = [{e.removeprefix(f"pbx[{name}].") for e in errs}
               for name, errs in fleet.errors.items()]
    common = set.intersection(*per_pbx)
    if common:
        raise ConfigError([f"{e} (in every [[pbx]])" for e in sorted(common)], fleet.source)
