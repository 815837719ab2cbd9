"""Load settings for a command: the file (if any) plus command-line overrides, rules checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tollwatch.cdr_ingest import CdrOptions
from tollwatch.cdr_ingest.dialects.cdr_custom import columns_from_conf
from tollwatch.config import ConfigError, Settings, load_settings
from tollwatch.config.load import default_path
from tollwatch.rules.base import check_rules


def overrides(
    country: str | None = None,
    tz: str | None = None,
    access_codes: list[str] | None = None,
    site: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    site_over: dict[str, Any] = {}
    if country:
        site_over["country"] = country
    if tz:
        site_over["timezone"] = tz
    if site:
        site_over["name"] = site
    if site_over:
        out["site"] = site_over
    if access_codes:
        out["dialplan"] = {"access_codes": access_codes}
    return out


def load(
    config: Path | None,
    over: dict[str, Any] | None = None,
    *,
    use_default: bool = True,
    check_secrets: bool = False,
) -> Settings:
    """`config`, else (use_default) $TOLLWATCH_CONFIG or /etc/tollwatch/tollwatch.toml if it
    exists; then the overrides; rules checked by type."""
    if config is None and use_default:
        config = default_path()
    settings = load_settings(config, over or {}, rule_checks=check_rules,
                             check_secrets=check_secrets)
    try:
        cdr_columns(settings)  # a [cdr] custom_conf that cannot be read is a settings error
        list_files(settings)
    except ConfigError as exc:
        raise ConfigError(exc.errors, str(config) if config else None) from None
    return settings


def list_files(settings: Settings) -> None:
    """[rates] file and [high_risk] file: ConfigError naming each that cannot be read (they
    are otherwise first read by the classifier, mid-command)."""
    from tollwatch.rules.prefixes import high_risk_list, rate_table

    errors = []
    for key, file, read in (("rates.file", settings.rates.file, rate_table),
                            ("high_risk.file", settings.high_risk.file, high_risk_list)):
        if file is None:  # nothing of the user's to check (the shipped list is ours)
            continue
        try:
            read(settings)
        except ValueError as exc:
            errors.append(f"{key}: {exc}")
    if errors:
        raise ConfigError(errors)


def rule_specs(settings: Settings) -> dict[str, dict[str, Any]]:
    return {name: spec.model_dump() for name, spec in settings.rules.items()}


def cdr_columns(settings: Settings) -> tuple[str, ...]:
    """[cdr] columns, else the mapping of [cdr] custom_conf (ConfigError if unreadable)."""
    if settings.cdr.columns:
        return tuple(settings.cdr.columns)
    if settings.cdr.custom_conf is None:
        return ()
    try:
        return tuple(columns_from_conf(settings.cdr.custom_conf))
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f"{settings.cdr.custom_conf}: "
        raise ConfigError([f"cdr.custom_conf: {where}{why.removeprefix(where)}"]) from None


def cdr_options(settings: Settings) -> CdrOptions:
    return CdrOptions(
        timezone=settings.site.timezone,
        usegmtime=settings.cdr.usegmtime,
        layout=settings.cdr.layout,
        columns=cdr_columns(settings),
        trunks=tuple(settings.outbound.trunks),
        phones=tuple(settings.outbound.phones),
        contexts=tuple(settings.outbound.contexts),
        max_extension_length=settings.dialplan.max_extension_length,
    )
