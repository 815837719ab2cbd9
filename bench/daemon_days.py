"""The live daemon's memory by day of event time: does it level off once its longest span is full?

A `gen_ami.py --timestamps` stream is fed pass after pass, each pass the next `--pass-every`
seconds of event time (`bench_daemon.looped`), in this process and without sockets: the AMI
tracker, `Daemon.process`, the publisher, a tick every 2,000 messages. Before each pass, after
a full collection, one JSON line: RSS split (`soak_memory.split`), open incidents, call ids
remembered, the baseline's days and (phone, hour) day-marks, GC-tracked objects. The baseline
keeps 28 days (+1) of learning: with a day a pass, state is full from pass ~30 on.

    python bench/gen_ami.py --calls 2000 --timestamps --out /work/data/C/ami-busy-2000-ts.txt
    python bench/daemon_days.py /work/data/C/ami-busy-2000-ts.txt --passes 45 --out days.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemon import DAY, _mask, bench_settings, looped, make_daemon, messages
from soak_memory import split


async def run(path: Path, passes: int, pass_every: float, out: Path) -> None:
    from tollwatch.cdr_ingest.live.ami import EVENT_MASK
    from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
    from tollwatch.sources import cdr_options

    data_dir = tempfile.mkdtemp(prefix="daemon-days-")
    settings = bench_settings(1, data_dir)
    daemon = make_daemon(settings, data_dir)
    daemon.keep_latency = False
    tracker = AmiCallTracker("pbx", cdr_options(settings))
    tracker.use_version("22.0.0")
    wants = _mask(EVENT_MASK)
    cpu0 = time.process_time()

    def report(k: int) -> None:
        gc.collect()
        pipeline = daemon.pipelines["pbx"]
        base = pipeline.baseline
        row: dict[str, Any] = {
            "pass": k, "cpu_s": round(time.process_time() - cpu0, 1),
            "load": round(os.getloadavg()[0], 1),
            **{name: round(mib, 1) for name, mib in split(os.getpid()).items()},
            "open": len(pipeline.engine.tracker.open), "up": pipeline.in_progress,
            "seen": len(pipeline.seen), "baseline_days": len(base.days),
            "baseline_hour_marks": sum(len(d) for h in base.src_hours.values() for d in h.values()),
            "gc_objects": len(gc.get_objects()),
        }  # fmt: skip
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def on_pass(k: int) -> None:
        if k:  # (the state as the passes before it left it)
            report(k)

    frames = looped(path, passes, time.time(), pass_every, on_pass)
    for n, msg in enumerate(messages(frames, wants, tracker), 1):
        for event in tracker.feed(msg, datetime.now(UTC)):
            await daemon.process(event)
        if n % 2000 == 0:
            await daemon.publisher.publish_queued()
            await daemon.tick()
    await daemon.publisher.publish_queued()
    report(passes)
    await daemon.publisher.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("file", type=Path, help="a gen_ami.py --timestamps stream")
    ap.add_argument("--passes", type=int, default=45)
    ap.add_argument("--pass-every", type=float, default=DAY, help="event time a pass, s")
    ap.add_argument("--out", type=Path, default=Path("daemon-days.jsonl"))
    args = ap.parse_args(argv)
    asyncio.run(run(args.file, args.passes, args.pass_every, args.out))


if __name__ == "__main__":
    main()
