"""Realistic PBX traffic with planted attacks: Asterisk Master.csv plus a ground-truth file.

Three site sizes (``small`` 20 extensions in Japan, ``medium`` 300 in Arizona with access code
9, ``large`` 8000 in Japan; see traffic_profiles.py), weeks of traffic with a weekly and daily
rhythm, public holidays (``holidays``) treated like weekends, mostly distinct destination
numbers, a few high-risk countries a team calls every working day (a US office calling
Mexico), rare calls to other high-risk countries, and night-shift desks that call abroad at
night. Writes into OUT/SITE/:

* ``history.csv``  the learning weeks (no attack): what ``tollwatch learn`` reads;
* ``Master.csv``   the scored weeks, with the planted attacks;
* ``truth.json``   the site settings, the scored span and each attack's calls (uniqueids).

Rows are cdr_csv's 18 columns as Asterisk 22 writes them (every string quoted, ``""`` escapes,
empty unquoted answer when unanswered), in hang-up order, local wall-clock times.

    python bench/gen_traffic.py --site medium --out bench/data/traffic --seed 101
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import holidays
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from traffic_attacks import plant_attacks
from traffic_profiles import (
    CLOSED_FACTOR,
    HOUR_WEIGHTS,
    NUMBERS,
    PROFILES,
    RARE_HIGH_RISK,
    Profile,
)

START = date(2026, 9, 28)  # a Monday
SHARES = {"internal": 0.40, "inbound": 0.20}  # the rest is outbound (domestic + international)


class Writer:
    """Builds Master.csv rows; uniqueids and channel suffixes count up like Asterisk's."""

    def __init__(self, profile: Profile) -> None:
        self.p = profile
        self.chan = 0x40
        self.seq = 0

    def _epoch(self, t: datetime) -> int:
        return int((t - datetime(1970, 1, 1)).total_seconds()) - self.p.utc_offset_h * 3600

    def row(
        self, *, src: str, dst: str, channel: str, dstchannel: str, lastdata: str,
        start: datetime, ring: int, talk: int | None, dcontext: str = "from-internal",
        clid: str | None = None,
    ) -> tuple[datetime, str, str]:
        """(end, uniqueid, line). talk None: not answered."""
        self.chan += 2
        self.seq += 1
        uid = f"{self._epoch(start)}.{self.seq}"
        answer = start + timedelta(seconds=ring) if talk is not None else None
        end = (answer + timedelta(seconds=talk)) if answer is not None and talk is not None \
            else start + timedelta(seconds=ring)
        billsec = talk if talk is not None else 0
        disp = "ANSWERED" if talk is not None else ("BUSY" if ring < 3 else "NO ANSWER")
        fmt = "%Y-%m-%d %H:%M:%S"
        name = clid if clid is not None else f"Desk {src}"
        fields = [
            '"acme"', _q(src), _q(dst), _q(dcontext), _q(f'"{name}" <{src}>'),
            _q(f"{channel}-{self.chan:08x}"), _q(f"{dstchannel}-{self.chan + 1:08x}"),
            '"Dial"', _q(lastdata), _q(start.strftime(fmt)),
            _q(answer.strftime(fmt)) if answer is not None else "", _q(end.strftime(fmt)),
            str(int((end - start).total_seconds())), str(billsec), _q(disp),
            '"DOCUMENTATION"', _q(uid), '""',
        ]
        return end, uid, ",".join(fields)

    def outbound(
        self, ext: str, dialed: str, start: datetime, ring: int, talk: int | None
    ) -> tuple[datetime, str, str]:
        return self.row(
            src=ext, dst=dialed, channel=f"PJSIP/{ext}", dstchannel="PJSIP/carrier",
            lastdata=f"PJSIP/{dialed}@carrier,60", start=start, ring=ring, talk=talk,
        )


def _q(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


class Site:
    """Who calls what: extensions, activity, routine teams, night desks, number pools."""

    def __init__(self, p: Profile, rng: np.random.Generator, distinct: float) -> None:
        self.p = p
        self.rng = rng
        self.distinct = distinct
        self.exts = np.arange(p.first_ext, p.first_ext + p.extensions)
        w = rng.lognormal(0.0, 0.8, p.extensions)
        perm = rng.permutation(p.extensions)
        n_night = p.night_desks
        self.night = [str(e) for e in self.exts[perm[:n_night]]]
        w[perm[:n_night]] = 0.0
        self.cdf = np.cumsum(w / w.sum())
        self.teams: dict[str, list[str]] = {}
        at = n_night
        for country, size in p.routine.items():
            size = min(size, max(2, p.extensions // 4))
            self.teams[country] = [str(e) for e in self.exts[perm[at : at + size]]]
            at += size
        busy = set(self.night) | {e for t in self.teams.values() for e in t}
        self.plain = [str(e) for e in self.exts if str(e) not in busy]
        self.countries = list(p.countries)
        cw = np.array([p.countries[c] for c in self.countries], dtype=float)
        self.country_cdf = np.cumsum(cw / cw.sum())
        self.country_cdf[-1] = 1.0
        self.pools = {c: [self.fresh(c) for _ in range(150)] for c in NUMBERS}

    def fresh(self, country: str) -> str:
        """A random number in `country`, as the site dials it."""
        code, shapes = NUMBERS[country]
        prefix, k = shapes[int(self.rng.integers(len(shapes)))]
        digits = str(int(self.rng.integers(10**k))).zfill(k)
        return self.p.access + self.p.intl_prefix + code + prefix + digits

    def intl_number(self, country: str) -> str:
        if self.rng.random() < self.distinct:
            return self.fresh(country)
        pool = self.pools[country]
        rank = min(len(pool) - 1, int(self.rng.zipf(1.6)) - 1)
        return pool[rank]

    def domestic(self) -> str:
        prefix, k = self.p.national[int(self.rng.integers(len(self.p.national)))]
        return self.p.access + prefix + str(int(self.rng.integers(10**k))).zfill(k)

    def talk(self, median: float) -> int | None:
        """Talk seconds, or None for an unanswered call (15% no answer, 5% busy)."""
        if self.rng.random() < 0.2:
            return None
        return int(min(4 * 3600, max(1, median * self.rng.lognormal(0.0, 1.0))))

    def caller(self) -> str:
        i = int(np.searchsorted(self.cdf, self.rng.random() * self.cdf[-1], side="right"))
        return str(self.exts[min(i, len(self.exts) - 1)])


def _day_rows(
    site: Site, w: Writer, day: date, closed: bool
) -> list[tuple[datetime, str, str]]:
    p, rng = site.p, site.rng
    out: list[tuple[datetime, str, str]] = []
    weights = np.array(HOUR_WEIGHTS)
    per_hour = rng.poisson(p.calls_per_day * weights / weights.sum()
                           * (CLOSED_FACTOR if closed else 1.0))
    base = datetime(day.year, day.month, day.day)
    for hour, n in enumerate(per_hour):
        for _ in range(int(n)):
            start = base + timedelta(seconds=hour * 3600 + int(rng.integers(3600)))
            out.append(_normal_call(site, w, start))
    for ext in site.night:  # night desks: 22:00-06:00 every day, ~3 calls an hour
        for hour in (22, 23, 0, 1, 2, 3, 4, 5):
            for _ in range(int(rng.poisson(3.0))):
                start = base + timedelta(seconds=hour * 3600 + int(rng.integers(3600)))
                if rng.random() < 0.25:
                    country = str(rng.choice(["US", "GB", "DE", "SG", "KR", "FR"]))
                    country = country if country != p.country else "GB"
                    dialed = site.intl_number(country)
                    out.append(w.outbound(ext, dialed, start, _ring(rng), site.talk(240)))
                else:
                    out.append(w.outbound(ext, site.domestic(), start, _ring(rng),
                                          site.talk(110)))
    return out


def _ring(rng: np.random.Generator) -> int:
    return int(rng.integers(2, 16))


def _normal_call(site: Site, w: Writer, start: datetime) -> tuple[datetime, str, str]:
    p, rng = site.p, site.rng
    u = rng.random()
    if u < SHARES["internal"]:
        a, b = site.caller(), site.caller()
        talk = site.talk(50)
        return w.row(src=a, dst=b, channel=f"PJSIP/{a}", dstchannel=f"PJSIP/{b}",
                     lastdata=f"PJSIP/{b},30", start=start, ring=_ring(rng), talk=talk)
    if u < SHARES["internal"] + SHARES["inbound"]:
        caller = site.domestic()[len(p.access):]
        b = site.caller()
        return w.row(src=caller, dst=b, channel="PJSIP/carrier", dstchannel=f"PJSIP/{b}",
                     lastdata=f"PJSIP/{b},30", start=start, ring=_ring(rng),
                     talk=site.talk(120), dcontext="from-trunk", clid=caller)
    if rng.random() < p.intl_share / (1.0 - SHARES["internal"] - SHARES["inbound"]):
        country = site.countries[int(np.searchsorted(site.country_cdf, rng.random()))]
        team = site.teams.get(country)
        ext = str(rng.choice(team)) if team else site.caller()
        return w.outbound(ext, site.intl_number(country), start, _ring(rng), site.talk(200))
    return w.outbound(site.caller(), site.domestic(), start, _ring(rng), site.talk(110))


def _rare_high_risk(
    site: Site, w: Writer, days: list[date], closed: dict[date, bool]
) -> list[tuple[datetime, str, str]]:
    """A few calls a month to high-risk countries nobody calls regularly."""
    rng = site.rng
    n = int(rng.poisson(site.p.rare_high_risk_per_month * len(days) / 30.0))
    dw = np.array([CLOSED_FACTOR if closed[d] else 1.0 for d in days])
    hw = np.array(HOUR_WEIGHTS)
    out = []
    for _ in range(n):
        day = days[int(rng.choice(len(days), p=dw / dw.sum()))]
        hour = int(rng.choice(24, p=hw / hw.sum()))
        start = datetime(day.year, day.month, day.day, hour) + timedelta(
            seconds=int(rng.integers(3600)))
        country = str(rng.choice(RARE_HIGH_RISK))
        out.append(w.outbound(site.caller(), site.fresh(country), start, _ring(rng),
                              site.talk(200)))
    return out


def _write(path: Path, rows: list[tuple[datetime, str, str]]) -> None:
    rows.sort(key=lambda r: (r[0], r[1]))
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(r[2] for r in rows))
        fh.write("\n")


def generate(
    profile: Profile, out_dir: Path, seed: int, history_weeks: int = 4, weeks: int = 8,
    distinct: float = 0.7, attacks: bool = True,
) -> dict[str, Any]:
    """Write history.csv, Master.csv and truth.json into out_dir; return the truth."""
    if weeks < 7 and attacks:
        raise SystemExit("--weeks must be at least 7 to plant every attack")
    rng = np.random.default_rng(seed)
    site = Site(profile, rng, distinct)
    w = Writer(profile)
    hol = holidays.country_holidays(profile.country, years=range(2026, 2028))
    all_days = [START + timedelta(days=i) for i in range((history_weeks + weeks) * 7)]
    closed = {d: d.weekday() >= 5 or d in hol for d in all_days}
    split = START + timedelta(days=history_weeks * 7)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {
        "site": profile.name, "seed": seed, "extensions": profile.extensions,
        "country": profile.country, "timezone": profile.timezone,
        "access_codes": [profile.access] if profile.access else [],
        "history": [START.isoformat(), split.isoformat()],
        "scored": [split.isoformat(), all_days[-1].isoformat()],
        "scored_days": weeks * 7, "attacks": [],
    }
    for name, days in (("history.csv", [d for d in all_days if d < split]),
                       ("Master.csv", [d for d in all_days if d >= split])):
        rows: list[tuple[datetime, str, str]] = []
        for day in days:
            rows.extend(_day_rows(site, w, day, closed[day]))
        rows.extend(_rare_high_risk(site, w, days, closed))
        if name == "Master.csv" and attacks:
            planted = plant_attacks(site, w, days, hol)
            for attack in planted:
                rows.extend(attack.pop("rows"))
            truth["attacks"] = planted
        truth[f"rows_{name.split('.')[0]}"] = len(rows)
        _write(out_dir / name, rows)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", choices=sorted(PROFILES), required=True)
    ap.add_argument("--out", type=Path, default=Path("bench/data/traffic"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--weeks", type=int, default=8, help="scored weeks (with attacks)")
    ap.add_argument("--history-weeks", type=int, default=4, help="learning weeks before")
    ap.add_argument("--extensions", type=int, help="override the profile's extensions")
    ap.add_argument("--intl-share", type=float, help="share of calls that go abroad")
    ap.add_argument("--distinct", type=float, default=0.7,
                    help="share of international calls to a fresh number (default 0.7)")
    ap.add_argument("--calls-per-day", type=int, help="weekday calls (default: the profile's)")
    ap.add_argument("--no-attacks", action="store_true")
    a = ap.parse_args(argv)
    p = PROFILES[a.site]
    if a.extensions:
        scale = a.extensions / p.extensions
        p = replace(p, extensions=a.extensions, calls_per_day=int(p.calls_per_day * scale))
    if a.intl_share is not None:
        p = replace(p, intl_share=a.intl_share)
    if a.calls_per_day:
        p = replace(p, calls_per_day=a.calls_per_day)
    t0 = time.perf_counter()
    out = a.out / f"{a.site}-{a.seed}"
    truth = generate(p, out, a.seed, a.history_weeks, a.weeks, a.distinct, not a.no_attacks)
    print(f"{out}: history {truth['rows_history']:,} rows, scored {truth['rows_Master']:,} rows,"
          f" {len(truth['attacks'])} attacks, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
