"""Rule replay on one core: relevant calls per second through the shipped rules and baseline.

The calls are the ones `tollwatch scan` hands the engine (international or high-risk, after
classification), taken from a CDR file once and kept as Parquet next to it:

    python bench/bench_replay.py FILE.csv            # writes FILE.relevant.parquet once
    python bench/bench_replay.py FILE.csv --repeat 3 --profile out.txt

Reported: building the Call objects, the replay (events in time order through
`Engine.handle`, incidents), CPU seconds of this process (one thread: the replay is Python),
calls/s, and a digest of the incidents (ids, severity, score, calls) to compare runs: the same
digest means the same results.

The live side of the same core: `--ami FILE` (a `gen_ami.py` stream) turns the stream into
LiveEvents once with the daemon's AMI tracker (cached as FILE.events.pickle), then feeds them
to a `LivePipeline` (classification warmed first, a tick per second of event time) and
reports the pipeline's CPU seconds and the rule engine's share of them (`Engine.handle`,
`advance`, `handle_auth`), with the digest:

    python bench/bench_replay.py bench/data/ami-busy-20000.txt --ami --repeat 2
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from tollwatch.rules.batch import Rows, calls_from_frame, replay
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine
from tollwatch.rules.incidents import Incident
from tollwatch.settings import load, overrides, rule_specs


def relevant_frame(path: Path) -> pl.DataFrame:
    """The frame run_scan replays, cached as PATH.relevant.parquet."""
    cache = path.with_suffix(".relevant.parquet")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        return pl.read_parquet(cache)
    import tollwatch.scan as scan

    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    kept: list[pl.DataFrame] = []
    original = scan.run_frame

    def keep(engine: Engine, frame: pl.DataFrame | Rows, *args: object) -> list[Incident]:
        # run_scan hands its kept calls as Rows (tollwatch.scan_kept), read slice by slice
        kept.append(frame if isinstance(frame, pl.DataFrame) else pl.concat(frame.slices(1 << 20)))
        return []

    scan.run_frame = keep  # type: ignore[assignment]
    try:
        scan.run_scan([path], settings)
    finally:
        scan.run_frame = original
    frame = kept[0] if kept else pl.DataFrame()
    frame.write_parquet(cache)
    return frame


def digest(incidents: list[Incident]) -> str:
    h = hashlib.sha256()
    for inc in incidents:
        calls = ",".join(sorted(inc.calls))
        hits = ";".join(f"{k}={v.score}:{v.count}:{v.reason}" for k, v in sorted(inc.hits.items()))
        h.update(f"{inc.id}|{inc.severity}|{inc.score}|{calls}|{hits}|"
                 f"{sorted(inc.detected_at.items())}\n".encode())
    return h.hexdigest()[:16]


def live_events(path: Path) -> list[object]:
    """The LiveEvents the daemon's AMI tracker makes of a gen_ami stream (cached)."""
    import pickle
    import tempfile
    from datetime import UTC, datetime

    cache = path.with_suffix(".events.pickle")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        events: list[object] = pickle.loads(cache.read_bytes())  # our own cache file
        return events
    from panoramisk.message import Message

    from bench.bench_daemon import bench_settings, frames
    from tollwatch.cdr_ingest.live.ami import _plain
    from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
    from tollwatch.cdr_ingest.live.ami_framing import event_name, parse_event
    from tollwatch.sources import cdr_options

    tracker = AmiCallTracker("pbx", cdr_options(bench_settings(1, tempfile.mkdtemp())))
    tracker.use_version("11.0.0")  # as the login banner tells it
    events = []
    for raw in frames(path):
        text = raw.decode("utf-8", "replace").strip()
        name = event_name(text)
        if name is not None and tracker.skip(name):
            continue
        msg = parse_event(text) if name is not None else None
        if msg is None:
            m = Message.from_line(text)
            if m is None or "Event" not in m:
                continue
            msg = _plain(m)
        events += tracker.feed(msg, datetime.now(UTC))
    cache.write_bytes(pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL))
    return events


def _timed(f: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    """`f`, adding the CPU time of each call to spent[0]."""
    clock = time.process_time

    def run(*args: Any) -> Any:
        t = clock()
        try:
            return f(*args)
        finally:
            spent[0] += clock() - t

    return run


def live(path: Path, repeat: int) -> None:
    import tempfile
    from datetime import timedelta

    from bench.bench_daemon import bench_settings
    from tollwatch.live import LivePipeline

    events = live_events(path)
    settings = bench_settings(1, tempfile.mkdtemp())
    print(f"{path}: {len(events):,} live events")
    for _ in range(repeat):
        pipe = LivePipeline("pbx", settings, Classifier(settings), rule_specs(settings))
        engine = pipe.engine
        spent = [0.0]
        clock = time.process_time
        for name in ("handle", "advance", "handle_auth"):
            setattr(engine, name, _timed(getattr(engine, name), spent))
        for ev in events:  # the daemon's classification cache, warm (not measured here)
            dialed = getattr(ev, "dialed", None)
            if dialed is not None:
                pipe.classifier.classify(dialed)
        tick = None
        c0 = clock()
        changes = 0
        for ev in events:
            at = getattr(ev, "at", None)
            if at is not None:
                if tick is None:
                    tick = at
                elif at - tick >= timedelta(seconds=1):
                    pipe.tick(at)
                    tick = at
            changes += len(pipe.feed(ev))  # type: ignore[arg-type]
        total = clock() - c0
        incidents = engine.tracker.all_incidents()
        print(f"  pipeline {total:6.2f} s cpu, rule engine {spent[0]:6.2f} s cpu "
              f"({spent[0] / total:.0%}; timing wrappers included)  {pipe.calls_seen:,} calls  "
              f"{changes:,} incident changes  {len(incidents)} incidents  "
              f"digest {digest(incidents)}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--profile", type=Path, help="write a cProfile (tottime) of one replay")
    p.add_argument("--ami", action="store_true", help="FILE is a gen_ami stream: live side")
    a = p.parse_args(argv)
    if a.ami:
        live(a.file, a.repeat)
        return 0
    frame = relevant_frame(a.file)
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    classifier = Classifier(settings)
    allow = settings.allowlist.sources
    print(f"{a.file}: {frame.height:,} relevant calls")
    for _ in range(a.repeat):
        engine = Engine.from_settings(settings, rule_specs(settings))
        c0, w0 = time.process_time(), time.perf_counter()
        calls = list(calls_from_frame(frame, classifier, allow, engine))  # as run_frame does
        c1, w1 = time.process_time(), time.perf_counter()
        incidents = replay(engine, calls)
        c2, w2 = time.process_time(), time.perf_counter()
        crit = sum(1 for i in incidents if i.severity.label == "critical")
        print(f"  calls {c1 - c0:6.2f} s cpu ({w1 - w0:6.2f} wall)  replay {c2 - c1:6.2f} s cpu "
              f"({w2 - w1:6.2f} wall)  {len(calls) / (c2 - c0):,.0f} calls/s cpu "
              f"(replay alone {len(calls) / (c2 - c1):,.0f})  {len(incidents)} incidents "
              f"({crit} critical) digest {digest(incidents)}", flush=True)
    if a.profile:
        engine = Engine.from_settings(settings, rule_specs(settings))
        calls = list(calls_from_frame(frame, classifier, allow, engine))
        prof = cProfile.Profile()
        prof.enable()
        replay(engine, calls)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(45)
        a.profile.write_text(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
