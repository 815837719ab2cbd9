"""Settings of the CDR database source (no server needed)."""

from __future__ import annotations

import pytest

from tests.helpers import settings
from tollwatch.cdr_ingest.database import DbError, parse_url
from tollwatch.config import ConfigError
from tollwatch.dbsource import merged


def test_db_sources_take_what_they_do_not_set_from_cdr() -> None:
    s = settings(cdr={"database": "postgresql://cdr@pbx/asterisk", "password_env": "PW",
                      "db_columns": {"dst": "called"}},
                 db_sources=[{"name": "a"}, {"name": "b", "table": "cdr2", "poll": "30s"}])
    a, b = (merged(s, src) for src in s.db_sources)
    assert (a.database, a.table, a.password_env, a.db_columns) == (
        "postgresql://cdr@pbx/asterisk", "cdr", "PW", {"dst": "called"})
    assert (b.table, b.poll.total_seconds(), b.database) == ("cdr2", 30, a.database)


@pytest.mark.parametrize(("cdr", "message"), [
    ({"database": "mysql://root:hunter2@h/db"}, "no password in the URL"),
    ({"database": "oracle://h/db"}, "mysql://"),
    ({"db_columns": {"phone": "x"}}, "not a CDR field"),
    ({"db_columns": {"dst": "x; DROP"}}, "not a plain column name"),
    ({"table": "cdr where 1=1"}, "table"),
    ({"password_env": "A", "password_file": "/f"}, "at most one"),
    ({"db_timezone": "Mars/Base"}, "IANA"),
])
def test_bad_database_settings_are_named(cdr: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(cdr=cdr)
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_urls() -> None:
    u = parse_url("mariadb://tw@pbx.example/asteriskcdrdb")
    assert (u.dialect, u.port, u.shown) == ("mysql", 3306,
                                            "mysql://tw@pbx.example:3306/asteriskcdrdb")
    assert u.uri("p@ss:w/rd").startswith("mysql://tw:p%40ss%3Aw%2Frd@pbx.example:3306/")
    assert parse_url("postgres://u@h:6543/cdr?sslmode=require").uri(None).endswith(
        "@h:6543/cdr?sslmode=require")
    with pytest.raises(ValueError, match="no database name"):
        parse_url("mysql://u@h/")
    with pytest.raises(DbError, match="no password in the URL"):
        from tollwatch.cdr_ingest.database import CdrDatabase

        CdrDatabase.open("mysql://u:secret@h/db")
