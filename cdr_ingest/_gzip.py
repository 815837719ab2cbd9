"""Gzip detection and streaming decompression to temporary files.

Decompressed copies live in a module-level registry: they stay on disk while any
LazyFrame built from them may still be collected, and are deleted at interpreter exit
(atexit) or earlier by calling ``release_temp_files()``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ._types import IngestError

GZIP_MAGIC = b"\x1f\x8b"
_TEMP_FILES: list[Path] = []


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes."""
    with path.open("rb") as f:
        return f.read(2) == GZIP_MAGIC


def decompress(path: Path, shown: str, partial: Callable[[str], None] | None = None) -> Path:
    """Decompress a gzip file to a registered temporary file, in 1 MiB chunks.

    A truncated or damaged stream raises IngestError, unless `partial` is given: then the
    complete lines decompressed before the damage are kept, `partial` is told what happened
    (one line naming the file), and the copy is returned."""
    fd, name = tempfile.mkstemp(prefix="tollwatch-cdr-", suffix=".csv")
    tmp = Path(name)
    _TEMP_FILES.append(tmp)
    with os.fdopen(fd, "wb") as dst:
        try:
            _inflate(path, dst)
            return tmp
        except (OSError, EOFError, zlib.error) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if partial is None:
                raise IngestError(f"{shown}: cannot decompress gzip data ({reason})") from None
            dst.flush()
            kept = _cut_after_last_line(dst.fileno())
    partial(f"{shown}: damaged gzip data ({reason}); the {kept} bytes of complete lines "
            "before the damage were read, the rest of the file could not be")
    return tmp


def _inflate(path: Path, dst: BinaryIO) -> None:
    """Every member of a gzip file into dst; what was inflated before an error is written."""
    with path.open("rb") as src:
        inflater: Any = None  # None: between members
        pending = b""
        while True:
            if not pending:
                pending = src.read(1 << 20)
                if not pending:
                    break
            if inflater is None:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            dst.write(inflater.decompress(pending))
            pending = b""
            if inflater.eof:  # a member ended: the next one (if any) starts after it
                pending = inflater.unused_data
                inflater = None
        if inflater is not None:
            dst.write(inflater.flush())
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")


def _cut_after_last_line(fd: int) -> int:
    """Truncate the file after its last newline (a cut row is not a row); its new size."""
    size = os.fstat(fd).st_size
    at = size
    while at > 0:
        start = max(0, at - (1 << 16))
        block = os.pread(fd, at - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            at = start + nl + 1
            break
        at = start
    os.ftruncate(fd, at)
    return at


def release_temp_files() -> None:
    """Delete all decompressed copies; LazyFrames over gzip files become unusable."""
    while _TEMP_FILES:
        with contextlib.suppress(OSError):
            _TEMP_FILES.pop().unlink()


def release(path: Path) -> None:
    """Delete one decompressed copy now (a reader that still has it open keeps reading it)."""
    with contextlib.suppress(ValueError):
        _TEMP_FILES.remove(path)
    with contextlib.suppress(OSError):
        path.unlink()


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
