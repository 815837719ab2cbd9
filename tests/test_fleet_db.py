"""A fleet PBX whose CDRs are in a database table (`[cdr] database`) scans like its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.db_servers import SQL, Server, insert_freepbx, mariadb, master_rows
from tollwatch.config.fleet import load_fleet
from tollwatch.fleet_output import incident_rows
from tollwatch.fleet_scan import run_fleet
from tollwatch.rules.base import check_rules

pytestmark = pytest.mark.db
__all__ = ["mariadb"]  # fixture
FILES = ("Master-attack.csv", "Master-calls.csv")


def test_a_pbx_on_a_cdr_table_beside_a_pbx_on_files(
    mariadb: Server, fixtures: Path, tmp_path: Path
) -> None:
    mariadb.script(SQL / "freepbx-cdr.mysql.sql")
    for name in FILES:
        insert_freepbx(mariadb, "cdr", master_rows(fixtures / name))
    files = ", ".join(f'"{fixtures / f}"' for f in FILES)
    path = tmp_path / "fleet.toml"
    path.write_text(f"""
[site]
country = "JP"
timezone = "UTC"

[[pbx]]
name = "files"
cdr = {{ files = [{files}] }}

[[pbx]]
name = "table"
cdr = {{ database = "{mariadb.url}", table = "cdr" }}
""", encoding="utf-8")
    fleet = load_fleet(path, rule_checks=check_rules)
    result = run_fleet(fleet, workers=0)
    assert not result.failed, result.failed
    rows = incident_rows(result, fleet.order)
    by = {n: [{k: v for k, v in r.items() if k not in ("pbx", "id", "site")}
              for r in rows if r["pbx"] == n] for n in fleet.order}
    assert by["files"] == by["table"] and [r["severity"] for r in by["table"]] == ["critical"]
    assert result.scans["table"].stats.rows == result.scans["files"].stats.rows == 29
