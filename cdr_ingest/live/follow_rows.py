"""How the Master.csv follower turns rows into events: a chunk padded so `detect` sees only the
file's first lines, parsed in a temporary file, rows filtered and renumbered to the followed
file's lines, and each good outbound row as call events (`call_events`, shared with the CDR
table follower)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from tollwatch.cdr_ingest._scan import FileFormat
from tollwatch.cdr_ingest.live.events import (
    CallAnswered,
    CallEnded,
    CallRefused,
    CallStarted,
    LiveEvent,
)

REFUSED_MARK = "tollwatch-blocked:"  # CDR userfield of a call the dialplan snippet refused
HEAD_BYTES = 1 << 16  # what detect() reads
ORIGIN_LINE = re.compile(r":(\d+)$")
_T = TypeVar("_T")


def call_events(pbx: str, r: dict[str, Any]) -> tuple[LiveEvent, ...]:
    """A good outbound row (cdr_ingest.SCHEMA) as CallStarted, CallAnswered, CallEnded; a row
    the dialplan snippet refused (userfield tollwatch-blocked:...) as CallRefused."""
    call_id: str = r["call_id"]
    mark = r.get("userfield") or ""
    if not r["outbound"] and mark.startswith(REFUSED_MARK):  # refused by a block
        return (CallRefused(pbx, call_id, _utc(r["start"]), r["source"] or "",
                            r["dialed"] or r["dst"] or "", mark[len(REFUSED_MARK):]),)  # fmt: skip
    started = CallStarted(
        pbx=pbx,
        call_id=call_id,
        at=_utc(r["start"]),
        source=r["source"] or "",
        account=r["account"] or "",
        dialed=r["dialed"] or "",
        trunk=r["trunk"] or "",
        channel=r["channel"] or "",
        dest_channel=r["dstchannel"] or "",
        linkedid=r["linkedid"] or "",
    )
    ended = CallEnded(pbx, call_id, _utc(r["end"]), r["disposition"] or "")
    if r["answer"] is None:
        return (started, ended)
    return (started, CallAnswered(pbx, call_id, _utc(r["answer"])), ended)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def padded(prefix: bytes) -> bytes:
    """prefix, then a line of spaces up to detect()'s window: it sees only the prefix (a blank
    line is skipped), so it detects the same layout whatever follows."""
    return prefix + b" " * max(0, HEAD_BYTES - len(prefix)) + b"\n"


def with_temp(content: bytes, use: Callable[[Path], _T]) -> _T:
    fd, name = tempfile.mkstemp(prefix="tollwatch-follow-", suffix=".csv")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        return use(tmp)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def collect(lf: pl.LazyFrame, skip: int, shift: int, fmt: FileFormat) -> pl.DataFrame:
    """The chunk's rows with events or problems, with line numbers of the followed file."""
    tmp_line = pl.col("origin").str.extract(ORIGIN_LINE.pattern, 1).cast(pl.Int64)
    lf = lf.with_columns(_line=tmp_line + shift, _tmp_origin=pl.col("origin"))
    lf = lf.filter(tmp_line > skip)
    if fmt.header:
        lf = lf.filter(pl.col("_line") != fmt.header_line)
    refused = pl.col("userfield").fill_null("").str.starts_with(REFUSED_MARK)
    lf = lf.filter(pl.col("problem").is_not_null() | pl.col("outbound") | refused)
    origin = (
        pl.col("origin").str.replace(ORIGIN_LINE.pattern, "")
        + ":"
        + pl.col("_line").cast(pl.String)
    )
    lf = lf.with_columns(origin.alias("origin"))
    call_id = pl.when(pl.col("call_id") == pl.col("_tmp_origin")).then(pl.col("origin"))
    return lf.with_columns(call_id.otherwise(pl.col("call_id")).alias("call_id")).collect()
