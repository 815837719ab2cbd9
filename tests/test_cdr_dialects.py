"""Every CDR dialect and quirk, from fixture files written the way those systems write them:
each file's exact rows, dialed numbers and classes; nothing skipped; replaced bytes counted."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.helpers import settings
from tollwatch.cdr_ingest import (
    CdrOptions,
    IngestError,
    canonical_columns,
    describe_layout,
    scan_cdrs,
)
from tollwatch.cdr_ingest.dialects import header_dialect, headerless_dialect
from tollwatch.cdr_ingest.dialects.cdr_custom import columns_from_conf
from tollwatch.rules.destinations import Classifier
from tollwatch.scan import run_scan

HERE = Path(__file__).resolve().parent
CDR = HERE / "fixtures/cdr"
ROOT = HERE.parent
COLS = ("origin", "clid", "src", "dialed", "start", "duration", "billsec", "outbound",
        "source", "trunk", "dest_class", "replaced", "call_id")  # fmt: skip


def t(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def read(path: Path, country: str = "JP", **opts: Any) -> list[tuple[Any, ...]]:
    df = scan_cdrs([path], CdrOptions(**opts)).collect()
    assert df["problem"].null_count() == df.height, df.filter(pl.col("problem").is_not_null())
    df = Classifier(settings(country, "UTC")).classify_df(df, "dialed")
    df = df.with_columns(pl.col("origin").str.replace(r"^.*/", ""))
    return list(df.select(COLS).iter_rows())


def test_cdr_custom_stock_mapping() -> None:
    path = CDR / "cdr_custom-sample.csv"
    assert describe_layout(path).endswith("19 columns (cdr_custom.conf.sample mapping), "
                                          "local time (UTC)")  # fmt: skip
    assert read(path) == [
        ("cdr_custom-sample.csv:1", '"Desk 201" <201>', "201", "0102327654300",
         t("2026-11-24 13:30:11"), 4, 3, True, "201", "carrier", "international", 0,
         "1795527011.1"),
        ("cdr_custom-sample.csv:2", '"Desk 202" <202>', "202", "203", t("2026-11-24 13:31:00"),
         40, 38, False, "202", "", "internal", 0, "1795527060.3"),
        ("cdr_custom-sample.csv:3", '"Desk 204" <204>', "204", "0312345678",
         t("2026-11-24 13:32:00"), 30, 0, True, "204", "carrier", "domestic", 0,
         "1795527120.5"),
    ]  # fmt: skip


def test_freepbx_report_export_with_bare_quoted_clid() -> None:
    path = CDR / "freepbx-report-export.csv"
    assert "header with 16 columns (FreePBX CDR report export)" in describe_layout(path)
    assert read(path) == [
        ("freepbx-report-export.csv:2", '"User 10" <114>', "114", "0102327654300",
         t("2026-11-24 13:30:11"), 25, 21, True, "114", "carrier", "international", 0,
         "1795527011.1"),
        ("freepbx-report-export.csv:3", '"Reception" <100>', "100", "114",
         t("2026-11-24 13:31:00"), 12, 9, False, "100", "", "internal", 0, "1795527060.3"),
        ("freepbx-report-export.csv:4", '"User 10" <114>', "114", "0312345678",
         t("2026-11-24 13:32:00"), 31, 0, True, "114", "carrier", "domestic", 0,
         "1795527120.5"),
    ]  # fmt: skip


def test_freepbx_report_export_26_columns() -> None:
    path = CDR / "freepbx-report-export-26.csv"
    assert "header with 26 columns (FreePBX CDR report export)" in describe_layout(path)
    assert read(path) == [
        ("freepbx-report-export-26.csv:2", '"User 10" <114>', "114", "0102327654300",
         t("2026-11-24 13:30:11"), 25, 21, True, "114", "carrier", "international", 0,
         "1795527011.1"),
        ("freepbx-report-export-26.csv:3", '"ACME Ltd" <0312345678>', "0312345678", "211553",
         t("2026-11-24 13:40:00"), 8, 5, False, "0312345678", "", "internal", 0,
         "1795527600.7"),
    ]  # fmt: skip


def test_asteriskcdrdb_export_with_null_and_unescaped_quotes_crlf() -> None:
    path = CDR / "asteriskcdrdb-export.csv"
    assert b"\r\n" in path.read_bytes() and b'""Name" <1115>"' in path.read_bytes()
    assert "header with 26 columns (asteriskcdrdb cdr table export)" in describe_layout(path)
    assert read(path) == [
        ("asteriskcdrdb-export.csv:2", '"Name" <1115>', "1115", "0102327654300",
         t("2026-11-24 13:30:11"), 25, 21, True, "1115", "carrier", "international", 0,
         "1795527011.1"),
        ("asteriskcdrdb-export.csv:3", '"Name" <1115>', "1115", "1116",
         t("2026-11-24 13:31:00"), 12, 9, False, "1115", "", "internal", 0, "1795527060.3"),
        ("asteriskcdrdb-export.csv:4", '"Name" <1115>', "1115", "0312345678",
         t("2026-11-24 13:32:00"), 3, 0, True, "1115", "carrier", "domestic", 0,
         "1795527120.5"),
    ]  # fmt: skip
    df = scan_cdrs([path], CdrOptions()).collect()
    assert df["linkedid"].to_list() == ["1795527011.1", "1795527060.3", "1795527120.5"]
    assert df["userfield"].to_list() == ["", "", ""]  # "" and NULL alike


def test_cr_only_line_ends() -> None:
    path = CDR / "Master-cr.csv"
    assert b"\n" not in path.read_bytes()
    out = read(path)
    assert [r[0] for r in out] == [f"Master-cr.csv:{i}" for i in range(1, 6)]
    assert [(r[3], r[10]) for r in out] == [
        ("0312345678", "domestic"), ("01014412345678", "international"),
        ("0102327654321", "international"), ("0112465551234", "domestic"),
        ("0105358001122", "international"),
    ]  # fmt: skip


def test_caller_names_not_utf8_are_kept_with_replaced_bytes() -> None:
    out = read(CDR / "Master-not-utf8.csv")
    assert [(r[1], r[11]) for r in out] == [
        ('"M\ufffdller" <201>', 1), ('"Ива\ufffd" <202>', 1), ('"Desk 203" <203>', 0)
    ]
    assert [r[10] for r in out] == ["domestic", "international", "international"]


def test_forwarded_disa_and_long_phone_names_give_the_dial_target() -> None:
    path = HERE / "fixtures/forwarded-dialed/Master.csv"
    out = read(path, "DE")
    assert [(r[2], r[3], r[7], r[8], r[9], r[10]) for r in out] == [
        ("0301234567", "0023276543210", True, "211553", "carrier", "international"),  # DID
        ("0301234567", "0023276543211", True, "211553", "carrier", "international"),  # DISA s
        ("150010001", "150010002", False, "150010001", "", "domestic"),  # phone to phone
        ("150010001", "030123456", True, "150010001", "carrier", "domestic"),
    ]
    df = scan_cdrs([path], CdrOptions()).collect()
    assert df["dst"].to_list() == ["211553", "s", "150010002", "030123456"]
    assert df["trunk_basis"].to_list() == ["number", "number", "device", "number"]
    # configured trunks take over, and a configured trunk is never the source as a phone: nor
    # is the inbound caller id (cdr_ingest.attribution): the DID, or the trunk for DISA ("s")
    trunks = ("SIP/carrier", "PJSIP/carrier", "*/211553")
    df = scan_cdrs([path], CdrOptions(trunks=trunks)).collect()
    assert df["outbound"].to_list() == [True, True, False, True]
    assert df["source"].to_list() == ["did:211553", "211553", "150010001", "150010001"]


def test_attack_with_cut_multibyte_caller_name_is_one_critical_incident() -> None:
    path = CDR / "Master-attack-cut-name.csv"
    result = run_scan([path], settings("JP", "UTC"))
    assert (result.stats.rows, result.stats.skipped) == (24, 0)
    assert (result.stats.replaced, result.stats.replaced_rows) == (24, 24)
    [incident] = result.incidents
    assert incident.severity.label == "critical" and len(incident.calls) == 24
    assert incident.source == "209"


@pytest.mark.slow
def test_scan_cli_shows_replaced_bytes_and_reads_every_fixture() -> None:
    files = sorted(CDR.glob("*.csv"))
    proc = subprocess.run(
        [sys.executable, "-m", "tollwatch", "scan", "--country", "JP", "--tz", "UTC",
         "--format", "json", *map(str, files)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the cut-name attack: critical
    summary = proc.stderr.splitlines()[0]
    assert summary.startswith("43 rows read, 0 skipped, 39 outbound calls ")
    assert summary.endswith("; 26 byte(s) not UTF-8 replaced in 26 row(s), rows kept")
    assert f"replaced 24 byte(s) that are not UTF-8 in {CDR / 'Master-attack-cut-name.csv'}" in (
        proc.stderr
    )
    [incident] = json.loads(proc.stdout)
    # the 24 attack calls, and 209's call to Cuba a minute later (in Master-cr.csv)
    assert (incident["source"], incident["calls"]) == ("209", 25)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["calldate", "clid", "src", "dst", "recordingfile", "foo", "Account_Code"],
         ["start", "clid", "src", "dst", "recordingfile", None, "accountcode"]),
        (["start", "answer", "end", "duration", "src", "dst", "src"],
         ["start", "answer", "end", "duration", "src", "dst", None]),
    ],
)  # fmt: skip
def test_canonical_columns(names: list[str], expected: list[str | None]) -> None:
    assert canonical_columns(names) == expected


def test_registry_recognizes_headers_and_content() -> None:
    from tollwatch.cdr_ingest.dialects.asteriskcdrdb import TABLE

    dialect = header_dialect(list(TABLE))
    assert dialect is not None and dialect.name == "asteriskcdrdb"
    dialect = header_dialect(list(TABLE[:16]))  # the old FreePBX export: same 16 names
    assert dialect is not None and dialect.name == "freepbx_report"
    generic = header_dialect(["Source", "Destination", "Call_Date", "Duration"])
    assert generic is not None and generic.name == "header"
    assert header_dialect(["a", "b"]) is None
    assert headerless_dialect([["hello", "world"]]) is None


def test_configured_columns_and_cdr_custom_conf(tmp_path: Path) -> None:
    conf = tmp_path / "cdr_custom.conf"
    conf.write_text(
        "[mappings]\n"
        ";Master.csv => ${CSV_QUOTE(${CDR(clid)})}\n"
        'Simple.csv => "${EPOCH}",${CSV_QUOTE(${CDR(start)})},${CSV_QUOTE(${CDR(src)})},'
        "${CSV_QUOTE(${CDR(dst)})},${CSV_QUOTE(${CDR(dstchannel)})},"
        "${CSV_QUOTE(${CDR(lastdata)})},${CDR(duration)},${CDR(billsec)},"
        "${CSV_QUOTE(${CDR(disposition)})},${CSV_QUOTE(${CDR(uniqueid)})}\n"
    )
    cols = columns_from_conf(conf)
    assert cols == ["", "start", "src", "dst", "dstchannel", "lastdata", "duration", "billsec",
                    "disposition", "uniqueid"]  # fmt: skip
    path = tmp_path / "Simple.csv"
    path.write_text('"1795527011","2026-11-24 13:30:11","201","0102327654300",'
                    '"PJSIP/carrier-00000002","PJSIP/0102327654300@carrier,60",4,3,"ANSWERED",'
                    '"1795527011.1"\n')  # fmt: skip
    with pytest.raises(IngestError, match="not a CDR file in a known layout"):
        scan_cdrs([path], CdrOptions()).collect()
    [row] = scan_cdrs([path], CdrOptions(columns=tuple(cols))).collect().to_dicts()
    assert row["problem"] is None and row["outbound"] and row["dialed"] == "0102327654300"
    assert row["end"] == t("2026-11-24 13:30:15") and row["call_id"] == "1795527011.1"
    assert "10 columns (configured [cdr] columns)" in describe_layout(
        path, CdrOptions(columns=tuple(cols))
    )


def test_cdr_columns_settings(tmp_path: Path) -> None:
    from tollwatch.config import ConfigError
    from tollwatch.settings import cdr_options, load

    good = tmp_path / "good.toml"
    good.write_text('[site]\ncountry = "JP"\n[cdr]\ncolumns = ["calldate", "src", "dst", ""]\n')
    assert cdr_options(load(good)).columns == ("calldate", "src", "dst", "")
    bad = tmp_path / "bad.toml"
    bad.write_text('[site]\ncountry = "JP"\n[cdr]\ncolumns = ["src", "dsst"]\n')
    with pytest.raises(ConfigError, match=r"unknown CDR column.*'dsst'"):
        load(bad)
    missing = tmp_path / "missing.toml"
    missing.write_text(f'[site]\ncountry = "JP"\n[cdr]\ncustom_conf = "{tmp_path}/nope.conf"\n')
    with pytest.raises(ConfigError, match=r"cdr\.custom_conf: .*nope\.conf: No such file"):
        load(missing)
