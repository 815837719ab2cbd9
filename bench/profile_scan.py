"""Where does ``run_scan`` spend its time? Stage-by-stage timings on one file.

Each stage is a separate query collected with the streaming engine, so later stages include
the earlier ones; the differences are the cost of each step:

1. ``lines``: the file read as one string per line (what cdr_ingest starts from);
2. ``fields``: + cutting the 18 fields out with the anchored regexes;
3. ``ingest``: ``scan_cdrs`` in full (+ unquoting, time parsing and time-zone conversion,
   problem checks, outbound/source/trunk classification);
4. ``wanted``: + the filter run_scan applies (outbound or problem rows);
5. ``classified``: + ``Classifier.classify_frame`` (destination classes, E.164, high risk);
6. ``count``: the second pass run_scan makes to count all rows (``select(pl.len())`` over
   the full ingest query);
7. ``engine``: Call objects built from the kept rows and replayed through the rule engine.

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
from tollwatch.cdr_ingest._scan import _extract_fields
from tollwatch.rules.batch import CALL_COLUMNS, calls_from_frame, replay
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine
from tollwatch.scan import run_scan
from tollwatch.settings import cdr_options, load, overrides, rule_specs

T = TypeVar("T")


def timed(label: str, fn: Callable[[], T], table: dict[str, float]) -> T:
    t0 = time.perf_counter()
    value = fn()
    table[label] = time.perf_counter() - t0
    print(f"  {label:<11} {table[label]:7.2f} s", flush=True)
    return value


def stages(path: Path) -> dict[str, float]:
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    opts = cdr_options(settings)
    out: dict[str, float] = {}
    lines = pl.scan_csv(
        path,
        has_header=False,
        separator="\x00",
        quote_char=None,
        schema={"line": pl.String(), "extra": pl.String()},
        truncate_ragged_lines=True,
        missing_columns="insert",
    )
    timed("lines", lambda: lines.select(pl.len(), pl.col("line").str.len_bytes().sum())
          .collect(engine="streaming"), out)  # fmt: skip
    timed("fields", lambda: _extract_fields(lines, 18).select(pl.len(), pl.col("_f17").null_count())
          .collect(engine="streaming"), out)  # fmt: skip
    rows = scan_cdrs([path], opts)
    timed("ingest", lambda: rows.collect(engine="streaming"), out)
    wanted = rows.filter(pl.col("problem").is_not_null() | pl.col("outbound"))
    timed("wanted", lambda: wanted.collect(engine="streaming"), out)
    classifier = Classifier(settings)
    classified = timed(
        "classified", lambda: classifier.classify_frame(wanted).collect(engine="streaming"), out
    )
    timed("count", lambda: rows.select(pl.len()).collect(engine="streaming"), out)
    keep = classified.filter(
        pl.col("problem").is_null()
        & ((pl.col("dest_class") == "international") | pl.col("high_risk"))
    ).select(CALL_COLUMNS)
    allow = settings.allowlist.sources
    calls = timed("calls", lambda: list(calls_from_frame(keep, classifier, allow)), out)
    engine = Engine.from_settings(settings, rule_specs(settings))
    incidents = timed("replay", lambda: replay(engine, calls), out)
    out["engine"] = out["calls"] + out["replay"]
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
    d: dict[str, Any] = {
        "read lines": t["lines"],
        "cut fields (regex)": t["fields"] - t["lines"],
        "rest of ingest (unquote, times, checks, outbound)": t["ingest"] - t["fields"],
        "destination classification": t["classified"] - t["wanted"],
        "second pass to count rows": t["count"],
        "build Call objects": t["calls"],
        "engine replay": t["replay"],
    }
    print("\nbreakdown (differences between stages):")
    for k, v in d.items():
        print(f"  {k:<50} {v:6.2f} s")
    if args.cprofile:
        args.cprofile.write_text(profile(args.file, args.top))
        print(f"cProfile of run_scan -> {args.cprofile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
