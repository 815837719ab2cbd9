"""What `tollwatch scan`'s loop keeps of each batch until the replay, and how the replay reads it.

The loop keeps the calls rules look at (and the Local dials) as compressed Arrow IPC bytes,
one part per batch, in file order (`pack`). The replay needs those calls in start order; made
into one frame and sorted, at 20M rows they were two copies of ~1.2M wide rows on top of what
the loop's allocator kept (the scan's peak RSS). `Kept` reads them as `rules.batch.Rows`
instead: only the start column of every call is unpacked to find the order, a few columns at a
time for the marks that look at every call (rules.sparse, rules.attempts, the Local chains),
and the calls themselves slice by slice in start order, each part unpacked when a slice first
needs it and let go (packed bytes too) after the last slice that does.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from tollwatch.cdr_ingest import CdrOptions, resolve_local_chains
from tollwatch.rules.batch import CALL_COLUMNS


def pack(frame: pl.DataFrame) -> bytes:
    """frame as compressed Arrow IPC bytes: what the loop keeps of each batch (the calls rules
    look at, the Local dials) until the replay. Kept as polars frames, those small long-lived
    buffers sat between the batches' short-lived ones and pinned their memory: RSS grew by ~2.7x
    their size (26 MB per million rows at 20M); as bytes (zstd, ~4x smaller, outside polars'
    heap) RSS stays flat. `unpack` gives the frame back, the same columns and values."""
    out = io.BytesIO()
    frame.write_ipc(out, compression="zstd")
    return out.getvalue()


def unpack(parts: Sequence[bytes], columns: Sequence[str] | None = None) -> pl.DataFrame:
    """The frames `pack` made, one after the other, as one frame (of `columns` only)."""
    return pl.concat([_read(part, columns) for part in parts])


def _read(part: bytes, columns: Sequence[str] | None) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(part), columns=None if columns is None else list(columns))


class Kept:
    """The kept calls (`pack`ed parts in file order, columns CALL_COLUMNS and channel) as
    `rules.batch.Rows`: in start order (a stable sort: calls that start at the same instant
    keep file order), sources re-attributed along Local chains (`dials`: the packed Local
    dials), never all unpacked at once. The parts are taken over: the caller's list is
    emptied, and each part is dropped once `slices` is past it (so `slices` runs once)."""

    def __init__(self, parts: list[bytes], dials: list[bytes], options: CdrOptions) -> None:
        self._parts: list[bytes] = []
        starts: list[pl.DataFrame] = []
        for part in parts:
            start = _read(part, ["start"])
            if start.height:
                self._parts.append(part)
                starts.append(start)
        parts.clear()
        self._bounds = np.cumsum([0, *(frame.height for frame in starts)])
        by_start = pl.concat(starts) if starts else pl.DataFrame({"start": []})
        by_start = by_start.with_row_index("_i").sort("start", maintain_order=True)
        self._order = by_start.get_column("_i").to_numpy()  # position in file order, by start
        del starts, by_start
        self._source: pl.Series | None = None
        self._source = self._chains(dials, options)
        dials.clear()

    @property
    def height(self) -> int:
        return int(self._bounds[-1])

    def _chains(self, dials: list[bytes], options: CdrOptions) -> pl.Series | None:
        """The source of every call in file order when a Local chain changes one, else None."""
        if not dials or self.height == 0:
            return None
        calls = self._file_order(["channel", "dialed", "source"]).with_row_index("_k")
        resolved = resolve_local_chains(calls, unpack(dials), options)
        if resolved is calls:
            return None
        return resolved.sort("_k").get_column("source")

    def _file_order(self, names: Sequence[str]) -> pl.DataFrame:
        frame = unpack(self._parts, names)
        if self._source is not None and "source" in names:
            frame = frame.with_columns(self._source)
        return frame

    def columns(self, names: Sequence[str]) -> pl.DataFrame:
        """These columns of every call, in start order."""
        return self._file_order(names)[self._order]

    def slices(self, size: int) -> Iterator[pl.DataFrame]:
        """Every call (CALL_COLUMNS), in start order, `size` rows at a time. Memory holds the
        parts the current slice draws from (the file is nearly in start order: a few)."""
        n, bounds, order = self.height, self._bounds, self._order
        if n == 0:
            return
        rank = np.empty(n, dtype=np.int64)  # file position -> place in start order
        rank[order] = np.arange(n, dtype=np.int64)
        last = np.maximum.reduceat(rank // size, bounds[:-1])  # each part's last slice
        held: dict[int, pl.DataFrame] = {}
        for k, lo in enumerate(range(0, n, size)):
            rows = order[lo : lo + size]
            part_of = np.searchsorted(bounds, rows, side="right") - 1
            needed = np.unique(part_of)
            offset = np.zeros(len(bounds), dtype=np.int64)  # where each part starts in `joined`
            at = 0
            for p in needed.tolist():
                if p not in held:
                    held[p] = _read(self._parts[p], CALL_COLUMNS)
                offset[p] = at
                at += held[p].height
            joined = pl.concat([held[p] for p in needed.tolist()])
            out = joined[rows - bounds[part_of] + offset[part_of]]
            if self._source is not None:
                out = out.with_columns(self._source.gather(rows))
            yield out
            for p in [p for p in held if last[p] <= k]:
                del held[p]
                self._parts[p] = b""
