"""Soak: the daemon under mixed traffic with faults injected every few minutes.

Two processes. This one plays the world: a fake Asterisk (its own thread and event loop, so it
sends at its own pace) streams a busy PBX's generated AMI traffic (bench/gen_ami.py: domestic,
international, a few high-risk calls); a second PBX without AMI gets rows appended to its
Master.csv (now and then a burst of calls to Sierra Leone); Slack is the local stub. The daemon
is the real `tollwatch run` in a child process (its data directory on a small tmpfs when run as
root), so the RSS sampled is the daemon's alone. Every `--every` seconds the next fault, in turn:

* AMI drop: the server drops the connection (traffic held meanwhile: Asterisk's own events
  during an outage are recovered from the CDR, issue 10; here we check the connection layer);
* logrotate of Master.csv, in turn: rename + create, copytruncate, copytruncate + compress
  (the copy gzipped at once);
* Slack 500 x5;
* disk full for 30 s (`--full-for`; the tmpfs filled, then freed);
* Slack 429 (Retry-After 2) x3.

At the end the bench waits until every PBX's calls seen reach its calls sent, nothing waits in
the daemon's backlog and Slack is quiet for 15 s (or `--drain-timeout`; `drain` says which),
then stops the daemon and reports: calls seen (the daemon's status, per PBX) against calls sent
(the AMI stream through a fresh tracker; the CSV rows through the batch reader), and the calls
missing by name: those absent from the daemon's call-id memory in its last snapshot (exact up
to 20,000 calls per PBX), each CSV row with when it was written and which rotation took its
file (meaningful only when `stores_unsaved_at_exit` is 0: a store still kept in memory at the
end, its disk full, leaves an older snapshot and outbox in the file); alerts sent (incidents
with an 'opened' row sent in the outbox) = incidents (stored, warning or critical);
reconnects, storage failures; and the daemon's memory over time: RSS split by
/proc/PID/smaps into glibc's main heap, its thread arenas, other anonymous maps and mapped
files (bench/soak_memory.py), with the daemon's CPU seconds and the load average.
`--env NAME=VALUE` sets the daemon's environment (MALLOC_ARENA_MAX, TOLLWATCH_MALLOC_TRIM).
`--learn-days 28` starts the daemon with its baseline's period full (28 days of this traffic
before now, learned as `tollwatch learn` does: bench/soak_history.py), so what still grows
once the rules' spans are full is what no span or cap bounds.

`--tracemalloc SECONDS`: the daemon runs with tracemalloc on and dumps a snapshot every SECONDS;
the result lists what grew most between the first snapshot after warm-up and the last (by
source line). Tracing costs CPU and memory: RSS figures of such a run are not the daemon's.

    sudo nice -n 5 python3 bench/soak.py --minutes 30 --every 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import soak_memory as memory  # noqa: E402
from bench.gen_ami import generate  # noqa: E402
from bench.soak_clock import on_fast_clock, real_seconds  # noqa: E402
from bench.soak_history import in_child  # noqa: E402
from bench.soak_world import (  # noqa: E402
    KINDS,
    ROTATIONS,
    SECRET,
    SHORT_WINDOWS,
    CallCounter,
    CdrWriter,
    Server,
    config,
    frame_count,
    missing,
)
from tests.slack_stub import SlackStub  # noqa: E402

SEEN_CAP = 20_000  # the daemon remembers the last 20,000 call ids per PBX (tollwatch/live.py)
__all__ = ["KINDS", "CdrWriter", "main", "missing", "soak"]


def read_status(data: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        doc: dict[str, Any] = json.loads((data / "status.json").read_text())
        return doc
    return {}


class Daemon:
    """`tollwatch run` in a child process, its memory sampled (soak_memory.split)."""

    def __init__(
        self, cmd: list[str], env: dict[str, str], log_path: Path, progress: Path | None = None
    ) -> None:
        with log_path.open("wb") as log_fh:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
        self.cpu = psutil.Process(self.proc.pid)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.t0 = time.monotonic()
        self.real0 = real_seconds()
        self.progress = progress  # each sample appended as a JSON line (figures of a cut run)

    def sample(self, every: float) -> None:
        now = time.monotonic() - self.t0
        if self.samples and now - self.samples[-1][0] < every:
            return
        with contextlib.suppress(OSError):
            parts = memory.split(self.proc.pid)
            times = self.cpu.cpu_times()
            parts["cpu_s"] = round(times.user + times.system, 1)
            parts["load1"] = round(os.getloadavg()[0], 2)
            parts["real_s"] = round(real_seconds() - self.real0, 1)
            self.samples.append((now, parts))
            if self.progress is not None:
                with self.progress.open("a") as fh:
                    fh.write(json.dumps({"clock_s": round(now, 1), **parts}) + "\n")


def fill(path: Path, chunk: int = 1 << 20) -> None:
    """Fill the disk `path` is on (a file of zeros until ENOSPC). Unbuffered, and the error
    suppressed around the file: a buffered file's close() flushed what the last write left
    over onto the full disk and raised ENOSPC, which killed the bench (not the daemon)."""
    with contextlib.suppress(OSError), path.open("wb", buffering=0) as fh:
        while True:
            fh.write(b"\0" * chunk)


async def drain(
    data: Path,
    stub: SlackStub,
    expected: dict[str, int],
    daemon: Daemon,
    timeout: float,
    sample_every: float,
) -> str:
    """Wait until every PBX's calls seen reach the calls sent, nothing is waiting and the
    Slack posts have not changed for 15 s; or `timeout` seconds. Says which."""
    deadline = time.monotonic() + timeout
    last: tuple[Any, ...] = ()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        doc = read_status(data).get("daemon") or {}
        seen = doc.get("calls_seen") or {}
        state = (json.dumps(seen, sort_keys=True), len(stub.posts()))
        now = time.monotonic()
        if state != last or (doc.get("backlog") or {}).get("events", 1):
            last, quiet_since = state, now
        complete = all(seen.get(p, 0) >= n for p, n in expected.items())
        if complete and now - quiet_since >= 15:
            return "complete"
        daemon.sample(sample_every)
        await asyncio.sleep(2)
    return "timeout"


async def soak(
    minutes: float,
    every: float,
    calls: int,
    keep: bool = False,
    full_for: float = 30.0,
    trace_every: float = 0.0,
    extra_env: dict[str, str] | None = None,
    sample_every: float = 10.0,
    drain_timeout: float = 900.0,
    short_windows: bool = False,
    disk_mib: int = 96,
    speed: float = 1.0,
    daemon_nice: int | None = None,
    progress: Path | None = None,
    learn_days: int = 0,
) -> dict[str, Any]:
    frames = frame_count(calls)
    ami_calls = CallCounter()
    tmp = Path(tempfile.mkdtemp(prefix="tw-soak-"))
    data_mount = tmp / "disk"
    data_mount.mkdir()
    real_disk = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={disk_mib}m", "tmpfs", str(data_mount)],
            check=False,
        ).returncode
        == 0
    )
    data = data_mount / "data"
    cdr_dir = tmp / "cdr"
    cdr_dir.mkdir()
    writer = CdrWriter(cdr_dir / "Master.csv")
    stub = SlackStub().start()
    server = Server()
    extra = SHORT_WINDOWS if short_windows else ""
    cfg = config(tmp, data, writer.path, server.fake.port, stub.base_url, extra)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SOAK_SLACK_TOKEN": "xoxb-soak",
        "SOAK_AMI_SECRET": SECRET,
        **(extra_env or {}),
    }
    # the baseline's period full from the start: the soak's traffic of the days before, learned
    # as `tollwatch learn` does and stored as the daemon's own (bench/soak_history.py)
    learned = in_child(data, cfg, learn_days, tmp) if learn_days else {}
    log_path = tmp / "daemon.log"
    cmd = [sys.executable, "-m", "tollwatch", "run", "--config", str(cfg)]
    traces = tmp / "traces"
    if trace_every:
        traces.mkdir()
        cmd = [
            sys.executable,
            "-X",
            "tracemalloc=1",
            "-c",
            memory.TRACED,
            str(trace_every),
            str(traces),
            "run",
            "--config",
            str(cfg),
        ]
    daemon = Daemon(cmd, env, log_path, progress)
    if daemon_nice is not None:
        with contextlib.suppress(OSError):
            daemon.cpu.nice(daemon_nice)
    up_by = time.monotonic() + 60 * speed  # start-up takes real seconds, not clock seconds
    while time.monotonic() < up_by:  # logged in and the follower started
        if server.logins() and read_status(data):
            break
        await asyncio.sleep(0.5)
    started = daemon.t0 = writer.t0 = time.monotonic()
    daemon.real0 = real_seconds()
    stream = generate(calls, concurrent=60, seed=11)
    replay = asyncio.create_task(server.replay(stream, frames, minutes * 60, seen=ami_calls.feed))
    faults: list[str] = []
    nxt, k, r = started + every, 0, 0
    csv_at, attack_every = started, 420.0
    next_attack = started + 200.0
    while not replay.done():
        await asyncio.sleep(1)
        now = time.monotonic()
        if now - csv_at >= 2:  # a few CDR rows every 2 s, an attack burst every 7 min
            csv_at = now
            writer.write_calls(attack=now >= next_attack)
            if now >= next_attack:
                next_attack += attack_every
        daemon.sample(sample_every)
        if now < nxt:
            continue
        kind = KINDS[k % len(KINDS)]
        k += 1
        nxt = now + every
        what = kind
        if kind == "ami_drop":
            server.loop.call_soon_threadsafe(server.fake._running.clear)
            before = server.logins()
            server.loop.call_soon_threadsafe(server.fake.drop_clients)
            while server.logins() == before:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            server.loop.call_soon_threadsafe(server.fake.resume)
        elif kind == "logrotate":
            what = f"logrotate {writer.rotate(ROTATIONS[r % len(ROTATIONS)])}"
            r += 1
        elif kind == "slack_500":
            stub.fail(500, times=5)
        elif kind == "slack_429":
            stub.fail(429, times=3, retry_after=2)
        elif kind == "disk_full":
            filler = data_mount / "filler"
            if real_disk:
                fill(filler)
            for _ in range(int(full_for)):  # the CDR writer goes on (its disk is not the full one)
                await asyncio.sleep(1)
                daemon.sample(sample_every)
                if time.monotonic() - csv_at >= 2:
                    csv_at = time.monotonic()
                    writer.write_calls()
            filler.unlink(missing_ok=True)
        faults.append(f"{now - started:.0f}s {what}")
        print(faults[-1], flush=True)
    sent = replay.result()
    ami_keys = ami_calls.keys
    traffic_s = time.monotonic() - started
    traffic_real_s = real_seconds() - daemon.real0
    csv_rows = writer.outbound_rows(tmp / "written.csv")
    expected = {"pbx": len(ami_keys), "csvpbx": len(csv_rows)}
    drained = await drain(data, stub, expected, daemon, drain_timeout, sample_every)
    drain_s = time.monotonic() - started - traffic_s
    daemon.proc.send_signal(signal.SIGTERM)
    stop = "exited after SIGTERM"
    try:
        code = await asyncio.to_thread(daemon.proc.wait, 120 * speed)
    except subprocess.TimeoutExpired:  # still busy (a traced daemon far behind): report anyway
        daemon.proc.kill()
        code = await asyncio.to_thread(daemon.proc.wait)
        stop = f"killed: no exit within {120 * speed:.0f} s of SIGTERM"
    status = read_status(data)
    seen = (status.get("daemon") or {}).get("calls_seen") or {}
    csv_status = next((s for s in status.get("sources", []) if s.get("name") == "csvpbx"), {})
    from tollwatch.alerting.outbox import Outbox
    from tollwatch.state import StateStore

    store = StateStore.in_dir(data)
    incidents = [i for i in store.incidents() if i["severity"] in ("warning", "critical")]
    # the days each PBX's baseline held when the daemon saved it at exit (with --learn-days:
    # the history's, so the daemon started from it and did not learn afresh)
    baseline_days = {p: len(json.loads(t).get("days", {})) for p, t in store.baselines().items()}
    store.close()
    box = Outbox.in_dir(data)
    opened = {
        row[0]
        for row in box._db.execute(
            "SELECT incident_id FROM outbox WHERE kind='opened' AND state IN ('sent','coalesced')"
        )
    }
    pending = len(box.pending())
    box.close()
    # the daemon's call-id memory holds the last SEEN_CAP calls of each PBX: those are checked
    lost = missing(data, {"pbx": ami_keys[-SEEN_CAP:], "csvpbx": list(csv_rows)[-SEEN_CAP:]})
    log_text = log_path.read_text(errors="replace")
    # a store still in memory at the end (its disk full, e.g. the tmpfs filled by the state
    # itself) was not saved: the file's snapshot and outbox are older than the run's end
    unsaved = log_text.count("could not be written at shutdown")
    result = {
        "speed": speed,
        "minutes": round(traffic_s / 60, 1),
        "real_minutes": round(traffic_real_s / 60, 1),
        "drain_s": round(drain_s),
        "drain": drained,
        "frames_sent": sent,
        "frames_in_stream": frames,
        "calls_sent": expected,
        "calls_seen": seen,
        "missing": {
            "pbx": lost["pbx"][:50],
            "csvpbx": [f"{k}: {writer.describe(csv_rows[k])}" for k in lost["csvpbx"][:50]],
        },
        "missing_count": {p: len(v) for p, v in lost.items()},
        "checked_by_name": {p: min(n, SEEN_CAP) for p, n in expected.items()},
        "stores_unsaved_at_exit": unsaved,
        "csv_rows_written": len(writer.rows),
        "csv_events": csv_status.get("events"),
        "csv_errors": csv_status.get("errors"),
        "incidents": len(incidents),
        "incidents_by_pbx": {p: sum(i["pbx"] == p for i in incidents) for p in ("pbx", "csvpbx")},
        "incidents_alerted": len(opened & {i["id"] for i in incidents}),
        "alerts_pending": pending,
        "slack_posts": len(stub.posts()),
        "logins": server.logins(),
        "faults": faults,
        "rotations": writer.rotations,
        "real_tmpfs": real_disk,
        "daemon_exit": code,
        "daemon_stop": stop,
        "daemon_cpu_s": daemon.samples[-1][1].get("cpu_s"),
        "bench_cpu_s": round(sum(os.times()[:2]), 1),
        "load1": [s["load1"] for _, s in memory.every(daemon.samples, 300.0)],
        "log": {
            "lines": log_text.count("\n"),
            "tracebacks": log_text.count("Traceback"),
            "storage_failed": log_text.count("keeping it in memory"),
            "storage_back": log_text.count("writable again"),
            "copytruncate": log_text.count("copytruncate"),
            "rotated": log_text.count("rotated, finishing"),
            "memory": [ln for ln in log_text.splitlines() if "memory: " in ln][-20:],
        },
        "rss_mib": memory.summary(daemon.samples, warmup=60.0),
        "rss_per_5_real_min": memory.per_real(daemon.samples, 300.0),
        "env": extra_env or {},
        "short_windows": short_windows,
        "learned": learned,
        "baseline_days_at_exit": baseline_days,
    }
    if trace_every:
        result["tracemalloc"] = memory.growth(traces, 60.0, trace_every, ROOT)
    stub.down()
    server.call(server.fake.close())
    if real_disk:
        subprocess.run(["umount", "-l", str(data_mount)], check=False)
    if keep:
        result["dir"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--every", type=float, default=120)
    ap.add_argument("--calls", type=int, default=6000)
    ap.add_argument("--full-for", type=float, default=30, help="seconds the disk stays full")
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (log)")
    ap.add_argument(
        "--tracemalloc",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="trace the daemon's allocations, a snapshot every SECONDS",
    )
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the daemon's environment (e.g. MALLOC_ARENA_MAX=2)",
    )
    ap.add_argument(
        "--sample-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between samples of the daemon's memory (/proc/PID/smaps)",
    )
    ap.add_argument(
        "--drain-timeout",
        type=float,
        default=900.0,
        metavar="SECONDS",
        help="how long to wait after the traffic for calls seen to reach calls sent",
    )
    ap.add_argument("--disk-mib", type=int, default=96,
                    help="size of the data directory's tmpfs (as root)")  # fmt: skip
    ap.add_argument("--short-windows", action="store_true",
                    help="every rule and incident span at most 10 min (the state they bound "
                    "fills in minutes, not hours)")  # fmt: skip
    ap.add_argument("--speed", type=float, default=1.0,
                    help="run this bench and the daemon on a clock N times as fast as the real "
                    "one (libfaketime): --minutes, --every, --full-for, --drain-timeout and "
                    "every span of the daemon are then clock time")  # fmt: skip
    ap.add_argument("--daemon-nice", type=int, default=None, metavar="N",
                    help="the daemon's nice value (below the bench's own to keep up)")  # fmt: skip
    ap.add_argument("--learn-days", type=int, default=0, metavar="DAYS",
                    help="start with the baseline full: DAYS of the soak's traffic before now, "
                    "learned as `tollwatch learn` does (bench/soak_history.py)")  # fmt: skip
    ap.add_argument("--samples", type=Path, metavar="FILE",
                    help="append each memory sample to FILE when taken (JSON lines)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.speed != 1 and os.environ.get("TOLLWATCH_SOAK_SPEED") != f"{args.speed:g}":
        script = Path(__file__)
        return on_fast_clock(script, args.speed, sys.argv[1:] if argv is None else argv, args.out)
    extra = dict(kv.split("=", 1) for kv in args.env)
    result = asyncio.run(
        soak(
            args.minutes,
            args.every,
            args.calls,
            args.keep,
            args.full_for,
            args.tracemalloc,
            extra,
            args.sample_every,
            args.drain_timeout,
            args.short_windows,
            args.disk_mib,
            args.speed,
            args.daemon_nice,
            args.samples,
            args.learn_days,
        )
    )
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
