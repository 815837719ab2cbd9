"""Drive the incremental engine from a batch of calls, in event-time order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

import polars as pl

from tollwatch.rules.destinations import DEST_COLUMNS, Classifier, Destination
from tollwatch.rules.engine import Engine, events_for
from tollwatch.rules.incidents import Incident
from tollwatch.rules.model import Call, CallEvent, Kind

# Columns rules need from the CDR frame (cdr_ingest) after classification (Classifier).
CALL_COLUMNS = (
    "call_id", "origin", "source", "account", "dialed", "trunk", "start", "answer", "end",
    "linkedid",
    "dest_class", "e164", "calling_code", "region", "region_name", "high_risk", "risk_prefix",
    "allowlisted", "rate",
)


def calls_from_frame(
    frame: pl.DataFrame, classifier: Classifier, source_allow: Mapping[str, list[str]]
) -> Iterator[Call]:
    """Build Call objects from classified CDR rows (sorted by start).

    Columns are read as Python lists once (not row dicts), and calls to the same number with
    the same classification share one Destination."""
    frame = frame.sort("start", maintain_order=True)
    dests: dict[tuple[object, ...], Destination] = {}
    allowed: dict[tuple[str, str | None], bool] = {}
    for part in frame.iter_slices(_SLICE):
        if len(dests) > _SHARED:  # numbers mostly distinct: do not keep them all
            dests.clear()
            allowed.clear()
        yield from _calls(part, classifier, source_allow, dests, allowed)


_SLICE = 50_000  # rows turned into Python lists at a time (memory stays flat)
_SHARED = 200_000  # distinct destinations remembered for sharing


def _calls(
    frame: pl.DataFrame,
    classifier: Classifier,
    source_allow: Mapping[str, list[str]],
    dests: dict[tuple[object, ...], Destination],
    allowed: dict[tuple[str, str | None], bool],
) -> Iterator[Call]:
    cols = {name: frame.get_column(name).to_list() for name in CALL_COLUMNS}
    dest_keys = zip(cols["dialed"], *(cols[name] for name in DEST_COLUMNS), strict=True)
    rows = zip(
        dest_keys, cols["call_id"], cols["source"], cols["account"], cols["start"],
        cols["answer"], cols["end"], cols["trunk"], cols["origin"], cols["linkedid"],
        strict=True,
    )  # fmt: skip
    get = dests.get
    for values, call_id, source, account, start, answer, end, trunk, origin, linkedid in rows:
        dest = get(values)
        if dest is None:
            dest = dests[values] = Destination.from_row(
                values[0], dict(zip(DEST_COLUMNS, values[1:], strict=True))
            )
        allow = dest.allowlisted
        if not allow and source_allow:
            key = (source, dest.e164)
            hit = allowed.get(key)
            if hit is None:
                hit = allowed[key] = classifier.source_allowlisted(
                    source_allow.get(source, []), dest.e164
                )
            allow = hit
        yield Call(
            call_id=call_id,
            source=source,
            account=account or "",
            dest=dest,
            start=start,
            answer=answer,
            end=end,
            trunk=trunk or "",
            origin=origin,
            allowlisted=allow,
            linkedid=linkedid or "",
        )


def replay(engine: Engine, calls: Iterable[Call]) -> list[Incident]:
    """Feed calls (sorted by start) as started/answered/ended events; return the incidents."""
    pending: list[tuple[datetime, int, int, CallEvent]] = []  # answers and ends to come
    handle = engine.handle
    pop = heapq.heappop
    push = heapq.heappush
    seq = 0
    started = int(Kind.STARTED)
    for call in calls:
        # Events ordered before this call's start can go now: no later call can precede them.
        start = call.start
        while pending and (pending[0][0] < start
                           or (pending[0][0] == start and pending[0][1] <= started)):
            handle(pop(pending)[3])
        events = events_for(call)
        handle(events[0])  # its start: nothing pending is due before it
        for ev in events[1:]:
            seq += 1
            push(pending, (ev.at, int(ev.kind), seq, ev))
    while pending:
        handle(pop(pending)[3])
    if engine.clock is not None:
        engine.advance(engine.clock)
    return engine.tracker.all_incidents()


def run_frame(
    engine: Engine,
    frame: pl.DataFrame,
    classifier: Classifier,
    source_allow: Mapping[str, list[str]] | None = None,
) -> list[Incident]:
    return replay(engine, calls_from_frame(frame, classifier, source_allow or {}))


__all__ = ["CALL_COLUMNS", "calls_from_frame", "replay", "run_frame"]
