"""Thresholds that follow the site: max(configured floor, factor x the site's usual volume)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from tollwatch.rules.baseline import Baseline
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
    if baseline is None or factor <= 0:
        return floor, f"threshold {floor}"
    usual = baseline.concurrency(at) if window is None else baseline.volume(what, window, at)
    if usual is None:
        return floor, f"threshold {floor}"
    count, slot = usual
    learned = math.ceil(factor * count)
    if learned <= floor:
        return floor, f"threshold {floor}; usual for {slot} is ≤ {count}"
    return learned, f"threshold {learned}: usual for {slot} is ≤ {count}"


def novel_high_risk(baseline: Baseline | None, call: Call, at: datetime) -> bool:
    """A high-risk call (not allowlisted) to a destination the site does not call routinely."""
    if not call.risky:
        return False
    return baseline is None or not baseline.is_routine(call.dest, at)
