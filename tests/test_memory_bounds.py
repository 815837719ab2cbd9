"""What a daemon that runs for months must not keep per incident forever (issue 13, RSS flat):
each structure here grew by one entry per incident (or per number) for the process's life."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import settings
from tests.test_block_scope import ATTACK, Clock, Sender
from tollwatch.alerting.remediation import blocker as blocker_mod
from tollwatch.alerting.remediation.blocker import Blocker


def _view(incident: str, per_number: dict[str, int]) -> dict[str, Any]:
    numbers = sorted(per_number)
    return {"id": incident, "pbx": "acme", "severity": "critical", "rules": ["burst"],
            "source": "209", "numbers": numbers, "number_calls": [per_number[n] for n in numbers],
            "call_ids": [], "calls": sum(per_number.values())}  # fmt: skip


async def test_blocker_remembers_the_recent_incidents_not_every_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block evidence per (incident, target) was kept for every incident ever blocked (or
    found blocked already) and the refusal warnings for every incident ever refused: now the
    REMEMBER most recently changed incidents; an incident still changing keeps its evidence,
    so an expired block comes back only on a new call, as before."""
    monkeypatch.setattr(blocker_mod, "REMEMBER", 8, raising=False)
    s = settings("JP", remediation={"enabled": True}, daemon={"data_dir": str(tmp_path)})
    clock, sender = Clock(), Sender()
    blocker = Blocker(s, {"acme": sender}, clock=clock)
    calls = dict.fromkeys(ATTACK, 30)
    await blocker.handle("escalated", _view("inc-0", calls))
    assert sender.keys() == ["23276543"]
    for k in range(1, 40):  # other incidents to the same range: found blocked already
        await blocker.handle("updated", _view(f"inc-{k}", calls))
        await blocker.handle("updated", _view("inc-0", calls))  # inc-0 goes on changing
    assert len(blocker._covered) == 8 and "inc-0" in blocker._covered
    clock.t += 86_400
    await blocker.expire()
    await blocker.handle("updated", _view("inc-0", calls))  # nothing new: the expiry stands
    assert sender.keys() == ["23276543"]
    calls[ATTACK[2]] += 1
    await blocker.handle("updated", _view("inc-0", calls))  # a new call: blocked again
    assert sender.keys() == ["23276543", "23276543"]
    assert len(blocker._covered) <= 8


async def test_blocker_refusals_are_said_once_for_recent_incidents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(blocker_mod, "REMEMBER", 4, raising=False)
    s = settings("JP", remediation={"enabled": True, "block": "source"},
                 daemon={"data_dir": str(tmp_path)})  # fmt: skip
    blocker = Blocker(s, {}, clock=Clock())
    pbx_wide = {**_view("inc-x", dict.fromkeys(ATTACK, 3)), "source": ""}
    for _ in range(3):
        await blocker.handle("updated", pbx_wide)
    said = [r for r in caplog.records if "not blocking" in r.getMessage()]
    assert len(said) == 1, said
    for k in range(20):
        await blocker.handle("updated", {**pbx_wide, "id": f"inc-{k}"})
    assert len(blocker._told) == 4
