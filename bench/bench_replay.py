"""Rule replay on one core: relevant calls per second through the shipped rules and baseline.

The calls are the ones `tollwatch scan` hands the engine (international or high-risk, after
classification), taken from a CDR file once and kept as Parquet next to it:

    python bench/bench_replay.py FILE.csv            # writes FILE.relevant.parquet once
    python bench/bench_replay.py FILE.csv --repeat 3 --profile out.txt

Reported: building the Call objects, the replay (events in time order through
`Engine.handle`, incidents), CPU seconds of this process (one thread: the replay is Python),
calls/s, and a digest of the incidents (ids, severity, score, calls) to compare runs: the same
digest means the same results.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from tollwatch.rules.batch import calls_from_frame, replay
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

    def keep(engine: Engine, frame: pl.DataFrame, *args: object) -> list[Incident]:
        kept.append(frame)
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--profile", type=Path, help="write a cProfile (tottime) of one replay")
    a = p.parse_args(argv)
    frame = relevant_frame(a.file)
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    classifier = Classifier(settings)
    allow = settings.allowlist.sources
    print(f"{a.file}: {frame.height:,} relevant calls")
    for _ in range(a.repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        calls = list(calls_from_frame(frame, classifier, allow))
        c1, w1 = time.process_time(), time.perf_counter()
        engine = Engine.from_settings(settings, rule_specs(settings))
        incidents = replay(engine, calls)
        c2, w2 = time.process_time(), time.perf_counter()
        crit = sum(1 for i in incidents if i.severity.label == "critical")
        print(f"  calls {c1 - c0:6.2f} s cpu ({w1 - w0:6.2f} wall)  replay {c2 - c1:6.2f} s cpu "
              f"({w2 - w1:6.2f} wall)  {len(calls) / (c2 - c0):,.0f} calls/s cpu "
              f"(replay alone {len(calls) / (c2 - c1):,.0f})  {len(incidents)} incidents "
              f"({crit} critical) digest {digest(incidents)}", flush=True)
    if a.profile:
        calls = list(calls_from_frame(frame, classifier, allow))
        engine = Engine.from_settings(settings, rule_specs(settings))
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
