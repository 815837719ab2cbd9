"""Read Asterisk CDR files (cdr_csv, cdr_custom, FreePBX exports) into one polars LazyFrame.

Gzip files are decompressed to temporary files that live until interpreter exit or
until ``release_temp_files()`` is called (see ``_gzip``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import polars as pl

from ._gzip import release_temp_files
from ._outbound import dials_local, local_dials, resolve_local_chains
from ._scan import SCHEMA, check_timezone, detect, file_chunks, scan_file
from ._types import CdrOptions, IngestError
from .dialects import canonical_columns

_T = TypeVar("_T")

__all__ = [
    "SCHEMA",
    "CdrOptions",
    "IngestError",
    "canonical_columns",
    "describe_layout",
    "dials_local",
    "local_dials",
    "release_temp_files",
    "resolve_local_chains",
    "scan_cdrs",
    "scan_chunks",
]


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, not a CDR file")
    if not os.access(path, os.R_OK):
        raise IngestError(f"{path}: permission denied")
    try:
        with path.open("rb"):
            pass
    except OSError as e:
        raise IngestError(f"{path}: cannot open ({e.strerror or e})") from None


def scan_cdrs(
    paths: Sequence[Path], options: CdrOptions, on_file_error: Callable[[str], None] | None = None
) -> pl.LazyFrame:
    """One LazyFrame (schema ``SCHEMA``) over all files, each read with its own layout.

    A file that cannot be read (missing, a directory, permission denied, not a CDR file,
    damaged gzip) raises IngestError; with `on_file_error`, it is reported there instead (one
    line: "path: reason") and the other files are read. Of a damaged gzip file, the complete
    lines before the damage are read (and the damage reported)."""
    frames = _each_file(paths, options, on_file_error, scan_file)
    if not frames:
        return pl.LazyFrame(schema=SCHEMA)
    return pl.concat(frames, how="vertical")


def scan_chunks(
    paths: Sequence[Path],
    options: CdrOptions,
    on_file_error: Callable[[str], None] | None = None,
    where: pl.Expr | None = None,
) -> Iterator[tuple[int, pl.LazyFrame]]:
    """The rows of ``scan_cdrs`` (same files, errors, order) as consecutive chunks, each
    (rows in it, its LazyFrame of SCHEMA columns): evaluate one chunk at a time, and memory
    holds one chunk whatever the files' size. As in scan_cdrs, every file is checked and
    detected before the first chunk is returned; rows are read as chunks are taken.
    `where`: each chunk's LazyFrame holds only the rows it keeps (the count is of all rows);
    it may read every SCHEMA column but origin, call_id, account, source and trunk, which
    are then made for the kept rows only."""

    def one(
        path: Path, shown: str, opts: CdrOptions, partial: Callable[[str], None] | None
    ) -> Iterator[tuple[int, pl.LazyFrame]]:
        return file_chunks(path, shown, opts, partial, where)

    files = _each_file(paths, options, on_file_error, one)
    return itertools.chain.from_iterable(files)


def _each_file(
    paths: Sequence[Path],
    options: CdrOptions,
    on_file_error: Callable[[str], None] | None,
    open_one: Callable[[Path, str, CdrOptions, Callable[[str], None] | None], _T],
) -> list[_T]:
    """`open_one` of each readable file, in order. Without `on_file_error` every file is
    checked first and the first unreadable one raises IngestError; with it, an unreadable file
    is reported there (one line: "path: reason") and skipped."""
    check_timezone(options)
    if on_file_error is None:
        for path in paths:
            _check_readable(Path(path))
    opened = []
    for p in paths:
        try:
            if on_file_error is not None:
                _check_readable(Path(p))
            opened.append(open_one(Path(p), str(p), options, on_file_error))
        except IngestError as e:
            if on_file_error is None:
                raise
            on_file_error(str(e))
    return opened


def describe_layout(path: Path, options: CdrOptions | None = None) -> str:
    """One line about a file's format, e.g. 'Master.csv: 18 columns (uniqueid+userfield), ...'."""
    options = options or CdrOptions()
    _check_readable(Path(path))
    fmt = detect(Path(path), str(path), options)
    if fmt is None:
        return f"{path}: empty"
    clock = "UTC (usegmtime)" if options.usegmtime else f"local time ({options.timezone})"
    gz = ", gzip" if fmt.gzip else ""
    return f"{path}: {fmt.description}{gz}, {clock}"
