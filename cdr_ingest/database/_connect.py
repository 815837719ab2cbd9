"""Database URLs and queries: ConnectorX through polars, errors as one line without the password.

ConnectorX (`pl.read_database_uri(engine="connectorx")`) reads MySQL/MariaDB and PostgreSQL
result sets straight into Arrow memory in Rust; measured on a 1M-row FreePBX table it was the
fastest of the drivers on PyPI (see bench/README.md). It takes no bound parameters, so every value
put into SQL here is made by this package (times formatted from datetimes, identifiers checked
against the table's own column list and quoted).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import polars as pl

from .._types import IngestError
from ._probe import probe

# ConnectorX's connection pool logs every failed connection attempt straight to stderr (up to
# 30 s of retries): the one-line DbError says it all. RUST_LOG set by the user wins.
os.environ.setdefault("RUST_LOG", "r2d2=off")

Dialect = Literal["mysql", "postgresql"]
_SCHEMES: dict[str, Dialect] = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}
_PORTS = {"mysql": 3306, "postgresql": 5432}


class DbError(IngestError):
    """The database cannot be reached or read, or the table is not a CDR table (one line)."""


@dataclass(frozen=True)
class DbUrl:
    """A parsed `mysql://user@host:3306/db` or `postgresql://user@host:5432/db` URL."""

    dialect: Dialect
    user: str
    host: str
    port: int
    database: str
    query: str = ""

    @property
    def shown(self) -> str:
        """The URL as it may be logged (it never holds a password)."""
        return f"{self.dialect}://{self.user}@{self.host}:{self.port}/{self.database}"

    def uri(self, password: str | None) -> str:
        """The URL ConnectorX connects with; keep it out of logs and messages."""
        secret = f":{quote(password, safe='')}" if password else ""
        scheme = "mysql" if self.dialect == "mysql" else "postgresql"
        tail = f"?{self.query}" if self.query else ""
        user = quote(self.user, safe="")
        return f"{scheme}://{user}{secret}@{self.host}:{self.port}/{self.database}{tail}"


def parse_url(url: str) -> DbUrl:
    """Parse a database URL; ValueError names what is wrong (a password in it is refused)."""
    parts = urlsplit(url)
    dialect = _SCHEMES.get(parts.scheme.lower())
    if dialect is None:
        raise ValueError(f"{parts.scheme or url!r}: not mysql:// or postgresql://")
    if parts.password:
        raise ValueError("no password in the URL: use password_env or password_file")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError(f"{url}: no database name (mysql://user@host:3306/asteriskcdrdb)")
    try:
        port = parts.port or _PORTS[dialect]
    except ValueError:
        raise ValueError(f"{url}: bad port") from None
    return DbUrl(
        dialect, unquote(parts.username or ""), parts.hostname or "127.0.0.1", port, database,
        parts.query,
    )


@dataclass(frozen=True)
class Connection:
    """What a query needs: the URL, the password (never shown), and a label for messages."""

    url: DbUrl
    password: str | None = None

    def read(self, sql: str) -> pl.DataFrame:
        """Run one query; DbError (one line, password removed) on any failure."""
        try:
            return pl.read_database_uri(sql, self.url.uri(self.password), engine="connectorx")
        except Exception as exc:  # the driver raises many kinds; all mean "cannot read"
            message = self._clean(str(exc) or type(exc).__name__)
            raise DbError(f"{self.url.shown}: {message}") from None

    def check(self) -> None:
        """Connect once with the database's own driver (`_probe`): DbError at once for a
        wrong password, an unknown database or a server that is down, instead of after
        ConnectorX's 30 s of retries."""
        error = probe(self.url, self.password)
        if error is not None:
            raise DbError(f"{self.url.shown}: {self._clean(error)}")

    def _clean(self, message: str) -> str:
        text = " ".join(message.split()) or "error"
        if self.password:
            text = text.replace(self.password, "****")
            text = text.replace(quote(self.password, safe=""), "****")
        text = re.sub(r"://[^@/\s]*@", "://", text)  # any URL with credentials
        return text[:300]


def quote_ident(dialect: Dialect, name: str) -> str:
    if dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def quote_text(dialect: Dialect, value: str) -> str:
    """A string literal (values made here: table and schema names already checked)."""
    escaped = value.replace("'", "''")
    if dialect == "mysql":
        escaped = escaped.replace("\\", "\\\\")
    return f"'{escaped}'"
