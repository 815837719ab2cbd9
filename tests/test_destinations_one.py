"""The live classifier's Python twin gives what the polars plan gives, for one number.

`Classifier.classify` (a new number on the live path) runs `destinations_one.row_one`; batch
runs `Classifier.expressions` over frames. Both must agree on every dialed string, under every
kind of dial plan: no access code, access codes, +1 (NANP 10 digits), Italy (0 kept), the
high-risk list and allowlist overriding each other, rates.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import settings
from tollwatch.rules.destinations import Classifier, Destination
from tollwatch.rules.destinations_one import row_one


def make(country: str, access: list[str] | None = None, **extra: Any) -> Classifier:
    over: dict[str, Any] = dict(extra)
    if access is not None:
        over["dialplan"] = {"access_codes": access}
    return Classifier(settings(country, **over))


PLANS = {
    "JP": make("JP"),
    "JP-0": make(
        "JP", ["0"], high_risk={"add": ["370-5200"], "remove": ["34"]},
        allowlist={"prefixes": ["232", "44"]},
    ),
    "US-9": make("US", ["9"]),
    "DE": make("DE", high_risk={"add": ["44-70"]}, allowlist={"prefixes": ["44"]}),
    "IT": make("IT"),
    "ES-0": make("ES", ["0"], rates={"per_minute": {"232": 1.5, "44": 0.02, "34": 0.01}}),
    "GB": make("GB"),  # dial prefixes 141 and 1470
}
_PIECES = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "00", "010", "011", "+", "*", "#",
           " ", "-", "(", ")", ".", "\t", "s", "232", "53", "1876", "4470", "3705200", "81",
           "110", "112", "911", "9", "\u0663", "\u00a0", "\x1c", "184", "0033", "001010",
           "141", "0061010"]  # fmt: skip
_DIALED = st.lists(st.sampled_from(_PIECES), max_size=12).map("".join)


@pytest.mark.fuzz
@pytest.mark.parametrize("plan", sorted(PLANS))
@hsettings(max_examples=150, deadline=None)
@given(dialed=_DIALED)
@example(dialed="0102327654321")
@example(dialed="01044201234567")
@example(dialed="9 1 876 555 1234")
@example(dialed="2125551234")
@example(dialed="*97")
@example(dialed="104")
@example(dialed="110")
@example(dialed="")
@example(dialed="9123456")  # an access code and 6 digits: too short for a local number
@example(dialed="91234567")
@example(dialed="0123456")
@example(dialed="01234567")
@example(dialed="00442079460000")
@example(dialed="\u0663\u0663")  # Arabic-Indic digits: not ASCII, the polars plan decides
def test_one_number_as_the_plan(plan: str, dialed: str) -> None:
    c = PLANS[plan]
    plan_row = c._apply_one(dialed)
    one = row_one(c, dialed)
    if not dialed.isascii():
        assert one is None
        return
    assert one is not None
    assert one == {k: plan_row[k] for k in one}
    assert Destination.from_row(dialed, one) == Destination.from_row(dialed, plan_row)
    assert c.classify(dialed) == Destination.from_row(dialed, plan_row)


def test_fixed_cases_take_the_python_path() -> None:
    assert row_one(PLANS["JP"], "0102327654321") == {
        "dest_class": "international", "e164": "+2327654321", "calling_code": "232",
        "region": "SL", "region_name": "Sierra Leone", "high_risk": True, "risk_prefix": "232",
        "allowlisted": False, "rate": None,
    }  # fmt: skip
    one = row_one(PLANS["ES-0"], "0002327654321")
    assert one is not None and one["rate"] == 1.5 and one["e164"] == "+2327654321"
    local = row_one(PLANS["ES-0"], "0912345678")
    assert local is not None and local["dest_class"] == "domestic" and local["rate"] == 0.01
