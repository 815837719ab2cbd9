"""cdr_ingest._ahead: an iterator run in a thread gives the same items, errors and cleanup."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tollwatch.cdr_ingest._ahead import ahead


class Source:
    """Counts items made and whether it was closed (and in which thread)."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.n, self.fail_at = n, fail_at
        self.made = 0
        self.closed_in: str | None = None

    def items(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise ValueError(f"bad item {i}")
                self.made += 1
                yield i
        finally:
            self.closed_in = threading.current_thread().name


def test_same_items_in_order_made_in_another_thread() -> None:
    src = Source(1000)
    assert list(ahead(src.items())) == list(range(1000))
    assert src.closed_in == "tollwatch-read-ahead"


def test_an_error_comes_after_the_items_made_before_it() -> None:
    src = Source(10, fail_at=4)
    got: list[int] = []
    with pytest.raises(ValueError, match="bad item 4"):
        for x in ahead(src.items(), depth=3):
            got.append(x)
    assert got == [0, 1, 2, 3]


@pytest.mark.parametrize("depth", [1, 3])
def test_runs_at_most_depth_ahead_and_stops_when_left(depth: int) -> None:
    src = Source(10_000)
    it = ahead(src.items(), depth=depth)
    assert next(it) == 0
    time.sleep(0.3)  # time enough to run far ahead, if it could
    assert src.made <= 1 + depth + 1  # taken, queued, and the one waiting to be queued
    it.close()  # the consumer leaves: the producer stops and closes its source
    assert src.closed_in == "tollwatch-read-ahead"
    assert src.made <= 1 + depth + 1
    assert not [t for t in threading.enumerate() if t.name == "tollwatch-read-ahead"]


def test_an_error_in_the_consumer_stops_the_producer() -> None:
    src = Source(10_000)
    with pytest.raises(RuntimeError):
        for x in ahead(src.items()):
            if x == 5:
                raise RuntimeError("consumer failed")
    assert src.closed_in == "tollwatch-read-ahead"
    assert src.made < 10
