"""`tollwatch learn`: a site's baseline from its past CDRs, so day one is not blind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tollwatch.cdr_ingest.database import CdrDatabase
from tollwatch.config import Settings
from tollwatch.rules.baseline import Baseline
from tollwatch.rules.baseline_io import new_baseline
from tollwatch.scan import ScanStats, run_scan


def learn_files(
    paths: Sequence[Path],
    settings: Settings,
    start: Baseline | None = None,
    database: CdrDatabase | None = None,
) -> tuple[Baseline, ScanStats]:
    """Feed the files' (or with `database`, that table's) calls in start-time order to a
    baseline; no rule runs."""
    baseline = start if start is not None else new_baseline(settings)
    result = run_scan(paths, settings, baseline=baseline, rules=False, database=database)
    return baseline, result.stats
