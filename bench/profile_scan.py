"""Where does ``run_scan`` spend its time? Stage-by-stage timings on one file.

Each stage is a separate query collected with the streaming engine, so later stages include
the earlier ones; the differences are the cost of each step (wall and CPU seconds, CPU being
user+sys of this process, all polars threads):

1. ``bare``: polars reading the file, every field a string (the floor);
2. ``source``: cdr_ingest's IO source (pieces, polars' CSV parser, the strict line check);
3. ``ingest``: ``scan_cdrs`` in full (+ typing, times, problem checks, outbound, source);
4. ``wanted``: + the filter run_scan applies (outbound or problem rows);
5. ``classified``: + destination classification of the outbound rows, batch by batch
   (each batch's distinct numbers, as run_scan does);
6. ``count``: the second pass run_scan makes to count all rows;
7. ``calls`` / ``replay``: Call objects built from the kept rows, replayed through the engine.

    python bench/profile_scan.py bench/data/master-1000000.csv [--cprofile out.txt]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from tollwatch.cdr_ingest import scan_cdrs
from tollwatch.cdr_ingest._detect import detect
from tollwatch.cdr_ingest._scan import _source
from tollwatch.rules.batch import CALL_COLUMNS, calls_from_frame, replay
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine
from tollwatch.scan import run_scan
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
    timed("source", lambda: _source(path, len(fmt.columns), 0).collect(engine="streaming"), out)
    rows = scan_cdrs([path], opts)
    timed("ingest", lambda: rows.collect(engine="streaming"), out)
    wanted = rows.filter(pl.col("problem").is_not_null() | pl.col("outbound"))
    timed("wanted", lambda: wanted.collect(engine="streaming"), out)
    classifier = Classifier(settings)
    batches = classifier.batches("dialed")
    relevant = pl.col("problem").is_null() & (
        (pl.col("dest_class") == "international") | pl.col("high_risk"))

    def classified() -> pl.DataFrame:
        kept = [batches(b).filter(relevant) for b in wanted.collect_batches(chunk_size=200_000)]
        return pl.concat(kept).select(CALL_COLUMNS)

    keep = timed("classified", classified, out)
    timed("count", lambda: rows.select(pl.len()).collect(engine="streaming"), out)
    allow = settings.allowlist.sources
    calls = timed("calls", lambda: list(calls_from_frame(keep, classifier, allow)), out)
    engine = Engine.from_settings(settings, rule_specs(settings))
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path)
    p.add_argument("--cprofile", type=Path, help="also write a cProfile of run_scan here")
    p.add_argument("--top", type=int, default=40)
    args = p.parse_args(argv)
    print(f"{args.file}:")
    t = stages(args.file)
    d: dict[str, Any] = {}
    for suffix in ("", "_cpu"):
        d["bare polars read" + suffix] = t["bare" + suffix]
        d["IO source (pieces, CSV parser, line check)" + suffix] = t["source" + suffix]
        d["rest of ingest (typing, times, checks, outbound)" + suffix] = (
            t["ingest" + suffix] - t["source" + suffix])
        d["destination classification" + suffix] = t["classified" + suffix] - t["wanted" + suffix]
        d["second pass to count rows" + suffix] = t["count" + suffix]
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
