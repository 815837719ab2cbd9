"""Destination classification: distinct dialed numbers per second (`Classifier`, one site).

The numbers are the distinct `dialed` strings of the outbound legs of a CDR file (a realistic
mix: domestic fixed and mobile, toll free, international with and without high risk), or
generated when no file is given. Each run classifies all of them at once, as one scan batch
holding only new numbers would (`Classifier.classify_df` on distinct values), in this process
(polars may use its threads: CPU is user+sys of the process).

    python bench/bench_classify.py bench/data/dense1m/large-1201/Master.csv --repeat 3
    python bench/bench_classify.py --generate 1000000

`--batches N` measures what `scan` does instead: every outbound leg of the file (repeats
included), in batches of N rows, each batch's distinct numbers classified
(`BatchClassifier.distinct`: `unique`, then the classification); the digest is over the
classified rows of all batches.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from tollwatch.cdr_ingest import scan_cdrs
from tollwatch.rules.destinations import DEST_COLUMNS, Classifier
from tollwatch.settings import cdr_options, load, overrides


def numbers_of(path: Path) -> pl.DataFrame:
    cache = path.with_suffix(".dialed.parquet")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        return pl.read_parquet(cache)
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    rows = scan_cdrs([path], cdr_options(settings))
    frame = (rows.filter(pl.col("outbound")).select(pl.col("dialed").alias("dst")).unique()
             .collect(engine="streaming"))
    frame.write_parquet(cache)
    return frame


def legs_of(path: Path) -> pl.DataFrame:
    """The dialed number of every outbound leg (cached beside the file)."""
    cache = path.with_suffix(".legs.parquet")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        return pl.read_parquet(cache)
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    rows = scan_cdrs([path], cdr_options(settings))
    frame = rows.filter(pl.col("outbound")).select("dialed").collect(engine="streaming")
    frame.write_parquet(cache)
    return frame


def by_batches(path: Path, rows: int, repeat: int) -> int:
    legs = legs_of(path)
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    classify = Classifier(settings).batches("dialed")
    print(f"{path}: {legs.height:,} outbound legs, batches of {rows:,}")
    for _ in range(repeat):
        c0, w0, distinct, parts = time.process_time(), time.perf_counter(), 0, []
        for batch in legs.iter_slices(rows):
            out = classify.distinct(batch)
            distinct += out.height
            parts.append(out)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        digest = hashlib.sha256(
            pl.concat(parts).sort("dialed", nulls_last=True).select("dialed", *DEST_COLUMNS)
            .write_csv().encode()
        ).hexdigest()[:16]
        print(f"  {wall:6.2f} s wall, {cpu:6.2f} s cpu: {legs.height / cpu:,.0f} legs per cpu s, "
              f"{distinct:,} numbers classified ({distinct / cpu:,.0f} per cpu s)  "
              f"digest {digest}", flush=True)
    return 0


def generated(n: int, seed: int = 1) -> pl.DataFrame:
    """Japanese dialing: 60% domestic (0 + 9-10 digits), 35% international (010 + code +
    number), 5% short codes and extensions."""
    rng = np.random.default_rng(seed)
    codes = ["1", "44", "86", "82", "49", "33", "65", "232", "53", "1876", "7", "91", "63",
             "216", "370", "252", "90", "48", "56"]
    out: list[str] = []
    for u in rng.random(n):
        if u < 0.6:
            out.append("0" + str(rng.integers(10**8, 10**10)))
        elif u < 0.95:
            code = codes[int(rng.integers(len(codes)))]
            out.append("010" + code + str(rng.integers(10**6, 10**10)))
        else:
            out.append(str(rng.integers(200, 8200)))  # extensions
    return pl.DataFrame({"dst": out}).unique()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, nargs="?")
    p.add_argument("--generate", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batches", type=int, metavar="N", help="scan's way: batches of N legs")
    a = p.parse_args(argv)
    if a.batches:
        if not a.file:
            p.error("--batches needs a CDR file")
        return by_batches(a.file, a.batches, a.repeat)
    numbers = numbers_of(a.file) if a.file else generated(a.generate)
    settings = load(None, overrides(country="JP", tz="Asia/Tokyo"))
    classifier = Classifier(settings)
    print(f"{a.file or 'generated'}: {numbers.height:,} distinct numbers")
    for _ in range(a.repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        out = classifier.classify_df(numbers, "dst")
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        digest = hashlib.sha256(
            out.sort("dst").select("dst", *DEST_COLUMNS).write_csv().encode()
        ).hexdigest()[:16]
        classes = dict(out.group_by("dest_class").len().sort("dest_class").iter_rows())
        print(f"  {wall:6.2f} s wall, {cpu:6.2f} s cpu: {numbers.height / wall:,.0f} numbers/s "
              f"wall ({numbers.height / cpu:,.0f} per cpu s)  {classes}  digest {digest}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
