"""The soak's past: 28 days of the calls its two PBXes make, learned as a site deploying the
daemon would (`tollwatch learn`), so a run starts with the baseline's period already full.

The baseline learns only from the calls rules look at (international and high-risk: domestic
calls never reach it), so the history holds those, at the soak's rates per clock hour:
* the AMI PBX (`gen_ami.py`'s mix at `soak.py`'s pace of 12,000 calls an hour: 25%
  international to its 16 countries, 0.5% high-risk), from phones 200-999;
* the CSV-only PBX (`soak_world.CdrWriter`: 1-3 rows every 2 s, 20% of them to the US), from
  phones 200-299; its attack bursts are not in the history (a site learns from clean months).
Calls start at random over each hour (the soak's traffic has no time of day), talk as in
`gen_ami.py` (log-normal, median ~100 s) and `CdrWriter` (5-600 s).

`learn(pbx, days, end, work)` writes that PBX's history as a Master.csv (cdr_csv, 18 columns)
and learns it with `tollwatch.learn.learn_files`, the code of `tollwatch learn`;
`seed_store(data, config, days, work)` stores each PBX's baseline in the daemon's state store,
where the daemon keeps its own, so `tollwatch run` starts from it (per PBX: a `[baseline] file`
is one baseline for every PBX of a site).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.gen_ami import HIGH_RISK, INTERNATIONAL

AMI_PER_HOUR = 12_000  # soak.py --calls 120000 --minutes 600
CSV_PER_HOUR = 3_600  # CdrWriter: 2 rows every 2 s on average
_T = "%Y-%m-%d %H:%M:%S"


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randrange(10**n)).zfill(n)


def ami_call(rng: random.Random) -> tuple[str, str] | None:
    """(source, dialed) of one AMI-PBX call the baseline learns from, None for the others."""
    r = rng.random()
    if r < 0.70 or r >= 0.955:  # domestic, internal
        return None
    cc, n, lead = rng.choice(HIGH_RISK if r >= 0.95 else INTERNATIONAL)
    return str(rng.randrange(200, 1000)), f"010{cc}{lead}{_digits(rng, n - len(lead))}"


def csv_call(rng: random.Random) -> tuple[str, str] | None:
    if rng.random() < 0.8:  # domestic
        return None
    return str(rng.randrange(200, 300)), "0101212555" + _digits(rng, 4)


def row(src: str, dialed: str, start: datetime, ring: int, talk: int, n: int) -> str:
    """One cdr_csv row as `soak_world.CdrWriter` writes it (every string quoted), the n-th."""
    uid = f"{int(start.timestamp())}.{n}"
    answer = start + timedelta(seconds=ring)
    end = answer + timedelta(seconds=talk)
    cols = ["soak", src, dialed, "from-internal", f'"Desk {src}" <{src}>',
            f"PJSIP/{src}-{n:08x}", f"PJSIP/carrier-{n:08x}", "Dial",
            f"PJSIP/{dialed}@carrier,60", start.strftime(_T), answer.strftime(_T),
            end.strftime(_T)]  # fmt: skip
    quoted = ",".join('"' + c.replace('"', '""') + '"' for c in cols)
    return f'{quoted},{ring + talk},{talk},"ANSWERED","DOCUMENTATION","{uid}",""\n'


def write_history(pbx: str, path: Path, days: int, end: datetime, seed: int = 28) -> int:
    """`days` days of `pbx`'s ("pbx": AMI, else CSV-only) learnable calls up to `end`, in
    start order; returns the rows written."""
    rng = random.Random(f"{seed}-{pbx}")
    ami = pbx == "pbx"
    per_hour = AMI_PER_HOUR if ami else CSV_PER_HOUR
    pick = ami_call if ami else csv_call
    t0 = end - timedelta(days=days)
    n = 0
    with path.open("w") as fh:
        for hour in range(days * 24):
            base = t0 + timedelta(hours=hour)
            starts = sorted(rng.random() * 3600 for _ in range(per_hour))
            out = []
            for s in starts:
                call = pick(rng)
                if call is None:
                    continue
                if ami:
                    ring, talk = rng.randrange(2, 21), int(min(rng.lognormvariate(4.6, 1.0), 3600))
                else:
                    ring, talk = 5, rng.randrange(5, 600)
                start = base + timedelta(seconds=int(s))
                n += 1
                out.append(row(*call, start, ring, talk, n))
            fh.write("".join(out))
    return n


def learn(pbx: str, settings: Any, days: int, end: datetime, work: Path) -> Any:
    """`pbx`'s baseline learned from its history (`tollwatch learn`'s code)."""
    from tollwatch.learn import learn_files

    path = work / f"history-{pbx}.csv"
    write_history(pbx, path, days, end)
    baseline, _stats = learn_files([path], settings)
    path.unlink()
    return baseline


def seed_store(
    data: Path, config: Path, days: int, work: Path, end: datetime | None = None
) -> dict[str, Any]:
    """Learn both PBXes' histories (written in `work`: ~200 MB per 28 days, removed after)
    and store them as the daemon's own baselines in `data` (before it starts); returns what
    was learned and how long it took."""
    from tollwatch.config import load_settings
    from tollwatch.rules.base import check_rules
    from tollwatch.rules.baseline_io import dumps
    from tollwatch.state import StateStore

    settings = load_settings(config, rule_checks=check_rules)
    end = end or datetime.now(UTC)
    data.mkdir(parents=True, exist_ok=True)
    store = StateStore.in_dir(data)
    out: dict[str, Any] = {"days": days}
    t, cpu = time.monotonic(), time.process_time()
    for pbx in ("pbx", "csvpbx"):
        b = learn(pbx, settings, days, end, work)
        store.save_baseline(pbx, dumps(b, settings.site.name))
        out[pbx] = {"days": len(b.days), "destinations": len(b.dest_days),
                    "sources": len(b.src_dests)}  # fmt: skip
    store.close()
    out["seconds"] = round(time.monotonic() - t, 1)
    out["cpu_s"] = round(time.process_time() - cpu, 1)
    return out


def in_child(data: Path, config: Path, days: int, work: Path) -> dict[str, Any]:
    """`seed_store` in a child process (the history's scan takes ~700 MB that the caller,
    e.g. the soak's bench process, would keep)."""
    cmd = [sys.executable, "-m", "bench.soak_history", str(data), str(config), str(days),
           str(work)]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=root, env=env)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


if __name__ == "__main__":
    a = sys.argv[1:]
    print(json.dumps(seed_store(Path(a[0]), Path(a[1]), int(a[2]), Path(a[3]))))
