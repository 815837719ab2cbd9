"""Content fingerprints for the Master.csv follower: truncation and replacement are told by
what the file holds, not by its size or line count alone.

A position carries `fingerprint(fd, offset)`: a hash of the file's first bytes and of the
bytes just before the offset. If the file at the followed path no longer has that content
before the offset (copytruncate, then new rows of the same length written past the old
offset; an inode number reused), it was truncated or replaced. The copy logrotate made
(`Master.csv.1`, `Master.csv-20261124`, or the same compressed, `.gz`) is found among the
siblings by the same fingerprint, and its unread tail is read before the new file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from tollwatch.cdr_ingest import _gzip

FP_BYTES = 4096  # hashed at the start of the file and before the offset
MAX_GZ_CANDIDATES = 3  # compressed siblings looked into (the newest)


def fingerprint(fd: int, offset: int) -> str:
    """The content fingerprint of a file at `offset` ("" at 0 or if it cannot be read)."""
    if offset <= 0:
        return ""
    try:
        head = os.pread(fd, min(FP_BYTES, offset), 0)
        start = max(0, offset - FP_BYTES)
        tail = os.pread(fd, offset - start, start)
    except OSError:
        return ""
    if len(head) < min(FP_BYTES, offset) or len(tail) < offset - start:
        return "short"
    return hashlib.blake2b(head + b"\0" + tail, digest_size=12).hexdigest()


def matches(path: Path, offset: int, fp: str) -> bool:
    """`path` holds at least `offset` bytes whose fingerprint is `fp`."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return os.fstat(fd).st_size >= offset and fingerprint(fd, offset) == fp
    finally:
        os.close(fd)


def find_copy(path: Path, offset: int, fp: str) -> tuple[Path, Path] | None:
    """The rotated copy of `path`'s content up to `offset`: (file to read, name to show).
    A compressed copy is decompressed to a temporary file (the first is what to read; the
    reader deletes it once open, `opened`)."""
    if not fp:
        return None
    try:
        names = os.listdir(path.parent)
    except OSError:
        return None
    siblings = [path.parent / n for n in names if n != path.name and n.startswith(path.name)]
    plain = sorted((p for p in siblings if not p.name.endswith(".gz")), key=_newest_first)
    for candidate in plain:
        if candidate.is_file() and matches(candidate, offset, fp):
            return candidate, candidate
    packed = sorted((p for p in siblings if p.name.endswith(".gz")), key=_newest_first)
    for candidate in packed[:MAX_GZ_CANDIDATES]:
        with contextlib.suppress(Exception):
            if not candidate.is_file() or not _gzip.is_gzip(candidate):
                continue
            copy = _gzip.decompress(candidate, str(candidate), partial=lambda _msg: None)
            if matches(copy, offset, fp):
                return copy, candidate
            _gzip.release(copy)
    return None


def opened(read: Path, shown: Path) -> None:
    """A decompressed copy (`read` is not the rotated file itself) is deleted once opened:
    the follower reads it through its open descriptor, and no temporary file is left."""
    if read != shown:
        _gzip.release(read)


def find_inode(path: Path, inode: int) -> Path | None:
    """The sibling of `path` (`Master.csv.1`, `Master.csv-20261124`) that is file `inode`."""
    try:
        names = sorted(os.listdir(path.parent))
    except OSError:
        return None
    for name in names:
        if name == path.name or not name.startswith(path.name):
            continue
        candidate = path.parent / name
        try:
            if candidate.stat().st_ino == inode and candidate.is_file():
                return candidate
        except OSError:
            continue
    return None


def _newest_first(p: Path) -> float:
    try:
        return -p.stat().st_mtime
    except OSError:
        return 0.0
