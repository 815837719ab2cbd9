"""What grows in the daemon once its state is full: the soak's traffic on event time, in process.

A real-time soak needs 6 hours of clock for the rules' spans to fill and 28 days for the
baseline. Here the daemon (`tollwatch.daemon.Daemon`: both PBXes' pipelines, the publisher and
its views, ticks every 10 s and state saves every 15 min of *event* time, an alerter that counts)
is fed in this process, without sockets, as fast as it goes:

* the baseline first: 28 days of both PBXes' history learned as `tollwatch learn` does and
  stored as the daemon's own (`soak_history.seed_store`, in a child process), restored at start;
* the AMI PBX: `gen_ami.generate` with `Timestamp:` headers at the soak's 12,000 calls a clock
  hour (`--concurrent 500`: 500 calls up at once at a 150-s mean hold), through the daemon's
  AMI tracker and login mask, as `daemon_days.py` does;
* the remediation blocker (a dry run) as `tollwatch run` adds it, drained at each tick;
* the CSV-only PBX: the rows `soak_world.CdrWriter` writes (1-3 every 2 s, 80% to random
  domestic numbers, 20% to the US, 12 calls to Sierra Leone every 7 min), as the events its
  follower makes of them (started, answered, ended when the row is written), merged in time.

At each checkpoint (`--every` clock hours), after a full collection: RSS split
(`soak_memory.split`), the sizes of the daemon's containers (every dict/list/set/deque
attribute of the pipelines, their engines, trackers, rules, classifier, baseline, publisher,
views, sessions and the AMI tracker, plus the open incidents' call logs), the counts of
GC-tracked objects by type, and at `--trace-at` hours a tracemalloc snapshot (`--tracemalloc
N` frames; tracing doubles the CPU time). At the end: what changed between the first and the
last checkpoint at or after `--full-at` hours (the rules' 6-h spans are full): containers,
types, and tracemalloc's top source lines.

`--ami-file FILE` replays a `gen_ami.py --timestamps` file instead (`bench_daemon.looped`:
pass k is `--pass-every` seconds later, e.g. the dense 20,000-call stream, 3 days a pass) with
no CSV PBX; checkpoints then come every `--every-passes` passes.

    nice -n 10 python bench/mem_finder.py --hours 24 --trace-at 8,16,24 --out finder.json
    nice -n 10 python bench/mem_finder.py --ami-file /work/data/C/ami-busy-20000-ts.txt \\
        --passes 27 --pass-every 259200 --every-passes 3 --trace-at-passes 12,27
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_daemon import NullAlerter, _mask, looped, messages  # noqa: E402
from bench.gen_ami import generate  # noqa: E402
from bench.soak_history import in_child  # noqa: E402
from bench.soak_memory import split  # noqa: E402
from bench.soak_world import config  # noqa: E402

CONTAINERS = (dict, list, set, frozenset, deque)


class Clock:
    """Event time: the daemon's clock is the traffic's."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def csv_rows(start: datetime, seed: int = 7) -> Iterator[tuple[datetime, list[Any]]]:
    """The CSV-only PBX's calls as its follower hands them over: (when the row is written,
    [started, answered, ended]), every 2 s of event time, a Sierra Leone burst every 7 min."""
    from tollwatch.cdr_ingest.live import CallAnswered, CallEnded, CallStarted

    rng = random.Random(seed)
    uid = 1000
    t = start
    next_attack = start + timedelta(seconds=200)
    while True:
        t += timedelta(seconds=2)
        calls: list[tuple[str, str, int]] = []
        if t >= next_attack:
            next_attack += timedelta(seconds=420)
            ext, base = str(rng.randrange(200, 300)), rng.randrange(1000000, 9000000)
            calls = [(ext, f"010232{base + k}", rng.randrange(30, 300)) for k in range(12)]
        else:
            for _ in range(rng.randrange(1, 4)):
                ext = str(rng.randrange(200, 300))
                if rng.random() < 0.8:
                    num = "03" + "".join(str(rng.randrange(10)) for _ in range(8))
                else:
                    num = "0101212555" + "".join(str(rng.randrange(10)) for _ in range(4))
                calls.append((ext, num, rng.randrange(5, 600)))
        events: list[Any] = []
        for ext, num, talk in calls:
            uid += 1
            end = t.replace(microsecond=0)
            begin = end - timedelta(seconds=talk + 5)
            cid = f"{int(end.timestamp())}.{uid}"
            events += [
                CallStarted("csvpbx", cid, begin, ext, "soak", num, "carrier",
                            f"PJSIP/{ext}-{uid:08x}", f"PJSIP/carrier-{uid:08x}"),
                CallAnswered("csvpbx", cid, begin + timedelta(seconds=5)),
                CallEnded("csvpbx", cid, end, "ANSWERED"),
            ]  # fmt: skip
        yield t, events


def sizes(obj: Any, prefix: str, out: dict[str, int]) -> None:
    """len() of each container attribute of `obj` (shallow), as `prefix.name`."""
    for name, value in getattr(obj, "__dict__", {}).items():
        if isinstance(value, CONTAINERS):
            out[f"{prefix}.{name}"] = len(value)


def containers(daemon: Any, ami: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for pbx, p in daemon.pipelines.items():
        sizes(p, pbx, out)
        sizes(p.engine, f"{pbx}.engine", out)
        tracker = p.engine.tracker
        sizes(tracker, f"{pbx}.incidents", out)
        sizes(p.baseline, f"{pbx}.baseline", out)
        b = p.baseline
        marks = sum(len(d) for h in b.src_hours.values() for d in h.values())
        out[f"{pbx}.baseline.hour_marks"] = marks
        out[f"{pbx}.baseline.pairs"] = sum(len(v) for v in b.src_dests.values())
        for rule in p.engine.rules:
            sizes(rule, f"{pbx}.rule.{rule.name}", out)
            for name, value in vars(rule).items():  # rule windows: their groups and calls
                if hasattr(value, "__dict__") and not isinstance(value, type):
                    sizes(value, f"{pbx}.rule.{rule.name}.{name}", out)
        logs = [i.log for i in tracker.open.values()]
        out[f"{pbx}.open.numbers"] = sum(len(c.numbers) for c in logs)
        out[f"{pbx}.open.kept_calls"] = sum(len(c.head) + len(c.tail) for c in logs)
        out[f"{pbx}.open.gone"] = sum(len(c.gone or ()) for c in logs)
        out[f"{pbx}.open.up"] = sum(len(c.up) for c in logs)
    first = next(iter(daemon.pipelines.values()))
    sizes(first.classifier, "classifier", out)
    for name in ("publisher", "views", "sessions", "queue", "collector"):
        sizes(getattr(daemon, name, None), name, out)
    sizes(daemon, "daemon", out)
    sizes(ami, "ami_tracker", out)
    for alerter in daemon.alerters:
        sizes(alerter, f"alerter.{alerter.name}", out)
    return {k: v for k, v in sorted(out.items()) if v}


def type_counts() -> Counter[str]:
    return Counter(
        f"{type(o).__module__}.{type(o).__qualname__}".removeprefix("builtins.")
        for o in gc.get_objects()
    )


class Finder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.kinds: dict[float, Counter[str]] = {}
        self.sizes: dict[float, dict[str, int]] = {}
        self.snaps: dict[float, tracemalloc.Snapshot] = {}
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()

    def checkpoint(self, at: float, daemon: Any, ami: Any, extra: dict[str, Any]) -> None:
        from tollwatch.memory import Housekeeper

        gc.collect()
        kept = Housekeeper().once()  # malloc_trim, as the daemon's housekeeper every minute
        malloc = kept.get("malloc") or {}
        row: dict[str, Any] = {
            "at": at, **extra, "cpu_s": round(time.process_time() - self.cpu0, 1),
            "wall_s": round(time.monotonic() - self.wall0, 1),
            "load": round(os.getloadavg()[0], 1), **split(os.getpid()),
            "py_blocks": sys.getallocatedblocks(), "gc_objects": len(gc.get_objects()),
            "malloc_in_use": round(malloc.get("in_use", 0) / 2**20, 1),
            "sqlite": round((kept.get("sqlite") or 0) / 2**20, 1),
        }  # fmt: skip
        if tracemalloc.is_tracing():
            row["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
        p = {n: pl for n, pl in daemon.pipelines.items()}
        row["open"] = {n: len(pl.engine.tracker.open) for n, pl in p.items()}
        row["seen"] = {n: pl.calls_seen for n, pl in p.items()}
        self.sizes[at] = containers(daemon, ami)
        self.kinds[at] = type_counts()
        if at in self.args.trace_points and tracemalloc.is_tracing():
            self.snaps[at] = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        if self.args.jsonl:
            with self.args.jsonl.open("a") as fh:
                fh.write(json.dumps({**row, "containers": self.sizes[at]}) + "\n")

    def report(self) -> dict[str, Any]:
        full = [a for a in self.sizes if a >= self.args.full_at] or list(self.sizes)
        a, b = full[0], full[-1]
        grown = {k: (self.sizes[a].get(k, 0), v) for k, v in self.sizes[b].items()
                 if v != self.sizes[a].get(k, 0)}  # fmt: skip
        gone = {k: (v, 0) for k, v in self.sizes[a].items() if k not in self.sizes[b]}
        kinds = (self.kinds[b] - self.kinds[a]).most_common(25)
        out: dict[str, Any] = {
            "checkpoints": self.rows,
            "from": a,
            "to": b,
            "containers_changed": {**grown, **gone},
            "containers_at": {str(x): self.sizes[x] for x in (a, b)},
            "types_grown": kinds,
            "types_shrunk": (self.kinds[a] - self.kinds[b]).most_common(10),
        }
        points = sorted(self.snaps)
        out["tracemalloc"] = {}
        for x, y in itertools.pairwise(points):
            stats = self.snaps[y].compare_to(self.snaps[x], "lineno")
            out["tracemalloc"][f"{x}->{y}"] = {
                "net_kib": round(sum(s.size_diff for s in stats) / 1024, 1),
                "top": [f"{s.size_diff / 1024:+.1f} KiB {s.count_diff:+d} blocks "
                        f"{s.traceback[0].filename.replace(str(ROOT) + '/', '')}:"
                        f"{s.traceback[0].lineno}" for s in stats[:25]],
            }  # fmt: skip
        return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tollwatch.alerting.remediation import Blocker
    from tollwatch.cdr_ingest.live.ami import EVENT_MASK
    from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
    from tollwatch.config import load_settings
    from tollwatch.daemon import Daemon
    from tollwatch.rules.base import check_rules
    from tollwatch.runner import BaselineProfile
    from tollwatch.sources import cdr_options
    from tollwatch.state import StateStore

    tmp = Path(tempfile.mkdtemp(prefix="mem-finder-", dir=args.work))
    data = tmp / "data"
    cfg = config(tmp, data, tmp / "Master.csv", 5038, "http://127.0.0.1:9")
    learned = in_child(data, cfg, args.learn_days, tmp) if args.learn_days else {}
    t0 = datetime.now(UTC).replace(microsecond=0)  # the history ends where the traffic starts
    print(json.dumps({"learned": learned}), flush=True)
    settings = load_settings(cfg, rule_checks=check_rules)
    clock = Clock(t0)
    pbxes = ["pbx"] if args.ami_file else ["pbx", "csvpbx"]
    daemon = Daemon(settings, StateStore.in_dir(data), [], [NullAlerter()], pbxes, clock=clock)
    profiles = {name: BaselineProfile(p.baseline) for name, p in daemon.pipelines.items()}
    blocker = Blocker(settings, {}, profile=profiles)  # a dry run, as `tollwatch run` adds it
    daemon.alerters.append(blocker)
    daemon.restore()
    ami = AmiCallTracker("pbx", cdr_options(settings))
    ami.use_version("22.0.0")
    wants = _mask(EVENT_MASK)
    finder = Finder(args)
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    tick_every, save_every = timedelta(seconds=10), timedelta(minutes=15)
    next_tick, next_save = t0 + tick_every, t0 + save_every
    passes: list[int] = [0]

    def on_pass(k: int) -> None:
        passes[0] = k

    if args.ami_file:
        frames: Iterator[bytes] = looped(args.ami_file, args.passes, t0.timestamp(),
                                         args.pass_every, on_pass)  # fmt: skip
        csv: Iterator[tuple[datetime, list[Any]]] = iter(())
        marks = [float(k) for k in range(args.every_passes, args.passes + 1, args.every_passes)]
    else:
        calls = int(args.hours * 12_000)
        frames = generate(calls, concurrent=500, seed=11, start=t0.timestamp(), timestamps=True)
        csv = csv_rows(t0)
        marks = [args.every * k for k in range(1, int(args.hours / args.every) + 1)]
    pending = next(csv, None)
    finder.checkpoint(0.0, daemon, ami, {"clock_h": 0.0})
    mark_i = 0

    async def handle(event: Any) -> None:
        await daemon.process(event)
        await daemon.publisher.publish_now()

    for msg in messages(frames, wants, ami):
        stamp = msg.get("Timestamp")
        at = datetime.fromtimestamp(float(stamp), UTC) if stamp else clock.now
        while pending is not None and pending[0] <= at:
            clock.now = max(clock.now, pending[0])
            for ev in pending[1]:
                await handle(ev)
            pending = next(csv, None)
        clock.now = max(clock.now, at)
        for ev in ami.feed(msg, at):
            await handle(ev)
        if clock.now >= next_tick:
            next_tick = clock.now + tick_every
            await daemon.tick()
            await blocker.drain()
        if clock.now >= next_save:
            next_save = clock.now + save_every
            await daemon.flush_final()
        hours = (clock.now - t0).total_seconds() / 3600
        point = float(passes[0]) if args.ami_file else hours
        if mark_i < len(marks) and point >= marks[mark_i]:
            at_mark = marks[mark_i]
            mark_i += 1
            finder.checkpoint(at_mark, daemon, ami, {"clock_h": round(hours, 2)})
    await daemon.publisher.publish_queued()
    if mark_i < len(marks):
        hours = (clock.now - t0).total_seconds() / 3600
        finder.checkpoint(marks[-1], daemon, ami, {"clock_h": round(hours, 2), "end": True})
    await daemon.publisher.close()
    daemon.store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    result = finder.report()
    result["learned"] = learned
    result["args"] = {k: str(v) for k, v in vars(args).items()}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0, help="clock hours of soak traffic")
    ap.add_argument("--every", type=float, default=2.0, help="clock hours between checkpoints")
    ap.add_argument("--full-at", type=float, default=8.0,
                    help="compare from the first checkpoint from here (h or passes)")  # fmt: skip
    ap.add_argument("--learn-days", type=int, default=28, help="days of history learned first")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    ap.add_argument("--trace-at", default="8,16,24", help="checkpoints with a snapshot")
    ap.add_argument("--ami-file", type=Path, help="a gen_ami.py --timestamps file instead")
    ap.add_argument("--passes", type=int, default=27)
    ap.add_argument("--pass-every", type=float, default=259200.0)
    ap.add_argument("--every-passes", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="where the temporary data goes")
    ap.add_argument("--jsonl", type=Path, help="append each checkpoint here as taken")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    args.trace_points = {float(x) for x in args.trace_at.split(",") if x}
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return result


if __name__ == "__main__":
    main()
