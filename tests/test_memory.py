"""tollwatch.memory: malloc_trim gives freed heap back, the housekeeper measures and logs it,
and never stops the daemon."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
from typing import Any

import pytest

from tollwatch.memory import (
    ENV,
    LOG_ENV,
    REPORT_EVERY,
    TRIM_EVERY,
    Allocator,
    Housekeeper,
    _Sqlite,
    housekeeper,
    rss,
    seconds,
)

MIB = 1 << 20
glibc = pytest.mark.skipif(not Allocator().available, reason="needs glibc's malloc_trim")


def _fragment(into: list[bytes]) -> None:
    """80 MiB of 100 KiB blocks (under glibc's mmap threshold: on the heap), then all but the
    last freed: the heap cannot shrink from its top, so freeing alone keeps the pages."""
    blocks = [b"x" * (100 * 1024) for _ in range(800)]  # written: resident
    into.append(blocks[-1])
    del blocks


@glibc
@pytest.mark.parametrize("in_thread", [False, True], ids=["main arena", "thread arena"])
def test_trim_returns_freed_pages_in_the_middle_of_a_heap(in_thread: bool) -> None:
    keep: list[bytes] = []
    if in_thread:
        t = threading.Thread(target=_fragment, args=(keep,))
        t.start()
        t.join()
    else:
        _fragment(keep)
    before = rss()
    assert before is not None
    keeper = Housekeeper(every=60)
    result = keeper.once()
    assert before - result["rss"] > 40 * MIB, (before, result)
    assert keeper.returned > 40 * MIB and keeper.trims == 1
    info = result["malloc"]
    assert info is not None and info["in_use"] <= info["heap"]
    assert "trims returned" in keeper.line() and "malloc heap" in keeper.line()
    assert keep  # the block that pinned the heap's top is still alive


class _Lib:
    """A C library with malloc_trim and mallinfo2 that counts calls (ctypes-like functions)."""

    def __init__(self) -> None:
        self.trims = 0
        lib = self

        class Fn:
            def __init__(self, body: Any) -> None:
                self.body = body
                self.argtypes: list[Any] = []
                self.restype: Any = None

            def __call__(self, *args: Any) -> Any:
                return self.body(*args)

        def trim(pad: int) -> int:
            assert pad == 0
            lib.trims += 1
            return 1

        self.malloc_trim = Fn(trim)


def test_no_glibc_means_nothing_trimmed_and_rss_still_logged() -> None:
    alloc = Allocator(lib=object())
    assert not alloc.available and alloc.trim() is False and alloc.info() is None
    keeper = Housekeeper(
        every=60, allocator=alloc, resident=lambda: 50 * MIB, sqlite=lambda: 3 * MIB
    )
    keeper.once()
    assert keeper.trims == 0
    assert re.fullmatch(r"memory: rss 50\.0 MiB; sqlite 3\.0 MiB; \d+ python blocks", keeper.line())


def test_every_zero_turns_trimming_off() -> None:
    lib = _Lib()
    keeper = Housekeeper(
        every=0, allocator=Allocator(lib=lib), resident=lambda: None, sqlite=lambda: None
    )
    keeper.once()
    assert lib.trims == 0 and keeper.line().startswith("memory: rss ?; ")
    assert "sqlite" not in keeper.line() and "trims" not in keeper.line()


@pytest.mark.skipif(_Sqlite()() is None, reason="libsqlite3 not found")
def test_sqlite_memory_is_measured() -> None:
    measure = _Sqlite()
    before = measure()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 100,)] * 50_000)
    during = measure()
    db.close()
    assert before is not None and during is not None and during - before > 4 * MIB
    keeper = Housekeeper(sqlite=lambda: during)
    keeper.once()
    assert f"sqlite {during / MIB:.1f} MiB" in keeper.line()


async def test_run_trims_off_the_loop_logs_and_survives_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lib = _Lib()
    sizes = iter([100 * MIB, 90 * MIB] * 50)
    calls = {"n": 0}

    def resident() -> int | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")  # the first measure fails: logged, the loop goes on
        assert threading.current_thread() is not threading.main_thread()
        return next(sizes)

    keeper = Housekeeper(every=0.01, report_every=0.02, allocator=Allocator(lib=lib),
                         resident=resident)  # fmt: skip
    caplog.set_level(logging.INFO, logger="tollwatch.memory")
    task = asyncio.create_task(keeper.run())
    for _ in range(500):
        await asyncio.sleep(0.01)
        if lib.trims >= 5 and any("trims returned" in r.message for r in caplog.records):
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lib.trims >= 5
    assert any("memory housekeeping failed" in r.message for r in caplog.records)
    lines = [r.message for r in caplog.records if r.message.startswith("memory: ")]
    assert lines and "rss 90.0 MiB" in lines[-1]
    assert keeper.returned >= 10 * MIB  # 100 -> 90 MiB at each trim after the first


def test_intervals_from_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    assert seconds(ENV, TRIM_EVERY, {}) == TRIM_EVERY
    assert seconds(ENV, TRIM_EVERY, {ENV: " 5 "}) == 5.0
    assert seconds(ENV, TRIM_EVERY, {ENV: "0"}) == 0.0
    for bad in ("soon", "-1", "nan", "inf"):
        caplog.clear()
        assert seconds(ENV, TRIM_EVERY, {ENV: bad}) == TRIM_EVERY
        assert [r.message for r in caplog.records] == [
            f"{ENV} is not a number of seconds >= 0; using {TRIM_EVERY:.0f}"
        ]
    keeper = housekeeper({ENV: "7", LOG_ENV: "0"})
    assert keeper.every == 7.0 and keeper.report_every == REPORT_EVERY
    assert housekeeper({LOG_ENV: "30"}).report_every == 30.0
