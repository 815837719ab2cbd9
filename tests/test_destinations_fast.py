"""The vectorized path for plain numbers gives exactly what the polars plan gives.

`Classifier._apply` classifies plain numbers ([+]ASCII digits) with numpy
(rules/destinations_fast.py) and everything else with the polars plan (`_apply_plan`, the plan
`expressions` builds). The two are compared frame against frame, every column, dtype and
null, under the dial plans of tests/test_destinations_one.py: no access code, access codes,
+1 (NANP 10 digits), Italy (0 kept), the high-risk list and allowlist overriding each other,
rates.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import tollwatch.rules.destinations_fast as fast
from tests.test_destinations_one import _PIECES, PLANS, make
from tollwatch.rules.destinations import _FAST_MIN, Classifier

_DIGIT_PIECES = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "00", "010", "011", "9",
                 "0", "232", "53", "1876", "4470", "3705200", "81", "110", "112", "911", "44",
                 "39", "34", "7", "1", "49", "184", "186", "0033", "001010", "141",
                 "0041010"]  # fmt: skip
_PLAIN = st.tuples(st.booleans(), st.lists(st.sampled_from(_DIGIT_PIECES), min_size=1,
                                           max_size=10)).map(lambda t: "+" * t[0] + "".join(t[1]))
_ANY = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)
_DIALED = st.one_of(_PLAIN, _PLAIN, _ANY, st.none())


def check(c: Classifier, numbers: list[str | None]) -> pl.DataFrame:
    frame = pl.DataFrame({"dst": numbers}, schema={"dst": pl.String})
    got = c._apply(frame, "dst")
    want = c._apply_plan(frame, "dst")
    assert got.schema == want.schema
    for name in want.columns:
        same = got.get_column(name).eq_missing(want.get_column(name))
        bad = frame.filter(~same).get_column("dst").head(5).to_list()
        assert same.all(), f"{name}: {bad}"
    assert got.equals(want)
    return got


def plain_count(numbers: list[str | None]) -> int:
    return sum(1 for n in numbers if n and n.lstrip("+")[:1] and n[n.startswith("+"):].isascii()
               and n[n.startswith("+"):].isdigit())


@pytest.mark.fuzz
@pytest.mark.parametrize("plan", sorted(PLANS))
@hsettings(max_examples=60, deadline=None)
@given(numbers=st.lists(_DIALED, min_size=_FAST_MIN, max_size=120))
def test_frame_as_the_plan(plan: str, numbers: list[str | None]) -> None:
    check(PLANS[plan], numbers)


def _random_numbers(seed: int, n: int) -> list[str | None]:
    """Dialed strings as PBXes send them: national, international with each prefix, with
    and without an access code, short codes, "+" numbers, some noise."""
    rng = np.random.default_rng(seed)
    heads = ["", "0", "9", "00", "010", "011", "0010", "9011", "001", "+", "+1", "1", "8",
             "0232", "+232", "9 1", "0-", "*", "", "184010", "0184", "0033010", "1840061010",
             "141", "14100"]
    out: list[str | None] = []
    for _ in range(n):
        head = heads[int(rng.integers(len(heads)))]
        body = str(int(rng.integers(0, 10 ** int(rng.integers(1, 15)))))
        out.append(head + body)
    out[::997] = [None] * len(out[::997])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("plan", sorted(PLANS))
def test_many_numbers_as_the_plan(plan: str) -> None:
    numbers = _random_numbers(7, 20_000)
    got = check(PLANS[plan], numbers)
    assert got.height == len(numbers)
    plain, _ = _taken(PLANS[plan], numbers)
    assert plain == plain_count(numbers) > 15_000  # the numpy path took the plain numbers


def _taken(c: Classifier, numbers: list[str | None]) -> tuple[int, int]:
    plan = fast.FastPlan(c)
    got = plan.columns(pl.Series("dst", numbers, dtype=pl.String))
    assert got is not None
    return int(got[0].sum()), len(numbers)


def test_an_emergency_number_after_codes_has_no_number() -> None:
    """0 + 184 + 110 is longer than an extension: the E.164 reading must not apply to it."""
    numbers = ["0184110", "00184123456", "01840102327654321", "0110"] * (_FAST_MIN // 4 + 1)
    got = check(PLANS["JP-0"], numbers)  # the numpy path took them, as the plan reads them
    assert _taken(PLANS["JP-0"], numbers)[0] == len(numbers)
    assert got.row(0, named=True) | {"dst": None} == {
        **dict.fromkeys(got.columns), "dest_class": "emergency", "high_risk": False,
        "allowlisted": False}


def test_sliced_and_chunked_frames() -> None:
    c = PLANS["JP-0"]
    numbers = _random_numbers(3, 3_000)
    frame = pl.DataFrame({"dst": numbers}, schema={"dst": pl.String})
    chunked = pl.concat([frame.slice(0, 1000), frame.slice(1000)], rechunk=False)
    for f in (frame.slice(17, 2000), chunked):
        assert c._apply(f, "dst").equals(c._apply_plan(f, "dst"))


def test_without_string_views(monkeypatch: pytest.MonkeyPatch) -> None:
    """The large_string reading (pyarrow or polars without string views) gives the same."""
    monkeypatch.setattr(fast, "_is_view", lambda _arr: False)
    for plan in ("JP", "US-9"):
        check(PLANS[plan], _random_numbers(5, 4_000))


def test_other_country_and_extra_emergency() -> None:
    c = make("GB", emergency={"extra": ["999", "1234567"]},
             dialplan={"access_codes": ["9", "81"], "max_extension_length": 3})
    check(c, [*_random_numbers(11, 8_000), "91234567", "999", "9999", "+1234567", "811234567"])


@pytest.mark.parametrize("distinct", [5_000, 100])
def test_classify_df_row_by_row_or_distinct(distinct: int) -> None:
    """classify_df classifies mostly distinct numbers row by row, repeated ones once each and
    joins them back: both give the frame the plan gives on the distinct numbers, joined."""
    c = PLANS["ES-0"]
    pool = _random_numbers(13, distinct)
    rng = np.random.default_rng(2)
    frame = pl.DataFrame({"dst": [pool[i] for i in rng.integers(0, distinct, 6_000)],
                          "n": range(6_000)}, schema={"dst": pl.String, "n": pl.Int64})
    want = frame.join(c._apply_plan(frame.select("dst").unique(), "dst"), on="dst",
                      how="left", nulls_equal=True, maintain_order="left")
    got = c.classify_df(frame, "dst")
    assert got.equals(want)
    clash = frame.with_columns(region=pl.lit("x"))  # a column the plan adds: the join, as before
    assert c.classify_df(clash, "dst").columns == [*clash.columns, *[
        n + "_right" if n == "region" else n for n in c._apply_plan(frame.head(1), "dst")
        .columns[2:]]]
