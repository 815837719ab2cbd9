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

At the end: calls seen (the daemon's status, per PBX) = calls sent (the AMI stream through a
fresh tracker; the CSV rows through the batch reader), alerts sent (incidents with an 'opened'
row sent in the outbox) = incidents (stored, warning or critical), reconnects, storage
failures, and the daemon's RSS over time.

`--tracemalloc SECONDS`: the daemon runs with tracemalloc on and dumps a snapshot every SECONDS;
the result lists what grew most between the first snapshot after warm-up and the last (by
source line). Tracing costs CPU and memory: RSS figures of such a run are not the daemon's.

    sudo nice -n 5 python3 bench/soak.py --minutes 30 --every 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gen_ami import generate  # noqa: E402
from tests.slack_stub import SlackStub  # noqa: E402
from tollwatch.cdr_ingest import CdrOptions, scan_cdrs  # noqa: E402
from tollwatch.cdr_ingest.live import CallStarted  # noqa: E402
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker  # noqa: E402
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, parse_frames  # noqa: E402

SECRET = "soak-secret"
KINDS = ["ami_drop", "logrotate", "slack_500", "disk_full", "slack_429"]
ROTATIONS = ["create", "copytruncate", "copytruncate_gz"]


def calls_in(stream: bytes) -> int:
    tracker = AmiCallTracker("pbx")
    now = datetime.now(UTC)
    n = 0
    for msg in parse_frames(stream):
        n += sum(isinstance(e, CallStarted) for e in tracker.feed(msg, now))
    return n


class Server:
    """The fake Asterisk in its own thread and event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake = FakeAmi(username="tollwatch", secret=SECRET)
        self.thread.start()
        self.call(self.fake.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def replay(self, stream: bytes, pace: float) -> int:
        fut = asyncio.run_coroutine_threadsafe(self.fake.replay(stream, pace=pace), self.loop)
        sent: int = await asyncio.wrap_future(fut)
        return sent

    def logins(self) -> int:
        return sum(1 for a in list(self.fake.actions) if a.get("Action") == "Login")


class CdrWriter:
    """Master.csv of a PBX without AMI, written as Asterisk's cdr_csv does (a row when a call
    ends, 18 columns, every string quoted), and rotated as logrotate does."""

    def __init__(self, path: Path, seed: int = 7) -> None:
        self.path = path
        self.rng = random.Random(seed)
        self.rows: list[bytes] = []
        self.rotations: list[str] = []
        self._uid = 1000
        path.write_bytes(b"")

    def _row(self, src: str, dialed: str, talk: int) -> bytes:
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(seconds=talk + 5)
        answer = start + timedelta(seconds=5)
        self._uid += 1
        uid = f"{int(end.timestamp())}.{self._uid}"
        chan = f"PJSIP/{src}-{self._uid:08x}"
        peer = f"PJSIP/carrier-{self._uid:08x}"
        t = "%Y-%m-%d %H:%M:%S"
        cols = ["soak", src, dialed, "from-internal", f'"Desk {src}" <{src}>', chan, peer,
                "Dial", f"PJSIP/{dialed}@carrier,60", start.strftime(t), answer.strftime(t),
                end.strftime(t)]
        quoted = ",".join('"' + c.replace('"', '""') + '"' for c in cols)
        return (f'{quoted},{talk + 5},{talk},"ANSWERED","DOCUMENTATION","{uid}",""\n').encode()

    def write_calls(self, attack: bool = False) -> int:
        """A few ordinary outbound calls, or a burst of 12 to Sierra Leone from one phone."""
        if attack:
            ext = str(self.rng.randrange(200, 300))
            base = self.rng.randrange(1000000, 9000000)
            rows = [self._row(ext, f"010232{base + k}", self.rng.randrange(30, 300))
                    for k in range(12)]
        else:
            rows = []
            for _ in range(self.rng.randrange(1, 4)):
                ext = str(self.rng.randrange(200, 300))
                if self.rng.random() < 0.8:
                    num = "03" + "".join(str(self.rng.randrange(10)) for _ in range(8))
                else:
                    num = "0101212555" + "".join(str(self.rng.randrange(10)) for _ in range(4))
                rows.append(self._row(ext, num, self.rng.randrange(5, 600)))
        with self.path.open("ab") as fh:
            fh.write(b"".join(rows))
        self.rows.extend(rows)
        return len(rows)

    def rotate(self, mode: str) -> str:
        """One logrotate run; the rotated name gets a counter, like `dateext`."""
        n = len(self.rotations) + 1
        old = self.path.with_name(f"{self.path.name}-{n}")
        if mode == "create":
            os.rename(self.path, old)
            self.path.write_bytes(b"")
        elif mode == "copytruncate":
            shutil.copyfile(self.path, old)
            with self.path.open("r+b") as fh:
                fh.truncate(0)
        else:  # copytruncate + compress (no delaycompress)
            old = old.with_name(old.name + ".gz")
            with self.path.open("rb") as src, gzip.open(old, "wb") as dst:
                shutil.copyfileobj(src, dst)
            with self.path.open("r+b") as fh:
                fh.truncate(0)
        self.rotations.append(f"{mode} -> {old.name}")
        return self.rotations[-1]

    def outbound_rows(self, scratch: Path) -> int:
        """The rows written, read by the batch reader: how many are outbound calls."""
        scratch.write_bytes(b"".join(self.rows))
        lf = scan_cdrs([scratch], CdrOptions(timezone="UTC"))
        return int(lf.filter(pl.col("outbound") & pl.col("problem").is_null()).select(
            pl.len()).collect().item())


def config(tmp: Path, data: Path, cdr: Path, ami_port: int, slack_url: str) -> Path:
    path = tmp / "soak.toml"
    path.write_text(f"""
[site]
country = "JP"
timezone = "UTC"
name = "soak"

[daemon]
data_dir = "{data}"
max_backoff = "2s"

[[ami]]
name = "pbx"
host = "127.0.0.1"
port = {ami_port}
username = "tollwatch"
secret_env = "SOAK_AMI_SECRET"

[[csv_sources]]
name = "csvpbx"
path = "{cdr}"

[slack]
enabled = true
channel = "#soak"
token_env = "SOAK_SLACK_TOKEN"
base_url = "{slack_url}"
""")
    return path


# The daemon under tracemalloc: a thread dumps a snapshot every N seconds into a directory.
TRACED = """
import runpy, sys, threading, time, tracemalloc
every, where = float(sys.argv[1]), sys.argv[2]
def dump():
    n = 0
    while True:
        time.sleep(every)
        tracemalloc.take_snapshot().dump(f"{where}/snap-{n:04d}")
        n += 1
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["tollwatch", *sys.argv[3:]]
runpy.run_module("tollwatch", run_name="__main__", alter_sys=True)
"""


def growth(where: Path, warmup_s: float, every: float, top: int = 20) -> dict[str, Any]:
    """What grew most (by source line) from the first snapshot after warm-up to the last."""
    import tracemalloc

    snaps = sorted(where.glob("snap-*"))
    first_i = min(len(snaps) - 1, max(0, int(warmup_s // every)))
    if len(snaps) < 2 or first_i >= len(snaps) - 1:
        return {"snapshots": len(snaps)}
    first = tracemalloc.Snapshot.load(str(snaps[first_i]))
    last = tracemalloc.Snapshot.load(str(snaps[-1]))
    stats = last.compare_to(first, "lineno")
    total = sum(s.size_diff for s in stats)
    return {"snapshots": len(snaps), "from_s": round((first_i + 1) * every),
            "to_s": round(len(snaps) * every), "traced_mib_first": round(
                sum(s.size for s in first.statistics("filename")) / 2**20, 1),
            "traced_mib_last": round(sum(s.size for s in last.statistics("filename")) / 2**20, 1),
            "net_growth_kib": round(total / 1024, 1),
            "top": [f"{s.size_diff / 1024:+.1f} KiB {s.count_diff:+d} blocks "
                    f"{s.traceback[0].filename.replace(str(ROOT) + '/', '')}:"
                    f"{s.traceback[0].lineno}" for s in stats[:top]]}


def read_status(data: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        doc: dict[str, Any] = json.loads((data / "status.json").read_text())
        return doc
    return {}


def rss_summary(samples: list[tuple[float, float]], warmup: float) -> dict[str, Any]:
    """First (after warm-up), middle, last, max, and the least-squares slope after warm-up."""
    kept = [(t, r) for t, r in samples if t >= warmup] or samples
    mid = kept[len(kept) // 2]
    n = len(kept)
    mean_t = sum(t for t, _ in kept) / n
    mean_r = sum(r for _, r in kept) / n
    var = sum((t - mean_t) ** 2 for t, _ in kept) or 1.0
    slope = sum((t - mean_t) * (r - mean_r) for t, r in kept) / var * 3600
    return {"start": round(kept[0][1], 1), "start_at_s": round(kept[0][0]),
            "mid": round(mid[1], 1), "mid_at_s": round(mid[0]), "end": round(kept[-1][1], 1),
            "end_at_s": round(kept[-1][0]), "max": round(max(r for _, r in kept), 1),
            "slope_mib_per_hour": round(slope, 1), "samples": len(samples),
            "per_5_min": [round(r, 1) for t, r in _every(samples, 300.0)]}


def _every(samples: list[tuple[float, float]], step: float) -> list[tuple[float, float]]:
    """The first sample of each `step` seconds."""
    out: list[tuple[float, float]] = []
    for t, r in samples:
        if not out or t - out[-1][0] >= step:
            out.append((t, r))
    return out


async def soak(minutes: float, every: float, calls: int, keep: bool = False,
               full_for: float = 30.0, trace_every: float = 0.0) -> dict[str, Any]:
    stream = b"".join(generate(calls, concurrent=60, seed=11))
    frames = stream.count(b"\r\n\r\n")
    pace = minutes * 60 / frames
    ami_expected = calls_in(stream)
    tmp = Path(tempfile.mkdtemp(prefix="tw-soak-"))
    data_mount = tmp / "disk"
    data_mount.mkdir()
    real_disk = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(data_mount)],
        check=False).returncode == 0
    data = data_mount / "data"
    cdr_dir = tmp / "cdr"
    cdr_dir.mkdir()
    writer = CdrWriter(cdr_dir / "Master.csv")
    stub = SlackStub().start()
    server = Server()
    cfg = config(tmp, data, writer.path, server.fake.port, stub.base_url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SOAK_SLACK_TOKEN": "xoxb-soak",
           "SOAK_AMI_SECRET": SECRET}
    log_path = tmp / "daemon.log"
    cmd = [sys.executable, "-m", "tollwatch", "run", "--config", str(cfg)]
    traces = tmp / "traces"
    if trace_every:
        traces.mkdir()
        cmd = [sys.executable, "-X", "tracemalloc=1", "-c", TRACED, str(trace_every),
               str(traces), "run", "--config", str(cfg)]
    with log_path.open("wb") as log_fh:
        daemon = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    proc = psutil.Process(daemon.pid)
    for _ in range(120):  # logged in and the follower started
        if server.logins() and read_status(data):
            break
        await asyncio.sleep(0.5)
    started = time.monotonic()
    replay = asyncio.create_task(server.replay(stream, pace))
    faults: list[str] = []
    rss: list[tuple[float, float]] = []
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
        if not rss or now - rss[-1][0] - started >= 10:
            rss.append((now - started, proc.memory_info().rss / 2**20))
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
                with filler.open("wb") as fh, contextlib.suppress(OSError):
                    while True:
                        fh.write(b"\0" * (1 << 20))
            for _ in range(int(full_for)):  # the CDR writer goes on (its disk is not the full one)
                await asyncio.sleep(1)
                if time.monotonic() - csv_at >= 2:
                    csv_at = time.monotonic()
                    writer.write_calls()
            filler.unlink(missing_ok=True)
        faults.append(f"{now - started:.0f}s {what}")
        print(faults[-1], flush=True)
    sent = replay.result()
    traffic_s = time.monotonic() - started
    # drain: nothing waiting, calls seen and Slack posts unchanged for 15 s
    last: tuple[Any, ...] = ()
    quiet_since = time.monotonic()
    for _ in range(300):
        doc = read_status(data).get("daemon") or {}
        now_state = (json.dumps(doc.get("calls_seen")), len(stub.posts()))
        if now_state != last or (doc.get("backlog") or {}).get("events", 1):
            last, quiet_since = now_state, time.monotonic()
        elif time.monotonic() - quiet_since >= 15:
            break
        rss.append((time.monotonic() - started, proc.memory_info().rss / 2**20))
        await asyncio.sleep(2)
    drain_s = time.monotonic() - started - traffic_s
    daemon.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(daemon.wait, 120)
    status = read_status(data)
    seen = (status.get("daemon") or {}).get("calls_seen") or {}
    csv_status = next((s for s in status.get("sources", []) if s.get("name") == "csvpbx"), {})
    from tollwatch.alerting.outbox import Outbox
    from tollwatch.state import StateStore

    store = StateStore.in_dir(data)
    incidents = [i for i in store.incidents() if i["severity"] in ("warning", "critical")]
    store.close()
    box = Outbox.in_dir(data)
    opened = {row[0] for row in box._db.execute(
        "SELECT incident_id FROM outbox WHERE kind='opened' AND state IN ('sent','coalesced')")}
    pending = len(box.pending())
    box.close()
    log_text = log_path.read_text(errors="replace")
    csv_expected = writer.outbound_rows(tmp / "written.csv")
    result = {
        "minutes": round(traffic_s / 60, 1), "drain_s": round(drain_s), "frames_sent": sent,
        "calls_sent": {"pbx": ami_expected, "csvpbx": csv_expected},
        "calls_seen": seen, "csv_rows_written": len(writer.rows),
        "csv_events": csv_status.get("events"), "csv_errors": csv_status.get("errors"),
        "incidents": len(incidents),
        "incidents_by_pbx": {p: sum(i["pbx"] == p for i in incidents) for p in ("pbx", "csvpbx")},
        "incidents_alerted": len(opened & {i["id"] for i in incidents}),
        "alerts_pending": pending, "slack_posts": len(stub.posts()), "logins": server.logins(),
        "faults": faults, "rotations": writer.rotations, "real_tmpfs": real_disk,
        "daemon_exit": code,
        "log": {"lines": log_text.count("\n"), "tracebacks": log_text.count("Traceback"),
                "storage_failed": log_text.count("keeping it in memory"),
                "storage_back": log_text.count("writable again"),
                "copytruncate": log_text.count("copytruncate"),
                "rotated": log_text.count("rotated, finishing")},
        "rss_mib": rss_summary(rss, warmup=60.0),
    }
    if trace_every:
        result["tracemalloc"] = growth(traces, 60.0, trace_every)
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
    ap.add_argument("--tracemalloc", type=float, default=0.0, metavar="SECONDS",
                    help="trace the daemon's allocations, a snapshot every SECONDS")
    args = ap.parse_args(argv)
    result = asyncio.run(soak(args.minutes, args.every, args.calls, args.keep,
                               args.full_for, args.tracemalloc))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
