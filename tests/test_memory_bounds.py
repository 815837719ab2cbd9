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


def _call(i: int, number: str) -> Any:
    from datetime import UTC, datetime, timedelta

    from tollwatch.rules.model import Call

    start = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=i)
    c = Call(f"c{i}", "209", "", _CLASSIFIER.classify(number), start,
             answer=start, end=start + timedelta(seconds=30))  # fmt: skip
    c.ended = True
    return c


_CLASSIFIER = __import__("tollwatch.rules.destinations", fromlist=["Classifier"]).Classifier(
    settings("JP")
)


def test_an_incident_that_never_goes_quiet_keeps_a_bounded_number_of_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An open incident counted the calls of every distinct number it ever saw: one that never
    goes quiet (a source or the PBX under steady traffic) grew for ever. Now, with a limit, the
    NUMBERS most recently called; calls, minutes and the kept numbers' counts stay exact."""
    from zoneinfo import ZoneInfo

    from tollwatch.report_format import incident_dict
    from tollwatch.rules import incident_calls
    from tollwatch.rules.incidents import Incident

    monkeypatch.setattr(incident_calls, "NUMBERS", 16, raising=False)
    inc = Incident(id="s:209:1", site="s", source="209", opened_at=_call(0, "0").start,
                   last_activity=_call(0, "0").start)  # fmt: skip
    hot = "0101212555" + "0000"
    for i in range(1, 2001):  # fresh numbers, and one number called every 10th call
        number = hot if i % 10 == 0 else "010442079" + str(460000 + i)
        assert inc.take(_call(i, number))
        assert len(inc.log.numbers) <= 16 + 2
    assert inc.call_count == 2000 and inc.minutes() == 1000.0
    assert inc.log.numbers["+12125550000"] == 200  # called all along: kept, counted exactly
    assert "+442079460999" not in inc.log.numbers and "+442079461999" in inc.log.numbers
    view = incident_dict(inc, ZoneInfo("UTC"))
    assert view["numbers"] == sorted(inc.log.numbers) and len(view["numbers"]) <= 18
    assert view["numbers_dropped"] == 1801 - len(inc.log.numbers)
    assert view["number_calls"][view["numbers"].index("+12125550000")] == 200


def test_numbers_are_all_kept_without_a_limit_and_below_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The report's tracker keeps every call (limit None): every number too; below NUMBERS
    the view is what it was (no `numbers_dropped`)."""
    from zoneinfo import ZoneInfo

    from tollwatch.report_format import incident_dict
    from tollwatch.rules import incident_calls
    from tollwatch.rules.incident_calls import IncidentCalls
    from tollwatch.rules.incidents import Incident

    monkeypatch.setattr(incident_calls, "NUMBERS", 16, raising=False)
    every = IncidentCalls(None)
    small = Incident(id="s:209:2", site="s", source="209", opened_at=_call(0, "0").start,
                     last_activity=_call(0, "0").start)  # fmt: skip
    for i in range(1, 101):
        every.add(_call(i, "010442079" + str(460000 + i)))
        if i <= 16:
            small.take(_call(i, "010442079" + str(460000 + i)))
    assert len(every.numbers) == 100 and every.numbers_dropped == 0
    assert "numbers_dropped" not in incident_dict(small, ZoneInfo("UTC"))
    assert len(small.log.numbers) == 16


def test_the_sorted_numbers_follow_a_forgetting_that_keeps_their_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sorted view of the numbers is cached while their count stays the same: forgetting
    brings the count back to NUMBERS with other numbers, so it must not serve the old list."""
    from tollwatch.rules import incident_calls
    from tollwatch.rules.incident_calls import IncidentCalls

    monkeypatch.setattr(incident_calls, "NUMBERS", 8, raising=False)
    log = IncidentCalls()
    for i in range(1, 9):
        log.add(_call(i, "010442079" + str(460000 + i)))
    assert log.sorted_set("numbers") == sorted(log.numbers)  # cached at 8
    for i in range(9, 31, 2):  # two more: 10 > 8 + 8 // 8, forgotten down to 8 again
        log.add(_call(i, "010442079" + str(460000 + i)))
        log.add(_call(i + 1, "010442079" + str(460000 + i + 1)))
        assert len(log.numbers) == 8 and log.numbers_dropped == i - 7
        assert log.sorted_set("numbers") == sorted(log.numbers)


@pytest.mark.slow
def test_the_classifier_cache_holds_a_few_mib_however_many_numbers_are_dialed() -> None:
    """`classify()` caches each dialed number's Destination: at the old cap of 65,536 that was
    ~21 MiB, filled over a day of fresh numbers (the soak's CSV PBX dials random ones); now
    CACHE_NUMBERS (16,384, ~7 MiB), least recently used out, and what it answers is the same
    for a number that was evicted."""
    import gc
    import tracemalloc

    from tollwatch.rules.destinations import Classifier

    c = Classifier(settings("JP"))
    first = c.classify("0312340000")
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(30_000):
        c.classify(f"03{55000000 + i}")
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(c._cache) <= 16_384
    assert held < 9 * 2**20, held / 2**20  # ~7 MiB; 30,000 entries took ~13 MiB before
    assert c.classify("0312340000") == first and c.classify("0312340000") is not first


def test_window_groups_no_call_comes_back_to_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A group was evicted only when a call was added to it: the destination block of a past
    attack (`burst_destination`), a source gone quiet, kept its calls for ever. Now every
    group is pruned every PRUNE_EVERY adds; what each add counts and holds is unchanged (the
    calls of the group within the span, checked against a model on random traffic)."""
    import random
    from datetime import UTC, datetime, timedelta

    from tollwatch.rules.builtin import _window
    from tollwatch.rules.builtin._window import Windows

    monkeypatch.setattr(_window, "PRUNE_EVERY", 64, raising=False)
    span = timedelta(minutes=10)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    fresh = Windows(span)
    for i in range(5000):  # a new group every second, never seen again
        fresh.add(f"dest:+232{i}xxx", t0 + timedelta(seconds=i), _call(i, "0102327654300"))
    assert len(fresh) <= 600 + 64 + 1  # the span's groups, and those since the last pruning

    rnd = random.Random(13)
    windows = Windows(span, count_sources=True)
    model: dict[str, list[tuple[datetime, Any]]] = {}
    at = t0
    for i in range(4000):
        at += timedelta(seconds=rnd.choice([0, 1, 5, 30, 200]))
        key = rnd.choice(["209", "210", "*"]) if rnd.random() < 0.5 else f"dest:{i % 300}"
        call = _call(i, "0102327654300")
        n = windows.add(key, at, call)
        kept = [(t, c) for t, c in model.get(key, []) if t > at - span] + [(at, call)]
        model[key] = kept
        assert n == len(kept)
        assert list(windows.held(key)) == [c for _, c in kept]
        held = windows.held(key).sources
        assert held == {"209": len(kept)}  # (every call here is from 209)
    assert len(windows) < 300
