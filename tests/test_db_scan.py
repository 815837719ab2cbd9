"""CDR tables on the real MariaDB and PostgreSQL: the same calls, rules and incidents as the CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.db_servers import SQL, Server, insert_freepbx, mariadb, master_rows, postgres
from tests.helpers import settings
from tollwatch import report_format
from tollwatch.cdr_ingest.database import CdrDatabase, DbError
from tollwatch.cli import app
from tollwatch.report.build import build_report
from tollwatch.scan import ScanResult, run_scan

pytestmark = pytest.mark.db
__all__ = ["mariadb", "postgres"]  # fixtures
FILES = ("Master-attack.csv", "Master-calls.csv")


def _same(a: ScanResult, b: ScanResult, tz: str) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    assert json.loads(report_format.to_json(a.incidents, zone)) == json.loads(
        report_format.to_json(b.incidents, zone)
    )
    for name in ("rows", "skipped", "outbound", "by_class", "calls_scored"):
        assert getattr(a.stats, name) == getattr(b.stats, name), name


@pytest.fixture(scope="module")
def freepbx(mariadb: Server, fixtures_dir: Path) -> Server:
    mariadb.script(SQL / "freepbx-cdr.mysql.sql")
    for name in FILES:
        insert_freepbx(mariadb, "cdr", master_rows(fixtures_dir / name))
    return mariadb


@pytest.fixture(scope="module")
def fixtures_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared/fixtures/asterisk-22"
    if not path.is_dir():
        pytest.fail(f"shared fixtures not found at {path}")
    return path


def test_freepbx_table_on_mariadb_gives_what_the_csv_gives(
    freepbx: Server, fixtures_dir: Path
) -> None:
    s = settings("JP", "UTC")
    from_csv = run_scan([fixtures_dir / f for f in FILES], s)
    db = CdrDatabase.open(freepbx.url, "cdr")
    assert db.table.keys == ("uniqueid", "sequence")
    assert db.table.mapping["start"] == "calldate"
    from_db = run_scan([], s, database=db)
    _same(from_db, from_csv, "UTC")
    assert [i.severity.name for i in from_db.incidents] == ["CRITICAL"]
    assert from_db.stats.rows == 29


def test_cdr_pgsql_table_with_time_zone_gives_what_the_csv_gives(
    postgres: Server, fixtures_dir: Path
) -> None:
    """cdr_pgsql's calldate stores instants: rows written by a PBX in Tokyo read as such."""
    postgres.script(SQL / "cdr_pgsql.sql")
    for name in FILES:
        rows = master_rows(fixtures_dir / name)
        for r in rows:  # the PBX wrote its Tokyo wall clock with the offset
            r["start"] += "+09:00"
        insert_freepbx(postgres, "cdr", rows)
    s = settings("JP", "Asia/Tokyo")
    from_csv = run_scan([fixtures_dir / f for f in FILES], s)
    role = f"tw_ro_{postgres.database}"  # README's grants, and nothing more
    postgres.execute(f"CREATE ROLE {role} LOGIN")
    for grant in (f"CONNECT ON DATABASE {postgres.database}", "USAGE ON SCHEMA public",
                  "SELECT ON public.cdr"):
        postgres.execute(f"GRANT {grant} TO {role}")
    url = postgres.url.replace("//postgres@", f"//{role}@")
    db = CdrDatabase.open(url, "cdr")
    assert db.table.aware
    _same(run_scan([], s, database=db), from_csv, "Asia/Tokyo")
    # a period: only the attack's first half (the exact cut is on the UTC start)
    since = from_csv.incidents[0].first_call_at
    from datetime import timedelta

    part = run_scan([], s, since=since, until=since + timedelta(seconds=6), database=db)
    assert 0 < len(part.incidents[0].calls) < len(from_csv.incidents[0].calls)


ODBC = """
CREATE TABLE cdr_odbc (
  id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  `start` datetime(6) NOT NULL,
  answer datetime DEFAULT NULL,
  `end` datetime NOT NULL,
  caller varchar(80), src varchar(80), called_number varchar(80), dcontext varchar(80),
  channel varchar(80), dstchannel varchar(80), lastapp varchar(80), lastdata varchar(200),
  disposition varchar(45), uniqueid varchar(32), extra_blob blob,
  KEY cdr_odbc_start (`start`)
)
"""


def test_odbc_layout_with_start_answer_end_and_mapped_columns(
    mariadb: Server, fixtures_dir: Path
) -> None:
    """No calldate, duration or billsec; the dialed number in a column named by the settings;
    NULLs, a zero answer time for an unanswered call, a column of bytes not read."""
    mariadb.execute(ODBC)
    rows = [r for f in FILES for r in master_rows(fixtures_dir / f)]
    values = [
        (r["start"], r["answer"] or None, r["end"], r["clid"], r["src"], r["dst"],
         r["dcontext"], r["channel"], r["dstchannel"], r["lastapp"], r["lastdata"],
         r["disposition"], r["uniqueid"] if i % 7 else None, b"\xff\x00")
        for i, r in enumerate(rows)
    ]
    mariadb.execute(
        "INSERT INTO cdr_odbc (`start`, answer, `end`, caller, src, called_number, dcontext,"
        " channel, dstchannel, lastapp, lastdata, disposition, uniqueid, extra_blob) VALUES "
        f"({', '.join(['%s'] * 14)})", values, many=True,
    )
    mariadb.execute("INSERT INTO cdr_odbc (`start`, answer, `end`, src, called_number, channel,"
                    " dstchannel, lastapp, disposition) VALUES ('2026-11-24 13:40:00', NULL,"
                    " '2026-11-24 13:40:05', '201', '0312345678', 'PJSIP/201-1',"
                    " 'PJSIP/carrier-2', 'Dial', 'NO ANSWER')")
    with pytest.raises(DbError, match="no such column"):
        CdrDatabase.open(mariadb.url, "cdr_odbc", columns={"dst": "dialed"})
    db = CdrDatabase.open(mariadb.url, "cdr_odbc", columns={"dst": "called_number"})
    assert db.table.keys == ("id",)
    assert "duration" not in db.table.mapping
    s = settings("JP", "UTC")
    from_db = run_scan([], s, database=db)
    from_csv = run_scan([fixtures_dir / f for f in FILES], s)
    assert from_db.stats.skipped == 0
    assert from_db.stats.outbound == from_csv.stats.outbound + 1
    (a,), (b,) = from_db.incidents, from_csv.incidents
    assert (a.severity, a.score, a.source) == (b.severity, b.score, b.source)
    assert len(a.calls) == len(b.calls)
    # rows without uniqueid are named by the table and their id
    assert any(c.startswith("cdr_odbc:id=") or ".cdr_odbc:id=" in c for c in a.calls)


def test_not_a_cdr_table_and_bad_urls_are_one_line_errors(mariadb: Server) -> None:
    mariadb.execute("CREATE TABLE notes (id int, body text)")
    with pytest.raises(DbError, match="no start/calldate column"):
        CdrDatabase.open(mariadb.url, "notes")
    with pytest.raises(DbError, match="no table 'nothing'"):
        CdrDatabase.open(mariadb.url, "nothing")
    with pytest.raises(DbError, match="no password in the URL"):
        CdrDatabase.open("mysql://root:hunter2@127.0.0.1/x")
    with pytest.raises(DbError, match="not a table name"):
        CdrDatabase.open(mariadb.url, "cdr; DROP TABLE cdr")


def _config(tmp_path: Path, server: Server, **cdr: Any) -> Path:
    lines = ['[site]', 'country = "JP"', 'timezone = "UTC"', "[cdr]",
             f'database = "{server.url}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in cdr.items()]
    path = tmp_path / "tollwatch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scan_db_cli_with_a_read_only_user_and_its_password_from_the_environment(
    freepbx: Server, fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = f"tw_ro_{os.getpid()}", "s3cret-not-in-logs"
    with freepbx.mysql_user(user, password, f"{freepbx.database}.cdr"):
        server = Server("mysql", freepbx.database, freepbx.port, user)
        config = _config(tmp_path, server, password_env="TW_DB_PASSWORD")
        runner = CliRunner()
        monkeypatch.setenv("TW_DB_PASSWORD", password)
        by_db = runner.invoke(app, ["scan", "--db", "-c", str(config), "-f", "json", "-v"])
        files = [str(fixtures_dir / f) for f in FILES]
        by_file = runner.invoke(app, ["scan", *files, "-c", str(config), "-f", "json"])
        assert by_db.exit_code == 1, by_db.output
        assert json.loads(by_db.stdout) == json.loads(by_file.stdout)
        assert "uniqueid+sequence" in by_db.stderr
        monkeypatch.setenv("TW_DB_PASSWORD", "wrong")
        bad = runner.invoke(app, ["scan", "--db", "-c", str(config)])
        assert bad.exit_code == 2
        assert "Access denied" in bad.stderr and "wrong" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
        monkeypatch.delenv("TW_DB_PASSWORD")
        unset = runner.invoke(app, ["scan", "--db", "-c", str(config)])
        assert unset.exit_code == 2 and "cdr.password" in unset.stderr
        assert "not set" in unset.stderr


def test_report_reads_the_table(freepbx: Server, fixtures_dir: Path, tmp_path: Path) -> None:
    from datetime import date

    s = settings("JP", "UTC")
    by_file = build_report(s, [fixtures_dir / f for f in FILES], date(2026, 11, 24),
                           tmp_path / "a", None)
    db = CdrDatabase.open(freepbx.url, "cdr")
    by_db = build_report(s, None, date(2026, 11, 24), tmp_path / "b", None, database=db)
    for key in ("totals", "incidents", "top_countries", "hourly", "malformed"):
        assert by_db.figures[key] == by_file.figures[key], key
    assert by_db.figures["files"] == [f"{freepbx.database}.cdr"]


def test_learn_reads_the_table(freepbx: Server, fixtures_dir: Path, tmp_path: Path) -> None:
    from tollwatch.rules.baseline_io import load_file
    from tollwatch.settings import load

    config = _config(tmp_path, freepbx)
    runner = CliRunner()
    files = [str(fixtures_dir / f) for f in FILES]
    by_file = runner.invoke(app, ["learn", *files, "-c", str(config), "-o", str(tmp_path / "f")])
    by_db = runner.invoke(app, ["learn", "--db", "-c", str(config), "-o", str(tmp_path / "d")])
    assert by_file.exit_code == 0 and by_db.exit_code == 0, by_db.output
    assert "29 rows read" in by_db.stderr
    s = load(config)
    a, b = load_file(tmp_path / "f", s), load_file(tmp_path / "d", s)
    assert a.dest_days == b.dest_days and a.src_dests == b.src_dests
    assert a.first_day == b.first_day and a.dest_days


def test_small_chunks_cut_no_start_time_in_two(freepbx: Server) -> None:
    """Chunks end between start times: 2 rows per chunk over calls that share their second
    (the attack dials 2 per second), 1 row per chunk (every chunk one start time)."""
    from tollwatch.cdr_ingest import CdrOptions

    db = CdrDatabase.open(freepbx.url, "cdr")
    whole = db.scan(CdrOptions()).collect().sort("call_id")
    assert whole.height == 29
    for n in (1, 2, 3):
        before = db.rows_read
        part = db.scan(CdrOptions(), chunk_rows=n).collect().sort("call_id")
        assert part.equals(whole), n
        assert db.rows_read - before == 29


def test_chunks_are_scans_rows_queried_as_they_are_taken(
    freepbx: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`scan --db` reads `chunks`: the rows of `scan` (with `where`: the ones it keeps), and
    the next query is sent only when the loop takes the next chunk (no backlog)."""
    from tollwatch.cdr_ingest import CdrOptions

    db = CdrDatabase.open(freepbx.url, "cdr")
    whole = db.scan(CdrOptions()).collect()
    sent: list[str] = []
    kind = type(db.table.conn)
    read = kind.read

    def counted(self: Any, sql: str) -> pl.DataFrame:
        sent.append(sql)
        return read(self, sql)

    monkeypatch.setattr(kind, "read", counted)
    where = pl.col("outbound")
    chunks = db.chunks(CdrOptions(), where=where, chunk_rows=5)
    count, first = next(chunks)
    assert len(sent) == 1 and 0 < count <= 5  # one query so far, for the chunk taken
    rest = list(chunks)
    assert len(sent) > 3
    kept = pl.concat([first.collect(), *[lf.collect() for _, lf in rest]])
    assert count + sum(n for n, _ in rest) == whole.height
    assert kept.sort("call_id").equals(whole.filter(where).sort("call_id"))
