"""Classified outbound calls as Parquet, partitioned by PBX and day (Hive layout).

DIR/pbx=<pbx>/day=<YYYY-MM-DD>/part-<n>.parquet, the day in the PBX's time zone, times in UTC.
Readable by polars (`pl.scan_parquet(DIR, hive_partitioning=True)`), DuckDB, Spark, Dask.
A PBX's partition is replaced on each scan, so re-running a fleet scan does not duplicate calls.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

DROP = ("problem", "outbound")  # always null / always true for classified outbound calls


class ParquetSink:
    """Writes one PBX's batches of classified calls (run_scan's `calls` hook)."""

    def __init__(self, root: Path, pbx: str, timezone: str) -> None:
        self.dir = root / f"pbx={pbx}"
        self.timezone = timezone
        self.parts = 0
        self.rows = 0
        if self.dir.exists():
            shutil.rmtree(self.dir)

    def write(self, batch: pl.DataFrame) -> None:
        day = pl.col("start").dt.convert_time_zone(self.timezone).dt.date().alias("_day")
        frame = batch.drop([c for c in DROP if c in batch.columns]).with_columns(day)
        for (when,), part in frame.group_by("_day", maintain_order=True):
            folder = self.dir / f"day={when}"
            folder.mkdir(parents=True, exist_ok=True)
            part.drop("_day").write_parquet(folder / f"part-{self.parts:05d}.parquet")
            self.parts += 1
            self.rows += part.height
