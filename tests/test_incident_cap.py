"""The cap on the calls an incident lists changes no count, no detection and no block: scan with
a tiny cap equals scan keeping every call (but for the listed call ids), and the live pipeline
equals scan under the same cap."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.helpers import settings
from tests.test_parity import feed_live, write_master
from tollwatch.alerting.remediation.scope import Scope
from tollwatch.live import LivePipeline
from tollwatch.report_format import incident_dict
from tollwatch.rules.destinations import Classifier
from tollwatch.scan import run_scan
from tollwatch.settings import rule_specs

TZ = ZoneInfo("Asia/Tokyo")
LISTING = ("call_ids", "call_numbers", "calls_not_listed")
NUMBERS = ["0102327654300", "0102327654301", "0102327654377", "0105358001122",
           "01044201234567", "0101876555123", "0312345678"]  # fmt: skip


def traffic(seed: int, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    return [{"src": rnd.choice(["201", "202", "203", "209"]), "dst": rnd.choice(NUMBERS),
             "offset": i * 20 + rnd.randrange(15), "ring": rnd.randrange(10),
             "talk": rnd.randrange(900), "answered": rnd.random() < 0.7, "failover": False}
            for i in range(n)]  # fmt: skip


def capped(first: int, last: int) -> Any:
    return settings("JP", "Asia/Tokyo", incidents={"keep_first_calls": first,
                                                   "keep_last_calls": last})


def views(incidents: list[Any]) -> list[dict[str, Any]]:
    return sorted((incident_dict(i, TZ) for i in incidents), key=lambda v: v["id"])


def test_a_tiny_cap_changes_no_count_detection_or_block(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    write_master(traffic(1, 600), path)
    every = run_scan([path], capped(100_000, 100_000)).incidents
    few = run_scan([path], capped(2, 3)).incidents
    assert max(i.call_count for i in every) > 100  # big incidents: the cap is exercised
    full, small = views(every), views(few)
    assert [{k: v for k, v in f.items() if k not in LISTING} for f in full] == [
        {k: v for k, v in s.items() if k not in LISTING} for s in small]
    for f, s in zip(full, small, strict=True):
        assert f["calls_not_listed"] == 0
        assert s["calls"] == len(s["call_ids"]) + s["calls_not_listed"]
        assert len(s["call_ids"]) == min(5, s["calls"])  # every call ended: first 2, last 3
        assert set(s["call_ids"]) <= set(f["call_ids"])
    sett = capped(2, 3)
    scope = Scope(sett, Classifier(sett))
    targets = [scope.targets(v) for v in full]
    assert any(targets) and targets == [scope.targets(v) for v in small]


def test_live_equals_scan_under_the_same_cap(tmp_path: Path) -> None:
    calls = traffic(2, 400)
    path = tmp_path / "Master.csv"
    write_master(calls, path)
    s = capped(3, 4)
    batch = run_scan([path], s).incidents
    pipeline = LivePipeline("pbx", s, Classifier(s), rule_specs(s))
    feed_live(pipeline, calls)
    live = pipeline.engine.tracker.all_incidents()
    assert max(i.calls_not_listed for i in batch) > 0
    def same(vs: list[dict[str, Any]]) -> list[dict[str, Any]]:  # ids name the site/pbx
        return sorted(({k: v for k, v in x.items() if k not in ("id", "site")} for x in vs),
                      key=lambda v: (v["first_call_at"], v["source"]))  # fmt: skip

    assert same(views(live)) == same(views(batch))


async def test_an_expired_block_comes_back_on_a_new_call_not_listed(tmp_path: Path) -> None:
    """Remediation's evidence is the calls per number, not the listed call ids: a new call to
    the blocked range counts even when the incident lists only its first and last calls."""
    from tests.test_block_scope import ATTACK, Clock, Sender
    from tollwatch.alerting.remediation.blocker import Blocker

    def capped_view(per_number: dict[str, int]) -> dict[str, Any]:
        numbers = sorted(per_number)
        return {"id": "inc-1", "pbx": "acme", "severity": "critical", "rules": ["burst"],
                "source": "209", "numbers": numbers,
                "number_calls": [per_number[n] for n in numbers],
                "call_ids": ["c0", "c1"], "call_numbers": [ATTACK[0], ATTACK[1]],
                "calls": sum(per_number.values()),
                "calls_not_listed": sum(per_number.values()) - 2}  # fmt: skip

    s = settings("JP", remediation={"enabled": True}, daemon={"data_dir": str(tmp_path)})
    clock, sender = Clock(), Sender()
    blocker = Blocker(s, {"acme": sender}, clock=clock)
    calls = dict.fromkeys(ATTACK, 30)
    await blocker.handle("escalated", capped_view(calls))
    assert sender.keys() == ["23276543"]
    clock.t += 86_400
    await blocker.expire()
    await blocker.handle("updated", capped_view({**calls, "+442079460000": 5}))  # UK only
    assert sender.keys() == ["23276543"]
    calls[ATTACK[3]] += 1  # one more call to a number called before, not among the listed
    await blocker.handle("updated", capped_view(calls))
    assert sender.keys() == ["23276543", "23276543"]
