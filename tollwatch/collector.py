"""Short pauses of Python's cyclic garbage collector in the daemon.

Every full ("generation 2") collection walks every container object the process holds: on a
busy PBX's state (windows and open incidents holding tens of thousands of calls) that is a
pause of the event loop of 100-450 ms, in which no AMI event is decided, a few times a minute
(`bench_daemon.py --trace`, the dense stream). Yet the daemon makes next to no cyclic
garbage: its objects die by reference counting (the incident call log's weak map was the one
source of cycles, 90-200k objects a minute on the dense stream; since it holds plain weak
references a whole dense run leaves none: `DEBUG_SAVEALL` at stop finds 0).

So what has lived through a tick (a second) is moved out of the collector's sight
(`gc.freeze()`, O(1)): collections walk only what was made since, and a full pass costs what
a second of traffic leaves. Objects that are frozen are still freed by reference counting as
usual; only a cycle that becomes garbage after being frozen waits, for the full collection
taken every `full_every` seconds (everything unfrozen and collected once, then frozen again:
one longer pause an hour instead of a few a minute), and at stop everything is given
back to the collector.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

FULL_EVERY = 3600.0  # seconds between full collections of everything


class Collector:
    def __init__(
        self, full_every: float = FULL_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.full_every = full_every
        self.clock = clock
        self._full_at = clock()
        self.full_collections = 0
        self.full_found = 0  # cyclic garbage the full collections found (leaked otherwise)
        self.last_full_s = 0.0

    def start(self) -> None:
        """After start-up: what it built lives as long as the process."""
        gc.collect()
        gc.freeze()
        self._full_at = self.clock()

    def tick(self) -> None:
        """Once a second: freeze what lived through it; now and then collect everything."""
        if self.clock() - self._full_at >= self.full_every:
            t = time.perf_counter()
            gc.unfreeze()
            self.full_found += gc.collect()
            self.last_full_s = time.perf_counter() - t
            self.full_collections += 1
            self._full_at = self.clock()
        gc.freeze()

    def stop(self) -> None:
        """Give everything back to the collector (a process that goes on without us)."""
        gc.unfreeze()
