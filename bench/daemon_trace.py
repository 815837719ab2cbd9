"""Where a slow DialBegin -> decision went: `bench_daemon.py --trace`.

Each call's latency (DialBegin written by the sender -> its `CallStarted` decided) is cut into
four stages from time stamps taken in the daemon process:

- **to read**: written -> the start of the socket read (`_Protocol.data_received`) that
  carried it: the loop was busy elsewhere, or the process waited for its core;
- **in read**: that read's start -> the `CallStarted` put on the queue (framing, tracker for the
  frames of the same read before it);
- **queued**: put on the queue -> `Daemon.process` starts on it (events before it);
- **process**: `Daemon.process` of the `CallStarted` itself (classification, rules, and for a
  call that changes an incident, its publication before the return).

Besides, whatever held the loop is recorded as (start, end, what) intervals: garbage
collections (`gc.callbacks`, by generation), ticks, flushes, status writes, snapshot forks, and
each sample over the threshold names the intervals that overlap it. Clocks: `time.time()` in
both processes (same machine).

On a virtual machine the hypervisor may take the daemon's core away ("steal" in /proc/stat):
a thread samples core 0's steal time every 0.25 s, and the report gives it for the seconds
with the most slow calls (`steal_ms_in_slow_seconds`) and in all (`steal_ms_core0`).
"""

from __future__ import annotations

import bisect
import gc
import os
import threading
import time
from collections import Counter, defaultdict
from typing import Any

STAGES = ("to_read", "in_read", "queued", "process")
_HZ = os.sysconf("SC_CLK_TCK")


def core_steal(core: int) -> int | None:
    """The core's steal time so far (USER_HZ ticks), None where /proc/stat does not say."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{core} "):
                    fields = line.split()
                    return int(fields[8]) if len(fields) > 8 else None
    except OSError:
        return None
    return None


class Trace:
    def __init__(self) -> None:
        self.read_start = 0.0
        self.reads: list[tuple[float, float, int]] = []  # (start, end, bytes)
        # (wall, ns run, ns waiting for a core) of this thread at each read's start
        self.sched: list[tuple[float, int, int]] = []
        self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        self.queued: dict[str, tuple[float, float]] = {}  # call id -> (read start, put)
        self.started: dict[str, float] = {}  # call id -> Daemon.process start
        self.held: list[tuple[float, float, str]] = []
        self._gc_at = 0.0
        self.steal: list[tuple[float, int]] = []  # (wall, core 0's steal in USER_HZ ticks)
        self._stop = threading.Event()
        threading.Thread(target=self._sample_steal, name="trace-steal", daemon=True).start()

    def _sample_steal(self) -> None:
        while not self._stop.is_set():
            steal = core_steal(0)
            if steal is not None:
                self.steal.append((time.time(), steal))
            self._stop.wait(0.25)

    def _steal_ms(self, a: float, b: float) -> float:
        """Core 0's steal between wall times a and b, from the samples around them."""
        times = [t for t, _ in self.steal]
        i = max(0, bisect.bisect_right(times, a) - 1)
        j = min(len(times) - 1, bisect.bisect_left(times, b))
        if not self.steal or j <= i:
            return 0.0
        return (self.steal[j][1] - self.steal[i][1]) * 1e3 / _HZ

    def hold(self, start: float, what: str) -> None:
        self.held.append((start, time.time(), what))

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_at = time.time()
        else:
            self.hold(self._gc_at, f"gc gen{info['generation']}")

    def timed(self, obj: Any, name: str, what: str) -> None:
        """Record each call of `obj.name` (synchronous) as loop-holding work `what`."""
        func = getattr(obj, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.time()
            try:
                return func(*args, **kwargs)
            finally:
                on_loop = threading.current_thread() is threading.main_thread()
                self.hold(t, what if on_loop else f"{what} [thread: loop not held]")

        setattr(obj, name, wrapper)

    def install_daemon(self, daemon: Any) -> None:
        """The parts of a tick and of a publication, each on its own."""
        for pipeline in daemon.pipelines.values():
            self.timed(pipeline, "tick", "tick: rule timers (engine.advance)")
            self.timed(pipeline.engine.tracker, "expire", "tick: incidents expired")
        self.timed(daemon.views, "view", "publish: view")
        self.timed(daemon.store, "save_incident", "publish: save_incident (SQLite)")
        self.timed(daemon.store, "save_incidents", "publish: save_incidents (SQLite)")
        self.timed(daemon.store, "write_status", "write_status: SQLite")
        self.timed(daemon.status_file, "write", "write_status: status.json")
        try:  # issue 13's malloc_trim (a thread; glibc locks each arena while trimming it)
            from tollwatch.memory import Housekeeper
        except ImportError:
            return
        self.timed(Housekeeper, "once", "malloc_trim")

    def install(self, source: Any) -> None:
        """Wrap the AMI protocol's reads and the source's emits; follow the collector."""
        from tollwatch.cdr_ingest.live import CallStarted
        from tollwatch.cdr_ingest.live.ami_framing import _Protocol

        trace = self
        received = _Protocol.data_received

        def data_received(proto: Any, data: bytes) -> None:
            trace.read_start = t = time.time()
            run, wait = os.pread(trace._schedstat, 64, 0).split()[:2]
            trace.sched.append((t, int(run), int(wait)))
            received(proto, data)
            trace.reads.append((t, time.time(), len(data)))

        _Protocol.data_received = data_received  # type: ignore[method-assign]
        emit = source._emit

        def _emit(events: list[Any]) -> None:
            emit(events)
            now = time.time()
            for ev in events:
                if type(ev) is CallStarted:
                    trace.queued[ev.call_id] = (trace.read_start, now)

        source._emit = _emit
        gc.callbacks.append(self._gc)
        fork = os.fork

        def traced_fork() -> int:  # the snapshot child: fork() copies the page tables
            t = time.time()
            pid = fork()
            if pid:
                trace.hold(t, "snapshot fork()")
            return pid

        os.fork = traced_fork

    def report(
        self,
        dial: list[tuple[str, float]],
        decided: dict[str, float],
        changed: set[str],
        slow_ms: float = 2.0,
    ) -> dict[str, Any]:
        """Stage percentiles over all calls, and for the calls over `slow_ms`: which stage
        took most and which loop-holding work overlapped them."""
        gc.callbacks.remove(self._gc)
        self._stop.set()
        rows = []
        for uid, sent in dial:
            if uid not in decided or uid not in self.queued or uid not in self.started:
                continue
            read, put = self.queued[uid]
            start = self.started[uid]
            end = decided[uid]
            rows.append(
                (
                    uid,
                    sent,
                    end,
                    {
                        "to_read": read - sent,
                        "in_read": put - read,
                        "queued": start - put,
                        "process": end - start,
                    },
                )
            )
        out: dict[str, Any] = {"calls": len(rows), "slow_ms": slow_ms}
        for stage in STAGES:
            xs = sorted(r[3][stage] for r in rows)
            if xs:
                out[stage] = {
                    q: round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1e3, 2)
                    for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
                }
                out[stage]["max"] = round(xs[-1] * 1e3, 2)
        slow = [r for r in rows if r[2] - r[1] > slow_ms / 1e3]
        out["slow_calls"] = len(slow)
        main: Counter[str] = Counter()
        overlaps: Counter[str] = Counter()
        none = 0
        held = sorted(self.held)
        sched = self.sched
        starts = [s[0] for s in sched]
        for uid, sent, end, parts in slow:
            stage = max(parts, key=lambda k: parts[k])
            if stage == "to_read":  # the reads around it: how long was the thread off its core
                i = bisect.bisect_left(starts, self.queued[uid][0])
                j = max(0, bisect.bisect_left(starts, sent) - 1)
                if i < len(sched) and j < i:
                    wall = sched[i][0] - sched[j][0]
                    ran = (sched[i][1] - sched[j][1]) / 1e9
                    waited = (sched[i][2] - sched[j][2]) / 1e9
                    stage += (
                        " - waiting for a core"
                        if waited > 0.5 * wall
                        else " - running (loop busy)"
                        if ran > 0.5 * wall
                        else " - idle?"
                    )
            main[stage + (" (changed an incident)" if uid in changed else "")] += 1
            hit = {what for a, b, what in held if a < end and b > sent}
            overlaps.update(hit)
            none += not hit
        out["slow_by_main_stage"] = dict(main.most_common())
        out["slow_overlapping"] = dict(overlaps.most_common())
        out["slow_overlapping_nothing"] = none
        if slow and dial:  # when: slow calls per second of the stream (the ten worst seconds)
            t0 = dial[0][1]
            per_s = Counter(int(sent - t0) for _, sent, _, _ in slow)
            out["slow_seconds"] = {str(k): v for k, v in per_s.most_common(10)}
            out["steal_ms_in_slow_seconds"] = {
                str(k): round(self._steal_ms(t0 + k, t0 + k + 1), 1)
                for k, _ in per_s.most_common(10)
            }
        if self.steal:
            out["steal_ms_core0"] = round(self._steal_ms(self.steal[0][0], self.steal[-1][0]), 1)
        kinds: dict[str, list[float]] = defaultdict(list)
        first_read = self.reads[0][0] if self.reads else 0.0
        for a, b, what in held:  # start-up (before the stream) on its own
            kinds[what if a >= first_read else f"{what} [before the stream]"].append(b - a)
        out["held"] = {
            k: {"n": len(v), "total_ms": round(sum(v) * 1e3, 1), "max_ms": round(max(v) * 1e3, 2)}
            for k, v in sorted(kinds.items())
        }
        big = sorted(self.reads, key=lambda r: r[1] - r[0])[-5:]
        out["longest_reads"] = [{"ms": round((b - a) * 1e3, 2), "bytes": n} for a, b, n in big]
        return out
