"""What the scan loop keeps, read back for the replay (`tollwatch.scan_kept.Kept`): the calls
of one frame sorted stably by start, with the Local chains followed, never all unpacked at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import settings
from tests.test_scan_chunks import _files, _small
from tollwatch import scan
from tollwatch.cdr_ingest import CdrOptions, resolve_local_chains
from tollwatch.rules.batch import CALL_COLUMNS
from tollwatch.scan import run_scan
from tollwatch.scan_kept import Kept, pack, unpack

FORWARDED = Path(__file__).resolve().parent / "fixtures" / "forwarded" / "Master-forwarded.csv"


def _calls(tmp_path: Path, fixtures: Path) -> pl.DataFrame:
    """The classified calls of the test files, not in start order, with ties and null starts."""
    seen: list[pl.DataFrame] = []
    run_scan(_files(tmp_path, fixtures), settings("JP", "UTC"), calls=seen.append)
    calls = pl.concat(seen, how="diagonal_relaxed").select(*CALL_COLUMNS, "channel")
    calls = calls.filter(pl.col("start").is_not_null()).reverse()
    nulls = calls.head(2).with_columns(pl.lit(None, pl.Datetime("us", "UTC")).alias("start"))
    calls = pl.concat([calls.head(5), nulls, calls.slice(5)])
    assert calls.height > 20 and calls.get_column("start").n_unique() < calls.height  # ties
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("size", [1, 3, 7, 50, 10_000])
def test_kept_calls_come_back_sorted_by_start_stably(
    tmp_path: Path, fixtures: Path, size: int
) -> None:
    """Packed in parts of 7 rows in reverse start order (the worst case for the slices):
    every column and every slice size gives the frame a stable sort by start gives (calls
    that start at the same instant keep file order, null starts first)."""
    calls = _calls(tmp_path, fixtures)
    parts = [pack(calls.slice(i, 7)) for i in range(0, calls.height, 7)]
    assert unpack(parts).equals(calls)
    want = calls.select(CALL_COLUMNS).sort("start", maintain_order=True)
    kept = Kept(parts, [], CdrOptions())
    assert parts == []  # handed over
    assert kept.height == calls.height
    assert kept.columns(["start", "call_id"]).equals(want.select("start", "call_id"))
    got = list(kept.slices(size))
    assert [s.height for s in got[:-1]] == [size] * (len(got) - 1)
    assert pl.concat(got).equals(want)


def test_parts_are_let_go_once_the_slices_are_past_them() -> None:
    """Calls in start order, 10 parts of 10: each slice of 10 reads one part, and the parts
    (their packed bytes too) are dropped as the slices pass them, not at the end."""
    at = datetime(2026, 11, 30, tzinfo=UTC)
    calls = pl.DataFrame(
        {"call_id": [f"c{i}" for i in range(100)],
         "start": [at + timedelta(seconds=i) for i in range(100)]}
    ).with_columns(pl.lit("x").alias(c) for c in CALL_COLUMNS if c not in ("call_id", "start"))
    calls = calls.select(*CALL_COLUMNS)
    kept = Kept([pack(calls.slice(i, 10)) for i in range(0, 100, 10)], [], CdrOptions())
    slices = kept.slices(10)
    for k in range(10):
        got = next(slices)
        assert got.get_column("call_id").to_list() == [f"c{i}" for i in range(10 * k, 10 * k + 10)]
        held = [part for part in kept._parts if part]
        assert len(held) == 10 - k  # this slice's part is still held while it is used
    assert next(slices, None) is None
    assert not any(kept._parts)


def test_local_chains_are_followed_as_on_the_whole_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The forwarded recording (calls placed through Local channels): what the replay reads
    is what following the chains on the whole unpacked frame and sorting it gives, and the
    chains do change sources there (else this test could not fail)."""
    seen: list[tuple[list[bytes], list[bytes], pl.DataFrame]] = []

    def capture(relevant: list[bytes], dials: list[bytes], options: CdrOptions) -> Kept:
        frame = unpack(relevant)
        want = resolve_local_chains(frame, unpack(dials), options)
        seen.append((list(relevant), list(dials), want))
        return Kept(relevant, dials, options)

    monkeypatch.setattr(scan, "Kept", capture)
    _small(monkeypatch, 700, 5, 5)  # several parts
    result = run_scan([FORWARDED], settings("JP", "UTC"))
    assert result.incidents
    ((relevant, dials, resolved),) = seen
    assert len(relevant) > 1 and dials
    before = unpack(relevant).get_column("source")
    assert not before.equals(resolved.get_column("source"))  # chains were followed
    want = resolved.select(CALL_COLUMNS).sort("start", maintain_order=True)
    kept = Kept(relevant, dials, CdrOptions())
    assert kept.columns(["source"]).equals(want.select("source"))
    assert pl.concat(kept.slices(4)).equals(want)


def test_nothing_kept(tmp_path: Path) -> None:
    """No call kept (an empty file): no rows, no slices, and the scan says so."""
    kept = Kept([], [], CdrOptions())
    assert kept.height == 0 and list(kept.slices(10)) == []
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = run_scan([empty], settings("JP", "UTC"))
    assert result.incidents == [] and result.stats.calls_scored == 0
