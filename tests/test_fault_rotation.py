"""copytruncate with new rows of the same length as the old ones, live and across a restart,
with the copy plain or gzipped: 0 rows lost, 0 doubled. The follower tells truncation by
content (fingerprint of the first bytes and of the bytes before its position), not by size or
line count, and reads the copy's unread tail before the new content."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest

from tests.test_live_follow import attack, follower  # noqa: F401  (fixture)
from tollwatch.cdr_ingest.live import CallStarted, LiveEvent
from tollwatch.cdr_ingest.live.follow import MemoryPositions
from tollwatch.sources import SqlitePositions
from tollwatch.state import StateStore


def starts(events: list[LiveEvent]) -> list[str]:
    return [e.call_id for e in events if isinstance(e, CallStarted)]


def same_length(rows: list[bytes], tag: bytes) -> list[bytes]:
    """Other calls whose rows have exactly the old rows' lengths (uniqueids changed)."""
    out = [r.replace(b'"17955', b'"' + tag + b"955", 1) for r in rows]
    assert [len(r) for r in out] == [len(r) for r in rows] and out != rows
    return out


def ids(rows: list[bytes]) -> list[str]:
    return [next(csv.reader([r.decode()]))[16] for r in rows]


def copytruncate(path: Path, gz: bool = False) -> None:
    if gz:
        with path.open("rb") as src, gzip.open(str(path) + ".1.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(path, str(path) + ".1")
    with path.open("r+b") as w:
        w.truncate(0)


def write(path: Path, rows: list[bytes]) -> None:
    with path.open("ab") as fh:
        fh.write(b"".join(rows))


def test_live_copytruncate_with_same_length_rows(tmp_path: Path, attack: list[bytes]) -> None:  # noqa: F811
    path = tmp_path / "Master.csv"
    new = same_length(attack, b"29")
    write(path, attack[:10])
    f = follower(path)
    got = f.poll_once()
    write(path, attack[10:12])  # written after the last poll: only in the copy
    copytruncate(path)
    write(path, new[:14])  # same lengths: past the old offset, a newline right before it
    got += f.poll_once()
    write(path, new[14:16])
    got += f.poll_once()
    assert starts(got) == ids(attack[:12]) + ids(new[:16])  # 0 lost, 0 doubled


@pytest.mark.parametrize("gz", [False, True])
def test_copytruncate_across_a_restart(tmp_path: Path, attack: list[bytes], gz: bool) -> None:  # noqa: F811
    path = tmp_path / "Master.csv"
    new = same_length(attack, b"39")
    store = StateStore.in_dir(tmp_path / "state")
    positions = SqlitePositions(store)
    write(path, attack[:10])
    first = follower(path, positions)  # type: ignore[arg-type]
    got = first.poll_once()
    first.close()
    # while stopped: rows written, copytruncate, new rows of the same lengths past the offset
    write(path, attack[10:12])
    copytruncate(path, gz=gz)
    write(path, new[:14])
    store.close()
    store = StateStore.in_dir(tmp_path / "state")
    second = follower(path, SqlitePositions(store))  # type: ignore[arg-type]
    got += second.poll_once()
    write(path, new[14:15])
    got += second.poll_once()
    assert starts(got) == ids(attack[:12]) + ids(new[:15])  # 0 lost, 0 doubled
    store.close()


def test_restart_without_rotation_still_resumes_exactly(
    tmp_path: Path, attack: list[bytes]  # noqa: F811
) -> None:
    path = tmp_path / "Master.csv"
    positions = MemoryPositions()
    write(path, attack[:10])
    got = follower(path, positions).poll_once()
    write(path, attack[10:])
    got += follower(path, positions).poll_once()
    assert starts(got) == ids(attack)
