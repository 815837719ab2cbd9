"""bench/daemon_trace.py's steal figures: the hypervisor's share of core 0 per second."""

from __future__ import annotations

import os
import sys

import pytest

from bench.daemon_trace import _HZ, Trace, core_steal


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_core_steal_reads_the_cores_line() -> None:
    with open("/proc/stat") as f:
        line = next(x for x in f if x.startswith("cpu0 "))
    before = int(line.split()[8])
    now = core_steal(0)
    assert now is not None and now >= before
    assert core_steal(os.cpu_count() or 1) is None  # no such core


def test_steal_between_two_times_comes_from_the_samples_around_them() -> None:
    trace = Trace()
    trace._stop.set()
    trace.steal = [(10.0, 100), (11.0, 150), (12.0, 150), (13.0, 400)]
    tick_ms = 1e3 / _HZ
    assert trace._steal_ms(11.1, 11.9) == 0.0  # within one interval with none
    assert trace._steal_ms(12.0, 13.0) == 250 * tick_ms
    assert trace._steal_ms(10.5, 12.5) == 300 * tick_ms  # the samples around: 10 and 13
    assert trace._steal_ms(9.0, 10.0) == 0.0  # before the first sample
    trace.steal = []
    assert trace._steal_ms(0.0, 1.0) == 0.0
