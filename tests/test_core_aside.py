"""bench/core_aside.py: `bench_daemon.py --isolate` moves other processes off the daemon's core
for the run and puts them back."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.core_aside import move_off, put_back

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two cores this process may use",
)


def _child() -> subprocess.Popen[bytes]:
    # a process with two threads, both allowed on every core this one may use
    code = "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); " \
           "time.sleep(30)"
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_process_leaves_the_core_and_comes_back() -> None:
    cores = os.sched_getaffinity(0)
    core = min(cores)
    child = _child()
    try:
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{child.pid}/task")) < 2:  # its second thread started
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        tids = {int(t) for t in os.listdir(f"/proc/{child.pid}/task")}
        moved = move_off(core, pids=[child.pid])
        assert set(moved) == tids
        for tid in tids:
            assert os.sched_getaffinity(tid) == cores - {core}
        assert put_back(moved) == len(tids)
        for tid in tids:
            assert os.sched_getaffinity(tid) == cores
    finally:
        child.kill()
        child.wait()


def test_this_process_and_one_core_threads_are_left_alone() -> None:
    cores = os.sched_getaffinity(0)
    core = min(cores)
    child = _child()
    try:
        os.sched_setaffinity(child.pid, {core})  # its main thread may run on that core only
        assert move_off(core, pids=[os.getpid()]) == {}  # ourselves: never
        moved = move_off(core, pids=[child.pid], keep=[child.pid])
        assert moved == {}
        assert child.pid not in move_off(core, pids=[child.pid])  # bound to the core: stays
        assert os.sched_getaffinity(child.pid) == {core}
    finally:
        child.kill()
        child.wait()
