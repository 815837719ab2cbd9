"""Gzip detection and streaming decompression to temporary files.

Decompressed copies live in a module-level registry: they stay on disk while any
LazyFrame built from them may still be collected, and are deleted at interpreter exit
(atexit) or earlier by calling ``release_temp_files()``.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from ._types import IngestError

GZIP_MAGIC = b"\x1f\x8b"
_TEMP_FILES: list[Path] = []


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def decompress(path: Path, shown: str) -> Path:
    """Decompress a gzip file to a registered temporary file, in 1 MiB chunks."""
    fd, name = tempfile.mkstemp(prefix="tollwatch-cdr-", suffix=".csv")
    tmp = Path(name)
    _TEMP_FILES.append(tmp)
    try:
        with gzip.open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (OSError, EOFError, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise IngestError(f"{shown}: cannot decompress gzip data ({reason})") from None
    return tmp


def release_temp_files() -> None:
    """Delete all decompressed copies; LazyFrames over gzip files become unusable."""
    while _TEMP_FILES:
        with contextlib.suppress(OSError):
            _TEMP_FILES.pop().unlink()


atexit.register(release_temp_files)


def cr_to_lf(path: Path, shown: str) -> Path:
    """A registered temporary copy of a file whose lines end in a lone CR, with LF ends."""
    fd, name = tempfile.mkstemp(prefix="tollwatch-cdr-", suffix=".csv")
    tmp = Path(name)
    _TEMP_FILES.append(tmp)
    try:
        with path.open("rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk.replace(b"\r", b"\n"))
    except OSError as e:
        raise IngestError(f"{shown}: cannot read ({e.strerror or e})") from None
    return tmp
