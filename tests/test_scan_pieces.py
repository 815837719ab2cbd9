"""The file reader (`cdr_ingest._pieces.frames`) parses two pieces at once in threads and
hands them on in file order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.test_cdr_ingest import _tricky_lines
from tollwatch.cdr_ingest import _pieces

N = 18  # columns of the Master.csv dialect


@pytest.fixture
def tricky(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(_pieces, "_PIECE_BYTES", 700)
    monkeypatch.setattr(_pieces, "_MIN_PIECE_BYTES", 1)
    monkeypatch.setattr(_pieces.os, "sched_getaffinity", lambda pid: {0, 1})  # two cores
    path = tmp_path / "Master.csv"
    path.write_bytes(b"\n".join(_tricky_lines() * 3) + b"\n")
    return path


def _lines(frames: list[pl.DataFrame]) -> list[int]:
    return [ln for df in frames for ln in df.get_column("_ln").to_list()]


def test_two_pieces_are_parsed_at_once_and_come_in_file_order(
    tricky: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = list(_pieces.frames(tricky, N, 0))
    both = threading.Barrier(2, timeout=10)  # broken unless two pieces are parsed together
    met = threading.Event()
    seen: set[str] = set()
    rows_of = _pieces._rows_of

    def meeting(piece: bytes, first: int, *args: object) -> Iterator[pl.DataFrame]:
        seen.add(threading.current_thread().name)
        if not met.is_set() and (first == 1 or both.n_waiting):  # the first two pieces
            both.wait()
            met.set()
        return rows_of(piece, first, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_pieces, "_rows_of", meeting)
    parallel = list(_pieces.frames(tricky, N, 0))
    assert len(plain) > 4
    assert _lines(parallel) == _lines(plain) == sorted(_lines(plain))
    assert all(a.equals(b) for a, b in zip(parallel, plain, strict=True))
    assert len(seen) == 2 and all(name.startswith("tollwatch-parse") for name in seen)


def test_an_error_comes_after_the_rows_of_the_pieces_before_it(
    tricky: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    firsts: list[int] = []
    all_rows = _pieces._all_rows

    def noting(piece: bytes, first: int, *args: object) -> list[pl.DataFrame]:
        firsts.append(first)
        return all_rows(piece, first, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_pieces, "_all_rows", noting)
    plain = list(_pieces.frames(tricky, N, 0))
    bad_first = firsts[3]  # the fourth piece

    def failing(piece: bytes, first: int, *args: object) -> list[pl.DataFrame]:
        if first == bad_first:
            raise OSError("disk gone")
        return all_rows(piece, first, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_pieces, "_all_rows", failing)
    got: list[pl.DataFrame] = []
    with pytest.raises(OSError, match="disk gone"):
        for df in _pieces.frames(tricky, N, 0):
            got.append(df)
    assert _lines(got) == [ln for ln in _lines(plain) if ln < bad_first]
    assert _lines(got)
    assert not [t for t in threading.enumerate() if t.name.startswith("tollwatch-parse")]


def test_closing_early_stops_the_parsing_threads(tricky: Path) -> None:
    frames = _pieces.frames(tricky, N, 0)
    next(frames)
    frames.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("tollwatch-parse")]


def test_one_core_parses_one_piece_at_a_time(tricky: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = list(_pieces.frames(tricky, N, 0))
    monkeypatch.setattr(_pieces.os, "sched_getaffinity", lambda pid: {3})
    all_rows = _pieces._all_rows
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def counted(*args: object) -> list[pl.DataFrame]:
        with lock:
            running[0] += 1
            running[1] = max(running)
        try:
            time.sleep(0.01)  # long enough for a second thread to start one
            return all_rows(*args)  # type: ignore[arg-type]
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(_pieces, "_all_rows", counted)
    single = list(_pieces.frames(tricky, N, 0))
    assert _lines(single) == _lines(plain)
    assert running[1] == 1
    monkeypatch.setattr(_pieces.os, "sched_getaffinity", lambda pid: {0, 5, 7})
    assert list(_pieces.frames(tricky, N, 0))
    assert running[1] == 2  # with two cores or more, two at once
