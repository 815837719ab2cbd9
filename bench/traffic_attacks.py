"""The planted attacks of gen_traffic.py, one of each kind, in the scored weeks.

Each attack is a dict: kind, what (in words), start (local wall clock), the uniqueids of its
calls, and the Master.csv rows (taken out before truth.json is written).
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gen_traffic import Site, Writer

Row = tuple[datetime, str, str]


def _weekday(days: list[date], week: int, weekday: int, hol: Any) -> date:
    """The first working `weekday` (0=Monday) in scored week `week` or later."""
    for d in days[week * 7 :]:
        if d.weekday() == weekday and d not in hol:
            return d
    raise SystemExit("not enough scored weeks for the attacks")


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


def plant_attacks(site: Site, w: Writer, days: list[date], hol: Any) -> list[dict[str, Any]]:
    rng, p = site.rng, site.p
    pre = p.access + p.intl_prefix
    victims = [str(x) for x in rng.choice(site.plain, size=min(len(site.plain), 40),
                                          replace=False)]
    attacks: list[dict[str, Any]] = []

    def add(kind: str, what: str, rows: list[Row]) -> None:
        rows.sort(key=lambda r: r[0])
        starts = [next(csv.reader([r[2]]))[9] for r in rows]
        attacks.append({"kind": kind, "what": what, "start": min(starts),
                        "calls": [r[1] for r in rows], "rows": rows})

    def rand(k: int) -> str:
        return str(int(rng.integers(10**k))).zfill(k)

    # 1. Night burst: Saturday ~02:10, 30 calls to Sierra Leone and Guinea, a few up at once.
    day = days[5 + 7]
    ext = victims[0]
    t = _at(day, 2, 10)
    rows = []
    for i in range(30):
        t += timedelta(seconds=int(rng.integers(10, 50)))
        num = pre + ("23276" + rand(6) if i % 3 else "224622" + rand(6))
        rows.append(w.outbound(ext, num, t, 3, int(rng.integers(30, 300))))
    add("night_burst", f"{ext}: 30 calls to Sierra Leone/Guinea on a Saturday night", rows)

    # 2. Holiday daytime burst: the last working-day holiday in the span, from 10:00.
    holi = [d for d in days if d in hol and d.weekday() < 5]
    day = holi[-1] if holi else days[6 + 14]
    ext = victims[1]
    t = _at(day, 10, 0)
    rows = []
    for _ in range(20):
        t += timedelta(seconds=int(rng.integers(30, 120)))
        rows.append(w.outbound(ext, pre + "535" + rand(7), t, 4, int(rng.integers(60, 360))))
    add("holiday_burst", f"{ext}: 20 calls to Cuba on {day} (holiday) from 10:00", rows)

    # 3. Slow drip in office hours: six 25-30 min calls to Somalia within an hour, Tuesday.
    day = _weekday(days, 2, 1, hol)
    ext = victims[2]
    offsets = sorted(int(x) for x in rng.integers(0, 3300, 6))
    rows = [
        w.outbound(ext, pre + "25261" + rand(7), _at(day, 14) + timedelta(seconds=o), 5,
                   int(rng.integers(25 * 60, 30 * 60)))
        for o in offsets
    ]
    add("slow_drip", f"{ext}: six 25-30 min calls to Somalia, Tuesday {day} 14:00-15:00", rows)

    # 4. Call forwarding: inbound calls with rotating caller IDs forwarded to Sierra Leone,
    #    12 in 2 minutes. One leg each: inbound trunk channel, the forward's context, the
    #    outbound leg on the carrier trunk; src is the (forged) inbound caller ID.
    day = _weekday(days, 3, 2, hol)
    t = _at(day, 11, 0)
    rows = []
    for _ in range(12):
        t += timedelta(seconds=int(rng.integers(5, 15)))
        caller = site.domestic()[len(p.access):]
        num = pre + "23277" + rand(6)
        rows.append(w.row(
            src=caller, dst=num, channel="PJSIP/carrier", dstchannel="PJSIP/carrier",
            lastdata=f"PJSIP/{num}@carrier,60", start=t, ring=3,
            talk=int(rng.integers(60, 600)), dcontext="call-forward", clid=caller,
        ))
    add("forward", f"12 forwarded calls to Sierra Leone in 2 min, Wednesday {day} 11:00", rows)

    # 5. Distributed low rate: many extensions, 2-3 calls each to one premium range.
    day = _weekday(days, 4, 3, hol)
    n_ext = min(15, max(4, len(site.plain) // 2))
    block = "21670123"
    rows = []
    for ext in victims[3 : 3 + n_ext]:
        for _ in range(int(rng.integers(2, 4))):
            start = _at(day, 13) + timedelta(seconds=int(rng.integers(0, 7200)))
            rows.append(w.outbound(ext, pre + block + rand(3), start, 4,
                                   int(rng.integers(120, 480))))
    add("distributed", f"{n_ext} extensions, 2-3 calls each to +{block}xxx (Tunisia), "
        f"Thursday {day} 13:00-15:00", rows)

    # 6. Range walking: one extension dials +370 5200 0000, 0001, ... every 1.5-2.5 min.
    day = _weekday(days, 5, 2, hol)
    ext = victims[3 + n_ext]
    t = _at(day, 16, 0)
    rows = []
    for i in range(25):
        t += timedelta(seconds=int(rng.integers(90, 150)))
        rows.append(w.outbound(ext, pre + f"37052000{i:03d}", t, 6, int(rng.integers(5, 20))))
    add("range_walk", f"{ext}: walks +370 5200 0000-0024, Wednesday {day} 16:00", rows)

    # 7. Test-call flood: 15 calls of 0-5 s to assorted high-risk numbers within 5 minutes.
    day = _weekday(days, 6, 3, hol)
    ext = victims[4 + n_ext]
    t = _at(day, 9, 30)
    rows = []
    for _ in range(15):
        t += timedelta(seconds=int(rng.integers(5, 25)))
        cc = str(rng.choice(["23276", "22462", "5352", "25261", "23188", "2207"]))
        talk = int(rng.integers(0, 5))
        rows.append(w.outbound(ext, pre + cc + rand(6), t, 2, talk if talk else None))
    add("test_flood", f"{ext}: 15 test calls of 0-5 s to high-risk numbers, Thursday {day}",
        rows)
    return attacks
