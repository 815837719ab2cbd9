"""copytruncate with new rows of the same length as the old ones, live and across a restart,
with the copy plain or gzipped: 0 rows lost, 0 doubled. The follower tells truncation by
content (fingerprint of the first bytes and of the bytes before its position), not by size or
line count, and reads the copy's unread tail before the new content."""

from __future__ import annotations

import asyncio
import csv
import gzip
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.test_live_follow import attack, follower  # noqa: F401  (fixture)
from tollwatch.cdr_ingest.live import CallStarted, LiveEvent
from tollwatch.cdr_ingest.live.file_reader import Chunk
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


def rotate_gz(path: Path, mode: str) -> None:
    """logrotate with `compress` and no `delaycompress`: the copy is gzipped at once."""
    if mode == "copytruncate":
        copytruncate(path, gz=True)
        return
    rotated = path.with_name(path.name + ".1")  # create: rename, gzip (a new inode), new file
    path.rename(rotated)
    with rotated.open("rb") as src, gzip.open(str(rotated) + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    rotated.unlink()
    path.write_bytes(b"")


@pytest.mark.parametrize("mode", ["copytruncate", "create"])
async def test_restart_while_reading_a_rotated_gz_tail(
    tmp_path: Path, attack: list[bytes], mode: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    scratch = tmp_path / "tmp"  # where decompressed copies go: none may be left behind
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = tmp_path / "Master.csv"
    new = same_length(attack, b"49")
    store = StateStore.in_dir(tmp_path / "state")
    write(path, attack[:4])
    first = follower(path, SqlitePositions(store))  # type: ignore[arg-type]
    got = first.poll_once()
    write(path, attack[4:20])  # not read yet when the file is rotated and compressed
    if mode == "copytruncate":  # the follower meets the truncation live: it reads the copy
        rotate_gz(path, mode)
        write(path, new[:10])
    queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=1)
    task = asyncio.create_task(first.run(queue))
    while len(starts(got)) < 9:  # stopped in the middle of the old rows' tail
        got.append(await asyncio.wait_for(queue.get(), 10))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    while not queue.empty():  # what was handed over is the daemon's (processed at stop)
        got.append(queue.get_nowait())
    first.close()
    if mode == "create":  # rotated while stopped: only the .gz holds the old rows' tail
        rotate_gz(path, mode)
        write(path, new[:10])
    store.close()
    store = StateStore.in_dir(tmp_path / "state")
    second = follower(path, SqlitePositions(store))  # type: ignore[arg-type]
    got += second.poll_once()
    write(path, new[10:12])
    got += second.poll_once()
    expected = ids(attack[:20]) + ids(new[:12])
    # 0 lost, 0 doubled after the pipeline's de-duplication by call id; at most the one row
    # being handed over when the follower was stopped comes again (nothing read twice else)
    assert list(dict.fromkeys(starts(got))) == expected
    assert len(starts(got)) - len(expected) <= 1
    store.close()
    assert [p.name for p in scratch.iterdir() if p.name.startswith("tollwatch-cdr-")] == []


@pytest.mark.parametrize("gz", [False, True])
def test_copytruncate_during_a_parse(tmp_path: Path, attack: list[bytes], gz: bool) -> None:  # noqa: F811
    """Rows written after a chunk was read, then copytruncate before that chunk's position is
    saved (the daemon parses in a thread and waits on its queue: a slow daemon, as under
    tracemalloc in the soak, widens this window). The saved fingerprint must be that of the
    content read, not of the truncated file, else the copy is not found and its tail is lost."""
    path = tmp_path / "Master.csv"
    write(path, attack[:10])
    f = follower(path)
    parse = f._parse
    rotated: list[bool] = []

    def parse_then_rotate(chunk: Chunk) -> list[Any]:
        rows = parse(chunk)
        if not rotated:
            rotated.append(True)
            write(path, attack[10:12])  # after the read, before the position is saved
            copytruncate(path, gz)
        return rows

    f._parse = parse_then_rotate  # type: ignore[method-assign]
    got = f.poll_once()
    write(path, attack[12:14])
    got += f.poll_once()
    got += f.poll_once()
    assert rotated and starts(got) == ids(attack[:14])  # 0 lost, 0 doubled
