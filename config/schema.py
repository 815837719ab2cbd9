"""The settings schema (pydantic v2). One TOML file; shipped defaults in defaults.toml."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.types import DialString, Duration, HoursRange, Prefix, PrefixText

CdrLayout = Literal[
    "auto",
    "base",
    "uniqueid",
    "userfield",
    "uniqueid+userfield",
    "newcdrcolumns",
    "uniqueid+newcdrcolumns",
    "userfield+newcdrcolumns",
    "uniqueid+userfield+newcdrcolumns",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Site(Strict):
    name: str = "pbx"
    timezone: str = "UTC"
    country: str | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'"{value}" is not an IANA time zone like "Asia/Tokyo"') from None
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from phonenumbers import SUPPORTED_REGIONS

        up = value.upper()
        if up not in SUPPORTED_REGIONS:
            raise ValueError(f'"{value}" is not an ISO 3166 country code like "JP" or "US"')
        return up


class DialPlan(Strict):
    access_codes: list[DialString] = Field(default_factory=list)
    international_prefixes: list[DialString] | None = None
    national_prefix: DialString | Literal[""] | None = None
    max_extension_length: int = Field(default=6, ge=1, le=10)
    domestic_regions: list[str] | None = None


class Hours(Strict):
    monday: list[HoursRange] = Field(default_factory=list)
    tuesday: list[HoursRange] = Field(default_factory=list)
    wednesday: list[HoursRange] = Field(default_factory=list)
    thursday: list[HoursRange] = Field(default_factory=list)
    friday: list[HoursRange] = Field(default_factory=list)
    saturday: list[HoursRange] = Field(default_factory=list)
    sunday: list[HoursRange] = Field(default_factory=list)
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    closures: list[date] = Field(default_factory=list)

    def for_weekday(self, weekday: int) -> list[Any]:
        days = (
            self.monday,
            self.tuesday,
            self.wednesday,
            self.thursday,
            self.friday,
            self.saturday,
            self.sunday,
        )
        return list(days[weekday])


class HighRisk(Strict):
    file: Path | None = None
    add: list[PrefixText] = Field(default_factory=list)
    remove: list[PrefixText] = Field(default_factory=list)


class Allowlist(Strict):
    prefixes: list[Prefix] = Field(default_factory=list)
    sources: dict[str, list[Prefix]] = Field(default_factory=dict)


class Emergency(Strict):
    numbers: list[DialString] | None = None
    extra: list[DialString] = Field(default_factory=list)


class Outbound(Strict):
    trunks: list[str] = Field(default_factory=list)
    contexts: list[str] = Field(default_factory=list)
    phones: list[str] = Field(default_factory=list)


class Cdr(Strict):
    files: list[Path] = Field(default_factory=list)
    layout: CdrLayout = "auto"
    usegmtime: bool = False


class Incidents(Strict):
    warning_score: int = Field(default=60, ge=1)
    critical_score: int = Field(default=100, ge=1)
    gap: Duration = timedelta(hours=1)


class Rates(Strict):
    currency: str = "USD"
    file: Path | None = None
    per_minute: dict[Prefix, float] = Field(default_factory=dict)


class RuleSpec(BaseModel):
    """A rule as written in the file: its type, whether it runs, and its typed options."""

    model_config = ConfigDict(extra="allow")
    type: str
    enabled: bool = True


class Settings(Strict):
    site: Site = Field(default_factory=Site)
    dialplan: DialPlan = Field(default_factory=DialPlan)
    hours: Hours = Field(default_factory=Hours)
    high_risk: HighRisk = Field(default_factory=HighRisk)
    allowlist: Allowlist = Field(default_factory=Allowlist)
    emergency: Emergency = Field(default_factory=Emergency)
    outbound: Outbound = Field(default_factory=Outbound)
    cdr: Cdr = Field(default_factory=Cdr)
    incidents: Incidents = Field(default_factory=Incidents)
    rates: Rates = Field(default_factory=Rates)
    rules: dict[str, RuleSpec] = Field(default_factory=dict)
