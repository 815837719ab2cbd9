"""Read ahead: an iterator run in its own thread, at most a few items ahead of its consumer.

The file reader's pieces (polars' CSV parser, the strict line check) release the GIL, so the
next piece is parsed on the other core while the consumer types and classifies this one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


_POLL = 0.05  # seconds between the producer's checks that the consumer is still there


def ahead(items: Iterator[T], depth: int = 1, name: str = "tollwatch-read-ahead") -> Iterator[T]:
    """The items of `items` in order, produced by a daemon thread that runs at most `depth`
    items ahead (memory holds at most depth + 2 items: queued, being made, being used).

    An exception raised by `items` is raised here, after the items produced before it.
    Closing this iterator early (or an exception in the consumer) stops the producer after
    the item it is making, closes `items` in that thread, and waits for it to end."""
    # an item, the exception `items` raised, or None at the end
    box: queue.Queue[_Item[T] | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: _Item[T] | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        end: BaseException | None = None
        try:
            for item in items:
                if not put(_Item(item)):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            end = exc
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put(end)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            entry = box.get()
            if isinstance(entry, _Item):
                yield entry.value
            elif entry is None:
                return
            else:
                raise entry
    finally:
        stop.set()
        thread.join()
