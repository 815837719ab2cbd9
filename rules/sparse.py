"""Calls a batch replay need not hand to a rule's on_start (or on_end): provably no part of
any finding.

A rule whose on_start only adds the call to a sliding window of its group (a source, or a source
and a number block), on event time, and finds nothing while that window holds fewer than `count`
calls, says so with `Rule.sparse_group()`. In a batch the calls to come are known: when a call's
group holds fewer than `count` relevant calls in the open interval (start - span, start + span),
no window the call is ever in (a later call's, (t - span, t] with t in [start, start + span))
reaches `count`, so the call is in no finding and changes nothing a finding reads; the rule is
not asked about it (`Call.sparse`, one bit per sparse rule, in the engine's dispatch route).
Counting every relevant call of the group (not only those the rule keeps) only makes the count
larger, and so does a hash collision between two groups: both err on the side of asking.

The same holds for a rule whose on_end does that instead (`SparseGroup.at_end`: per-source
short_call_flood), with each call's end event time in place of its start.

The live daemon does not know the calls to come and hands every call to every rule; the
property test `tests/test_sparse.py` checks that a replay with and without this gives the same
incidents (the calls, scores, counts and reasons of every rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from tollwatch.rules.model import SparseGroup


def sparse_bits(
    frame: pl.DataFrame, groups: Sequence[SparseGroup], after: datetime | None
) -> list[int]:
    """For each row of `frame` (columns start, source, e164, and answer and end for groups
    `at_end`; in the order given), a bit per group in `groups` set when the row's call can be
    left out of that rule's on_start (on_end for groups `at_end`: counted on end times).

    `after`: the engine's clock (None for a fresh engine): windows may already hold calls up
    to it, which the frame does not show, so only calls at least `span` later are left out.
    The frame must hold every call the engine is handed from here on."""
    n = frame.height
    bits = np.zeros(n, dtype=np.int64)
    if n == 0 or not groups:
        return bits.tolist()
    at_start = frame.get_column("start").dt.epoch("us").to_numpy()
    by_start = np.sort(at_start)
    at_end = by_end = None
    grouped: dict[int, np.ndarray] = {}  # by block_digits: each row's group, numbered
    for i, group in enumerate(groups):
        times, ordered = at_start, by_start
        if group.at_end:
            if at_end is None or by_end is None:
                at_end = _end_times(frame)
                by_end = np.sort(at_end)
            times, ordered = at_end, by_end
        span = int(group.span / timedelta(microseconds=1))
        codes = grouped.get(group.block_digits)
        if codes is None:
            codes = grouped[group.block_digits] = _groups(frame, group.block_digits)
        count = _counts_around(codes, times, ordered, span)
        quiet = (codes >= 0) & (count < group.count)
        if after is not None:
            floor = int((after - _EPOCH) / timedelta(microseconds=1)) + span
            quiet &= times >= floor
        bits |= quiet.astype(np.int64) << i
    return bits.tolist()


def _groups(frame: pl.DataFrame, block_digits: int) -> np.ndarray:
    """Each row's group numbered from 0 (its source, or its source and number block), -1 when
    it has none (no source, or no number for a block): groups told apart by a hash of the
    key, so two may share a number (that only makes counts larger)."""
    if block_digits:
        e164 = pl.col("e164")
        block = e164.str.slice(0, (e164.str.len_chars() - block_digits).clip(0))
        key = pl.concat_str([pl.col("source"), pl.lit("|"), block])
    else:
        key = pl.col("source")
    keys = frame.select(key.alias("key")).get_column("key")
    known = keys.is_not_null().to_numpy()
    _, numbered = np.unique(keys.fill_null("").hash().to_numpy(), return_inverse=True)
    codes: np.ndarray = np.where(known, numbered.astype(np.int64), -1)
    return codes


def _end_times(frame: pl.DataFrame) -> np.ndarray:
    """When each call's end event comes (`engine.events_for`): the latest of its start,
    answer and end, in epoch microseconds."""
    column = pl.max_horizontal("start", "answer", "end").dt.epoch("us")
    ends: np.ndarray = frame.select(column.alias("at")).get_column("at").to_numpy()
    return ends


def _counts_around(
    codes: np.ndarray, times: np.ndarray, ordered: np.ndarray, span: int
) -> np.ndarray:
    """Per row, the rows of its group (same code, >= -1) with a time in (time - span,
    time + span).

    Times are replaced by their rank among all times (`ordered`, sorted), so that (group,
    rank) fits one int64: t' > x exactly when left_rank(t') >= right_rank(x), and t' < y
    exactly when left_rank(t') < left_rank(y). The bounds are looked up in (group, rank)
    order, where they only grow: a search starts where the one before ended (numpy does that
    for sorted needles), instead of anywhere in the array."""
    n = len(times)
    rank = np.searchsorted(ordered, times, side="left")
    low = np.searchsorted(ordered, times - span, side="right")  # first rank above time - span
    high = np.searchsorted(ordered, times + span, side="left")  # first rank at time + span
    base = (codes + 1) * (n + 1)
    keys = base + rank
    order = np.argsort(keys, kind="stable")
    combined = keys[order]
    first = np.searchsorted(combined, (base + low)[order], side="left")
    stop = np.searchsorted(combined, (base + high)[order], side="left")
    counted = np.empty(n, dtype=np.int64)
    counted[order] = stop - first
    return counted


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
