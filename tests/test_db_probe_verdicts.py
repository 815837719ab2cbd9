"""The probe's verdicts without a server: only errors that mean the same for ConnectorX stop a
scan; anything else (a transient refusal, a driver failing in its own way) leaves the
decision to ConnectorX, as before the probe existed."""

from __future__ import annotations

from typing import Any

import psycopg
import pymysql
import pytest

from tollwatch.cdr_ingest.database import parse_url
from tollwatch.cdr_ingest.database._probe import probe

MYSQL = parse_url("mysql://tw@127.0.0.1:3306/asteriskcdrdb")
PG = parse_url("postgresql://tw@127.0.0.1:5432/asteriskcdrdb")


def _raising(exc: BaseException) -> Any:
    def connect(*args: object, **kwargs: object) -> None:
        raise exc

    return connect


@pytest.mark.parametrize(("exc", "verdict"), [
    (pymysql.err.OperationalError(1045, "Access denied for 'tw'"), "Access denied for 'tw'"),
    (pymysql.err.OperationalError(1049, "Unknown database 'x'"), "Unknown database 'x'"),
    (pymysql.err.OperationalError(2003, "Can't connect to MySQL"), "Can't connect to MySQL"),
    (pymysql.err.OperationalError(1040, "Too many connections"), None),
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server"), None),
    (RuntimeError("'cryptography' package is required for caching_sha2_password"), None),
])  # fmt: skip
def test_mysql_verdicts(monkeypatch: pytest.MonkeyPatch, exc: BaseException,
                        verdict: str | None) -> None:
    monkeypatch.setattr(pymysql, "connect", _raising(exc))
    assert probe(MYSQL, "pw") == verdict


@pytest.mark.parametrize(("text", "final"), [
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication '
     'failed for user "tw"', True),
    ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', True),
    ("failed to resolve host 'pbx.invalid': [Errno -2] Name or service not known", True),
    ('connection to server at "10.9.8.7", port 5432 failed: timeout expired', True),
    ('connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system is '
     "starting up", False),
    ("connection failed: FATAL:  sorry, too many clients already", False),
    ("server closed the connection unexpectedly", False),
])  # fmt: skip
def test_postgresql_verdicts(monkeypatch: pytest.MonkeyPatch, text: str, final: bool) -> None:
    monkeypatch.setattr(psycopg, "connect", _raising(psycopg.OperationalError(text)))
    assert probe(PG, None) == (text if final else None)


def test_a_driver_failing_its_own_way_gives_no_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psycopg, "connect", _raising(ImportError("no pq wrapper available")))
    assert probe(PG, None) is None


@pytest.mark.parametrize(("url", "sslmode"), [
    ("postgresql://tw@127.0.0.1:5432/cdrdb", "disable"),  # as ConnectorX connects without one
    ("postgresql://tw@127.0.0.1:5432/cdrdb?sslmode=require", "require"),  # the URL's own
])  # fmt: skip
def test_postgresql_probe_connects_as_connectorx_would(
    monkeypatch: pytest.MonkeyPatch, url: str, sslmode: str
) -> None:
    from psycopg.conninfo import conninfo_to_dict

    seen: list[str] = []

    def connect(conninfo: str) -> _Closed:
        seen.append(conninfo)
        return _Closed()

    monkeypatch.setattr(psycopg, "connect", connect)
    assert probe(parse_url(url), "pw") is None
    [conninfo] = seen
    assert conninfo_to_dict(conninfo) == {
        "sslmode": sslmode, "connect_timeout": "10", "host": "127.0.0.1", "port": "5432",
        "user": "tw", "password": "pw", "dbname": "cdrdb",
    }


class _Closed:
    def close(self) -> None:
        pass
