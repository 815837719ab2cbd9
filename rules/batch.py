"""Drive the incremental engine from a batch of calls, in event-time order."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

import polars as pl

from tollwatch.rules.destinations import Classifier, Destination
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
    """Build Call objects from classified CDR rows (sorted by start)."""
    for row in frame.sort("start", maintain_order=True).iter_rows(named=True):
        dest = Destination.from_row(row["dialed"], row)
        allow = dest.allowlisted or classifier.source_allowlisted(
            source_allow.get(row["source"], []), dest.e164
        )
        yield Call(
            call_id=row["call_id"],
            source=row["source"],
            account=row["account"] or "",
            dest=dest,
            start=row["start"],
            answer=row["answer"],
            end=row["end"],
            trunk=row["trunk"] or "",
            origin=row["origin"],
            allowlisted=allow,
            linkedid=row["linkedid"] or "",
        )


def replay(engine: Engine, calls: Iterable[Call]) -> list[Incident]:
    """Feed calls (sorted by start) as started/answered/ended events; return the incidents."""
    pending: list[tuple[datetime, int, int, CallEvent]] = []
    seq = 0
    for call in calls:
        # Events ordered before this call's start can go now: no later call can precede them.
        horizon = (call.start, int(Kind.STARTED))
        while pending and (pending[0][0], pending[0][1]) <= horizon:
            engine.handle(heapq.heappop(pending)[3])
        for ev in events_for(call):
            seq += 1
            heapq.heappush(pending, (ev.at, int(ev.kind), seq, ev))
    while pending:
        engine.handle(heapq.heappop(pending)[3])
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
