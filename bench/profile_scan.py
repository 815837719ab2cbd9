"""Where does ``run_scan`` spend its time? Stage-by-stage timings on one file.

Each stage is a separate pass over the file, so later stages include the earlier ones; the
differences are the cost of each step (wall and CPU seconds, CPU being user+sys of this
process, all polars threads):

1. ``bare``: polars reading the file, every field a string (the floor; streaming engine);
2. ``source``: cdr_ingest's parsed pieces (pieces, polars' CSV parser, the strict line check);
3. ``ingest``: ``scan_chunks`` in full, chunk by chunk as run_scan reads (+ typing, times,
   problem checks, outbound, source);
4. ``wanted``: + the filter run_scan applies (outbound, problem, Local-dial... rows), batches
   gathered as run_scan gathers them but not looked at;
5. ``loop``: + what run_scan does with each batch (counts, problems, destination
   classification of each batch's distinct numbers, the calls rules look at);
6. ``calls`` / ``replay``: Call objects built from the kept rows, replayed through the engine.

With ``--memory``, instead: one ``run_scan`` in this process, its RSS (VmRSS) sampled every
20 ms and told by phase (the loop, reading back the kept calls, the whole-frame marks, the
replay, the validity sample): where the peak is.

    python bench/profile_scan.py bench/data/master-1000000.csv [--cprofile out.txt]
    python bench/profile_scan.py FILE --memory
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from tollwatch.cdr_ingest import scan_chunks
from tollwatch.cdr_ingest._detect import detect
from tollwatch.cdr_ingest._pieces import frames as _frames
from tollwatch.rules.batch import CALL_COLUMNS, calls_from_frame, replay
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine
from tollwatch.scan import _LOOP_COLUMNS, ScanStats, _Loop, run_scan
from tollwatch.scan_kept import unpack
from tollwatch.settings import cdr_options, load, overrides, rule_specs

T = TypeVar("T")


def timed(label: str, fn: Callable[[], T], table: dict[str, float]) -> T:
    c0, t0 = time.process_time(), time.perf_counter()
    value = fn()
    table[label] = time.perf_counter() - t0
    table[label + "_cpu"] = time.process_time() - c0
    print(f"  {label:<11} {table[label]:7.2f} s  cpu {table[label + '_cpu']:7.2f} s", flush=True)
    return value


def stages(path: Path) -> dict[str, float]:
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    opts = cdr_options(settings)
    out: dict[str, float] = {}
    fmt = detect(path, str(path), opts)
    assert fmt is not None
    timed("bare", lambda: pl.scan_csv(path, has_header=False, infer_schema=False)
          .collect(engine="streaming"), out)  # fmt: skip
    skip = fmt.header_line if fmt.header else 0
    timed("source", lambda: sum(df.height for df in _frames(path, len(fmt.columns), skip)), out)
    timed("ingest", lambda: sum(lf.collect().height for _, lf in scan_chunks([path], opts)), out)
    classifier = Classifier(settings)

    class Gathered(_Loop):  # the batches run_scan takes, not looked at
        def take(self, batch: pl.DataFrame, progress: object) -> None:
            pass

    def loop(kind: type[_Loop]) -> _Loop:
        it = kind(ScanStats(), classifier.batches("dialed"), pl.lit(True), None, None)
        it.read(scan_chunks([path], opts, where=it.wanted()), _LOOP_COLUMNS, None)
        return it

    timed("wanted", lambda: loop(Gathered), out)
    taken = timed("loop", lambda: loop(_Loop), out)
    keep = unpack(taken.relevant).select(CALL_COLUMNS)  # (Local chains not followed)
    allow = settings.allowlist.sources
    engine = Engine.from_settings(settings, rule_specs(settings))  # as run_frame: sparse bits
    calls = timed("calls", lambda: list(calls_from_frame(keep, classifier, allow, engine)), out)
    incidents = timed("replay", lambda: replay(engine, calls), out)
    timed("run_scan", lambda: run_scan([path], settings), out)
    print(f"  kept {keep.height:,} calls for the engine, {len(incidents)} incidents")
    return out


def profile(path: Path, top: int) -> str:
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    prof = cProfile.Profile()
    prof.enable()
    run_scan([path], settings)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def _rss_mb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


class Phases:
    """RSS (MB) at the start, peak and end of each phase, sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        self.now = "start"
        self.table: dict[str, list[int]] = {"start": [_rss_mb()] * 3}  # start, peak, end
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            row = self.table[self.now]
            row[1] = max(row[1], _rss_mb())

    def mark(self, name: str) -> None:
        rss = _rss_mb()
        self.table[self.now][1:] = [max(self.table[self.now][1], rss), rss]
        self.now = name
        self.table.setdefault(name, [rss, rss, rss])

    def wrap(self, owner: Any, name: str, label: str, after: str | None = None) -> None:
        """Mark `label` when owner.name is called (and `after` when it returns)."""
        fn = getattr(owner, name)

        def marked(*args: Any, **kwargs: Any) -> Any:
            self.mark(label)
            try:
                return fn(*args, **kwargs)
            finally:
                if after is not None:
                    self.mark(after)

        setattr(owner, name, marked)

    def stop(self) -> None:
        self.mark("end")
        self._stop.set()
        self._thread.join()


def memory(path: Path) -> Phases:
    """run_scan on path in this process, RSS by phase."""
    import tollwatch.rules.batch as batch
    import tollwatch.scan as scan

    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    phases = Phases()
    phases.wrap(scan._Loop, "read", "loop (ingest, classification, packing)", "after the loop")
    phases.wrap(scan, "Kept", "kept calls: start order, Local chains")
    phases.wrap(batch, "replay", "replay starts", "after the replay")
    phases.wrap(batch, "sparse_bits", "whole-frame marks (sparse, lone legs)")
    phases.wrap(batch, "lone_legs", "whole-frame marks (sparse, lone legs)",
                "replay: Call objects, engine")
    phases.wrap(scan.EarlyCheck, "result", "validity sample (what the thread left)")
    c0, t0 = time.process_time(), time.perf_counter()
    result = scan.run_scan([path], settings)
    phases.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{path}: {result.stats.rows:,} rows, {result.stats.calls_scored:,} kept calls, "
          f"{len(result.incidents)} incidents; {time.process_time() - c0:.1f} CPU s, "
          f"{time.perf_counter() - t0:.1f} s wall, peak RSS {peak} MB, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"  {'phase':<45} {'start':>6} {'peak':>6} {'end':>6} (MB)")
    for name, (start, high, end) in phases.table.items():
        print(f"  {name:<45} {start:6} {high:6} {end:6}")
    return phases


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--cprofile", type=Path, help="also write a cProfile of run_scan here")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--memory", action="store_true", help="RSS by phase of one run_scan instead")
    args = p.parse_args(argv)
    if args.memory:
        memory(args.file)
        return 0
    print(f"{args.file}:")
    t = stages(args.file)
    d: dict[str, Any] = {}
    for suffix in ("", "_cpu"):
        d["bare polars read" + suffix] = t["bare" + suffix]
        d["parsed pieces (CSV parser, line check)" + suffix] = t["source" + suffix]
        d["rest of ingest (typing, times, checks, outbound)" + suffix] = (
            t["ingest" + suffix] - t["source" + suffix]
        )
        d["wanted filter, batches" + suffix] = t["wanted" + suffix] - t["ingest" + suffix]
        d["loop: classification, counts, problems" + suffix] = (
            t["loop" + suffix] - t["wanted" + suffix]
        )
        d["build Call objects" + suffix] = t["calls" + suffix]
        d["engine replay" + suffix] = t["replay" + suffix]
    print("\nbreakdown (differences between stages):")
    for k, v in d.items():
        print(f"  {k:<50} {v:6.2f} s")
    if args.cprofile:
        args.cprofile.write_text(profile(args.file, args.top))
        print(f"cProfile of run_scan -> {args.cprofile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
