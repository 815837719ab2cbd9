"""The settings schema (pydantic v2). One TOML file; shipped defaults in defaults.toml."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tollwatch.config.types import (
    DialString,
    Duration,
    HoursRange,
    Interval,
    Prefix,
    PrefixText,
    at_least,
    https_or_local,
    one_line,
)

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
    "cdr_custom",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Site(Strict):
    name: str = "pbx"
    timezone: str = ""  # "": the host's zone (a single site); filled in when loading
    country: str | None = None
    # where the zone came from: "settings" or "host" (said in every summary)
    _zone_origin: str = PrivateAttr(default="settings")

    @property
    def zone_label(self) -> str:
        """The zone for people: "Asia/Tokyo", or "Etc/UTC (the host's zone ...)"."""
        if self._zone_origin == "host":
            return f"{self.timezone} (the host's zone; set site.timezone or --tz)"
        return self.timezone

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if value == "":
            return value
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
    # codes the network takes off before it routes a number: caller-ID privacy (184/186 in
    # Japan, 141 in the UK); default: the home country's (config.countries.dial_prefixes).
    # Japan's carrier codes come before 010 only: they are international prefixes (0033010)
    dial_prefixes: list[DialString] | None = None
    max_extension_length: int = Field(default=6, ge=1, le=10)
    domestic_regions: list[str] | None = None

    def international(self) -> list[str]:
        """The international prefixes, longest first, ties by text (one order everywhere: the
        snippet's lines once followed the hash seed)."""
        return sorted(set(self.international_prefixes or []), key=lambda p: (-len(p), p))

    def outside_codes(self) -> list[str]:
        """What may come before a number, taken off to read it: the outside-line access codes,
        the dial prefixes, up to two dial prefixes in a row ("184" "0033" "010..."), each of
        those after an access code; longest first (ties in order, for stable output)."""
        prefixes = list(dict.fromkeys(self.dial_prefixes or []))
        runs = prefixes + [a + b for a in prefixes for b in prefixes if a != b]
        access = list(dict.fromkeys(self.access_codes))
        codes = access + runs + [ac + r for ac in access for r in runs]
        return sorted(dict.fromkeys(codes), key=lambda c: (-len(c), c))

    def code_leads(self) -> list[tuple[str, str]]:
        """(code, prefix) pairs: a number dialed as code + international or national prefix +
        the rest is read without the code. The longer pair is tried first, then the one with
        the longer prefix: with access code "0" in Japan, "0 010 232..." is a call abroad
        through the access code, not KDDI's "001" before "0 232..." (settings resolved)."""
        leads = [*self.international(), *([self.national_prefix] if self.national_prefix else [])]
        pairs = {(c, lead) for c in self.outside_codes() for lead in leads}
        return sorted(pairs, key=lambda p: (-len(p[0] + p[1]), -len(p[1]), p))


class Hours(Strict):
    monday: list[HoursRange] = Field(default_factory=list)
    tuesday: list[HoursRange] = Field(default_factory=list)
    wednesday: list[HoursRange] = Field(default_factory=list)
    thursday: list[HoursRange] = Field(default_factory=list)
    friday: list[HoursRange] = Field(default_factory=list)
    saturday: list[HoursRange] = Field(default_factory=list)
    sunday: list[HoursRange] = Field(default_factory=list)
    holidays_country: str | None = None  # default site.country; "" for none
    holidays_subdivision: str | None = None
    closures: list[date] = Field(default_factory=list)

    @field_validator("holidays_country")
    @classmethod
    def _holidays(cls, value: str | None) -> str | None:
        if not value:
            return value
        from tollwatch.config.countries import holiday_countries

        up = value.upper()
        if up not in holiday_countries():
            raise ValueError(f'"{value}" is not a country the holidays package knows '
                             '(an ISO 3166 code like "JP"; "" for no public holidays)')
        return up

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


_DB_COLUMN = r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$"


class CdrDatabase(Strict):
    """Where a CDR table is and how to read it (the [cdr] keys, and each [[db_sources]])."""

    database: str | None = None  # mysql://user@host:3306/asteriskcdrdb, postgresql://...
    table: str = Field(default="cdr", pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,63}"
                       r"(\.[A-Za-z_][A-Za-z0-9_$]{0,63})?$")
    password_env: str | None = None  # the database password: an environment variable ...
    password_file: Path | None = None  # ... or a file (mode 0600); none: no password
    db_columns: dict[str, str] = Field(default_factory=dict)  # CDR field -> table column
    db_timezone: str | None = None  # zone of naive times in the table (default: site's)
    poll: Interval = timedelta(seconds=5)  # follow: how often new rows are looked for
    settle: Duration = timedelta(minutes=10)  # follow: how late a row may be inserted
    longest_call: Duration = timedelta(hours=24)  # follow: calls longer are not looked back for

    @field_validator("db_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            Site._tz(value)
        return value

    @field_validator("db_columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        known = {"accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel",
                 "lastapp", "lastdata", "start", "answer", "end", "duration", "billsec",
                 "disposition", "uniqueid", "userfield", "linkedid", "sequence", "id"}
        for name, column in value.items():
            if name not in known:
                raise ValueError(f'"{name}" is not a CDR field ({", ".join(sorted(known))})')
            if not re.match(_DB_COLUMN, column):
                raise ValueError(f'"{column}" is not a plain column name')
        return value

    @model_validator(mode="after")
    def _secret(self) -> CdrDatabase:
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("set at most one of password_env or password_file")
        if self.database is not None:
            from urllib.parse import urlsplit

            url = urlsplit(self.database)
            if url.scheme not in ("mysql", "mariadb", "postgresql", "postgres"):
                raise ValueError("database: a mysql://user@host:3306/db or "
                                 "postgresql://user@host:5432/db URL")
            if url.password:
                raise ValueError("database: no password in the URL; use password_env or "
                                 "password_file")
        return self


class Cdr(CdrDatabase):
    files: list[Path] = Field(default_factory=list)
    layout: CdrLayout = "auto"
    usegmtime: bool = False
    # A headerless file's columns in order (a cdr_custom mapping); "" for a column to ignore.
    columns: list[str] = Field(default_factory=list)
    # Or the cdr_custom.conf to read that mapping from.
    custom_conf: Path | None = None

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: list[str]) -> list[str]:
        from tollwatch.cdr_ingest.dialects import CANONICAL, canonical_column

        unknown = [c for c in value if c and canonical_column(c) is None]
        if unknown:
            raise ValueError(
                f"unknown CDR column(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(CANONICAL)}, calldate, ...)"
            )
        return value


class Incidents(Strict):
    warning_score: int = Field(default=60, ge=1)
    critical_score: int = Field(default=100, ge=1)
    gap: Duration = timedelta(hours=1)
    # an incident lists the details of its first and last calls (counts and sums stay exact)
    keep_first_calls: int = Field(default=50, ge=0)
    keep_last_calls: int = Field(default=150, ge=0)

    @model_validator(mode="after")
    def _order(self) -> Incidents:
        if self.warning_score >= self.critical_score:
            raise ValueError(f"warning_score ({self.warning_score}) must be below "
                             f"critical_score ({self.critical_score})")
        return self


Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # per minute, in [rates] currency


class Rates(Strict):
    currency: str = "USD"
    file: Path | None = None
    per_minute: dict[Prefix, Rate] = Field(default_factory=dict)


class AmiServer(Strict):
    """An Asterisk server to watch over AMI. The secret never sits in this file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    host: str = "127.0.0.1"
    port: int = Field(default=5038, ge=1, le=65535)
    username: str
    secret_env: str | None = None  # name of an environment variable holding the secret
    secret_file: Path | None = None  # a file (mode 0600) holding the secret
    # This PBX's Master.csv: calls made while AMI was down are recovered from it on reconnect
    cdr_file: Path | None = None

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not 1 <= len(value) <= 80 or not one_line(value):
            raise ValueError(f"{value!r} is not an AMI user name (one line of 1-80 characters: "
                             "it goes into the Login action's header)")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> AmiServer:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("set exactly one of secret_env or secret_file")
        return self


class CsvSource(Strict):
    """A Master.csv to follow where AMI is not available."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    path: Path


class DbSource(CdrDatabase):
    """A CDR table the daemon follows; keys not set here come from [cdr]."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")


class Baseline(Strict):
    """What is learned per site (rules.baseline) and how much history it needs."""

    period: Duration = timedelta(days=28)  # how far back the baseline looks
    min_history: Duration = timedelta(days=14)  # until then the absolute floors apply alone
    quantile: float = Field(default=0.9, gt=0, le=1)  # the "usual" of a slot: this quantile
    routine_days: int = Field(default=6, ge=1)  # a destination called on this many days ...
    routine_sources: int = Field(default=2, ge=1)  # ... from this many sources is routine
    usual_hour_days: int = Field(default=4, ge=1)  # a source calls abroad at an hour this often
    file: Path | None = None  # learned by `tollwatch learn`; the daemon starts from it


class Daemon(Strict):
    data_dir: Path = Path("/var/lib/tollwatch")
    snapshot_every: Interval = timedelta(seconds=2)
    status_every: Interval = timedelta(seconds=5)
    max_backoff: Interval = timedelta(seconds=60)
    max_backlog: int = Field(default=200_000, ge=100)  # events queued before sources pause
    # no progress this long: stop the watchdog (timers tick every second: at least 2s)
    stall_after: Annotated[Duration, at_least(timedelta(seconds=2))] = timedelta(seconds=30)


class Slack(Strict):
    """Slack alerts: a bot token + channel (Web API) or an incoming webhook. Secrets by env/file."""

    enabled: bool = False
    channel: str | None = None  # bot mode: channel id or name
    token_env: str | None = None
    token_file: Path | None = None
    webhook_env: str | None = None
    webhook_file: Path | None = None
    base_url: str | None = None  # Web API base, e.g. a proxy; default https://slack.com/api/
    updates: bool = True  # thread replies when an incident grows
    flood_threshold: int = Field(default=10, ge=2)  # this many new incidents ...
    flood_window: Duration = timedelta(minutes=1)  # ... within this span: one summary message
    max_retry_delay: Interval = timedelta(minutes=5)
    # who is notified on a critical incident: "@here", "@channel", a user group "<!subteam^S0..>"
    # or a user "<@U0..>"; empty: nobody
    mention: str = Field(default="", pattern=r"^(|@here|@channel|<!subteam\^[A-Z0-9]+(\|[^>]*)?>|"
                         r"<@[A-Z0-9]+>)$")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        """The bot token goes there: https, or http only to this host (a test stand-in)."""
        if value is not None and not https_or_local(value):
            raise ValueError(f'"{value}" is not an https:// URL (http:// only to this host)')
        return value

    @model_validator(mode="after")
    def _mode(self) -> Slack:
        if not self.enabled:
            return self
        bot = self.token_env is not None or self.token_file is not None
        hook = self.webhook_env is not None or self.webhook_file is not None
        if bot == hook:
            raise ValueError("set either token_env/token_file (with channel) or "
                             "webhook_env/webhook_file")
        if bot and not self.channel:
            raise ValueError("a bot token needs a channel")
        return self


class Remediation(Strict):
    """Pushing blocks into the Asterisk dialplan (AstDB). Dry run unless enabled."""

    enabled: bool = False  # false: log and post what would be done, send nothing to Asterisk
    severity: Literal["warning", "critical"] = "critical"  # block incidents this severe
    rules: list[str] = Field(default_factory=list)  # ... and one of these fired (empty: any)
    block: Literal["prefix", "source", "both"] = "prefix"  # source: its international calls
    prefix: Literal["range", "calling_code", "risk_prefix"] = "range"  # see remediation.scope
    hangup: bool = True  # hang up the incident's calls still up
    ttl: Annotated[Duration, at_least(timedelta(minutes=1))] = timedelta(hours=24)
    max_per_hour: int = Field(default=10, ge=1)
    family: str = "tollwatch"  # AstDB families <family>/block and <family>/src


class Report(Strict):
    """The nightly CDR report the daemon writes (and `tollwatch report` by hand)."""

    enabled: bool = True  # in the daemon, when [cdr] files are set
    at: str = Field(default="06:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # site time
    out_dir: Path | None = None  # default: <data_dir>/reports
    keep_days: int = Field(default=90, ge=0)  # 0: keep all
    misfire_grace: Duration = timedelta(hours=6)
    slack: bool = True  # post the summary to Slack when Slack is enabled


class Metrics(Strict):
    """Prometheus metrics over HTTP (off unless `listen` is set)."""

    # "127.0.0.1:9469", ":9469" (all addresses), "[::1]:9469"
    listen: str | None = Field(default=None,
                               pattern=r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$")

    @field_validator("listen")
    @classmethod
    def _port(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= int(value.rpartition(":")[2]) <= 65535:
            raise ValueError(f'"{value}": the port is not 1-65535')
        return value


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
    daemon: Daemon = Field(default_factory=Daemon)
    baseline: Baseline = Field(default_factory=Baseline)
    slack: Slack = Field(default_factory=Slack)
    remediation: Remediation = Field(default_factory=Remediation)
    report: Report = Field(default_factory=Report)
    metrics: Metrics = Field(default_factory=Metrics)
    ami: list[AmiServer] = Field(default_factory=list)
    csv_sources: list[CsvSource] = Field(default_factory=list)
    db_sources: list[DbSource] = Field(default_factory=list)
    rules: dict[str, RuleSpec] = Field(default_factory=dict)
