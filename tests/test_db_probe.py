"""A database that cannot be used as configured is told at once by the probe connection, not
after ConnectorX's 30 s of pool retries (whose message starts "timed out waiting for
connection"), and the error never shows the password."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.db_servers import Server, mariadb, postgres
from tollwatch.cdr_ingest.database import CdrDatabase, DbError, parse_url
from tollwatch.cdr_ingest.database._probe import probe

pytestmark = pytest.mark.db
__all__ = ["mariadb", "postgres"]  # fixtures
POOL_TIMEOUT = "timed out waiting for connection"  # ConnectorX after its 30 s


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mysql_user(mariadb: Server) -> Iterator[tuple[str, str]]:
    user, password = "tw_probe_user", "probe-Secret-7"
    with mariadb.mysql_user(user, password, f"{mariadb.database}.*"):
        yield user, password


def _error(url: str, password: str | None) -> str:
    with pytest.raises(DbError) as caught:
        CdrDatabase.open(url, "cdr", password)
    text = str(caught.value)
    assert POOL_TIMEOUT not in text, text  # the probe told it, not the pool's 30 s
    assert "\n" not in text
    return text


def test_mysql_wrong_password_unknown_database_and_a_closed_port(
    mariadb: Server, mysql_user: tuple[str, str], closed_port: int
) -> None:
    user, password = mysql_user
    url = f"mysql://{user}@127.0.0.1:{mariadb.port}/{mariadb.database}"
    text = _error(url, "Wrong-Password-1")
    assert "Access denied" in text and "Wrong-Password-1" not in text
    assert text.startswith(f"mysql://{user}@127.0.0.1:{mariadb.port}/{mariadb.database}: ")
    # (a user without rights on it is told "Access denied ... to database", root the truth)
    assert "to database 'tw_no_such_db'" in _error(
        f"mysql://{user}@127.0.0.1:{mariadb.port}/tw_no_such_db", password)
    assert "Unknown database 'tw_no_such_db'" in _error(
        f"mysql://root@127.0.0.1:{mariadb.port}/tw_no_such_db", None)
    assert "Connection refused" in _error(
        f"mysql://{user}@127.0.0.1:{closed_port}/{mariadb.database}", password)
    # the right password passes the probe: ConnectorX then finds no cdr table in this database
    assert "no table 'cdr'" in _error(url, password)


def test_postgresql_unknown_role_unknown_database_and_a_closed_port(
    postgres: Server, closed_port: int
) -> None:
    assert 'role "tw_no_such_role" does not exist' in _error(
        f"postgresql://tw_no_such_role@127.0.0.1:{postgres.port}/{postgres.database}", None)
    assert 'database "tw_no_such_db" does not exist' in _error(
        f"postgresql://postgres@127.0.0.1:{postgres.port}/tw_no_such_db", None)
    assert "Connection refused" in _error(
        f"postgresql://postgres@127.0.0.1:{closed_port}/{postgres.database}", None)
    assert probe(parse_url(postgres.url), None) is None


def test_a_mysql_url_with_options_is_not_probed(closed_port: int) -> None:
    """PyMySQL would connect without the URL's options (TLS): ConnectorX alone judges."""
    assert probe(parse_url(f"mysql://u@127.0.0.1:{closed_port}/db"), "x") is not None
    assert probe(parse_url(f"mysql://u@127.0.0.1:{closed_port}/db?ssl-mode=required"),
                 "x") is None
