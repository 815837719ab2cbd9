"""The daemon's event queue: bounded, measured, never dropping an event.

Sources put events (AMI: `put_nowait` from the connection's reader, which must never wait;
Master.csv: `await wait_room()` before reading more). The queue itself never refuses an item:
`limit` is a high-water mark. Reaching it tells the pressure listeners (the AMI source pauses
reading its socket, so the backlog is kept in the kernel and in Asterisk rather than lost or
grown without end); draining to `resume_at` tells them to go on. The backlog (how many
events wait), the age of the oldest and the peak are what `status` and metrics show.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")
DEFAULT_LIMIT = 200_000

PressureListener = Callable[[bool], None]  # True: stop reading; False: read again


class EventQueue(asyncio.Queue[_T]):
    def __init__(self, limit: int = DEFAULT_LIMIT, resume_at: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()  # unbounded for asyncio: put_nowait never raises QueueFull
        self.limit = max(1, limit)
        self.resume_at = resume_at if resume_at is not None else self.limit // 2
        self.peak = 0
        self.total = 0
        self._clock = clock
        self._times: deque[float] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._listeners: list[PressureListener] = []

    # asyncio.Queue's storage hooks (as PriorityQueue/LifoQueue use them)
    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self._times = deque()

    def _put(self, item: Any) -> None:
        super()._put(item)
        self._times.append(self._clock())
        self.total += 1
        n = len(self._times)
        self.peak = max(self.peak, n)
        if n >= self.limit and self._room.is_set():
            self._room.clear()
            self._tell(True)

    def _get(self) -> Any:
        item = super()._get()
        if self._times:
            self._times.popleft()
        if not self._room.is_set() and len(self._times) <= self.resume_at:
            self._room.set()
            self._tell(False)
        return item

    # ---- pressure and measures -----------------------------------------------------------
    def add_pressure_listener(self, listener: PressureListener) -> None:
        self._listeners.append(listener)
        if not self._room.is_set():
            listener(True)

    def remove_pressure_listener(self, listener: PressureListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _tell(self, full: bool) -> None:
        for listener in list(self._listeners):
            listener(full)

    @property
    def over_limit(self) -> bool:
        return not self._room.is_set()

    async def wait_room(self) -> None:
        """Return once the backlog is below the high-water mark (at once if it is)."""
        await self._room.wait()

    def oldest_age(self) -> float:
        """Seconds the oldest queued event has waited (0 when empty)."""
        return max(0.0, self._clock() - self._times[0]) if self._times else 0.0

    def measures(self) -> dict[str, Any]:
        return {"events": self.qsize(), "oldest_s": round(self.oldest_age(), 3),
                "peak": self.peak, "limit": self.limit, "total": self.total,
                "paused": self.over_limit}
