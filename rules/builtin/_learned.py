"""Thresholds that follow the site: max(configured floor, factor x the site's usual volume)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from tollwatch.rules.baseline import Baseline, Volume
from tollwatch.rules.model import Call


def threshold(
    baseline: Baseline | None,
    floor: int,
    factor: float,
    what: str,
    window: timedelta | None,
    at: datetime,
) -> tuple[int, str]:
    """(threshold, words for the reason). `window` None: calls up at once (concurrency)."""
    limit, usual = learned_limit(baseline, floor, factor, what, window, at)
    return limit, limit_words(limit, floor, usual)


def learned_limit(
    baseline: Baseline | None,
    floor: int,
    factor: float,
    what: str,
    window: timedelta | None,
    at: datetime,
) -> tuple[int, Volume | None]:
    """(threshold, the usual volume it came from): `threshold` without the words, for the
    check on every call; the words are only made when a finding is."""
    if baseline is None or factor <= 0:
        return floor, None
    usual = baseline.concurrency(at) if window is None else baseline.volume(what, window, at)
    if usual is None:
        return floor, None
    learned = math.ceil(factor * usual[0])
    return (learned if learned > floor else floor), usual  # max(floor, learned)


def limit_words(limit: int, floor: int, usual: Volume | None) -> str:
    """Words for a reason: "threshold 30; usual for Monday 10:00 is ≤ 12"."""
    if usual is None:
        return f"threshold {floor}"
    count, slot = usual
    if limit <= floor:
        return f"threshold {floor}; usual for {slot} is ≤ {count}"
    return f"threshold {limit}: usual for {slot} is ≤ {count}"


def novel_high_risk(baseline: Baseline | None, call: Call, at: datetime) -> bool:
    """A high-risk call (not allowlisted) to a destination the site does not call routinely."""
    if not call.risky:
        return False
    return baseline is None or not baseline.is_routine(call.dest, at)
