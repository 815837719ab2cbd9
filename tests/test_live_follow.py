"""CsvFollower: a growing Master.csv in pieces, restarts, rotations, bad rows, layouts."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from tollwatch.cdr_ingest import CdrOptions, scan_cdrs
from tollwatch.cdr_ingest.live.events import CallAnswered, CallEnded, CallStarted, LiveEvent
from tollwatch.cdr_ingest.live.follow import CsvFollower, MemoryPositions, Position

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/asterisk-22"
OPTIONS = CdrOptions()
HEADER = (
    b"accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,end,"
    b"duration,billsec,disposition,amaflags,uniqueid,userfield\n"
)


@pytest.fixture
def attack() -> list[bytes]:
    """The 24 rows (18 columns) of the attack, each with its newline."""
    path = FIXTURES / "Master-attack.csv"
    if not path.is_file():
        pytest.fail(f"shared fixtures not found at {FIXTURES}")
    rows = path.read_bytes().splitlines(keepends=True)
    assert len(rows) == 24
    return rows


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def follower(
    path: Path, store: MemoryPositions | None = None, clock: Clock | None = None, **kw: float
) -> CsvFollower:
    return CsvFollower(
        "pbx1",
        path,
        OPTIONS,
        store if store is not None else MemoryPositions(),
        poll=0.01,
        clock=clock or Clock(),
        **kw,  # type: ignore[arg-type]
    )


def batch_events(path: Path) -> list[LiveEvent]:
    """What the follower should emit for a whole file, built from the batch scan."""
    frame = scan_cdrs([path], OPTIONS).collect()
    frame = frame.filter(pl.col("problem").is_null() & pl.col("outbound"))
    out: list[LiveEvent] = []
    for r in frame.iter_rows(named=True):
        out.append(
            CallStarted(
                "pbx1",
                r["call_id"],
                r["start"],
                r["source"],
                r["account"],
                r["dst"],
                r["trunk"],
                r["channel"],
                r["dstchannel"],
                r["linkedid"],
            )
        )
        if r["answer"] is not None:
            out.append(CallAnswered("pbx1", r["call_id"], r["answer"]))
        out.append(CallEnded("pbx1", r["call_id"], r["end"], r["disposition"]))
    return out


def expected(tmp_path: Path, rows: list[bytes], name: str = "expected.csv") -> list[LiveEvent]:
    path = tmp_path / name
    path.write_bytes(b"".join(rows))
    return batch_events(path)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def starts(events: list[LiveEvent]) -> list[str]:
    return [e.call_id for e in events if isinstance(e, CallStarted)]


def to_21(row: bytes) -> bytes:
    """An 18-column row with peeraccount, linkedid and sequence added (newcdrcolumns)."""
    uniqueid = row.rsplit(b",", 2)[1]  # the last two fields hold no comma
    assert uniqueid.startswith(b'"17955')
    return row.rstrip(b"\n") + b',"",' + uniqueid + b",7\n"


def test_first_call_events(tmp_path: Path, attack: list[bytes]) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(attack[0])
    f = follower(path)
    at = datetime(2026, 11, 24, 13, 30, 11, tzinfo=UTC)
    assert f.poll_once() == [
        CallStarted(
            "pbx1",
            "1795527011.10",
            at,
            "209",
            "acme",
            "0102327654300",
            "carrier",
            "PJSIP/209-0000000a",
            "PJSIP/carrier-0000000b",
        ),
        CallAnswered("pbx1", "1795527011.10", at),
        CallEnded(
            "pbx1", "1795527011.10", datetime(2026, 11, 24, 13, 30, 14, tzinfo=UTC), "ANSWERED"
        ),
    ]
    assert f.poll_once() == []
    assert f.status.events == 3 and f.status.errors == 0 and f.status.connected
    assert f.status.kind == "csv" and f.status.last_event_at is not None
    assert f.positions.load(str(path)) == Position(path.stat().st_ino, len(attack[0]), 1)


def test_pieces_give_each_call_once(tmp_path: Path, attack: list[bytes]) -> None:
    want = expected(tmp_path, attack)
    assert len(starts(want)) == 24 and len(want) == 72
    assert {e.source for e in want if isinstance(e, CallStarted)} == {"209"}
    data = b"".join(attack)
    path = tmp_path / "Master.csv"
    path.write_bytes(b"")
    store = MemoryPositions()
    f = follower(path, store)
    got: list[LiveEvent] = []
    # odd piece sizes: most polls end inside a line, some inside a quoted field
    for i in range(0, len(data), 173):
        append(path, data[i : i + 173])
        got += f.poll_once()
        offset = store.positions[str(path)].offset
        assert data[:offset].endswith(b"\n") or offset == 0
    assert got == want
    assert f.status.events == 72 and f.status.errors == 0


def test_partial_line_waits_for_its_newline(tmp_path: Path, attack: list[bytes]) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(attack[0] + attack[1][:-1])  # second row without its newline
    f = follower(path)
    assert starts(f.poll_once()) == ["1795527011.10"]
    assert f.poll_once() == []
    append(path, b"\n")
    assert starts(f.poll_once()) == ["1795527012.12"]


def test_restart_resumes_exactly(tmp_path: Path, attack: list[bytes]) -> None:
    want = expected(tmp_path, attack)
    path = tmp_path / "Master.csv"
    store = MemoryPositions()
    path.write_bytes(b"".join(attack[:10]) + attack[10][:50])
    got = follower(path, store).poll_once()
    assert len(starts(got)) == 10
    # a new follower on the same store: nothing again, then the rest
    again = follower(path, store)
    assert again.poll_once() == []
    append(path, attack[10][50:] + b"".join(attack[11:]))
    got += again.poll_once()
    assert got == want


async def test_run_puts_events_and_stops(tmp_path: Path, attack: list[bytes]) -> None:
    want = expected(tmp_path, attack)
    path = tmp_path / "Master.csv"
    f = follower(path)
    queue: asyncio.Queue[LiveEvent] = asyncio.Queue()
    task = asyncio.create_task(f.run(queue))
    got: list[LiveEvent] = []
    async with asyncio.timeout(5):
        await asyncio.sleep(0.05)
        assert not f.status.connected and "waiting" in f.status.state
        for row in attack:
            append(path, row)
        while len(got) < len(want):
            got.append(await queue.get())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == want
    assert f.status.events == 72 and f.status.errors == 0


async def test_run_cancelled_with_full_queue_skips_nothing(
    tmp_path: Path, attack: list[bytes]
) -> None:
    want = expected(tmp_path, attack)
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(attack))
    store = MemoryPositions()
    queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=4)
    task = asyncio.create_task(follower(path, store).run(queue))
    got: list[LiveEvent] = []
    async with asyncio.timeout(5):
        while len(got) < 8:  # row 3's Started is then waiting to be put
            got.append(await queue.get())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while not queue.empty():
        got.append(queue.get_nowait())  # handed over before the cancel
    assert got == want[: len(got)]
    rest = follower(path, store).poll_once()
    # resumes at the first row not handed over whole (at most one row is handed over again)
    row_starts = [i for i, e in enumerate(want) if isinstance(e, CallStarted)] + [len(want)]
    k = max(i for i in row_starts if i <= len(got))
    assert rest == want[k:]


def test_rename_rotation_while_old_file_is_written(tmp_path: Path, attack: list[bytes]) -> None:
    want = expected(tmp_path, attack)
    path = tmp_path / "Master.csv"
    old = tmp_path / "Master.csv.1"
    clock = Clock()
    path.write_bytes(b"".join(attack[:10]))
    f = follower(path, clock=clock, rotate_grace=2.0)
    got = f.poll_once()
    writer = path.open("ab")  # a writer that opened the file before the rename
    os.rename(path, old)
    writer.write(b"".join(attack[10:14]) + attack[14][:40])
    writer.flush()
    path.write_bytes(b"".join(attack[15:]))  # the new file
    got += f.poll_once()
    assert len(starts(got)) == 14  # the old file first; the new one waits for it
    writer.write(attack[14][40:])
    writer.close()
    clock.t += 1
    got += f.poll_once()
    assert len(starts(got)) == 15
    clock.t += 1.5  # the old file has been quiet for 1.5 s < 2 s
    assert f.poll_once() == []
    clock.t += 1
    got += f.poll_once()
    assert got == want
    assert f.positions.load(str(path)) == Position(path.stat().st_ino, path.stat().st_size, 24 - 15)
    append(path, attack[0].replace(b"1795527011.10", b"1795529999.99"))
    assert starts(f.poll_once()) == ["1795529999.99"]


def test_rotated_file_unterminated_last_line_is_a_row(tmp_path: Path, attack: list[bytes]) -> None:
    path = tmp_path / "Master.csv"
    clock = Clock()
    path.write_bytes(attack[0] + attack[1][:-1])
    f = follower(path, clock=clock, rotate_grace=2.0)
    assert len(starts(f.poll_once())) == 1
    os.rename(path, tmp_path / "Master.csv.1")
    path.write_bytes(attack[2])
    assert f.poll_once() == []  # waits for the old file's last line
    clock.t += 3
    assert starts(f.poll_once()) == ["1795527012.12", "1795527012.14"]
    assert f.status.errors == 0


def test_restart_after_rename_finishes_the_old_file(tmp_path: Path, attack: list[bytes]) -> None:
    want = expected(tmp_path, attack)
    path = tmp_path / "Master.csv"
    store = MemoryPositions()
    path.write_bytes(b"".join(attack[:10]))
    got = follower(path, store).poll_once()
    # stopped; meanwhile rows went to the old file, it was rotated twice, a new file begun
    append(path, b"".join(attack[10:13]))
    os.rename(path, tmp_path / "Master.csv.1")
    os.rename(tmp_path / "Master.csv.1", tmp_path / "Master.csv.2")
    (tmp_path / "Master.csv.1").write_bytes(b"")
    path.write_bytes(b"".join(attack[13:]))
    f = follower(path, store, rotate_grace=0.0)
    got += f.poll_once()
    assert got == want
    assert f.status.errors == 0


def test_copytruncate(tmp_path: Path, attack: list[bytes]) -> None:
    want = expected(tmp_path, attack)
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(attack[:10]))
    f = follower(path)
    got = f.poll_once()
    inode = path.stat().st_ino
    shutil.copyfile(path, tmp_path / "Master.csv.1")
    with path.open("r+b") as w:
        w.truncate(0)
    assert f.poll_once() == []
    append(path, b"".join(attack[10:13]))  # shorter than before the truncation
    got += f.poll_once()
    append(path, b"".join(attack[13:]))
    got += f.poll_once()
    assert path.stat().st_ino == inode
    assert got == want
    assert f.positions.load(str(path)) == Position(inode, path.stat().st_size, 14)


def test_truncated_and_regrown_before_the_poll(tmp_path: Path, attack: list[bytes]) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(attack[0])
    f = follower(path)
    assert len(starts(f.poll_once())) == 1
    # truncated, then more written than was there: the saved offset is now mid-line
    short = attack[1].replace(b"0102327654301", b"0102")
    path.write_bytes(short + attack[2])
    assert path.stat().st_size > len(attack[0])
    assert starts(f.poll_once()) == ["1795527012.12", "1795527012.14"]


def test_missing_file_then_created(tmp_path: Path, attack: list[bytes]) -> None:
    path = tmp_path / "Master.csv"
    f = follower(path)
    for _ in range(3):
        assert f.poll_once() == []
    assert not f.status.connected and f.status.errors == 0
    assert f.status.state == f"waiting for {path}"
    path.write_bytes(b"".join(attack[:2]))
    assert len(starts(f.poll_once())) == 2
    assert f.status.connected and f.status.errors == 0


def test_malformed_row_is_counted_with_its_line(
    tmp_path: Path, attack: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    bad = attack[5].replace(b',"ANSWERED"', b"", 1)  # 17 columns instead of 18
    rows = [*attack[:5], bad, *attack[6:]]
    want = expected(tmp_path, rows)
    assert len(starts(want)) == 23
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(rows[:3]))
    f = follower(path)
    caplog.set_level(logging.WARNING, logger="tollwatch.cdr_ingest.live.follow")
    got = f.poll_once()
    append(path, b"".join(rows[3:]))
    got += f.poll_once()
    got += f.poll_once()
    assert got == want
    assert f.status.errors == 1
    problems = [r.getMessage() for r in caplog.records]
    assert problems == [f"{path}:6: 17 columns, expected 18"]


def test_18_columns_then_21_after_rotation(tmp_path: Path, attack: list[bytes]) -> None:
    new_rows = [to_21(r) for r in attack[5:]]
    want = expected(tmp_path, attack[:5]) + expected(tmp_path, new_rows, "new.csv")
    assert len(want) == 72
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(attack[:5]))
    f = follower(path, rotate_grace=0.0)
    got = f.poll_once()
    os.rename(path, tmp_path / "Master.csv.1")
    path.write_bytes(new_rows[0])
    got += f.poll_once()
    append(path, b"".join(new_rows[1:]))
    got += f.poll_once()
    assert got == want
    assert f.status.errors == 0


def test_header_file_after_rotation(
    tmp_path: Path, attack: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """A new file with a header row: the header is not a row, line numbers stay physical."""
    bad = b'"acme","209","0102",too few columns\n'
    new_rows = [HEADER, *attack[5:8], bad, *attack[8:]]
    want = expected(tmp_path, attack[:5]) + expected(tmp_path, new_rows, "new.csv")
    assert len(starts(want)) == 24
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(attack[:5]))
    f = follower(path, rotate_grace=0.0)
    got = f.poll_once()
    os.rename(path, tmp_path / "Master.csv.1")
    path.write_bytes(HEADER)
    caplog.set_level(logging.WARNING, logger="tollwatch.cdr_ingest.live.follow")
    got += f.poll_once()
    append(path, b"".join(new_rows[1:]))
    got += f.poll_once()
    assert got == want
    assert [r.getMessage() for r in caplog.records] == [f"{path}:5: 4 columns, expected 18"]


def test_small_chunks_and_an_overlong_line(
    tmp_path: Path, attack: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    rows = [*attack[:3], b"x" * 5000 + b"\n", *attack[3:]]
    path = tmp_path / "Master.csv"
    path.write_bytes(b"".join(rows))
    f = follower(path, max_chunk=1000)
    caplog.set_level(logging.WARNING, logger="tollwatch.cdr_ingest.live.follow")
    got = f.poll_once()
    assert got == expected(tmp_path, attack)
    assert f.status.errors == 1
    assert [r.getMessage() for r in caplog.records] == [f"{path}:4: line of 5000 bytes, skipped"]
    assert f.positions.load(str(path)) == Position(path.stat().st_ino, path.stat().st_size, 25)


def test_rows_without_uniqueid_are_named_by_file_and_line(
    tmp_path: Path, attack: list[bytes]
) -> None:
    """16 columns (no uniqueid): call_id is file:line of the followed file, as in batch."""
    rows = [r.rsplit(b",", 2)[0] + b"\n" for r in attack]
    path = tmp_path / "Master.csv"
    path.write_bytes(b"\n" + b"".join(rows[:2]))
    f = follower(path)
    got = f.poll_once()
    append(path, rows[2])
    got += f.poll_once()
    assert starts(got) == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert {e.call_id for e in got if isinstance(e, CallEnded)} == set(starts(got))
    assert f.status.errors == 0


def test_overlong_unterminated_last_line_of_a_rotated_file(
    tmp_path: Path, attack: list[bytes]
) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(attack[0] + b"y" * 3000)
    clock = Clock()
    f = follower(path, clock=clock, max_chunk=1000, rotate_grace=1.0)
    assert len(starts(f.poll_once())) == 1
    assert f.poll_once() == [] and f.status.errors == 0  # may still be written
    os.rename(path, tmp_path / "Master.csv.1")
    path.write_bytes(attack[1])
    assert f.poll_once() == []
    clock.t += 2
    assert starts(f.poll_once()) == ["1795527012.12"]
    assert f.status.errors == 1


def test_not_a_cdr_file_waits_then_gives_up_until_rotated(
    tmp_path: Path, attack: list[bytes]
) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(b"hello,world\n")
    f = follower(path, rotate_grace=0.0)
    assert f.poll_once() == [] and f.status.errors == 0  # few lines yet: waits
    assert "detect" in f.status.state
    append(path, b"hello,world\n" * 60)
    assert f.poll_once() == [] and f.status.errors == 1
    assert "not a CDR file" in f.status.state
    assert f.poll_once() == [] and f.status.errors == 1  # said once
    os.rename(path, tmp_path / "Master.csv.1")
    path.write_bytes(attack[0])
    assert len(starts(f.poll_once())) == 1


def test_restart_when_the_old_file_is_gone(
    tmp_path: Path, attack: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "Master.csv"
    store = MemoryPositions()
    path.write_bytes(attack[0])
    assert len(starts(follower(path, store).poll_once())) == 1
    # rotated and compressed away while stopped (the new file is made first: with the old one
    # deleted first, its inode number may be reused, see the next test)
    (tmp_path / "new").write_bytes(b"".join(attack[1:3]))
    path.unlink()
    f = follower(path, store)
    assert f.poll_once() == [] and "waiting" in f.status.state
    os.rename(tmp_path / "new", path)
    caplog.set_level(logging.WARNING, logger="tollwatch.cdr_ingest.live.follow")
    assert len(starts(f.poll_once())) == 2
    assert "is gone" in caplog.text


def test_restart_when_the_file_was_replaced_in_place(tmp_path: Path, attack: list[bytes]) -> None:
    """Same inode, new content, a line end at the saved offset: the line count tells."""
    path = tmp_path / "Master.csv"
    store = MemoryPositions()
    path.write_bytes(attack[0])
    assert len(starts(follower(path, store).poll_once())) == 1
    short = attack[1].replace(b"0102327654301", b"010232765430", 1)
    assert len(b"\n" + short) == len(attack[0])
    path.write_bytes(b"\n" + short + attack[2])  # truncated in place and rewritten
    assert starts(follower(path, store).poll_once()) == ["1795527012.12", "1795527012.14"]
