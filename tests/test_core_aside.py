"""bench/core_aside.py: `bench_daemon.py --isolate` moves other processes off the daemon's core
for the run and puts them back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.core_aside import core_to_self, move_off, put_back, put_back_saved

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


def test_a_terminated_run_puts_back_and_a_killed_one_can_be_undone(tmp_path: Path) -> None:
    cores = os.sched_getaffinity(0)
    core = min(cores)
    state = tmp_path / "moved.json"
    child = _child()
    try:
        before = signal.getsignal(signal.SIGTERM)
        with (
            pytest.raises(SystemExit) as exited,
            core_to_self(core, True, state, pids=[child.pid]) as figures,
        ):
            assert os.sched_getaffinity(child.pid) == cores - {core}
            assert state.exists()
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        assert exited.value.code == 128 + signal.SIGTERM
        assert figures["threads_put_back"] == figures["threads_moved"] >= 1
        assert os.sched_getaffinity(child.pid) == cores
        assert not state.exists() and signal.getsignal(signal.SIGTERM) == before

        # SIGKILL: nothing unwinds; the state file says what to put back
        moved = move_off(core, pids=[child.pid])
        state.write_text(json.dumps({str(t): sorted(c) for t, c in moved.items()}))
        with (
            pytest.raises(SystemExit, match="--put-back"),
            core_to_self(core, True, state, pids=[child.pid]),
        ):
            pass
        assert os.sched_getaffinity(child.pid) == cores - {core}  # the refused run moved none
        assert put_back_saved(state) == len(moved)
        assert os.sched_getaffinity(child.pid) == cores and not state.exists()
    finally:
        child.kill()
        child.wait()


def test_a_run_interrupted_while_moving_puts_back_what_it_moved(tmp_path: Path) -> None:
    cores = os.sched_getaffinity(0)
    core = min(cores)
    child = _child()

    def pids_then_interrupted() -> Iterator[int]:
        yield child.pid
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM's SystemExit) before the next process

    try:
        moved: dict[int, set[int]] = {}
        with pytest.raises(KeyboardInterrupt):
            move_off(core, pids=pids_then_interrupted(), moved=moved)
        assert child.pid in moved  # what was moved before the interruption is known
        assert os.sched_getaffinity(child.pid) == cores - {core}
        put_back(moved)

        state = tmp_path / "moved.json"
        with (
            pytest.raises(KeyboardInterrupt),
            core_to_self(core, True, state, pids=pids_then_interrupted()),
        ):
            pass
        assert os.sched_getaffinity(child.pid) == cores and not state.exists()
    finally:
        child.kill()
        child.wait()
