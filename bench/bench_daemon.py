"""Benchmark the live daemon: a busy PBX's AMI stream over TCP into AmiSource -> Daemon.

Two processes. The sender (a `FakeAmi` subclass, in a child process pinned to the other core)
logs the daemon in and streams a `gen_ami.py` file's frames as they are, in batches, as fast as
the socket takes them (`--rate 0`) or paced to `--rate` messages/s; it records `time.time()`
right after writing each DialBegin and ships those times back at the end. The daemon (this
process, pinned to core 0) is the real thing: panoramisk + AmiSource + AmiCallTracker ->
Daemon (classification, rule engine, SQLite store in a temp dir) with a no-op alerter; its
`process` is wrapped to record `time.time()` when the `CallStarted` of each call returns.
The daemon's CPU time (and its snapshot children's) is reported beside the wall clock: on a
shared machine the wall clock says as much about the other processes as about the daemon.

Figures: AMI messages/s end to end (every frame sent / wall time from the first write to the
moment the end marker, a final FullyBooted, is processed), LiveEvents/s, DialBegin -> rule
decision latency (median, p95, p99, max), peak RSS. `--direct` measures the daemon side alone
(no sockets): reading frames, the tracker, and `Daemon.process`, stage by stage.
`--reader` measures the AMI source's read path alone (bytes in, LiveEvents on the queue).
`--profile FILE` runs the end-to-end daemon under cProfile and prints time by component.

    python bench/gen_ami.py --calls 20000
    python bench/bench_daemon.py bench/data/ami-busy-20000.txt              # full speed
    python bench/bench_daemon.py bench/data/ami-busy-20000.txt --rate 5000  # latency
    python bench/bench_daemon.py bench/data/ami-busy-20000.txt --direct
    python bench/bench_daemon.py bench/data/ami-busy-20000.txt --reader --passes 3
    python bench/bench_daemon.py bench/data/ami-busy-20000.txt --profile bench/data/prof.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

try:
    from core_aside import core_to_self  # run as a script (bench/ is on the path)
except ImportError:
    from bench.core_aside import core_to_self  # imported by the tests

SECRET = "bench-secret"
_SEP = b"\r\n\r\n"
_UID = b"\r\nUniqueid: "
_TS = b"\r\nTimestamp: "
DAY = 86400.0


def pin(core: int) -> str:
    """Pin this process to one core if the machine has it; say what happened."""
    try:
        cores = list(range(os.cpu_count() or 1))  # not getaffinity: a child inherits our pin
        if len(cores) < 2:
            return "not pinned (1 core)"
        os.sched_setaffinity(0, {cores[core % len(cores)]})
        return f"core {cores[core % len(cores)]}"
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"


def frames(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """The file's messages, each with its trailing blank line, read a chunk at a time."""
    rest = b""
    with path.open("rb") as f:
        while block := f.read(chunk):
            parts = (rest + block).split(_SEP)
            rest = parts.pop()
            for p in parts:
                if p:
                    yield p + _SEP
    if rest.strip():
        yield rest + _SEP


def dial_uid(frame: bytes) -> str | None:
    if not frame.startswith(b"Event: DialBegin\r\n"):
        return None
    i = frame.find(_UID) + len(_UID)
    return frame[i : frame.find(b"\r\n", i)].decode()


# -- the sender (child process) ---------------------------------------------------------------


def sender_main(
    path: str,
    rate: float,
    masked: bool,
    conn: Connection,
    loops: int = 1,
    pass_every: float = DAY,
    warmup: int = 0,
) -> None:
    pinned = pin(1)
    asyncio.run(_send(Path(path), rate, masked, conn, pinned, loops, pass_every, warmup))


_END = b"Event: FullyBooted\r\n"


def stamps(path: Path) -> tuple[float, float] | None:
    """The first and last `Timestamp:` of a `gen_ami.py --timestamps` file (None: it has
    none, the daemon takes arrival time), read from its head and its tail."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
        f.seek(max(0, path.stat().st_size - (1 << 16)))
        tail = f.read()
    first, last = head.find(_TS), tail.rfind(_TS)
    if first < 0 or last < 0:
        return None

    def value(data: bytes, i: int) -> float:
        i += len(_TS)
        return float(data[i : data.find(b"\r\n", i)])

    return value(head, first), value(tail, last)


def looped(
    path: Path,
    loops: int,
    start: float | None = None,
    pass_every: float = DAY,
    on_pass: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The file's frames `loops` times; pass k's call ids get a different epoch (`1796...`
    -> `k1796...`: every Uniqueid, Linkedid and their Dest* copies), so each pass's calls
    are new calls; the end marker only at the end. A file with `Timestamp:` headers
    (timestampevents=yes) is rebased: its first event happens at `start` (the sender's clock
    when it begins) and pass k `k * pass_every` seconds later (the same traffic the next
    day): event time runs as the file's timeline says, ahead of the wall clock. `on_pass(k)`
    is called before pass k's first frame."""
    span = stamps(path) if start is not None else None
    for k in range(loops):
        if on_pass is not None:
            on_pass(k)
        last = k == loops - 1
        offset = None if span is None or start is None else start - span[0] + k * pass_every
        for frame in frames(path):
            if not last and frame.startswith(_END):
                continue
            i = frame.find(_TS) if offset is not None else -1
            if i >= 0:  # (the header comes before any call id: only the rest is renamed)
                i += len(_TS)
                j = frame.find(b"\r\n", i)
                rest = frame[j:] if k == 0 else frame[j:].replace(b": 1796", b": %d1796" % k)
                yield b"%s%.6f%s" % (frame[:i], float(frame[i:j]) + offset, rest)
            else:
                yield frame if k == 0 else frame.replace(b": 1796", b": %d1796" % k)


def messages(
    frames: Iterable[bytes], wants: Callable[[bytes], bool], tracker: Any
) -> Iterator[Any]:
    """The AMI messages of `frames` the daemon would see: those its login mask `wants`, not
    skipped by the call `tracker` by name, parsed (frames that do not parse are left out)."""
    from tollwatch.cdr_ingest.live.ami_framing import event_name, parse_event

    for frame in frames:
        if not wants(frame):
            continue
        text = frame.decode().strip()
        name = event_name(text)
        if name is not None and tracker.skip(name):
            continue
        msg = parse_event(text)
        if msg is not None:
            yield msg


def _mask(events: str) -> Callable[[bytes], bool]:
    """Asterisk's per-session event filter: the frame's Privilege classes vs the login's
    Events mask (as FakeAmi's broadcast does), on the raw bytes."""
    if events in ("on", "all"):
        return lambda _f: True
    wanted = {c.strip().encode() for c in events.split(",")}
    seen: dict[bytes, bool] = {}

    def wants(frame: bytes) -> bool:
        i = frame.find(b"\r\nPrivilege: ")
        if i < 0:
            return False
        j = frame.find(b"\r\n", i + 13)
        priv = frame[i + 13 : j]
        hit = seen.get(priv)
        if hit is None:
            hit = seen[priv] = bool({c.strip() for c in priv.split(b",")} & wanted)
        return hit

    return wants


async def _send(
    path: Path,
    rate: float,
    masked: bool,
    conn: Connection,
    pinned: str,
    loops: int = 1,
    pass_every: float = DAY,
    warmup: int = 0,
) -> None:
    """Stream the file (`warmup` passes as fast as the daemon takes them, then `loops`
    passes at `rate`) to the daemon once it logged in; send back what was sent, when."""
    from tollwatch.cdr_ingest.live.fake_ami import FakeAmi

    class BenchAmi(FakeAmi):
        async def stream(self) -> dict[str, Any]:
            await self._logged_in.wait()
            [client] = [c for c in self._clients if c.logged_in]
            writer = client.writer
            dial: list[tuple[str, float]] = []
            batch_n = 64 if rate <= 0 else max(1, int(rate / 1000))  # ~1 ms of traffic
            sent = nbytes = 0
            batch: list[bytes] = []
            uids: list[str] = []
            first = 0.0
            t0 = time.perf_counter()
            paced: dict[str, float] = {"from": 0, "at": 0.0}  # after the warm-up passes
            wants = _mask(client.events) if masked else (lambda _f: True)

            def on_pass(k: int) -> None:
                nonlocal t0
                if k == warmup:
                    t0 = time.perf_counter()
                    paced.update({"from": sent, "at": time.time()})

            stream = looped(path, warmup + loops, time.time(), pass_every, on_pass)
            for frame in stream:
                if not wants(frame):
                    continue
                batch.append(frame)
                uid = dial_uid(frame)
                if uid is not None:
                    uids.append(uid)
                if len(batch) < batch_n:
                    continue
                if rate > 0 and paced["at"]:  # wait for this batch's slot
                    ahead = t0 + (sent - paced["from"]) / rate - time.perf_counter()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                data = b"".join(batch)
                writer.write(data)
                now = time.time()
                first = first or now
                dial += [(u, now) for u in uids]
                sent += len(batch)
                nbytes += len(data)
                batch.clear()
                uids.clear()
                if writer.transport.get_write_buffer_size() > 1 << 18:
                    await writer.drain()  # backpressure, as a socket would give
            data = b"".join(batch)
            writer.write(data)
            now = time.time()
            dial += [(u, now) for u in uids]
            sent += len(batch)
            nbytes += len(data)
            await writer.drain()
            return {"sent": sent, "bytes": nbytes, "first": first, "last": time.time(),
                    "dial": dial, "pinned": pinned, "paced_from_msg": paced["from"],
                    "paced_at": paced["at"]}  # fmt: skip

    async with BenchAmi("tollwatch", SECRET) as ami:
        conn.send(ami.port)
        result = await ami.stream()
        conn.send(result)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "bye"


# -- the daemon (this process) ----------------------------------------------------------------


# The site's time zone. Calls of a stream without `Timestamp:` are timed by their arrival, so
# with Asia/Tokyo the same stream is office hours when run at 00:00-09:00 UTC and after hours
# (off_hours findings from most sources: ~600 incidents instead of ~230 on the dense stream)
# when run at 12:00 UTC. `--local-hour H` replaces it with a fixed-offset zone in which the
# run starts at H o'clock, so that runs at different times of day compare.
SITE_TZ = "Asia/Tokyo"


def zone_at_hour(hour: int, now: datetime) -> str:
    """A fixed-offset zone (tzdata's Etc/GMT..., whose sign is inverted: Etc/GMT-9 is UTC+9)
    in which `now` is between `hour`:00 and `hour`:59."""
    offset = (hour - now.hour) % 24
    if offset > 14:  # Etc/ zones span UTC-12 to UTC+14
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def bench_settings(port: int, data_dir: str) -> Any:
    from tollwatch.config import load_settings
    from tollwatch.rules.base import check_rules

    os.environ["BENCH_AMI_SECRET"] = SECRET
    over = {
        "site": {"country": "JP", "timezone": SITE_TZ},
        "daemon": {"data_dir": data_dir, "max_backoff": "1s"},
        "ami": [{"name": "pbx", "port": port, "username": "tollwatch",
                 "secret_env": "BENCH_AMI_SECRET"}],
    }  # fmt: skip
    return load_settings(None, over, rule_checks=check_rules)


class NullAlerter:
    name = "null"

    def __init__(self) -> None:
        self.sent = defaultdict(int)

    async def send(self, kind: str, view: dict[str, Any]) -> None:
        self.sent[kind] += 1


def make_daemon(settings: Any, data_dir: str) -> Any:
    from tollwatch.cdr_ingest.live import CallStarted, PbxBooted
    from tollwatch.daemon import Daemon
    from tollwatch.state import StateStore

    class BenchDaemon(Daemon):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.decided: dict[str, float] = {}
            self.alerted: set[str] = set()  # calls whose CallStarted changed an incident
            self.booted = 0
            self.done = asyncio.Event()
            # loop-holding work: [count, total s, max s] (fixed size: a 30-min run adds nothing)
            self.stalls: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
            self.trace: Any = None  # a daemon_trace.Trace with --trace
            self.keep_latency = True
            self.published: dict[str, float] = {}  # incident changed: its alerts sent at
            self._unpublished: list[str] = []
            publisher = getattr(self, "publisher", None)  # None: a checkout from before it
            if publisher is not None:
                publish = publisher.publish_queued

                async def publish_queued() -> None:
                    before = sum(alerter.sent.values())
                    await publish()
                    now = time.time()
                    if sum(alerter.sent.values()) != before:  # not growth kept for the tick
                        for cid in self._unpublished:
                            self.published[cid] = now
                            self.alerted.add(cid)
                    self._unpublished.clear()

                publisher.publish_queued = publish_queued

        def _queued(self) -> int:
            """Changes queued for publication (real ones: a tick queues empty ones too)."""
            publisher = getattr(self, "publisher", None)
            if publisher is None:
                return 0
            return sum(1 for _p, changes, closed, _f in publisher.outgoing if changes or closed)

        def _held(self, what: str, t: float, wall: float) -> None:
            held, s = time.perf_counter() - t, self.stalls[what]
            s[0] += 1
            s[1] += held
            s[2] = max(s[2], held)
            if self.trace is not None:
                self.trace.hold(wall, what)

        async def flush_final(self) -> None:
            t, w = time.perf_counter(), time.time()
            await super().flush_final()
            self._held("flush_final (at stop, made in a child)", t, w)

        async def flush_async(self) -> None:
            t, w = time.perf_counter(), time.time()
            await super().flush_async()
            self._held("flush_async (wall, loop not held while forked)", t, w)

        async def tick(self) -> None:
            t, w = time.perf_counter(), time.time()
            await super().tick()
            self._held("tick (timers, coalesced views)", t, w)

        def write_status(self) -> None:
            t, w = time.perf_counter(), time.time()
            super().write_status()
            self._held("write_status", t, w)

        async def process(self, event: Any) -> None:
            if type(event) is not CallStarted or not self.keep_latency:  # (no bookkeeping in
                await super().process(event)  # a long run measuring RSS)
            else:
                if self.trace is not None:
                    self.trace.started[event.call_id] = time.time()
                before = sum(alerter.sent.values())
                queued = self._queued()
                await super().process(event)
                self.decided[event.call_id] = time.time()
                if sum(alerter.sent.values()) != before:  # published before the decision
                    self.alerted.add(event.call_id)
                    self.published[event.call_id] = self.decided[event.call_id]
                elif self._queued() != queued:  # decided now, published right after
                    self._unpublished.append(event.call_id)
            if type(event) is PbxBooted:
                self.booted += 1
                if self.booted >= 2:  # the login's FullyBooted, then the end marker
                    self.done.set()

    alerter = NullAlerter()
    return BenchDaemon(settings, StateStore.in_dir(Path(data_dir)), [], [alerter], ["pbx"])


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def percentiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    xs = sorted(xs)

    def q(p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))]

    return {"n": len(xs), "median_ms": statistics.median(xs) * 1e3, "p95_ms": q(0.95) * 1e3,
            "p99_ms": q(0.99) * 1e3, "max_ms": xs[-1] * 1e3}  # fmt: skip


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class LagCounts:
    """How late a sleeper woke, counted per 0.1 ms (per 10 ms past 100 ms): fixed memory
    however long the run. A list of every lateness grew 100 floats a second, ~11.5 MB an
    hour, which a long run's RSS showed as the daemon's own growth."""

    def __init__(self) -> None:
        self.fine = [0] * 1000  # 0.1 ms bins up to 100 ms
        self.coarse: dict[int, int] = defaultdict(int)  # 10 ms bins past it
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, late: float) -> None:
        self.n += 1
        self.total += late
        self.max = max(self.max, late)
        tenths = max(0, int(late * 1e4))
        if tenths < 1000:
            self.fine[tenths] += 1
        else:
            self.coarse[int(late * 100)] += 1

    def _at(self, p: float) -> float:
        """The upper edge (s) of the bin holding the p-th quantile."""
        rank, seen = min(self.n - 1, int(p * self.n)), 0
        for i, c in enumerate(self.fine):
            seen += c
            if seen > rank:
                return (i + 1) / 1e4
        for i in sorted(self.coarse):
            seen += self.coarse[i]
            if seen > rank:
                return (i + 1) / 100
        return self.max

    def percentiles(self) -> dict[str, float]:
        if not self.n:
            return {}
        return {"n": self.n, "median_ms": self._at(0.5) * 1e3, "p95_ms": self._at(0.95) * 1e3,
                "p99_ms": self._at(0.99) * 1e3, "max_ms": self.max * 1e3,
                "mean_ms": self.total / self.n * 1e3}  # fmt: skip


async def _loop_lag(out: LagCounts, every: float = 0.01) -> None:
    """How late the loop wakes a 10 ms sleeper: any work holding the loop shows here."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(every)
        out.add(time.perf_counter() - t - every)


async def _sample_rss(
    out: list[dict[str, Any]], every: float, daemon: Any = None, log: Path | None = None
) -> None:
    """RSS every `every` s; with a daemon also its smaps split (`soak_memory.split`: heap,
    arenas, anon, file, MiB), its open incidents and calls up, and how far its event time
    (the rule engine's clock) runs ahead of the wall clock. Each row is also appended to
    `log` as it is taken (a long run cut short still says what it measured)."""
    try:
        from soak_memory import split
    except ImportError:  # a checkout from before it
        split = None
    t0 = time.monotonic()
    while True:
        row: dict[str, Any] = {"t": round(time.monotonic() - t0, 1), "at": round(time.time()),
                               "rss": round(_rss_mb(), 1)}  # fmt: skip
        if split is not None:
            row.update({k: round(v, 1) for k, v in split(os.getpid()).items() if k != "rss"})
        if daemon is not None:
            pipeline = daemon.pipelines["pbx"]
            row["open"] = len(pipeline.engine.tracker.open)
            row["up"] = pipeline.in_progress
            clock = pipeline.engine.clock
            if clock is not None:
                row["ahead_h"] = round((clock - datetime.now(UTC)).total_seconds() / 3600, 2)
        out.append(row)
        if log is not None:
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
        await asyncio.sleep(every)


async def end_to_end(
    path: Path,
    rate: float,
    masked: bool,
    data_dir: str,
    timeout: float,
    rss_every: float = 0.0,
    no_fork: bool = False,
    trace: bool = False,
    loops: int = 1,
    pass_every: float = DAY,
    warmup: int = 0,
    rss_log: Path | None = None,
) -> dict[str, Any]:
    from tollwatch.sources import ami_sources

    span = stamps(path)
    if span is not None and loops > 1 and span[1] - span[0] > pass_every:
        raise SystemExit(
            f"the file spans {span[1] - span[0]:.0f} s of event time, more than "
            f"--pass-every {pass_every:.0f}: passes would go back in time"
        )
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=sender_main,
        args=(str(path), rate, masked, child, loops, pass_every, warmup),
        daemon=True,
    )
    proc.start()
    child.close()  # only the sender holds its end: if it dies, recv() raises EOFError, no hang
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(None, parent.recv)
    settings = bench_settings(port, data_dir)
    daemon = make_daemon(settings, data_dir)
    if no_fork and hasattr(daemon, "snapshotter"):
        daemon.snapshotter.inline_max = float("inf")  # every snapshot pickled on the loop
    daemon.sources.extend(ami_sources(settings, daemon.queue))
    daemon.keep_latency = loops == 1 and warmup == 0
    if trace:
        from daemon_trace import Trace

        daemon.trace = Trace()
        daemon.trace.install(daemon.sources[0].source)
        daemon.trace.install_daemon(daemon)
    stop = asyncio.Event()
    cpu0 = time.process_time()
    kids0 = _children_cpu()
    task = asyncio.create_task(daemon.run(stop))
    rss: list[dict[str, Any]] = []
    sampler = None
    if rss_every > 0:
        sampler = asyncio.create_task(_sample_rss(rss, rss_every, daemon, rss_log))
    lags = LagCounts()
    lag_task = asyncio.create_task(_loop_lag(lags))
    try:
        await asyncio.wait_for(daemon.done.wait(), timeout)
    finally:
        if sampler is not None:
            sampler.cancel()
        lag_task.cancel()
        t_done = time.time()
        cpu = time.process_time() - cpu0
        kids = _children_cpu() - kids0  # snapshot children (the sender is reaped later)
        hwm_running = _hwm_mb()
        stop.set()
        await task
    hwm_stopped = _hwm_mb()  # the daemon's peak, before this process takes the sender's
    sent = await loop.run_in_executor(None, parent.recv)  # DialBegin times (tens of MB)
    parent.send("bye")
    proc.join(10)
    lat = [daemon.decided[u] - t for u, t in sent["dial"] if u in daemon.decided]
    hit = [daemon.decided[u] - t for u, t in sent["dial"] if u in daemon.alerted]
    quiet = [daemon.decided[u] - t for u, t in sent["dial"]
             if u in daemon.decided and u not in daemon.alerted]  # fmt: skip
    wall = t_done - sent["first"]
    src = daemon.sources[0].source
    snap = getattr(daemon, "snapshotter", None)  # None: a checkout from before it
    return {
        "mode": "end-to-end",
        "rate_asked": rate,
        "event_mask": "login mask (system,call,security)" if masked else "all events",
        "sender": {k: v for k, v in sent.items() if k != "dial"},
        "messages": sent["sent"],
        "mb": sent["bytes"] / 1e6,
        "wall_s": wall,
        "sender_s": sent["last"] - sent["first"],
        "msgs_per_s": sent["sent"] / wall,
        "daemon_cpu_s": cpu,
        "msgs_per_cpu_s": sent["sent"] / cpu if cpu else 0.0,
        "snapshot_children_cpu_s": kids,
        "live_events": daemon.events,
        "live_events_per_s": daemon.events / wall,
        "calls_seen": daemon.pipelines["pbx"].calls_seen,
        "dialbegins": len(sent["dial"]),
        "latency": percentiles(lat),
        "latency_incident_changed": percentiles(hit),
        "latency_no_change": percentiles(quiet),
        "decision_to_published": percentiles(
            [daemon.published[u] - daemon.decided[u] for u in daemon.published]),
        "errors": {"daemon": daemon.errors, "source": src.status.errors,
                   "bad_frames": src.bad_frames, "tracker_malformed": src.tracker.stats.malformed},
        "incidents": len(daemon.store.incidents()),
        "alerts": dict(daemon.alerters[0].sent),
        "rss_mb_over_time": rss,
        "peak_rss_mb_before_stop": hwm_running,
        "peak_rss_mb_through_stop": hwm_stopped,
        "loop_lag_ms": {k: round(v, 2) for k, v in lags.percentiles().items() if k != "n"},
        "collector": {k: getattr(daemon.collector, k) for k in
                      ("full_collections", "full_found", "last_full_s")}
        if hasattr(daemon, "collector") else None,
        "snapshots": {"forked": snap.forked, "failed": snap.failed,
                      "last_pickle_ms": round(snap.last_s * 1e3, 1),
                      "last_held_ms": round(getattr(snap, "held_s", 0.0) * 1e3, 1)}
        if snap else None,
        "trace": daemon.trace.report(sent["dial"], daemon.decided, daemon.alerted)
        if daemon.trace is not None else None,
        "stalls": {k: {"n": n, "total_s": round(tot, 3), "max_ms": round(mx * 1e3, 1)}
                   for k, (n, tot, mx) in daemon.stalls.items() if n},
    }  # fmt: skip


def _hwm_mb() -> float | None:
    """This process's peak RSS so far (VmHWM), MB; None where /proc has no such line."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def masked_stream(path: Path, limit: int) -> tuple[int, bytes]:
    """The messages the sender would send with the daemon's login mask, joined (at most
    `limit` of them)."""
    from tollwatch.cdr_ingest.live.ami import EVENT_MASK

    wants = _mask(EVENT_MASK)
    out: list[bytes] = []
    for frame in frames(path):
        if wants(frame):
            out.append(frame)
            if len(out) >= limit:
                break
    return len(out), b"".join(out)


async def reader(path: Path, limit: int, passes: int) -> dict[str, Any]:
    """The AMI source's read path alone, no socket: the login-masked stream in 256 KiB reads
    (what asyncio hands the protocol) through `_Protocol.data_received` -> the manager's
    frame handling -> `AmiCallTracker` -> the event queue. Best CPU time of `passes`."""
    from tollwatch.cdr_ingest.live.ami import AmiSource, _Manager
    from tollwatch.cdr_ingest.live.ami_framing import _Protocol
    from tollwatch.cdr_ingest.live.backlog import EventQueue

    class Transport:
        def write(self, data: bytes) -> None:
            pass

    n, data = masked_stream(path, limit)
    chunk = 1 << 18
    best = float("inf")
    source: Any = None
    for _ in range(passes):
        source = AmiSource("pbx", "127.0.0.1", 1, "tollwatch", SECRET,
                           events=EventQueue(1 << 30))  # fmt: skip
        manager = _Manager(source, host="127.0.0.1", port=1,
                           loop=asyncio.get_running_loop(), events="on")  # fmt: skip
        manager.register_event("*", source._on_event)
        protocol = _Protocol()
        protocol.connection_made(Transport())
        protocol.factory = manager
        protocol.data_received(b"Asterisk Call Manager/11.0.0\r\n")
        cpu = time.process_time()
        for i in range(0, len(data), chunk):
            protocol.data_received(data[i : i + chunk])
        best = min(best, time.process_time() - cpu)
    out: dict[str, Any] = {"mode": "reader", "messages": n, "mb": len(data) / 1e6,
                           "passes": passes}  # fmt: skip
    if source is not None:
        out.update({"cpu_s": best, "msgs_per_cpu_s": n / best if best else 0.0,
                    "live_events": source.events.qsize(), "bad_frames": source.bad_frames,
                    "errors": source.status.errors,
                    "ignored": sum(source.tracker.stats.ignored.values())})  # fmt: skip
    return out


async def direct(path: Path, data_dir: str, limit: int) -> dict[str, Any]:
    """The daemon side without sockets: read each frame as the AMI source does (its fast path:
    the event name, events the tracker ignores only counted, the rest parsed to a dict;
    panoramisk's Message for anything else), feed the tracker, Daemon.process."""
    from panoramisk.message import Message

    from tollwatch.cdr_ingest.live.ami import _plain
    from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
    from tollwatch.cdr_ingest.live.ami_framing import event_name, parse_event
    from tollwatch.sources import cdr_options

    settings = bench_settings(1, data_dir)
    daemon = make_daemon(settings, data_dir)
    tracker = AmiCallTracker("pbx", cdr_options(settings))
    tracker.use_version("11.0.0")  # as the login banner tells it
    t_parse = t_track = t_proc = t_pub = 0.0
    publisher = getattr(daemon, "publisher", None)  # None: a checkout from before it
    n = fed = 0
    batch: list[str] = []
    it = frames(path)
    pc = time.perf_counter
    while True:
        batch = [f.decode("utf-8", "replace").strip() for f in _take(it, 10000)]
        if not batch or n >= limit:
            break
        n += len(batch)
        t = pc()
        msgs: list[dict[str, str]] = []
        for f in batch:
            name = event_name(f)
            if name is not None and tracker.skip(name):
                continue
            msg = parse_event(f) if name is not None else None
            if msg is None:
                m = Message.from_line(f)
                if m is None or "Event" not in m:
                    continue
                msg = _plain(m)
            msgs.append(msg)
        t_parse += pc() - t
        t = pc()
        out = []
        for msg in msgs:
            fed += 1
            out += tracker.feed(msg, datetime.now(UTC))
        t_track += pc() - t
        t = pc()
        for ev in out:
            await daemon.process(ev)
        t_proc += pc() - t
        t = pc()
        if publisher is not None:
            await publisher.publish_queued()
        t_pub += pc() - t
    if publisher is not None and hasattr(publisher, "written"):
        await publisher.written()
    total = t_parse + t_track + t_proc + t_pub
    return {
        "mode": "direct", "messages": n, "parsed": fed, "live_events": daemon.events,
        "read_s": t_parse, "tracker_s": t_track, "process_s": t_proc, "publish_s": t_pub,
        "total_s": total,
        "msgs_per_s": n / total, "read_msgs_per_s": n / t_parse,
        "process_live_events_per_s": daemon.events / t_proc if t_proc else 0.0,
        "calls_seen": daemon.pipelines["pbx"].calls_seen,
        "incidents": len(daemon.store.incidents()),
    }  # fmt: skip


def _take(it: Iterator[bytes], n: int) -> list[bytes]:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


COMPONENTS = (  # (label, substring of the code's file name), first match wins
    ("panoramisk (parse, dispatch)", "panoramisk"),
    ("AmiSource glue (ami.py)", "cdr_ingest/live/ami.py"),
    ("tracker (ami_calls.py)", "ami_calls.py"),
    ("classification (rules/destinations, numbering)", "rules/destinations"),
    ("classification (rules/destinations, numbering)", "rules/numbering"),
    ("classification (rules/destinations, numbering)", "rules/prefixes"),
    ("classification (rules/destinations, numbering)", "phonenumbers"),
    ("classification (rules/destinations, numbering)", "polars"),
    ("incident view (report_format)", "report_format"),
    ("SQLite store (state.py, sqlite3, json)", "tollwatch/state.py"),
    ("SQLite store (state.py, sqlite3, json)", "sqlite3"),
    ("SQLite store (state.py, sqlite3, json)", "json/"),
    ("snapshot pickle (live.py)", "pickle"),
    ("live pipeline (tollwatch/live.py)", "tollwatch/live.py"),
    ("daemon (tollwatch/daemon.py)", "tollwatch/daemon.py"),
    ("rule engine (rules/)", "/rules/"),
    ("events, dataclasses", "cdr_ingest/live/events.py"),
    ("asyncio loop, sockets", "asyncio"),
    ("asyncio loop, sockets", "selectors"),
)


def by_component(prof: cProfile.Profile) -> list[tuple[str, float]]:
    st = pstats.Stats(prof)
    total: dict[str, float] = defaultdict(float)
    for (file, _line, func), (_cc, _nc, tt, _ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        label = "other"
        if file == "~":  # C builtins: name them by function
            label = "builtins (str/re/dict ops called from the above)"
            if "PyLazyFrame" in func or "PyDataFrame" in func or "PyExpr" in func:
                label = "classification (rules/destinations, numbering)"
            elif "sqlite3" in func or "execute" in func:
                label = "SQLite store (state.py, sqlite3, json)"
            elif "select" in func or "poll" in func:
                label = "asyncio loop, sockets"
            elif "pickle" in func or "dumps" in func:
                label = "snapshot pickle (live.py)"
        else:
            for name, needle in COMPONENTS:
                if needle in file:
                    label = name
                    break
        total[label] += tt
    return sorted(total.items(), key=lambda kv: -kv[1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("file", type=Path, help="an AMI stream from gen_ami.py")
    ap.add_argument("--rate", type=float, default=0.0, help="messages/s, 0: as fast as possible")
    ap.add_argument(
        "--all-events",
        action="store_true",
        help="send every message, ignoring the login's event mask (VarSet, ...)",
    )
    ap.add_argument("--direct", action="store_true", help="daemon side alone, no sockets")
    ap.add_argument(
        "--reader",
        action="store_true",
        help="the AMI read path alone (framing, fast path, tracker), no socket",
    )
    ap.add_argument("--passes", type=int, default=3, help="--reader: passes (best CPU time)")
    ap.add_argument("--limit", type=int, default=10**9, help="--direct, --reader: messages at most")
    ap.add_argument("--profile", type=Path, help="cProfile the daemon process, stats to FILE")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument(
        "--local-hour", type=int, choices=range(24), metavar="H",
        help="the site's clock reads H o'clock when the run starts (a fixed-offset zone): "
        "10 for office hours, 22 for after hours; default Asia/Tokyo, whatever its time",
    )
    ap.add_argument("--json", type=Path, help="append the result as one JSON line to FILE")
    ap.add_argument(
        "--no-fork",
        action="store_true",
        help="pickle every snapshot on the event loop (as before tollwatch.snapshots)",
    )
    ap.add_argument(
        "--rss-every",
        type=float,
        default=0.0,
        help="sample the daemon's RSS every S seconds (rss_mb_over_time)",
    )
    ap.add_argument("--rss-log", type=Path, help="--rss-every: append each sample to FILE too")
    ap.add_argument(
        "--trace",
        action="store_true",
        help="split each DialBegin -> decision into stages; name what held the loop "
        "during the slow ones (bench/daemon_trace.py)",
    )
    ap.add_argument(
        "--isolate",
        action="store_true",
        help="for the run, move every other process's threads off the daemon's core (root; "
        "their affinity is put back after; bench/core_aside.py)",
    )
    ap.add_argument(
        "--loop",
        type=int,
        default=1,
        help="send the file N times, each pass's calls with new ids (long runs)",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="first send the file N more times as fast as the daemon takes them (each pass "
        "the next day, as --loop): state that spans days is full when the --loop passes start",
    )
    ap.add_argument(
        "--pass-every",
        type=float,
        default=DAY,
        help="a file with Timestamp headers (gen_ami.py --timestamps): event time between the "
        "starts of two --loop passes, s (default a day: each pass is the next day's traffic)",
    )
    args = ap.parse_args(argv)
    global SITE_TZ
    if args.local_hour is not None:
        SITE_TZ = zone_at_hour(args.local_hour, datetime.now(UTC))
    pinned = pin(0)
    load = os.getloadavg()
    started = datetime.now(ZoneInfo(SITE_TZ))
    with (
        core_to_self(0, args.isolate) as isolated,
        tempfile.TemporaryDirectory(prefix="tollwatch-bench-") as data_dir,
    ):
        prof = cProfile.Profile() if args.profile else None
        if prof:  # imports before, so the profile shows the work, not the imports
            import tollwatch.daemon
            import tollwatch.sources
            import tollwatch.state  # noqa: F401

            prof.enable()
        t0 = time.perf_counter()
        if args.reader:
            res = asyncio.run(reader(args.file, args.limit, args.passes))
        elif args.direct:
            res = asyncio.run(direct(args.file, data_dir, args.limit))
        else:
            res = asyncio.run(
                end_to_end(
                    args.file,
                    args.rate,
                    not args.all_events,
                    data_dir,
                    args.timeout,
                    args.rss_every,
                    args.no_fork,
                    args.trace,
                    args.loop,
                    args.pass_every,
                    args.warmup,
                    args.rss_log,
                )
            )
        res["run_s"] = time.perf_counter() - t0
        if prof:
            prof.disable()
    res["daemon_pinned"] = pinned
    res["isolated"] = isolated
    res["site_tz"] = SITE_TZ
    res["local_start"] = started.isoformat(timespec="minutes")
    res["loadavg_before"] = load
    res["loadavg_after"] = os.getloadavg()
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(res, indent=1, default=str))
    if args.json:
        with args.json.open("a") as f:
            f.write(json.dumps(res, default=str) + "\n")
    if prof:
        buf = io.StringIO()
        comps = by_component(prof)
        total = sum(t for _, t in comps)
        buf.write(f"time by component (tottime, {total:.1f} s in the daemon process)\n")
        for name, t in comps:
            buf.write(f"  {name:52} {t:7.2f} s  {100 * t / total:5.1f}%\n")
        buf.write("\n")
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(40)
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
        args.profile.write_text(buf.getvalue())
        print(buf.getvalue()[:6000])


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])
