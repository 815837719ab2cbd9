"""Where calls go: every dial-plan case the brief names, checked against exact results."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import settings
from tollwatch.rules.destinations import Classifier


def make(country: str, access: list[str] | None = None, **extra: object) -> Classifier:
    over: dict[str, object] = dict(extra)
    if access is not None:
        over["dialplan"] = {"access_codes": access}
    return Classifier(settings(country, **over))  # type: ignore[arg-type]


JP = [
    # dialed, class, e164, region, high-risk label
    ("0102327654321", "international", "+2327654321", "SL", "232"),
    ("0105358001122", "international", "+5358001122", "CU", "53"),
    ("01044201234567", "international", "+44201234567", "GB", None),
    ("0112465551234", "domestic", "+81112465551234", "JP", None),  # Sapporo 011, not NANP 011
    ("0312345678", "domestic", "+81312345678", "JP", None),
    ("0120123456", "domestic", "+81120123456", "JP", None),  # free dial
    ("0800123456", "domestic", "+81800123456", "JP", None),
    ("110", "emergency", None, None, None),
    ("118", "emergency", None, None, None),
    ("119", "emergency", None, None, None),
    ("104", "service", None, None, None),
    ("201", "internal", None, None, None),
    ("*97", "internal", None, None, None),
    ("+77011234567", "international", "+77011234567", "KZ", "7"),
    ("+74951234567", "international", "+74951234567", "RU", "7"),
    ("010 1 876 555 1234", "international", "+18765551234", "JM", "1-876"),
    ("s", "unknown", None, None, None),
    ("", "unknown", None, None, None),
    # caller-ID privacy (184 withhold, 186 send) and carrier codes before 010 come off: the
    # network routes the number after them (read as domestic, they passed a block abroad)
    ("1840102327654321", "international", "+2327654321", "SL", "232"),
    ("1860105358001122", "international", "+5358001122", "CU", "53"),
    ("0010102327654321", "international", "+2327654321", "SL", "232"),  # KDDI
    ("00330102327654321", "international", "+2327654321", "SL", "232"),  # NTT Com
    ("00410102327654321", "international", "+2327654321", "SL", "232"),  # SoftBank
    ("18400610102327654321", "international", "+2327654321", "SL", "232"),
    ("184-010-232-765-4321", "international", "+2327654321", "SL", "232"),
    ("1840312345678", "domestic", "+81312345678", "JP", None),
    ("0184123456", "domestic", "+81184123456", "JP", None),  # Akita 0184, not 184
    ("1840184123456", "domestic", "+81184123456", "JP", None),
    ("184110", "emergency", None, None, None),
    ("0010232765430", "domestic", "+81010232765430", "JP", None),  # 001 only before 010
]


@pytest.mark.parametrize("dialed,cls,e164,region,risk", JP)
def test_japan_without_access_code(
    dialed: str, cls: str, e164: str | None, region: str | None, risk: str | None
) -> None:
    d = make("JP").classify(dialed)
    assert (d.dest_class, d.e164, d.region, d.risk_prefix) == (cls, e164, region, risk)
    assert d.high_risk is (risk is not None)


JP_ACCESS = [
    ("00102327654321", "international", "+2327654321"),  # 0 + 010 + intl
    ("0102327654321", "international", "+2327654321"),  # 010 without the access code
    ("00312345678", "domestic", "+81312345678"),
    ("0312345678", "domestic", "+81312345678"),
    ("00120123456", "domestic", "+81120123456"),
    ("00112465551234", "domestic", "+81112465551234"),  # 0 + Sapporo
    ("0110", "emergency", None),  # access code + 110
    ("01840102327654321", "international", "+2327654321"),  # 0 + 184 + 010
    ("000330102327654321", "international", "+2327654321"),  # 0 + 0033 + 010
    ("0001010102327654321", "international", "+102327654321"),  # 0 + 001010 + intl
    ("00184123456", "domestic", "+81184123456"),  # 0 + Akita
]


GB = [
    ("14100232765432", "international", "+232765432"),  # 141: number withheld
    ("14700033123456789", "international", "+33123456789"),  # 1470: number sent
    ("14102079460000", "domestic", "+442079460000"),
    ("1410", "internal", None),
]


@pytest.mark.parametrize("dialed,cls,e164", GB)
def test_uk_privacy_codes(dialed: str, cls: str, e164: str | None) -> None:
    d = make("GB").classify(dialed)
    assert (d.dest_class, d.e164) == (cls, e164)


@pytest.mark.parametrize("dialed,cls,e164", JP_ACCESS)
def test_japan_with_access_code_zero(dialed: str, cls: str, e164: str | None) -> None:
    d = make("JP", ["0"]).classify(dialed)
    assert (d.dest_class, d.e164) == (cls, e164)


def test_emergency_after_the_access_code_and_a_privacy_code() -> None:
    d = make("JP", ["0"]).classify("0184110")
    assert (d.dest_class, d.e164, d.region) == ("emergency", None, None)


NANP = [
    ("9011442079460000", "international", "+442079460000", "GB", None),
    ("918765551234", "international", "+18765551234", "JM", "1-876"),
    ("912465551234", "international", "+12465551234", "BB", "1-246"),
    ("914415551234", "international", "+14415551234", "BM", "1-441"),
    ("917675551234", "international", "+17675551234", "DM", "1-767"),
    ("912645551234", "international", "+12645551234", "AI", "1-264"),
    ("98765551234", "international", "+18765551234", "JM", "1-876"),  # 10-digit, no 1
    ("912125551234", "domestic", "+12125551234", "US", None),
    ("914165551234", "domestic", "+14165551234", "CA", None),  # Toronto: domestic for US
    ("918005551234", "domestic", "+18005551234", "US", None),
    ("95551234", "domestic", None, "US", None),  # 7-digit local
    ("911", "emergency", None, None, None),
    ("9911", "emergency", None, None, None),
    ("411", "service", None, None, None),
    ("011 232 7654321", "international", "+2327654321", "SL", "232"),
    ("+18765551234", "international", "+18765551234", "JM", "1-876"),
]


@pytest.mark.parametrize("dialed,cls,e164,region,risk", NANP)
def test_north_america_access_code_nine(
    dialed: str, cls: str, e164: str | None, region: str | None, risk: str | None
) -> None:
    d = make("US", ["9"]).classify(dialed)
    assert (d.dest_class, d.e164, d.region, d.risk_prefix) == (cls, e164, region, risk)


def test_double_zero_countries() -> None:
    c = make("DE")
    d = c.classify("00442079460000")
    assert (d.dest_class, d.e164, d.region) == ("international", "+442079460000", "GB")
    assert c.classify("030123456").dest_class == "domestic"
    assert c.classify("112").dest_class == "emergency"
    it = make("IT").classify("0612345678")  # Italy keeps the 0 in E.164
    assert (it.dest_class, it.e164) == ("domestic", "+390612345678")


def test_allowlist_beats_list_and_finer_prefixes_win() -> None:
    c = make("JP", high_risk={"add": ["370-5200"], "remove": ["34"]},
             allowlist={"prefixes": ["232"]})
    assert c.classify("0102327654321").high_risk is False
    assert c.classify("0102327654321").allowlisted is True
    assert c.classify("0103705200123").risk_prefix == "370-5200"
    assert c.classify("0103706000123").risk_prefix == "370"
    assert c.classify("01034911234567").high_risk is False  # Spain removed


def test_finer_high_risk_entry_beats_broader_allowlist() -> None:
    c = make("JP", high_risk={"add": ["44-70"]}, allowlist={"prefixes": ["44"]})
    assert c.classify("0104470123456").high_risk is True
    assert c.classify("01044201234567").high_risk is False


def test_batch_frame_matches_single_numbers() -> None:
    c = make("US", ["9"])
    numbers = [n for n, *_ in NANP]
    frame = c.classify_df(pl.DataFrame({"dst": numbers + numbers[:3]}))
    assert frame.height == len(numbers) + 3
    for row in frame.iter_rows(named=True):
        one = c.classify(row["dst"])
        assert (row["dest_class"], row["e164"], row["region"]) == (
            one.dest_class, one.e164, one.region)


@pytest.mark.fuzz
@hsettings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+ -*#", max_size=18))
def test_classifier_never_fails_and_agrees_with_phonenumbers(dialed: str) -> None:
    import phonenumbers

    d = JP_CLASSIFIER.classify(dialed)
    assert d.dest_class in ("internal", "emergency", "service", "domestic", "international",
                            "unknown")
    if d.dest_class == "international" and d.e164:
        num = phonenumbers.parse(d.e164)
        assert str(num.country_code) == d.calling_code


JP_CLASSIFIER = make("JP", ["0"])


def test_batch_classifier_remembers_and_matches() -> None:
    c = make("US", ["9"])
    numbers = [n for n, *_ in NANP]
    batches = c.batches(limit=5)
    first = batches(pl.DataFrame({"dst": numbers[:8]}))
    second = batches(pl.DataFrame({"dst": numbers}))  # 8 known, 8 new: the limit resets it
    for frame in (first, second):
        for row in frame.iter_rows(named=True):
            assert row["e164"] == c.classify(row["dst"]).e164
    assert second.height == len(numbers)


@pytest.mark.parametrize("dialed,e164,cls", [
    ("0102327654321#", "+2327654321", "international"),
    ("+2327654321#", "+2327654321", "international"),
    ("0312345678#", "+81312345678", "domestic"),
    ("110#", None, "emergency"),
    ("*97#", None, "internal"), ("#31#", None, "internal"), ("0102327654321##", None, "internal"),
    ("0102327654321;user=phone", "+2327654321", "international"),
    ("+2327654321;phone-context=+81", "+2327654321", "international"),
    ("*97;x", None, "unknown"),
])  # fmt: skip
def test_a_number_ended_with_the_send_key_is_the_number(
    dialed: str, e164: str | None, cls: str
) -> None:
    """A trunk may strip the '#' and place the call: read as a feature code ("internal"), an
    attack dialed that way went unseen by every rule (and past the dialplan's blocks)."""
    c = make("JP")
    one = c.classify(dialed)
    frame = c.classify_df(pl.DataFrame({"dst": [dialed] * 40}))  # the batch path too
    assert (one.e164, one.dest_class) == (e164, cls)
    assert frame["dest_class"].unique().to_list() == [cls]


def test_a_night_attack_dialed_with_184_is_critical(tmp_path: Path) -> None:
    """Six calls to Sierra Leone at 2 a.m. on a Saturday, each dialed after 184 (caller id
    withheld): read as domestic numbers, they raised nothing."""
    from tollwatch.scan import run_scan

    def row(n: int) -> str:
        dst, t = f"184010232765430{n}", f"2026-11-28 02:{n * 5:02d}:00"
        end = f"2026-11-28 02:{n * 5 + 4:02d}:00"
        fields = ["acme", "209", dst, "from-internal", '"x" <209>', f"PJSIP/209-{n:08x}",
                  "PJSIP/carrier-0000ffff", "Dial", f"PJSIP/{dst}@carrier,60", t, t,
                  end, "240", "240", "ANSWERED",
                  "DOCUMENTATION", f"1795527011.{n}", ""]  # fmt: skip
        return ",".join(f'"{f}"' for f in fields)

    path = tmp_path / "Master.csv"
    path.write_text("\n".join(row(n) for n in range(6)) + "\n", encoding="utf-8")
    [inc] = run_scan([path], settings("JP", "Asia/Tokyo")).incidents
    assert (inc.source, inc.severity.name) == ("209", "CRITICAL")
