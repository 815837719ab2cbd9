"""Score detection on generated traffic: planted attacks caught, false alarms per site-month.

For each site and seed: generate (if missing) with gen_traffic.py, learn the site's baseline
from history.csv (the weeks before), scan Master.csv (the scored weeks, attacks planted) with
it, and compare the incidents with truth.json:

* an attack is caught when a critical incident holds one of its calls; "calls until
  detection" counts the attack's calls started up to the moment that incident turned critical;
* every critical incident without an attack call is a false critical; every incident that
  stayed a warning without an attack call is a false warning (both also per 30 days).

    python bench/score_detection.py                       # the fixed seeds of bench/README.md
    python bench/score_detection.py --sites small medium --seeds 7 8   # tuning seeds
    python bench/score_detection.py --cold     # no learn step: the scan learns as it goes
    python bench/score_detection.py --absolute # learning off: absolute thresholds (as before)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gen_traffic import generate  # noqa: E402
from traffic_profiles import PROFILES  # noqa: E402

from tollwatch.rules.incidents import Incident, Severity  # noqa: E402
from tollwatch.scan import run_scan  # noqa: E402
from tollwatch.settings import load, overrides  # noqa: E402

# Fixed before any tuning (see bench/README.md); tune on other seeds only.
FIXED_SEEDS = {"small": [1001, 1002, 1003], "medium": [1001, 1002], "large": [1001]}


def _baseline_for(history: Path, settings: Any) -> Any:
    from tollwatch.learn import learn_files

    return learn_files([history], settings)[0]


# Everything learned switched off: the absolute thresholds tollwatch had before baselines.
ABSOLUTE: dict[str, Any] = {
    "baseline": {"min_history": "3650d", "routine_days": 10**6, "usual_hour_days": 10**6},
    "rules": [
        {"name": "burst_high_risk", "enabled": False},
        {"name": "new_destination", "high_risk_score": 20, "pair_score": 0,
         "pair_high_risk_score": 0},
        {"name": "long_call", "exposure_minutes": 0, "exposure_pbx_minutes": 0},
    ],
}


def score_site(
    site: str, seed: int, data: Path, use_baseline: bool, inline: bool = False,
    absolute: bool = False,
) -> dict[str, Any]:
    """inline: no `learn` step; scan history.csv and Master.csv together, learning as it goes
    (false alarms counted in the scored weeks only)."""
    out = data / f"{site}-{seed}"
    if not (out / "truth.json").is_file():
        generate(PROFILES[site], out, seed)
    truth = json.loads((out / "truth.json").read_text())
    over = overrides(truth["country"], truth["timezone"], truth["access_codes"])
    settings = load(None, {**over, **ABSOLUTE} if absolute else over)
    t0 = time.perf_counter()
    learn = use_baseline and not inline
    baseline = _baseline_for(out / "history.csv", settings) if learn else None
    t1 = time.perf_counter()
    kwargs = {"baseline": baseline} if baseline is not None else {}
    files = [out / "history.csv", out / "Master.csv"] if inline else [out / "Master.csv"]
    result = run_scan(files, settings, **kwargs)
    scored_from = datetime.fromisoformat(truth["scored"][0]).replace(tzinfo=ZoneInfo(
        truth["timezone"]))
    t2 = time.perf_counter()
    tz = ZoneInfo(truth["timezone"])
    owner: dict[str, str] = {uid: a["kind"] for a in truth["attacks"] for uid in a["calls"]}
    caught: dict[str, int | None] = {a["kind"]: None for a in truth["attacks"]}
    false_crit: list[Incident] = []
    false_warn: list[Incident] = []
    for inc in result.incidents:
        kinds = {owner[c] for c in inc.calls if c in owner}
        if not kinds:
            if inc.first_call_at < scored_from:
                continue
            (false_crit if inc.severity == Severity.CRITICAL else false_warn).append(inc)
            continue
        if inc.severity != Severity.CRITICAL:
            continue
        at = inc.detected_at[Severity.CRITICAL]
        for kind in kinds:
            attack = next(a for a in truth["attacks"] if a["kind"] == kind)
            n = _calls_until(attack, inc, at, tz)
            if caught[kind] is None or n < (caught[kind] or 0):
                caught[kind] = n
    months = truth["scored_days"] / 30.0
    return {
        "site": site, "seed": seed, "extensions": truth["extensions"],
        "rows": truth["rows_Master"], "caught": caught,
        "false_critical": len(false_crit), "false_warning": len(false_warn),
        "false_critical_per_30d": round(len(false_crit) / months, 2),
        "false_warning_per_30d": round(len(false_warn) / months, 2),
        "learn_s": round(t1 - t0, 1), "scan_s": round(t2 - t1, 1),
        "false": [f"{i.severity.label} {i.source} {i.first_call_at.astimezone(tz):%a %F %H:%M}"
                  f" {'; '.join(i.reasons())}" for i in false_crit + false_warn],
    }


def _calls_until(attack: dict[str, Any], inc: Incident, at: datetime, tz: ZoneInfo) -> int:
    """Attack calls started up to the moment the incident turned critical."""
    ids = set(attack["calls"])
    starts = sorted(c.start for c in inc.calls.values() if c.call_id in ids)
    n = sum(1 for s in starts if s <= at)
    return max(1, n)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", nargs="+", default=list(FIXED_SEEDS), choices=list(PROFILES))
    ap.add_argument("--seeds", nargs="+", type=int, help="default: the fixed seeds per site")
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / "data" / "traffic")
    ap.add_argument("--cold", action="store_true",
                    help="no learn step: the scan of the scored weeks learns as it goes")
    ap.add_argument("--absolute", action="store_true",
                    help="learning off: the absolute thresholds (tollwatch before baselines)")
    ap.add_argument("--inline", action="store_true",
                    help="no learn step: scan history + scored weeks together, learning as it goes")
    ap.add_argument("--json", type=Path, help="append each result as a JSON line")
    ap.add_argument("-v", "--verbose", action="store_true", help="list the false alarms")
    a = ap.parse_args(argv)
    print("| site | seed | attacks critical | calls until detection | false critical "
          "| false warnings | false crit / 30 d | false warn / 30 d | learn s | scan s |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for site in a.sites:
        for seed in a.seeds or FIXED_SEEDS[site]:
            r = score_site(site, seed, a.data, not (a.cold or a.absolute), a.inline,
                           a.absolute)
            got = sum(1 for v in r["caught"].values() if v is not None)
            until = ", ".join(f"{k} {'-' if v is None else v}" for k, v in r["caught"].items())
            print(f"| {site} ({r['extensions']}) | {seed} | {got}/{len(r['caught'])} | {until} "
                  f"| {r['false_critical']} | {r['false_warning']} "
                  f"| {r['false_critical_per_30d']} | {r['false_warning_per_30d']} "
                  f"| {r['learn_s']} | {r['scan_s']} |", flush=True)
            if a.verbose:
                for line in r["false"]:
                    print(f"    {line}")
            if a.json:
                with a.json.open("a") as fh:
                    mode = "absolute" if a.absolute else "cold" if a.cold else "learned"
                    fh.write(json.dumps({**r, "mode": mode}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
