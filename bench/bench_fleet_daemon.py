"""Benchmark one fleet daemon holding many PBXes at office load: CPU %, RSS, decision latency.

Two processes. The sender (a child process) runs `--pbxes` fake Asterisks (`FakeAmi`, one
port each) in one asyncio loop; each streams a `gen_ami.py` file's frames, starting at its own
offset in the file, paced to `--calls-per-s` calls a second per PBX (the file's messages per
call times that), and records `time.time()` right after writing each DialBegin. The daemon
(this process) is the real `tollwatch run` for a fleet file: `FleetSupervisor` with one
`PbxPipeline` per PBX (runner.build: AMI source, rules, SQLite state, console alerter, the
dry-run blocker), each in `<tmp>/pbx/<name>/`; `Daemon.process` is wrapped to record when each
call's `CallStarted` was decided.

Figures, over `--seconds` after `--warmup` seconds (all PBXes connected and streaming): CPU %
of the daemon process (user+sys / wall; 100% = one core), RSS at the end and peak (VmHWM),
DialBegin -> rule decision latency (median, p95, p99, max) over every call of every PBX, calls
and AMI messages handled, the load average before/after.

Typical office load: a 300-phone office makes ~4,000 calls a day (gen_cdr's office), ~700 an
hour in its busy hour, i.e. ~0.2 calls/s with ~85 AMI messages each (~17 messages/s per PBX).

    python bench/gen_ami.py --calls 3000 --concurrent 20 --out bench/data/ami-office-3000.txt
    python bench/bench_fleet_daemon.py bench/data/ami-office-3000.txt --pbxes 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemon import _mask, dial_uid, frames, percentiles

SECRET = "bench-fleet-secret"


# -- the sender (child process) ---------------------------------------------------------------
def sender_main(path: str, pbxes: int, calls_per_s: float, seconds: float,
                conn: Connection) -> None:
    asyncio.run(_send(Path(path), pbxes, calls_per_s, seconds, conn))


async def _send(path: Path, pbxes: int, calls_per_s: float, seconds: float,
                conn: Connection) -> None:
    from tollwatch.cdr_ingest.live.fake_ami import FakeAmi

    msgs = [f for f in frames(path) if not f.startswith(b"Event: FullyBooted")]
    calls = sum(1 for f in msgs if f.startswith(b"Event: DialBegin")) or 1
    rate = calls_per_s * len(msgs) / calls  # messages a second per PBX
    dial: dict[int, list[tuple[str, float]]] = defaultdict(list)
    sent = [0] * pbxes

    async def stream(i: int, ami: FakeAmi) -> None:
        await ami._logged_in.wait()
        [client] = [c for c in ami._clients if c.logged_in]
        wants = _mask(client.events)  # the login's event mask, as Asterisk filters
        start = (i * len(msgs)) // pbxes  # each PBX from its own place in the traffic
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < seconds:
            ahead = t0 + n / rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)
            frame = msgs[(start + n) % len(msgs)]
            if not wants(frame):
                n += 1
                continue
            client.writer.write(frame)
            uid = dial_uid(frame)
            if uid is not None:
                dial[i].append((uid, time.time()))
            n += 1
            sent[i] += 1

    servers = [FakeAmi("tollwatch", SECRET) for _ in range(pbxes)]
    for ami in servers:
        await ami.start()
    conn.send([ami.port for ami in servers])
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "go"
    await asyncio.gather(*(stream(i, ami) for i, ami in enumerate(servers)))
    conn.send({"dial": dict(dial), "sent": sum(sent), "rate_msgs_per_pbx": rate,
               "msgs_per_call": len(msgs) / calls})
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "bye"
    for ami in servers:
        await ami.close()


# -- the daemon (this process) ----------------------------------------------------------------
def fleet_toml(ports: list[int], data_dir: Path) -> str:
    head = (f'[site]\ncountry = "JP"\ntimezone = "Asia/Tokyo"\n[daemon]\n'
            f'data_dir = "{data_dir}"\nmax_backoff = "2s"\n')
    return head + "".join(
        f'[[pbx]]\nname = "office{i:03d}"\n[pbx.ami]\nport = {port}\nusername = "tollwatch"\n'
        f'secret_env = "BENCH_FLEET_SECRET"\n' for i, port in enumerate(ports))


def rss() -> dict[str, float]:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon"):
            found[key] = int(value.split()[0]) / 1024
    return found


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tollwatch.cdr_ingest.live import CallStarted
    from tollwatch.config.fleet import load_fleet
    from tollwatch.daemon import Daemon
    from tollwatch.fleet_daemon import FleetSupervisor
    from tollwatch.rules.base import check_rules
    from tollwatch.runner import build  # noqa: F401  (imported before the base RSS)

    decided: dict[tuple[str, str], float] = {}
    process = Daemon.process

    async def timed(self: Daemon, event: Any) -> None:
        await process(self, event)
        if type(event) is CallStarted:
            decided[(event.pbx, event.call_id)] = time.time()

    Daemon.process = timed  # type: ignore[method-assign]
    os.environ["BENCH_FLEET_SECRET"] = SECRET
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    total = args.warmup + args.seconds
    proc = ctx.Process(target=sender_main, daemon=True,
                       args=(str(args.ami), args.pbxes, args.calls_per_s, total, child))
    proc.start()
    rss_base = rss()  # everything imported, no PBX yet
    loop = asyncio.get_running_loop()
    ports = await loop.run_in_executor(None, parent.recv)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-daemon-") as tmp:
        cfg = Path(tmp) / "fleet.toml"
        cfg.write_text(fleet_toml(ports, Path(tmp)))
        fleet = load_fleet(cfg, None, rule_checks=check_rules)
        sup = FleetSupervisor(lambda: load_fleet(cfg, None, rule_checks=check_rules),
                              Path(tmp), 5.0)
        stop = asyncio.Event()
        t_start = time.perf_counter()
        task = asyncio.create_task(sup.run(stop, fleet))
        while sum(1 for r in sup.status()["daemon"]["fleet"] if r.get("connected")) < args.pbxes:
            await asyncio.sleep(0.1)
        started_s = time.perf_counter() - t_start
        rss_idle = rss()
        parent.send("go")
        load_before = os.getloadavg()[0]
        await asyncio.sleep(args.warmup)
        ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.sleep(args.seconds)
        ru1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        sent = await loop.run_in_executor(None, parent.recv)
        await asyncio.sleep(1.0)  # the last calls' decisions
        status = sup.status()["daemon"]
        end_rss = rss()
        load_after = os.getloadavg()[0]
        stop.set()
        await task
    parent.send("bye")
    proc.join(10)
    names = [f"office{i:03d}" for i in range(args.pbxes)]
    lat = [decided[(names[i], uid)] - at for i, calls in sent["dial"].items()
           for uid, at in calls if (names[i], uid) in decided]
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    return {
        "pbxes": args.pbxes, "calls_per_s_per_pbx": args.calls_per_s,
        "ami_msgs_per_s_per_pbx": round(sent["rate_msgs_per_pbx"], 1),
        "seconds": round(t1 - t0, 1), "startup_s": round(started_s, 2),
        "cpu_percent": round(100 * cpu / (t1 - t0), 1),
        "rss_mb": round(end_rss["VmRSS"], 1), "peak_rss_mb": round(end_rss["VmHWM"], 1),
        "rss_idle_mb": round(rss_idle["VmRSS"], 1),
        "rss_base_mb": round(rss_base["VmRSS"], 1),
        "rss_per_pbx_mb": round((end_rss["VmRSS"] - rss_base["VmRSS"]) / args.pbxes, 2),
        "calls_dialed": sum(len(c) for c in sent["dial"].values()), "calls_decided": len(lat),
        "ami_msgs": sent["sent"], "events": status["events"], "errors": status["errors"],
        "open_incidents": status["open_incidents"], "latency": percentiles(lat),
        "load_1m_before_after": [round(load_before, 1), round(load_after, 1)],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("ami", type=Path, help="a gen_ami.py file")
    ap.add_argument("--pbxes", type=int, default=50)
    ap.add_argument("--calls-per-s", type=float, default=0.2, help="per PBX")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--json", type=Path, default=None, help="append the result as a JSON line")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(run(args))
    text = json.dumps(result)
    print(json.dumps(result, indent=1))
    if args.json:
        with args.json.open("a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
