"""Tests for cdr_ingest: layouts, header files, gzip, time zones, problem rows, outbound legs."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tollwatch.cdr_ingest import SCHEMA, CdrOptions, IngestError, describe_layout, scan_cdrs
from tollwatch.cdr_ingest._gzip import _TEMP_FILES
from tollwatch.cdr_ingest.dialects.cdr_csv import LAYOUTS

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/asterisk-22"
INTS = {"duration", "billsec", "sequence"}

DEFAULTS: dict[str, str] = {
    "accountcode": "acme",
    "src": "201",
    "dst": "0102327654300",
    "dcontext": "from-internal",
    "clid": '"Desk 201" <201>',
    "channel": "PJSIP/201-0000000a",
    "dstchannel": "PJSIP/carrier-0000000b",
    "lastapp": "Dial",
    "lastdata": "PJSIP/0102327654300@carrier,60",
    "start": "2026-11-24 13:30:11",
    "answer": "2026-11-24 13:30:12",
    "end": "2026-11-24 13:30:15",
    "duration": "4",
    "billsec": "3",
    "disposition": "ANSWERED",
    "amaflags": "DOCUMENTATION",
    "uniqueid": "1795527011.10",
    "userfield": "uf",
    "peeraccount": "",
    "linkedid": "1795527011.9",
    "sequence": "7",
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cdr_line(layout: str = "uniqueid+userfield", **over: str) -> str:
    """One Master.csv line as cdr_csv writes it: strings quoted, integers and no-answer bare."""
    values = {**DEFAULTS, **over}
    out = []
    for col in LAYOUTS[layout]:
        v = values[col]
        if col in INTS or (col == "answer" and v == ""):
            out.append(v)
        else:
            out.append('"' + v.replace('"', '""') + '"')
    return ",".join(out)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    return path


def rows(paths: list[Path], **opts: Any) -> list[dict[str, Any]]:
    df = scan_cdrs(paths, CdrOptions(**opts)).collect()
    assert df.schema == pl.Schema(SCHEMA)
    return df.to_dicts()


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout(tmp_path: Path, layout: str) -> None:
    cols = LAYOUTS[layout]
    path = write(tmp_path / "Master.csv", [cdr_line(layout), cdr_line(layout, src="202")])
    out = rows([path])
    assert len(out) == 2
    r = out[0]
    assert r["problem"] is None
    assert r["origin"] == f"{path}:1"
    assert out[1]["origin"] == f"{path}:2"
    assert r["call_id"] == ("1795527011.10" if "uniqueid" in cols else f"{path}:1")
    assert r["userfield"] == ("uf" if "userfield" in cols else "")
    assert r["linkedid"] == ("1795527011.9" if "linkedid" in cols else "")
    assert r["account"] == "acme"
    assert (r["src"], out[1]["src"]) == ("201", "202")
    assert r["clid"] == '"Desk 201" <201>'
    assert r["lastdata"] == "PJSIP/0102327654300@carrier,60"
    assert r["start"] == utc(2026, 11, 24, 13, 30, 11)
    assert r["answer"] == utc(2026, 11, 24, 13, 30, 12)
    assert r["end"] == utc(2026, 11, 24, 13, 30, 15)
    assert (r["duration"], r["billsec"]) == (4, 3)
    assert (r["outbound"], r["source"], r["trunk"]) == (True, "201", "carrier")
    assert describe_layout(path) == f"{path}: {len(cols)} columns ({layout}), local time (UTC)"


@pytest.mark.parametrize(
    ("layout", "option", "expected"),
    [
        ("uniqueid", "auto", "uniqueid"),
        ("uniqueid", "userfield", "userfield"),
        ("uniqueid+newcdrcolumns", "userfield+newcdrcolumns", "userfield+newcdrcolumns"),
        ("uniqueid+newcdrcolumns", "auto", "uniqueid+newcdrcolumns"),
    ],
)
def test_ambiguous_empty_column_falls_back_to_option(
    tmp_path: Path, layout: str, option: str, expected: str
) -> None:
    path = write(tmp_path / "Master.csv", [cdr_line(layout, uniqueid="")])
    out = rows([path], layout=option)
    assert out[0]["call_id"] == f"{path}:1"
    assert f"({expected})" in describe_layout(path, CdrOptions(layout=option))


def test_ambiguous_content_beats_option(tmp_path: Path) -> None:
    path = write(tmp_path / "Master.csv", [cdr_line("userfield", userfield="vip")])
    out = rows([path], layout="uniqueid")
    assert (out[0]["userfield"], out[0]["call_id"]) == ("vip", f"{path}:1")


def test_attack_fixture() -> None:
    path = FIXTURES / "Master-attack.csv"
    out = rows([path])
    assert len(out) == 24
    assert all(r["problem"] is None for r in out)
    assert all(r["outbound"] for r in out)
    assert {r["source"] for r in out} == {"209"}
    assert {r["trunk"] for r in out} == {"carrier"}
    assert out[0]["call_id"] == "1795527011.10"
    assert out[0]["start"] == utc(2026, 11, 24, 13, 30, 11)
    assert out[0]["origin"] == f"{path}:1"
    assert [r["dst"] for r in out] == [f"01023276543{i:02d}" for i in range(24)]
    assert len({r["call_id"] for r in out}) == 24


def test_calls_fixture() -> None:
    out = rows([FIXTURES / "Master-calls.csv"])
    assert len(out) == 5
    assert sum(r["outbound"] for r in out) == 5
    assert [r["source"] for r in out] == ["201", "202", "203", "204", "209"]
    assert out[0]["clid"] == '"Desk 201" <201>'
    assert out[0]["call_id"] == "1795527074.58"
    assert out[0]["userfield"] == ""
    assert out[4]["dst"] == "0105358001122"


def test_dst_zone_and_usegmtime(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Master.csv",
        [
            cdr_line(start="2026-11-24 13:30:11", answer="", end="2026-11-24 13:30:15"),
            cdr_line(start="2026-03-08 02:30:00", answer="", end="2026-03-08 03:30:05"),
            cdr_line(start="2026-11-01 01:30:00", answer="", end="2026-11-01 01:31:00"),
        ],
    )
    ny = rows([path], timezone="America/New_York")
    assert ny[0]["start"] == utc(2026, 11, 24, 18, 30, 11)
    assert ny[0]["problem"] is None
    assert ny[1]["problem"] == (
        "start time '2026-03-08 02:30:00' does not exist in America/New_York"
    )
    assert ny[1]["end"] == utc(2026, 3, 8, 7, 30, 5)
    assert ny[2]["start"] == utc(2026, 11, 1, 5, 30)  # ambiguous: earliest (EDT)
    gmt = rows([path], timezone="America/New_York", usegmtime=True)
    assert gmt[0]["start"] == utc(2026, 11, 24, 13, 30, 11)
    assert gmt[1]["problem"] is None
    assert gmt[1]["start"] == utc(2026, 3, 8, 2, 30)
    assert "UTC (usegmtime)" in describe_layout(path, CdrOptions(usegmtime=True))


def test_unknown_timezone_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "Master.csv", [cdr_line()])
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        scan_cdrs([path], CdrOptions(timezone="Mars/Base"))


FREEPBX_HEADER = (
    "calldate,clid,src,dst,dcontext,channel,dstchannel,lastapp,lastdata,duration,billsec,"
    "disposition,amaflags,accountcode,uniqueid,userfield,did,recordingfile,cnum,cnam,"
    "outbound_cnum,outbound_cnam,dst_cnam,linkedid,peeraccount,sequence"
)


def test_freepbx_export(tmp_path: Path) -> None:
    path = write(
        tmp_path / "cdr.csv",
        [
            FREEPBX_HEADER,
            '"2026-11-24 13:30:11","""Desk 201"" <201>","201","0102327654300","from-internal",'
            '"PJSIP/201-00000001","PJSIP/carrier-00000002","Dial","PJSIP/0102327654300@carrier,60",'
            '10,7,"ANSWERED",3,"acme","1795527011.1","","","","201","Desk 201","","","",'
            '"1795527011.1","",1',
            '"2026-11-24 13:31:00","Desk 202 <202>","202","0102327654301","from-internal",'
            '"PJSIP/202-00000003","","Dial","PJSIP/0102327654301@carrier,60",'
            '20,0,"NO ANSWER",3,"acme","1795527060.3","","","","202","Desk 202","","","",'
            '"1795527060.3","",2',
        ],
    )
    out = rows([path], timezone="Europe/Berlin")
    a, b = out
    assert a["problem"] is None and b["problem"] is None
    assert a["origin"] == f"{path}:2"
    assert a["call_id"] == "1795527011.1"
    assert a["account"] == "acme"
    assert a["clid"] == '"Desk 201" <201>'
    assert a["start"] == utc(2026, 11, 24, 12, 30, 11)
    assert a["end"] == utc(2026, 11, 24, 12, 30, 21)
    assert a["answer"] == utc(2026, 11, 24, 12, 30, 14)
    assert a["linkedid"] == "1795527011.1"
    assert (a["outbound"], a["source"], a["trunk"]) == (True, "201", "carrier")
    assert b["answer"] is None
    assert b["end"] == utc(2026, 11, 24, 12, 31, 20)
    assert (b["outbound"], b["trunk"]) == (True, "carrier")
    assert "header with 26 columns (asteriskcdrdb cdr table export)" in describe_layout(path)


def test_cdr_custom_header(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Master.csv",
        [
            "start,answer,end,account,src,dst,dcontext,channel,dstchannel,lastapp,lastdata,"
            "duration,billsec,disposition,uniqueid",
            '"2026-11-24 13:30:11","","2026-11-24 13:30:40","acme","204","0112465551234",'
            '"from-internal","PJSIP/204-00000001","PJSIP/carrier-00000002","Dial",'
            '"PJSIP/0112465551234@carrier,60","29","0","NO ANSWER","1795527011.4"',
        ],
    )
    (r,) = rows([path])
    assert r["problem"] is None
    assert r["origin"] == f"{path}:2"
    assert (r["account"], r["src"], r["dst"], r["call_id"]) == (
        "acme",
        "204",
        "0112465551234",
        "1795527011.4",
    )
    assert r["answer"] is None
    assert r["end"] == utc(2026, 11, 24, 13, 30, 40)
    assert (r["duration"], r["billsec"]) == (29, 0)
    assert (r["clid"], r["userfield"], r["linkedid"]) == ("", "", "")
    assert r["outbound"] is True


def test_gzip_with_and_without_suffix(tmp_path: Path) -> None:
    text = cdr_line(src="205") + "\n" + cdr_line(src="206") + "\n"
    gz = tmp_path / "Master.csv.2.gz"
    plain_named = tmp_path / "Master.csv.3"
    gz.write_bytes(gzip.compress(text.encode()))
    plain_named.write_bytes(gzip.compress(text.encode()))
    before = len(_TEMP_FILES)
    out = rows([gz, plain_named])
    assert [r["src"] for r in out] == ["205", "206", "205", "206"]
    assert [r["origin"] for r in out] == [
        f"{gz}:1",
        f"{gz}:2",
        f"{plain_named}:1",
        f"{plain_named}:2",
    ]
    assert all(p.exists() for p in _TEMP_FILES[before:])
    assert len(_TEMP_FILES) == before + 2
    assert describe_layout(plain_named).endswith("(uniqueid+userfield), gzip, local time (UTC)")


def test_corrupt_gzip_is_ingest_error(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv.1.gz"
    path.write_bytes(gzip.compress(((cdr_line() + "\n") * 200).encode())[:60])
    with pytest.raises(IngestError) as err:
        scan_cdrs([path], CdrOptions())
    assert str(err.value).startswith(f"{path}: ")
    assert "\n" not in str(err.value)


def test_several_files_with_different_layouts(tmp_path: Path) -> None:
    a = write(tmp_path / "Master.csv", [cdr_line("base", src="210")])
    b = tmp_path / "Master.csv.1.gz"
    b.write_bytes(gzip.compress((cdr_line("uniqueid+userfield+newcdrcolumns") + "\n").encode()))
    c = write(tmp_path / "Master.csv.2", [cdr_line("userfield", userfield="x")] * 2)
    out = rows([a, b, c])
    assert [r["origin"] for r in out] == [f"{a}:1", f"{b}:1", f"{c}:1", f"{c}:2"]
    assert [r["call_id"] for r in out] == [f"{a}:1", "1795527011.10", f"{c}:1", f"{c}:2"]
    assert [r["linkedid"] for r in out] == ["", "1795527011.9", "", ""]
    assert [r["userfield"] for r in out] == ["", "uf", "x", "x"]
    assert all(r["problem"] is None for r in out)


def test_malformed_rows_become_problem_rows(tmp_path: Path) -> None:
    good = cdr_line()
    short = ",".join(good.split(",")[:-1])  # 17 columns in an 18-column file
    path = tmp_path / "Master.csv"
    lines = [
        good.encode(),
        short.encode(),
        cdr_line(start="2026-13-45 99:00").encode(),
        cdr_line(src="20\xff1").encode("latin-1"),
        cdr_line(duration="x3").encode(),
        cdr_line(billsec="").encode(),
        b'"acme","201"x,' + good.encode().split(b",", 2)[2],
        cdr_line(answer="not a time").encode(),
        good.replace("201", "202").encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = rows([path])
    problems = [(r["origin"], r["problem"]) for r in out]
    assert problems == [
        (f"{path}:1", None),
        (f"{path}:2", "17 columns, expected 18"),
        (f"{path}:3", "bad start time '2026-13-45 99:00'"),
        (f"{path}:4", None),  # a byte that is not UTF-8 is replaced, the row is read
        (f"{path}:5", "bad duration 'x3'"),
        (f"{path}:6", "bad billsec ''"),
        (f"{path}:7", None),  # "201"x: lenient quoting reads it as written
        (f"{path}:8", "bad answer time 'not a time'"),
        (f"{path}:9", None),
    ]
    assert out[1]["src"] is None and out[1]["start"] is None
    assert out[1]["call_id"] == f"{path}:2"
    assert out[2]["start"] is None and out[2]["src"] == "201"
    assert out[3]["src"] == "20\ufffd1"
    assert [r["replaced"] for r in out] == [0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert out[6]["src"] == '"201"x'
    assert out[8]["src"] == "202"
    ok = scan_cdrs([path], CdrOptions()).filter(pl.col("problem").is_null()).collect()
    assert ok["origin"].to_list() == [f"{path}:{n}" for n in (1, 4, 7, 9)]


def test_blank_lines_and_crlf_keep_physical_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(("\r\n".join([cdr_line(), "", cdr_line(src="203")]) + "\r\n").encode())
    out = rows([path])
    assert [(r["origin"], r["src"], r["problem"]) for r in out] == [
        (f"{path}:1", "201", None),
        (f"{path}:3", "203", None),
    ]
    assert out[1]["call_id"] == "1795527011.10"


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    good = write(tmp_path / "Master.csv", [cdr_line()])
    missing = tmp_path / "Master.csv.9"
    with pytest.raises(IngestError) as err:
        scan_cdrs([good, missing], CdrOptions())
    assert str(err.value) == f"{missing}: no such file"


def test_not_a_cdr_file(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", ["hello, world", "just text"])
    with pytest.raises(IngestError) as err:
        scan_cdrs([path], CdrOptions())
    assert str(err.value) == (
        f"{path}: not a CDR file in a known layout (first lines: 2 columns x1, 1 columns x1; "
        "first line 'hello, world'); expected Master.csv (16-21 columns), the "
        "cdr_custom.conf.sample mapping, a header with src,dst, or set [cdr] columns"
    )


def test_empty_file_gives_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(b"")
    assert rows([path]) == []
    assert describe_layout(path) == f"{path}: empty"


def test_local_channel_chain_counts_only_trunk_leg(tmp_path: Path) -> None:
    num = "0312345678"
    path = write(
        tmp_path / "Master.csv",
        [
            cdr_line(
                src="201",
                dst=num,
                channel=f"Local/{num}@from-internal-00000000;1",
                dstchannel="",
                lastapp="AppDial2",
                lastdata="(Outgoing Line)",
                uniqueid="1795526552.0",
            ),
            cdr_line(
                src="201",
                dst=num,
                channel=f"Local/{num}@from-internal-00000000;2",
                dstchannel=f"Local/{num}@pstn-trunk-00000001;1",
                lastdata=f"Local/{num}@pstn-trunk,30",
                uniqueid="1795526552.1",
            ),
            cdr_line(
                src="201",
                dst=num,
                dcontext="pstn-trunk",
                channel=f"Local/{num}@pstn-trunk-00000001;2",
                dstchannel="PJSIP/carrier-00000002",
                lastdata=f"PJSIP/{num}@carrier,60",
                uniqueid="1795526552.3",
            ),
        ],
    )
    out = rows([path])
    assert [r["outbound"] for r in out] == [False, False, True]
    assert [r["trunk"] for r in out] == ["", "", "carrier"]
    assert out[2]["source"] == "201"
    assert out[2]["call_id"] == "1795526552.3"


def test_unanswered_and_failed_dials(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Master.csv",
        [
            cdr_line(answer="", billsec="0", disposition="NO ANSWER"),
            cdr_line(
                dstchannel="",
                answer="",
                billsec="0",
                disposition="FAILED",
                lastdata="PJSIP/0102327654300@carrier,60",
            ),
            cdr_line(
                dstchannel="",
                answer="",
                billsec="0",
                disposition="CONGESTION",
                lastdata="SIP/voipms/0102327654300,30",
            ),
            cdr_line(dstchannel="", answer="", billsec="0", lastdata="PJSIP/202,20"),
            cdr_line(dstchannel="PJSIP/203-0000000c", dst="203"),
            cdr_line(dstchannel="DAHDI/1-1", lastdata="DAHDI/g0/0102327654300"),
            cdr_line(dstchannel="", lastapp="Playback", lastdata="PJSIP/x@carrier"),
        ],
    )
    out = rows([path])
    assert [r["problem"] for r in out] == [None] * 7
    assert out[0]["answer"] is None
    assert out[0]["disposition"] == "NO ANSWER"
    assert [r["outbound"] for r in out] == [True, True, True, False, False, True, False]
    assert [r["trunk"] for r in out] == ["carrier", "carrier", "voipms", "", "", "1", ""]


def test_trunk_phone_and_context_options(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Master.csv",
        [
            cdr_line(),
            cdr_line(dstchannel="PJSIP/lobby-00000001", channel="PJSIP/lobby-00000002", src="100"),
            cdr_line(dcontext="from-trunk"),
        ],
    )
    default = rows([path])
    assert [r["outbound"] for r in default] == [True, True, True]
    # "lobby" is not all digits: not a phone, so not its caller id (which a trunk's caller
    # sets) but its endpoint names the source
    assert default[1]["source"] == "lobby"
    globs = rows([path], trunks=("PJSIP/carrier-*",))
    assert [r["outbound"] for r in globs] == [True, False, True]
    phones = rows([path], phones=("PJSIP/lobby-*",), contexts=("from-internal",))
    assert [r["outbound"] for r in phones] == [True, False, False]
    assert phones[1]["source"] == "lobby"
    short = rows([path], max_extension_length=2)
    assert short[0]["source"] == "201"  # channel 201 is not a phone now: its endpoint
    assert short[0]["outbound"] is True


def test_nul_byte_is_replaced_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    nul = cdr_line(lastdata="PJSIP/x\x00y@carrier,60")
    path.write_bytes("\n".join([cdr_line(), nul, cdr_line()]).encode() + b"\n")
    out = rows([path])
    assert [r["problem"] for r in out] == [None, None, None]
    assert out[1]["lastdata"] == "PJSIP/x\ufffdy@carrier,60"
    assert [r["replaced"] for r in out] == [0, 1, 0]


def test_glob_special_characters(tmp_path: Path) -> None:
    path = write(
        tmp_path / "Master.csv",
        [
            cdr_line(dstchannel="SIP/my.trunk+1-00000001"),
            cdr_line(dstchannel="SIP/myXtrunk+1-00000002"),
            cdr_line(dstchannel="SIP/trunk7-00000003"),
        ],
    )
    out = rows([path], trunks=("SIP/my.trunk+1-*", "SIP/trunk[0-9]"))
    assert [r["outbound"] for r in out] == [True, False, True]
    assert [r["trunk"] for r in out] == ["my.trunk+1", "", "trunk7"]


def test_header_after_blank_line_without_duration_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "custom.csv",
        [
            "",
            "src,dst,channel,dstchannel,lastapp,lastdata,start,answer,end,disposition",
            "201,0102327654300,PJSIP/201-00000001,PJSIP/carrier-00000002,Dial,"
            '"PJSIP/0102327654300@carrier,60",2026-11-24 13:30:11,2026-11-24 13:30:15,'
            "2026-11-24 13:30:45,ANSWERED",
            "202,0102327654301,PJSIP/202-00000003,,Dial,PJSIP/0102327654301@carrier,"
            "2026-11-24 13:31:00,,2026-11-24 13:31:20,NO ANSWER",
        ],
    )
    a, b = rows([path])
    assert scan_cdrs([path], CdrOptions()).select(pl.len()).collect().item() == 2
    assert (a["origin"], a["problem"]) == (f"{path}:3", None)
    assert (a["duration"], a["billsec"]) == (34, 30)
    assert (b["origin"], b["problem"]) == (f"{path}:4", None)
    assert (b["duration"], b["billsec"], b["answer"]) == (20, 0, None)
    assert (b["outbound"], b["trunk"]) == (True, "carrier")


def test_header_needs_start_and_end_or_duration(tmp_path: Path) -> None:
    path = write(tmp_path / "custom.csv", ["src,dst,start", "201,0102,2026-11-24 13:30:11"])
    with pytest.raises(IngestError, match="header has neither an end nor a duration column"):
        scan_cdrs([path], CdrOptions())


def _tricky_lines() -> list[bytes]:
    good = cdr_line()
    return [
        good.encode(),
        good.replace('"from-internal"', 'x"from-internal"').encode(),  # quote in bare field
        cdr_line(clid='a,"b" <2>').encode(),
        cdr_line(userfield="two\nlines").encode(),  # a quoted newline: two physical lines
        b"",
        (good + ",").encode(),
        cdr_line(src="M\xfcller").encode(),
        cdr_line(src="20\xff1").encode("latin-1"),
        cdr_line(lastdata="x\x00y").encode(),
        b"   ",
        good.replace('"ANSWERED"', '"ANSWERED"x').encode(),
        cdr_line(answer="").encode(),
        good.replace(',"uf"', ",").encode(),  # unquoted empty last field
        good.encode(),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("piece", [1 << 24, 700, 64])
def test_pieces_and_fallbacks_keep_line_numbers_and_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    from tollwatch.cdr_ingest import _pieces

    monkeypatch.setattr(_pieces, "_PIECE_BYTES", piece)
    monkeypatch.setattr(_pieces, "_MIN_PIECE_BYTES", 1)
    path = tmp_path / "Master.csv"
    path.write_bytes(b"\n".join(_tricky_lines() * 3) + b"\n")
    out = rows([path])
    per_copy = 15  # physical lines of one copy of _tricky_lines() (one has a newline)
    expected = [  # lines 2 and 12 (a stray quote), 9 (not UTF-8), 10 (NUL) are read
        (4, "malformed quoting, expected 18 columns"),
        (5, "1 columns, expected 18"),
        (7, "19 columns, expected 18"),
        (11, "1 columns, expected 18"),
    ]
    got = {(r["origin"], r["problem"]) for r in out if r["problem"] is not None}
    assert got == {(f"{path}:{k * per_copy + ln}", msg) for k in range(3) for ln, msg in expected}
    assert len(out) == 3 * (per_copy - 1)  # the blank line is skipped
    counted = scan_cdrs([path], CdrOptions()).select(pl.len()).collect(engine="streaming")
    assert counted.item() == len(out)
    fine = [r for r in out if r["problem"] is None]
    assert {r["clid"] for r in fine} >= {'a,"b" <2>', '"Desk 201" <201>'}
    assert "M\xfcller" in {r["src"] for r in fine}
    assert [r["userfield"] for r in fine if r["origin"] == f"{path}:14"] == [""]
    assert [r["src"] for r in out if r["origin"] == f"{path}:9"] == ["20\ufffd1"]
    assert [r["dcontext"] for r in out if r["origin"] == f"{path}:2"] == ['x"from-internal"']
    assert [r["disposition"] for r in out if r["origin"] == f"{path}:12"] == ['"ANSWERED"x']
    assert sum(r["replaced"] for r in out) == 3 * 2
    assert all(r["src"] is None for r in out if r["problem"] and "columns" in r["problem"])


@pytest.mark.parametrize("tz", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_times_out_of_range_are_problem_rows_not_crashes(tmp_path: Path, tz: str) -> None:
    """0001-01-01 and 9999-12-31 parse, but a window or a time zone put on them leaves the
    dates Python holds (the scan crashed: 'year 0 is out of range', 'year 10000 ...', the
    baseline's 'date value out of range'): the row is a problem, its times are not handed on."""
    path = write(tmp_path / "Master.csv", [
        cdr_line(start="9999-12-31 23:59:58", answer="", end="9999-12-31 23:59:59"),
        cdr_line(start="0001-01-01 00:00:01", answer="", end="0001-01-01 00:00:05"),
        cdr_line(answer="2400-01-01 00:00:00"),
        cdr_line(start="1970-01-01 00:00:00", answer="", end="1970-01-01 00:00:04"),
        cdr_line(),
    ])  # fmt: skip
    out = rows([path], timezone=tz)
    assert [r["problem"] for r in out] == [
        "start time '9999-12-31 23:59:58' is out of range (years 1900-2199)",
        "start time '0001-01-01 00:00:01' is out of range (years 1900-2199)",
        "answer time '2400-01-01 00:00:00' is out of range (years 1900-2199)",
        None,  # a clock that was never set: a call like any other
        None,
    ]
    assert [r["start"] for r in out[:2]] == [None, None] and out[2]["answer"] is None


def test_an_end_made_from_a_duration_of_centuries_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "custom.csv", [
        "src,dst,channel,dstchannel,lastapp,lastdata,start,duration,billsec,disposition",
        "201,0102327654300,PJSIP/201-1,PJSIP/carrier-2,Dial,PJSIP/0102327654300@carrier,"
        "2026-11-24 13:30:11,9000000000000,0,NO ANSWER",
        "201,0102327654300,PJSIP/201-1,PJSIP/carrier-2,Dial,PJSIP/0102327654300@carrier,"
        "2026-11-24 13:30:11,9000000000000000,0,NO ANSWER",
        "201,0102327654300,PJSIP/201-1,PJSIP/carrier-2,Dial,PJSIP/0102327654300@carrier,"
        "2026-11-24 13:30:11,30,0,NO ANSWER",
    ])  # fmt: skip
    out = rows([path])
    assert [r["problem"] for r in out] == [
        "end time (start + duration '9000000000000') is out of range (years 1900-2199)",
        "end time (start + duration '9000000000000000') is out of range (years 1900-2199)",
        None,
    ]
    assert out[0]["end"] is None and out[2]["end"] == utc(2026, 11, 24, 13, 30, 41)


@pytest.mark.parametrize("content", [b"a" * 200_000 + b"\n", b"\x00" * 100_000])
def test_a_file_without_a_line_end_in_its_head_is_not_an_empty_file(
    tmp_path: Path, content: bytes
) -> None:
    """It read as '0 rows, No incidents', exit 0 (its only, cut line was dropped as partial):
    a false all-clear for a file that is no CDR at all."""
    path = tmp_path / "Master.csv"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=r"not a CDR file \(no line ends in its first 64 KiB"):
        rows([path])
    blank = write(tmp_path / "blank.csv", ["   ", "", "  "])
    assert rows([blank]) == []  # only blank lines: empty, as before
