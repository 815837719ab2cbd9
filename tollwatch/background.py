"""One piece of work run in a thread while the caller goes on, its result (or the exception it
raised) handed over by a `concurrent.futures.Future`: how `scan` overlaps work that does not
depend on the rows (building the rule engine, checking the sample of dialed numbers) with
polars reading them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def in_background(work: Callable[[], T], name: str) -> Future[T]:
    """`work()` in a daemon thread, started now; `.result()` waits for it and raises what it
    raised."""
    done: Future[T] = Future()

    def run() -> None:
        try:
            done.set_result(work())
        except BaseException as exc:  # raised in the caller's thread, by result()
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done
