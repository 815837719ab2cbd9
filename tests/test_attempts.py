"""High-risk means international; carrier failover legs and parallel forks count as one attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import Traffic, at, settings
from tests.test_parity import summary
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
from tollwatch.cdr_ingest.live.events import CallStarted
from tollwatch.live import LivePipeline
from tollwatch.rules.destinations import Classifier
from tollwatch.scan import run_scan
from tollwatch.settings import rule_specs

# -- high-risk means international -----------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "dialed", "high_risk", "dest_class"),
    [
        ("RU", "84951234567", False, "domestic"),  # Moscow from Moscow, national format
        ("RU", "+74951234567", False, "domestic"),
        ("RU", "+77011234567", True, "international"),  # Kazakhstan from Russia
        ("KZ", "+77011234567", False, "domestic"),  # Almaty from Almaty
        ("KZ", "87011234567", False, "domestic"),
        ("KZ", "+74951234567", True, "international"),  # Moscow from Kazakhstan
        ("JM", "8765551234", False, "domestic"),  # Kingston from Kingston (NANP, +1 876)
        ("JM", "+18765551234", False, "domestic"),
        ("US", "18765551234", True, "international"),  # Jamaica from the US
        ("JP", "+74951234567", True, "international"),
    ],
)
def test_high_risk_only_abroad(country: str, dialed: str, high_risk: bool, dest_class: str) -> None:
    d = Classifier(settings(country, "UTC")).classify(dialed)
    assert (d.dest_class, d.high_risk) == (dest_class, high_risk)
    assert (d.risk_prefix is not None) == high_risk


def test_high_risk_list_entry_for_a_domestic_region_is_ignored() -> None:
    # US and CA are each other's domestic regions; listing Canada's code changes nothing at home.
    c = Classifier(settings("US", "UTC", high_risk={"add": ["1-416"]}))
    assert c.classify("14165551234").high_risk is False
    assert Classifier(settings("JP", "UTC", high_risk={"add": ["1-416"]})).classify(
        "01014165551234"
    ).high_risk


def test_moscow_office_calling_moscow_at_night_is_nothing() -> None:
    t = Traffic(settings("RU", "Europe/Moscow"))
    night = at("2026-11-29T03:00", "Europe/Moscow")
    for i in range(20):
        t.call("201", f"8495123456{i % 10}", night + timedelta(minutes=3 * i))
    assert t.run() == []


# -- failover legs and forks -----------------------------------------------------------------

BASE = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # Saturday night, Tokyo morning: use UTC site


def q(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def row(src: str, dst: str, trunk: str, start: datetime, answer: datetime | None,
        end: datetime, uid: str, n: int) -> str:
    fmt = "%Y-%m-%d %H:%M:%S"
    billsec = int((end - answer).total_seconds()) if answer else 0
    return ",".join([
        q("acme"), q(src), q(dst), q("from-internal"), q(f'"Desk" <{src}>'),
        q(f"PJSIP/{src}-{n:08x}"), q(f"PJSIP/{trunk}-{n + 1:08x}"), q("Dial"),
        q(f"PJSIP/{dst}@{trunk},60"), q(start.strftime(fmt)),
        q(answer.strftime(fmt)) if answer else "", q(end.strftime(fmt)),
        str(int((end - start).total_seconds())), str(billsec),
        q("ANSWERED" if answer else "FAILED"), q("DOCUMENTATION"), q(uid), q(""),
    ])


def failover_rows(attempts: int, legs: int, *, forks: bool = False) -> list[str]:
    """`attempts` calls from 209 to Sierra Leone, each tried on `legs` trunks in turn (failover:
    the first legs fail at once, the last one is answered) or at once (parallel forks)."""
    out = []
    n = 0
    for a in range(attempts):
        uid = f"1795527{a:03d}.{a}"
        start = BASE + timedelta(seconds=20 * a)
        dst = f"01023276543{a:02d}"
        for leg in range(legs):
            n += 2
            last = leg == legs - 1
            t0 = start if forks else start + timedelta(seconds=2 * leg)
            answer = t0 + timedelta(seconds=1) if last else None
            end = t0 + timedelta(seconds=10 if last else (5 if forks else 1))
            out.append(row("209", dst, f"carrier{leg}", t0, answer, end, uid, n))
    return out


def scan(tmp_path: Path, rows: list[str]) -> list[tuple[object, ...]]:
    path = tmp_path / "Master.csv"
    path.write_text("\n".join(rows) + "\n")
    return summary(run_scan([path], settings("JP", "UTC")).incidents)


@pytest.mark.slow
@pytest.mark.parametrize("forks", [False, True])
def test_failover_legs_count_once(tmp_path: Path, forks: bool) -> None:
    # Seven attempts stay below the burst threshold (8) however many trunks each is tried on.
    one_leg = scan(tmp_path, failover_rows(7, 1))
    three_legs = scan(tmp_path, failover_rows(7, 3, forks=forks))
    rules = {r for s in three_legs for r in s[5]}  # type: ignore[attr-defined]
    assert "burst" not in rules and "sequential_dialing" in rules
    assert [(s[0], s[1], s[2], s[5]) for s in three_legs] == [
        (s[0], s[1], s[2], s[5]) for s in one_leg
    ]
    # Eight attempts are a burst either way.
    eight = scan(tmp_path, failover_rows(8, 3, forks=forks))
    assert "burst" in eight[0][5]  # type: ignore[operator]


def test_a_new_attempt_after_an_answered_leg_counts_again(tmp_path: Path) -> None:
    rows = []
    for i in range(8):  # the same number redialed within one call after each answered leg
        t0 = BASE + timedelta(seconds=30 * i)
        rows.append(row("209", "0102327654300", "carrier", t0, t0, t0 + timedelta(seconds=5),
                        "1795527000.1", 2 * i))
    assert "burst" in scan(tmp_path, rows)[0][5]  # type: ignore[operator]


def _ami(event: str, **headers: str) -> dict[str, str]:
    return {"Event": event, **headers}


def test_ami_failover_legs_are_one_attempt_live() -> None:
    """DialBegin/DialEnd of three trunks in turn from one phone channel: three CallStarted with
    one call id, and the pipeline counts one attempt, as batch does for the three CDR rows."""
    tracker = AmiCallTracker("pbx")
    chan = {"Channel": "PJSIP/209-00000001", "Uniqueid": "1795527000.1",
            "Linkedid": "1795527000.1", "CallerIDNum": "209", "AccountCode": "acme",
            "Context": "from-internal", "Exten": "0102327654300"}
    s = settings("JP", "UTC")
    pipeline = LivePipeline("pbx", s, Classifier(s), rule_specs(s))
    started: list[CallStarted] = []
    t = BASE
    for leg, status in enumerate(["CHANUNAVAIL", "CONGESTION", "ANSWER"]):
        dest = f"PJSIP/carrier{leg}-0000000{leg + 2}"
        dial = f"0102327654300@carrier{leg}"
        for msg in (
            _ami("DialBegin", **chan, DestChannel=dest, DialString=dial),
            _ami("DialEnd", **chan, DestChannel=dest, DialStatus=status),
        ):
            t += timedelta(seconds=1)
            for ev in tracker.feed(msg, t):
                if isinstance(ev, CallStarted):
                    started.append(ev)
                pipeline.feed(ev)
    assert [e.call_id for e in started] == ["1795527000.1"] * 3
    assert {e.linkedid for e in started} == {"1795527000.1"}
    calls = list(pipeline.up.values())
    assert len(calls) == 1 and calls[0].repeat and calls[0].trunk == "carrier2"
    # the high-risk rule counted one call, not three
    inc = pipeline.engine.tracker.open["209"]
    assert inc.hits["high_risk_destination"].reason.startswith("1 call ")


# -- destination-side grouping -------------------------------------------------------------


def test_distributed_attack_on_one_premium_range_is_one_critical_incident() -> None:
    """Ten compromised extensions, two calls each, to one Sierra Leone range on a Tuesday
    afternoon: no source does enough to matter alone; the range does."""
    t = Traffic(settings("JP", "Asia/Tokyo"))
    start = at("2026-11-24T14:00", "Asia/Tokyo")
    for i in range(20):
        t.call(f"2{i % 10:02d}", f"01023276543{i:02d}", start + timedelta(minutes=2 * i + i % 3))
    [inc] = t.run()
    assert (inc.source, inc.severity.label) == ("dest:+2327654xxx", "critical")
    assert len(inc.sources) == 10 and len(inc.calls) >= 6
    assert "burst_destination" in inc.hits
    assert "to +2327654xxx from" in inc.hits["burst_destination"].reason


def test_forwarded_calls_with_rotating_caller_ids_caught_by_destination() -> None:
    """Even where the forward cannot be attributed (a Local chain whose start is not in the
    CDRs: each leg named by its caller id), twelve calls to one number are one incident."""
    t = Traffic(settings("JP", "UTC"))
    start = at("2026-11-24T14:00")  # Tuesday, business hours
    for i in range(12):
        t.call(f"+44207946{i:04d}", "0102327654321", start + timedelta(seconds=10 * i))
    [inc] = t.run()
    assert (inc.source, inc.severity.label) == ("dest:+2327654xxx", "critical")
    assert len(inc.calls) == 12


def test_a_few_colleagues_calling_one_partner_abroad_is_nothing() -> None:
    t = Traffic(settings("JP", "Asia/Tokyo"))
    start = at("2026-11-24T10:00", "Asia/Tokyo")
    for i in range(5):  # five colleagues, the partner's office in Jamaica, one call each
        t.call(f"20{i}", f"010187655512{i % 2}", start + timedelta(minutes=7 * i), talk=300)
    for i in range(8):  # two of them, many calls: per-source rules' business, not this one
        t.call(f"20{i % 2}", "0102327654321", start + timedelta(minutes=5 * i))
    incidents = t.run()
    assert all("burst_destination" not in inc.hits for inc in incidents)
