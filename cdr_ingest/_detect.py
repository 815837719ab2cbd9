"""Which dialect a CDR file is written in, from its first lines (see ``cdr_ingest.dialects``)."""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import _gzip, dialects
from ._types import CdrOptions, IngestError

HEAD_LINES = 50
HEAD_BYTES = 1 << 16


@dataclass(frozen=True)
class FileFormat:
    """What a file holds: its columns (canonical names, "" for ignored ones, in file order)."""

    columns: tuple[str, ...]
    layout: str  # the dialect's name
    header: bool
    gzip: bool
    description: str = ""
    header_line: int = 0  # physical line number of the header row, 0 without header
    null_values: tuple[str, ...] = ()
    cr_lines: bool = False  # lines end in a lone CR (old Mac / spreadsheet export)


def _head(path: Path, shown: str, compressed: bool) -> bytes:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            data: bytes = f.read(HEAD_BYTES)
    except (OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise IngestError(f"{shown}: cannot read ({reason})") from None
    return data


def head_lines(data: bytes, cr_lines: bool) -> list[tuple[int, str]]:
    """The first non-blank lines with their 1-based physical line numbers."""
    lines = data.decode("utf-8", errors="replace").split("\r" if cr_lines else "\n")
    if len(data) == HEAD_BYTES:
        lines.pop()  # may be cut in the middle
    numbered = [(i + 1, ln.rstrip("\r")) for i, ln in enumerate(lines) if ln.strip()]
    return numbered[:HEAD_LINES]


def parse_line(line: str) -> list[str]:
    """One line's fields as Python's csv reads them (lenient with stray quotes)."""
    try:
        return next(csv.reader(io.StringIO(line)), [])
    except csv.Error:
        return []


def _header_format(
    first: list[str], line: int, compressed: bool, cr: bool, shown: str
) -> FileFormat | None:
    dialect = dialects.header_dialect(first)
    if dialect is None:
        return None
    cols = tuple(c or "" for c in dialects.canonical_columns(first))
    if "start" not in cols:
        raise IngestError(f"{shown}: header has no start/calldate column")
    if "end" not in cols and "duration" not in cols:
        raise IngestError(f"{shown}: header has neither an end nor a duration column")
    desc = f"header with {len(first)} columns ({dialect.description})"
    return FileFormat(
        cols, dialect.name, True, compressed, desc, line, dialect.null_values, cr
    )


def detect(path: Path, shown: str, options: CdrOptions) -> FileFormat | None:
    """Detect the file's dialect from its first lines; None for an empty file."""
    compressed = _gzip.is_gzip(path)
    data = _head(path, shown, compressed)
    cr = b"\r" in data and b"\n" not in data
    lines = head_lines(data, cr)
    if not lines:
        if data.strip():  # something, but not one whole line: not an empty file
            raise IngestError(
                f"{shown}: not a CDR file (no line ends in its first {HEAD_BYTES // 1024} KiB; "
                f"it begins {_preview(data[:80].decode('utf-8', errors='replace'))})"
            )
        return None
    first = parse_line(lines[0][1])
    fmt = _header_format(first, lines[0][0], compressed, cr, shown)
    if fmt is not None:
        return fmt
    rows = [parse_line(ln) for _, ln in lines]
    counts = Counter(len(r) for r in rows)
    if options.columns:
        configured = dialects.custom_dialect(options.columns, "configured [cdr] columns")
        if counts.most_common(1)[0][0] == len(configured.columns):
            desc = f"{len(configured.columns)} columns (configured [cdr] columns)"
            return FileFormat(configured.columns, "configured", False, compressed, desc,
                              cr_lines=cr)  # fmt: skip
    dialect = dialects.headerless_dialect(rows, options.layout)
    if dialect is None:
        seen = ", ".join(f"{n} columns x{k}" for n, k in counts.most_common(3))
        raise IngestError(
            f"{shown}: not a CDR file in a known layout (first lines: {seen}; first line "
            f"{_preview(lines[0][1])}); expected Master.csv (16-21 columns), the "
            "cdr_custom.conf.sample mapping, a header with src,dst, or set [cdr] columns"
        )
    return FileFormat(dialect.columns, dialect.name, False, compressed, dialect.description,
                      null_values=dialect.null_values, cr_lines=cr)  # fmt: skip


def _preview(line: str) -> str:
    text = line if len(line) <= 60 else line[:57] + "..."
    return repr(text)
