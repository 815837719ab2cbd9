"""One piece of work run in a thread while the caller goes on, its result (or the exception it
raised) handed over when asked for: how `scan` overlaps work that does not depend on the rows
(building the rule engine, checking the sample of dialed numbers) with polars reading them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """`work()` in a daemon thread, started now."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self._work = work
        self._result: T | None = None
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._work()
            self._done = True
        except BaseException as exc:  # raised in the caller's thread, by result()
            self._error = exc

    def result(self) -> T:
        """What `work()` returned, once it has; what it raised is raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._done
        return self._result  # type: ignore[return-value]  # T may itself admit None
