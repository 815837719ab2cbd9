"""Drive the incremental engine from a batch of calls, in event-time order."""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import repeat
from sys import intern
from typing import Any, Protocol

import polars as pl

from tollwatch.rules.attempts import lone_legs
from tollwatch.rules.destination import DEST_COLUMNS, Destination
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine
from tollwatch.rules.incidents import Incident
from tollwatch.rules.model import Call, Kind
from tollwatch.rules.sparse import sparse_bits

# Columns rules need from the CDR frame (cdr_ingest) after classification (Classifier).
CALL_COLUMNS = (
    "call_id", "origin", "source", "account", "dialed", "trunk", "start", "answer", "end",
    "linkedid",
    "dest_class", "e164", "calling_code", "region", "region_name", "high_risk", "risk_prefix",
    "allowlisted", "rate",
)


class Rows(Protocol):
    """The calls of a replay in start order, read a few columns or a slice at a time: a frame
    in memory (`FrameRows`), or calls kept packed that are never all unpacked at once
    (tollwatch.scan's). `columns` is asked first, `slices` then once."""

    @property
    def height(self) -> int: ...

    def columns(self, names: Sequence[str]) -> pl.DataFrame:
        """These columns of every call, in start order."""
        ...

    def slices(self, size: int) -> Iterator[pl.DataFrame]:
        """Every call (CALL_COLUMNS), in start order, `size` rows at a time."""
        ...


class FrameRows:
    """A frame's calls as `Rows` (sorted by start, stably)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame.sort("start", maintain_order=True)

    @property
    def height(self) -> int:
        return self.frame.height

    def columns(self, names: Sequence[str]) -> pl.DataFrame:
        return self.frame.select(names)

    def slices(self, size: int) -> Iterator[pl.DataFrame]:
        return self.frame.iter_slices(size)


# What the whole-frame marks read: rules.sparse (start, answer, end, source, e164) and
# rules.attempts (call_id, linkedid).
_SPARSE_COLUMNS = ("start", "answer", "end", "source", "e164")
_LONE_COLUMNS = ("call_id", "linkedid")


def calls_from_frame(
    frame: pl.DataFrame | Rows,
    classifier: Classifier,
    source_allow: Mapping[str, list[str]],
    engine: Engine | None = None,
) -> Iterator[Call]:
    """Build Call objects from classified CDR rows, in start order (a frame is sorted first).

    Columns are read as Python lists a slice at a time (not row dicts), and calls to the same
    number with the same classification share one Destination. With `engine`, each call
    carries the sparse rules of that engine it can be left out of (`Call.sparse`,
    rules.sparse), and whether it is the only leg of its attempt (`Call.lone`,
    rules.attempts): the rows must then hold every call that engine is handed from here on.
    Those marks read a few columns of every row first; the rest is read slice by slice."""
    rows = FrameRows(frame) if isinstance(frame, pl.DataFrame) else frame
    groups = [] if engine is None else [
        group for group in (r.sparse_group() for r in engine.sparse) if group is not None]
    bits = None
    if engine is not None and groups:
        bits = sparse_bits(rows.columns(_SPARSE_COLUMNS), groups, engine.clock)
    lone = None
    if engine is not None and rows.height:
        lone = lone_legs(rows.columns(_LONE_COLUMNS), engine.attempts)
    dests: dict[tuple[object, ...], Destination] = {}
    allowed: dict[tuple[str, str | None], bool] = {}
    offset = 0
    for part in rows.slices(_SLICE):
        if len(dests) > _SHARED:  # numbers mostly distinct: do not keep them all
            dests.clear()
            allowed.clear()
        spared = [0] * part.height if bits is None else bits[offset : offset + part.height]
        alone = [False] * part.height if lone is None else lone[offset : offset + part.height]
        offset += part.height
        yield from _calls(part, classifier, source_allow, dests, allowed, spared, alone)


_SLICE = 50_000  # rows turned into Python lists at a time (memory stays flat)
_SHARED = 200_000  # distinct destinations remembered for sharing


def _calls(
    frame: pl.DataFrame,
    classifier: Classifier,
    source_allow: Mapping[str, list[str]],
    dests: dict[tuple[object, ...], Destination],
    allowed: dict[tuple[str, str | None], bool],
    spared: list[int],
    alone: list[bool],
) -> Iterator[Call]:
    part = frame.select(_READ)
    cols = {name: part.get_column(name).to_list() for name in _PLAIN}
    start, answer, end = (_datetimes(part.get_column(name)) for name in _TIMES)
    dest_keys = zip(cols["dialed"], *(cols[name] for name in DEST_COLUMNS), strict=True)
    rows = zip(
        dest_keys, cols["call_id"], cols["source"], cols["account"], start, answer, end,
        cols["trunk"], cols["origin"], cols["linkedid"], spared, alone, strict=True,
    )  # fmt: skip
    get = dests.get
    one = intern
    for (values, call_id, source, account, at, answered, ended, trunk, origin, linkedid, bits,
         lone) in rows:  # fmt: skip
        dest = get(values)
        if dest is None:  # the columns in Destination's field order, flags filled (_READ)
            dest = dests[values] = _destination(values)
        # one object per source (and per name of a destination, `_destination`): the rules'
        # and the baseline's tables are keyed by them, and a lookup that meets the very object
        # it holds compares no characters (polars makes a new str per row; the dense replay
        # spent ~4.5% more CPU on those comparisons, on keys far apart in memory)
        source = one(source)
        allow = dest.allowlisted
        if not allow and source_allow:
            key = (source, dest.e164)
            hit = allowed.get(key)
            if hit is None:
                hit = allowed[key] = classifier.source_allowlisted(
                    source_allow.get(source, []), dest.e164
                )
            allow = hit
        # Call's fields in order (tests/test_calls_from_frame.py): positional arguments cost
        # about half of keywords, and this runs once per call of the batch
        yield Call(call_id, source, account, dest, at, answered, ended, trunk, origin, allow,
                   False, None, linkedid, False, -1, bits, lone)  # fmt: skip


def _destination(values: tuple[Any, ...]) -> Destination:
    """A Destination of these column values, its names (class, region...) interned."""
    dialed, dest_class, e164, code, region, region_name, *flags = values
    one = intern
    return Destination(
        dialed,
        one(dest_class),
        e164,
        code and one(code),
        region and one(region),
        region_name and one(region_name),
        *flags,
    )


_TIMES = ("start", "answer", "end")
_PLAIN = tuple(name for name in CALL_COLUMNS if name not in _TIMES)
# What _calls reads: nulls become what Call and Destination hold for them ("" and False).
_READ = [
    pl.col(name).fill_null("") if name in ("account", "trunk", "linkedid")
    else pl.col(name).fill_null(False).cast(pl.Boolean) if name in ("high_risk", "allowlisted")
    else pl.col(name)
    for name in CALL_COLUMNS
]  # fmt: skip


def _datetimes(column: pl.Series) -> list[datetime | None]:
    """`column.to_list()`. Whole seconds in UTC (CDR times) are made with
    `datetime.fromtimestamp` from epoch seconds instead: the same values with the same
    tzinfo object, at about half the cost of polars' conversion."""
    dtype = column.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_zone != "UTC":
        return column.to_list()
    sample = column.drop_nulls().head(1).to_list()
    micros = column.dt.epoch("us")
    if not sample or not (micros % 1_000_000 == 0).all():
        return column.to_list()
    zone = sample[0].tzinfo
    seconds = (micros // 1_000_000).to_list()
    made = datetime.fromtimestamp
    if column.null_count() == 0:
        return list(map(made, seconds, repeat(zone)))
    return [None if s is None else made(s, zone) for s in seconds]


def replay(engine: Engine, calls: Iterable[Call]) -> list[Incident]:
    """Feed calls (sorted by start) as started/answered/ended events; return the incidents.

    The events are the ones `events_for` gives, in the same order (time, then `Kind`, then
    as pushed), handed to the engine's hooks directly: answers and ends wait in a heap of
    plain tuples, starts go at once (calls come sorted by start).

    Python's cyclic garbage collector is off meanwhile: the replay makes no reference cycles
    (its garbage goes by reference counting; tests/test_replay_batch.py checks it), yet each
    automatic collection walks every object the engine holds: a third of the replay's time
    on a dense 1M-row file. Rules that are idle until a security event (`Rule.start_idle`)
    are not asked meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    engine.leave_out_idle(True)  # rules idle until a security event: a replay hands none
    try:
        return _replay(engine, calls)
    finally:
        engine.leave_out_idle(False)
        if was_enabled:
            gc.enable()


def _replay(engine: Engine, calls: Iterable[Call]) -> list[Incident]:
    pending: list[tuple[datetime, int, int, Call]] = []  # answers and ends to come
    started, answered, ended = engine.started, engine.answered, engine.ended
    pop = heapq.heappop
    push = heapq.heappush
    seq = 0
    for call in calls:
        # Events ordered before this call's start can go now: no later call can precede them
        # (an end at the same instant goes first: Kind.ENDED < Kind.STARTED < the others).
        start = call.start
        while pending:
            head = pending[0]
            at = head[0]
            if at > start or (at == start and head[1] != _ENDED):
                break
            pop(pending)
            if head[1] == _ANSWERED:
                answered(head[3], at)
            else:
                ended(head[3], at)
        started(call, start)  # nothing pending is due before it
        last = start
        answer = call.answer
        if answer is not None:
            if answer < start:
                answer = start
            seq += 1
            push(pending, (answer, _ANSWERED, seq, call))
            last = answer
        end = call.end
        seq += 1
        if end is not None and end > last:
            push(pending, (end, _ENDED, seq, call))
        else:  # the call ends the instant it starts or is answered (events_for)
            push(pending, (last, _ENDED_SAME_INSTANT, seq, call))
    while pending:
        at, kind, _, call = pop(pending)
        if kind == _ANSWERED:
            answered(call, at)
        else:
            ended(call, at)
    if engine.clock is not None:
        engine.advance(engine.clock)
    return engine.tracker.all_incidents()


_ENDED, _ANSWERED = int(Kind.ENDED), int(Kind.ANSWERED)
_ENDED_SAME_INSTANT = int(Kind.ENDED_SAME_INSTANT)


def run_frame(
    engine: Engine,
    frame: pl.DataFrame | Rows,
    classifier: Classifier,
    source_allow: Mapping[str, list[str]] | None = None,
) -> list[Incident]:
    """Replay a frame's calls (classified CDR rows, or `Rows` of them): every call the engine
    is handed from here on (rules.sparse leaves some out of some rules' on_start)."""
    return replay(engine, calls_from_frame(frame, classifier, source_allow or {}, engine))


__all__ = ["CALL_COLUMNS", "FrameRows", "Rows", "calls_from_frame", "replay", "run_frame"]
