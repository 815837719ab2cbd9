"""What `scan` does in threads while polars reads the rows: the number-validity check once its
sample is full (`rules.validity.EarlyCheck`: the same result as checking at the end, errors
raised in the scan, a sample that never fills checked at the end in the scan's own thread),
and the rule engine (`tollwatch.background.in_background`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import settings
from tests.test_cdr_ingest import cdr_line, write
from tollwatch.background import in_background
from tollwatch.rules import validity
from tollwatch.rules.validity import EarlyCheck, check_numbers
from tollwatch.scan import run_scan


def _numbers(n: int) -> list[str]:
    """Dialed as a JP site with no access code would, half without the international prefix:
    invalid enough to warn, so the likely fix is tried too."""
    return [f"0102327654{i:03d}" if i % 2 else f"0044207946{i:04d}" for i in range(n)]


def test_starts_once_full_and_gives_what_the_check_gives() -> None:
    s = settings("US")
    early = EarlyCheck(s, sample=30)
    seen: set[str] = set()
    for number in _numbers(29):
        seen.add(number)
        early.offer(seen)
    assert not early.started
    seen.update(_numbers(60))
    early.offer(seen)
    assert early.started
    early.offer(seen | {"0312345678"})  # once started, later numbers change nothing
    got = early.result(seen | {"0312345678"})
    want = check_numbers(s, sorted(seen), 30)
    assert got == want and got.checked == 30 and got.too_many and got.fix


def test_never_full_is_checked_at_the_end() -> None:
    s = settings("JP")
    early = EarlyCheck(s, sample=100)
    seen = set(_numbers(10))
    early.offer(seen)
    assert not early.started
    assert early.result(seen) == check_numbers(s, sorted(seen))


def test_an_error_in_the_thread_is_raised_in_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("libphonenumber broke")

    monkeypatch.setattr(validity, "check_numbers", broken)
    early = EarlyCheck(settings("JP"), sample=2)
    early.offer({"0312345678", "0102327654300"})
    with pytest.raises(RuntimeError, match="libphonenumber broke"):
        early.result(set())


@pytest.mark.parametrize("sample", [5, 1000])
def test_run_scan_checks_in_a_thread_only_when_the_sample_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample: int
) -> None:
    from tollwatch import scan

    lines = [cdr_line(dst=n, lastdata=f"PJSIP/{n}@carrier,60", uniqueid=f"1795527011.{i}",
                      start=f"2026-11-24 13:{i // 60:02d}:{i % 60:02d}",
                      answer="", end=f"2026-11-24 13:{i // 60:02d}:{i % 60:02d}",
                      duration="0", billsec="0", disposition="NO ANSWER")
             for i, n in enumerate(_numbers(40))]
    path = write(tmp_path / "Master.csv", lines)
    threads: list[str] = []
    real = validity.check_numbers

    def spy(*args: Any, **kw: Any) -> validity.Validity:
        threads.append(threading.current_thread().name)
        return real(*args, **kw)

    monkeypatch.setattr(validity, "check_numbers", spy)
    monkeypatch.setattr(scan, "SAMPLE", sample)
    monkeypatch.setattr(scan, "BATCH_ROWS", 8)
    result = run_scan([path], settings("JP"))
    assert threads == ["tollwatch-validity" if sample < 40 else "MainThread"]
    assert result.validity == real(settings("JP"), sorted(result.stats.numbers), sample)
    assert len(result.stats.numbers) == min(sample, 40)


def test_background_hands_over_the_result_or_the_error() -> None:
    gate = threading.Event()
    made = in_background(lambda: (gate.wait(5), threading.current_thread().name)[1], "tw-test")
    gate.set()
    assert made.result() == "tw-test"
    assert in_background(lambda: None, "tw-none").result() is None

    def broken() -> int:
        raise ValueError("bad rule options")

    with pytest.raises(ValueError, match="bad rule options"):
        in_background(broken, "tw-broken").result()


def test_the_engine_is_made_in_a_thread_and_its_errors_reach_the_scan(
    fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tollwatch import scan

    made_in: list[str] = []
    real = scan.Engine.from_settings

    def spy(*args: Any, **kw: Any) -> Any:
        made_in.append(threading.current_thread().name)
        return real(*args, **kw)

    monkeypatch.setattr(scan.Engine, "from_settings", spy)
    result = run_scan([fixtures / "Master-attack.csv"], settings("JP"))
    assert made_in == ["tollwatch-engine"] and result.incidents

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("no engine")

    monkeypatch.setattr(scan.Engine, "from_settings", broken)
    with pytest.raises(RuntimeError, match="no engine"):
        run_scan([fixtures / "Master-attack.csv"], settings("JP"))
