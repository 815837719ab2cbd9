"""The bounded scan loop: files read chunk by chunk give the rows, counts and incidents of
one pass over the whole files, whatever the chunk and piece sizes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.helpers import settings
from tests.test_cdr_ingest import _tricky_lines, cdr_line
from tollwatch.cdr_ingest import CdrOptions, IngestError, scan_cdrs, scan_chunks
from tollwatch.scan import ScanResult, run_scan

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "Master-attack.csv"


def _files(tmp_path: Path, fixtures: Path) -> list[Path]:
    tricky = tmp_path / "tricky.csv"
    tricky.write_bytes(b"\n".join(_tricky_lines() * 3) + b"\n")
    header = tmp_path / "custom.csv"
    header.write_text(
        "src,dst,channel,dstchannel,lastapp,lastdata,start,end\n"
        "201,00442071838750,PJSIP/201-1,PJSIP/carrier-2,Dial,PJSIP/00442071838750@carrier,"
        "2026-11-24 13:30:11,2026-11-24 13:31:11\n"
        "201,nope,PJSIP/201-1,PJSIP/carrier-2,Dial,x,not a time,2026-11-24 13:31:11\n"
    )
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    zipped = tmp_path / "calls.csv.gz"
    zipped.write_bytes(gzip.compress((fixtures / "Master-calls.csv").read_bytes()))
    return [tricky, SAMPLE, header, empty, zipped, fixtures / "Master-attack.csv"]


def _small(monkeypatch: pytest.MonkeyPatch, piece: int, chunk: int, batch: int) -> None:
    from tollwatch import scan
    from tollwatch.cdr_ingest import _pieces, _scan

    monkeypatch.setattr(_pieces, "_PIECE_BYTES", piece)
    monkeypatch.setattr(_pieces, "_MIN_PIECE_BYTES", 1)
    monkeypatch.setattr(_scan, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(scan, "BATCH_ROWS", batch)


@pytest.mark.slow
@pytest.mark.parametrize(("piece", "chunk"), [(1 << 24, 50_000), (700, 5), (64, 1)])
def test_chunks_are_the_rows_of_scan_cdrs_in_order(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch, piece: int, chunk: int
) -> None:
    files = _files(tmp_path, fixtures)
    options = CdrOptions(timezone="Asia/Tokyo")
    whole = scan_cdrs(files, options).collect()
    _small(monkeypatch, piece, chunk, 1)
    chunks = list(scan_chunks(files, options))
    parts = [lf.collect() for _, lf in chunks]
    assert [n for n, _ in chunks] == [df.height for df in parts]
    if chunk == 1:
        assert len(chunks) > 10  # the small sizes did cut the files up
    assert pl.concat(parts).equals(whole)
    assert whole.get_column("problem").drop_nulls().len() >= 13  # bad rows are rows too


def test_chunks_check_every_file_before_the_first_row(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(cdr_line() + "\n")
    with pytest.raises(IngestError, match="no such file"):
        scan_chunks([good, tmp_path / "missing.csv"], CdrOptions())
    seen: list[str] = []
    chunks = scan_chunks([tmp_path / "missing.csv", good], CdrOptions(), seen.append)
    assert seen == [f"{tmp_path / 'missing.csv'}: no such file"]  # before any row is read
    assert sum(n for n, _ in chunks) == 1


def _summary(result: ScanResult) -> dict[str, Any]:
    s = result.stats
    stats = (
        s.rows,
        s.skipped,
        s.outbound,
        s.by_class,
        s.problems,
        s.file_problems,
        s.calls_scored,
        s.skipped_by_file,
        s.replaced,
        s.replaced_rows,
        s.replaced_by_file,
        s.notes,
        sorted(s.numbers),
    )
    incidents = [(i.id, i.severity, i.score, list(i.calls), i.reasons()) for i in result.incidents]
    return {
        "stats": stats,
        "incidents": incidents,
        "validity": result.validity,
    }


@pytest.mark.slow
def test_run_scan_results_do_not_depend_on_chunk_sizes(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [*_files(tmp_path, fixtures), tmp_path / "missing.csv"]
    s = settings("JP", "UTC")
    whole = _summary(run_scan(files, s))
    assert whole["incidents"] and whole["stats"][1] >= 13  # incidents and skipped rows
    one_by_one = [len(scan_cdrs([f], CdrOptions()).collect()) for f in files if f.exists()]
    assert whole["stats"][0] == sum(one_by_one)
    _small(monkeypatch, 700, 5, 7)
    lines: list[tuple[str, int]] = []
    small = _summary(run_scan(files, s, progress=lambda f, n: lines.append((f, n))))
    assert small == whole
    assert len(lines) > 5 and lines[-1] == (str(files[-2]), 24)  # in file order, to the end


@pytest.mark.parametrize(("piece", "chunk"), [(1 << 24, 50_000), (700, 5)])
def test_where_keeps_the_rows_it_names_with_every_column(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch, piece: int, chunk: int
) -> None:
    """`where` is applied before origin, call_id, account, source and trunk are made: the
    rows it keeps have the very values scan_cdrs gives them; the counts are of all rows."""
    files = _files(tmp_path, fixtures)
    options = CdrOptions(timezone="Asia/Tokyo")
    where = pl.col("problem").is_not_null() | (
        pl.col("outbound") & pl.col("dialed").str.ends_with("1")
    )
    whole = scan_cdrs(files, options).collect()
    _small(monkeypatch, piece, chunk, 1)
    chunks = list(scan_chunks(files, options, where=where))
    kept = pl.concat([lf.collect() for _, lf in chunks])
    assert sum(n for n, _ in chunks) == whole.height
    assert kept.equals(whole.filter(where))
    assert 0 < kept.height < whole.height
    assert kept.get_column("source").drop_nulls().len() > 0  # made for the kept rows
