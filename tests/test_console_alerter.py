"""The console alerter prints growth only when the counts move, and forgets old incidents."""

from __future__ import annotations

import asyncio
import io

from tollwatch.alerting import console
from tollwatch.alerting.console import ConsoleAlerter


def _view(n: int, calls: int) -> dict[str, object]:
    return {
        "id": f"inc-{n}",
        "severity": "warning",
        "source": "201",
        "calls": calls,
        "destinations": ["Sierra Leone"],
        "first_call_at": "2026-12-01T00:00:00+00:00",
    }


def test_growth_is_printed_once_per_change() -> None:
    out = io.StringIO()
    alerter = ConsoleAlerter(out)

    async def run() -> None:
        await alerter.send("opened", _view(1, 3))
        await alerter.send("updated", _view(1, 3))  # no change: nothing
        await alerter.send("updated", _view(1, 4))
        await alerter.send("updated", _view(1, 4))  # no change: nothing

    asyncio.run(run())
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("[NEW]") for line in lines) == 1
    assert sum(line.startswith("[UPDATE]") for line in lines) == 1


def test_the_counts_kept_are_bounded_and_the_newest_survive() -> None:
    out = io.StringIO()
    alerter = ConsoleAlerter(out)
    many = console.SEEN_MAX + 500

    async def run() -> None:
        for n in range(many):
            await alerter.send("opened", _view(n, 1))
        await alerter.send("updated", _view(many - 1, 1))  # still known: unchanged, not printed

    asyncio.run(run())
    assert len(alerter._seen) == console.SEEN_MAX
    assert "inc-0" not in alerter._seen and f"inc-{many - 1}" in alerter._seen
    assert "[UPDATE]" not in out.getvalue()
