"""Keep a source running: reconnect with exponential backoff and jitter, log state changes once.

Sources know nothing of retries: `run(queue)` returns or raises when the connection is gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Protocol

from tollwatch.cdr_ingest.live import LiveEvent, SourceStatus

log = logging.getLogger("tollwatch.source")


class Source(Protocol):
    name: str
    status: SourceStatus

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        """Put events on the queue until disconnected (return or raise)."""
        ...


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def supervise(
    source: Source,
    queue: asyncio.Queue[LiveEvent],
    max_backoff: float = 60.0,
    first_delay: float = 1.0,
    healthy_after: float = 30.0,
) -> None:
    """Run `source` forever; only cancellation stops it."""
    delay = first_delay
    last_state = ""
    while True:
        started = time.monotonic()
        try:
            await source.run(queue)
            problem = "disconnected"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of one source must not stop the daemon
            problem = describe(exc)
            source.status.errors += 1
        source.status.connected = False
        if time.monotonic() - started >= healthy_after:
            delay = first_delay  # it ran well for a while: start the backoff over
        wait = delay * random.uniform(0.5, 1.5)
        source.status.state = f"retrying in {wait:.0f}s ({problem})"
        if problem != last_state:  # once per state change, not once per retry
            log.warning("source %s: %s; retrying with backoff", source.name, problem)
            last_state = problem
        await asyncio.sleep(wait)
        delay = min(delay * 2, max_backoff)
