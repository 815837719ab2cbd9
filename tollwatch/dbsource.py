"""The CDR database from the settings: `[cdr] database` (scan, report) and `[[db_sources]]`
(the daemon; keys not set there come from `[cdr]`). The password is read here, from the
environment or a file, and goes nowhere but the driver."""

from __future__ import annotations

from typing import Any

from tollwatch.cdr_ingest.database import CdrDatabase, DbError
from tollwatch.config import Settings
from tollwatch.config.schema import CdrDatabase as DbSettings
from tollwatch.config.schema import DbSource
from tollwatch.config.secrets import read_secret

_DB_KEYS = tuple(DbSettings.model_fields)


def merged(settings: Settings, source: DbSource | None = None) -> DbSettings:
    """[cdr]'s database keys, overridden by those set in a [[db_sources]] entry."""
    base: dict[str, Any] = {k: getattr(settings.cdr, k) for k in _DB_KEYS}
    if source is not None:
        for key in source.model_fields_set & set(_DB_KEYS):
            base[key] = getattr(source, key)
    return DbSettings(**base)


def open_database(spec: DbSettings, what: str = "cdr") -> CdrDatabase:
    """Connect and recognize the table. DbError / SecretError say what is wrong in one line."""
    if spec.database is None:
        raise DbError(f"{what}: no database set (e.g. database = "
                      '"mysql://tollwatch@127.0.0.1:3306/asteriskcdrdb")')
    password = None
    if spec.password_env is not None or spec.password_file is not None:
        password = read_secret(spec.password_env, spec.password_file, f"{what}.password")
    return CdrDatabase.open(
        spec.database, spec.table, password, dict(spec.db_columns), spec.db_timezone
    )


def settings_database(settings: Settings) -> CdrDatabase:
    """The `[cdr] database` table (for scan --db, report, learn)."""
    return open_database(merged(settings), "cdr")
