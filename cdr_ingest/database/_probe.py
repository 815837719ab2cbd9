"""One plain connection before ConnectorX's first query, so that a wrong password, an unknown
database or a server that is down is told in a fraction of a second.

ConnectorX's connection pool (r2d2) retries every failed connection, an "Access denied" as
much as a refused port, until its fixed 30-second timeout, and offers no setting for it: an
administrator who mistyped a password waited 30 s for the one-line error. The probe connects
once with the database's own Python driver (PyMySQL, psycopg), with the same user, password,
host, port and database, and closes at once; its error is the one reported. It is made
only where it reproduces what ConnectorX will do: a MySQL URL with options (`?ssl-mode=...`)
is not probed (PyMySQL would connect without them), and a PostgreSQL URL without `sslmode`
is probed with `sslmode=disable`, as ConnectorX connects then. A probe that passes costs one
connection (a few ms); ConnectorX then reads as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from ._connect import DbUrl

TIMEOUT = 10  # seconds to connect (a host that drops packets)

# MySQL client and server errors that mean the same failure for any driver: access denied
# (1044, 1045), unknown database (1049), cannot reach the server (2003, 2005: unknown host).
_MYSQL_FINAL = {1044, 1045, 1049, 2003, 2005}
# libpq's connection errors with the same meaning: the server said no (a FATAL: password,
# role, database, pg_hba), nothing listens, the host has no address or route, no answer within
# TIMEOUT (as MySQL's 2003 says too); but not the FATALs a moment fixes (starting up, shutting
# down, in recovery, too many clients)
_PG_FINAL = ("FATAL:", "Connection refused", "resolve host", "translate host name",
             "No route to host", "Network is unreachable", "timeout expired")
_PG_PASSING = ("starting up", "shutting down", "recovery", "too many")


def probe(url: DbUrl, password: str | None) -> str | None:
    """Connect once and close: the driver's error text when the database cannot be used as
    given (to be cleaned of the password by the caller), else None: connected, not probed, or
    an error that is not conclusive (ConnectorX then judges, as before)."""
    if url.dialect == "mysql" and url.query:
        return None
    try:
        return _mysql(url, password) if url.dialect == "mysql" else _postgresql(url, password)
    except Exception:  # a driver that is missing, or fails in its own way
        # (PyMySQL's RuntimeError for an auth method needing `cryptography`, psycopg without
        # its libpq): no verdict, ConnectorX connects as it always did
        return None


def _mysql(url: DbUrl, password: str | None) -> str | None:
    import pymysql

    try:
        conn = pymysql.connect(
            host=url.host, port=url.port, user=url.user, password=password or "",
            database=url.database, connect_timeout=TIMEOUT,
        )
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code not in _MYSQL_FINAL:  # too many connections, a lost handshake: may pass later
            return None
        return str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    conn.close()
    return None


def _postgresql(url: DbUrl, password: str | None) -> str | None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    params: dict[str, str | int | None] = {"sslmode": "disable", "connect_timeout": TIMEOUT}
    params.update(parse_qsl(url.query))
    params.update(host=url.host, port=url.port, user=url.user, password=password or None,
                  dbname=url.database)
    try:
        conn = psycopg.connect(make_conninfo("", **params))
    except psycopg.OperationalError as exc:  # libpq's words; no SQLSTATE at connect
        text = str(exc)
        if any(t in text for t in _PG_FINAL) and not any(t in text for t in _PG_PASSING):
            return text
        return None
    conn.close()
    return None
