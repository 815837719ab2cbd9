"""Call objects from a classified frame (rules.batch.calls_from_frame) are what a row-by-row
reading gives: every field of every call, with the same types (repr), shared Destinations and
names, datetimes with polars' own tzinfo object; Destinations pickled by the frozen version
load."""

from __future__ import annotations

import pickle
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import settings
from tollwatch.rules.batch import CALL_COLUMNS, _datetimes, calls_from_frame
from tollwatch.rules.destinations import Classifier, Destination
from tollwatch.rules.model import Call, dest_number_key

S = settings("JP", "Asia/Tokyo")
CLASSIFIER = Classifier(S)
NUMBERS = ["0102327654300", "0102327654301", "01044201234567", "0312345678", "110", "*97"]
BASE = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)

row_strategy = st.tuples(
    st.sampled_from(["201", "202", ""]),  # source
    st.sampled_from(NUMBERS),  # dialed
    st.integers(-10**9, 10**8),  # seconds from BASE (before 1970 too)
    st.sampled_from([0, 0, 0, 250_000]),  # microseconds
    st.one_of(st.none(), st.integers(0, 60)),  # ring, None: not answered
    st.one_of(st.none(), st.integers(0, 900)),  # talk, None: no end
    st.sampled_from([None, "", "acme"]),  # account, trunk and linkedid
)


def frame_of(rows: list[tuple[Any, ...]], zone: str = "UTC") -> pl.DataFrame:
    start = [BASE + timedelta(seconds=s, microseconds=us) for _, _, s, us, _, _, _ in rows]
    answer = [
        None if r[4] is None else t + timedelta(seconds=r[4])
        for r, t in zip(rows, start, strict=True)
    ]
    end = [
        None if r[5] is None else (a or t) + timedelta(seconds=r[5])
        for r, t, a in zip(rows, start, answer, strict=True)
    ]
    text = [r[6] for r in rows]
    plain = pl.DataFrame({
        "call_id": [f"c{i}" for i in range(len(rows))], "origin": ["test"] * len(rows),
        "source": [r[0] for r in rows], "account": text, "dialed": [r[1] for r in rows],
        "trunk": text, "linkedid": text,
        "start": pl.Series(start, dtype=pl.Datetime("us", "UTC")),
        "answer": pl.Series(answer, dtype=pl.Datetime("us", "UTC")),
        "end": pl.Series(end, dtype=pl.Datetime("us", "UTC")),
    })  # fmt: skip
    times = [pl.col(name).dt.convert_time_zone(zone) for name in ("start", "answer", "end")]
    return CLASSIFIER.classify_df(plain.with_columns(times), "dialed").select(CALL_COLUMNS)


def reference(frame: pl.DataFrame, source_allow: dict[str, list[str]]) -> list[Call]:
    """The calls read row by row, every field named."""
    made = []
    for row in frame.sort("start", maintain_order=True).iter_rows(named=True):
        dest = Destination.from_row(row["dialed"], row)
        allow = dest.allowlisted or CLASSIFIER.source_allowlisted(
            source_allow.get(row["source"], []), dest.e164)
        made.append(Call(
            call_id=row["call_id"], source=row["source"], account=row["account"] or "",
            dest=dest, start=row["start"], answer=row["answer"], end=row["end"],
            trunk=row["trunk"] or "", origin=row["origin"], allowlisted=allow,
            linkedid=row["linkedid"] or "",
        ))  # fmt: skip
    return made


def shown(calls: list[Call]) -> list[list[tuple[str, str]]]:
    """Every field of every call as its repr (types and tzinfo show, not only equality)."""
    names = [f.name for f in fields(Call)]
    return [[(name, repr(getattr(c, name))) for name in names] for c in calls]


@pytest.mark.fuzz
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(row_strategy, min_size=1, max_size=40),
    st.sampled_from(["UTC", "Asia/Tokyo"]),
    st.booleans(),
)
def test_calls_are_the_rows_read_one_by_one(
    rows: list[tuple[Any, ...]], zone: str, allow_sources: bool
) -> None:
    frame = frame_of(rows, zone)
    source_allow = {"201": ["232"]} if allow_sources else {}
    got = list(calls_from_frame(frame, CLASSIFIER, source_allow))
    assert shown(got) == shown(reference(frame, source_allow))
    by_number: dict[str, Destination] = {}
    names: dict[str, str] = {}
    for call in got:  # one Destination per number and classification
        d = call.dest
        assert by_number.setdefault(d.dialed, d) is d
        # one object per source and per name of a destination (interned: the rules' tables
        # are keyed by them, and a lookup that finds the same object compares no characters)
        for text in (call.source, d.dest_class, d.calling_code, d.region, d.region_name):
            if text is not None:
                assert names.setdefault(text, text) is text


def test_whole_utc_seconds_are_made_as_polars_makes_them() -> None:
    times = [BASE + timedelta(seconds=s) for s in (0, 1, -2 * 10**9, 4 * 10**9)]
    column = pl.Series("t", [*times, None], dtype=pl.Datetime("us", "UTC"))
    made = _datetimes(column)
    expected = column.to_list()
    assert made == expected
    assert [repr(t) for t in made] == [repr(t) for t in expected]
    assert all(a.tzinfo is b.tzinfo for a, b in zip(made[:-1], expected[:-1], strict=True))
    for other in (  # read by polars itself: fractions of a second, another zone, no zone
        pl.Series("t", [BASE + timedelta(microseconds=1)], dtype=pl.Datetime("us", "UTC")),
        column.dt.convert_time_zone("Asia/Tokyo"),
        column.dt.replace_time_zone(None),
        pl.Series("t", [None], dtype=pl.Datetime("us", "UTC")),
    ):
        assert [repr(t) for t in _datetimes(other)] == [repr(t) for t in other.to_list()]


# Destination("0102327654300", ...) with its number_key cached, pickled by the version where
# Destination was a frozen dataclass (a daemon's snapshot holds Destinations in its calls).
FROZEN_PICKLE = (
    b"\x80\x05\x95\x1f\x01\x00\x00\x00\x00\x00\x00\x8c\x1ctollwatch.rules.destinations\x94"
    b"\x8c\x0bDestination\x94\x93\x94)\x81\x94}\x94(\x8c\x06dialed\x94\x8c\r0102327654300\x94"
    b"\x8c\ndest_class\x94\x8c\rinternational\x94\x8c\x04e164\x94\x8c\x0b+2327654300\x94\x8c"
    b"\x0ccalling_code\x94\x8c\x03232\x94\x8c\x06region\x94\x8c\x02SL\x94\x8c\x0bregion_name"
    b"\x94\x8c\x0cSierra Leone\x94\x8c\thigh_risk\x94\x88\x8c\x0brisk_prefix\x94h\x10\x8c\x0b"
    b"allowlisted\x94\x89\x8c\x04rate\x94G?\xd0\x00\x00\x00\x00\x00\x00\x8c\nnumber_key\x94"
    b"\x8c\x10dest:+2327654300\x94ub."
)


def test_destinations_hash_by_fields_and_old_snapshots_load() -> None:
    made = Destination("0102327654300", "international", "+2327654300", "232", "SL",
                       "Sierra Leone", True, "Sierra Leone", False, 0.25)  # fmt: skip
    old = pickle.loads(FROZEN_PICKLE)
    assert old == made and hash(old) == hash(made) and len({old, made}) == 1
    assert old.__dict__["number_key"] == "dest:+2327654300"  # its cache came along
    assert dest_number_key(Call("c1", "201", "acme", old, BASE)) == "dest:+2327654300"
    again = pickle.loads(pickle.dumps(made))
    assert again == made and again.block_key == "dest:+2327654xxx"
    assert made != Destination(*[*vars(made).values()][:9], 0.5)
    with pytest.raises(TypeError):
        Destination("1")  # type: ignore[call-arg]
