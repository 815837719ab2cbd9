"""`check-config --sample FILE`: are the numbers in a CDR file valid under the settings?"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from tollwatch.cdr_ingest import scan_cdrs
from tollwatch.config import Settings
from tollwatch.rules.validity import SAMPLE, Validity, check_numbers
from tollwatch.settings import cdr_options


def sample_numbers(settings: Settings, files: Sequence[Path], sample: int = SAMPLE) -> Validity:
    """Check up to `sample` distinct dialed numbers of the outbound calls in `files`."""
    rows = scan_cdrs(list(files), cdr_options(settings))
    numbers = (
        rows.filter(pl.col("problem").is_null() & pl.col("outbound"))
        .select(pl.col("dst").cast(pl.String))
        .unique()
        .head(sample)
        .collect(engine="streaming")
        .get_column("dst")
        .drop_nulls()
        .to_list()
    )
    return check_numbers(settings, sorted(numbers), sample)
