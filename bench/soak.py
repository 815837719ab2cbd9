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

from bench import soak_memory as memory  # noqa: E402
from bench.gen_ami import generate  # noqa: E402
from tests.slack_stub import SlackStub  # noqa: E402
from tollwatch.cdr_ingest import CdrOptions, scan_cdrs  # noqa: E402
from tollwatch.cdr_ingest.live import CallStarted  # noqa: E402
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker  # noqa: E402
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, parse_frames  # noqa: E402

SECRET = "soak-secret"
KINDS = ["ami_drop", "logrotate", "slack_500", "disk_full", "slack_429"]
ROTATIONS = ["create", "copytruncate", "copytruncate_gz"]


def calls_in(stream: bytes) -> list[str]:
    """The calls of an AMI stream, as the daemon's pipeline remembers them (`call_id|trunk`)."""
    tracker = AmiCallTracker("pbx")
    now = datetime.now(UTC)
    return [f"{e.call_id}|{e.trunk}" for msg in parse_frames(stream)
            for e in tracker.feed(msg, now) if isinstance(e, CallStarted)]


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
        self.written_at: list[tuple[float, int]] = []  # per row: seconds, rotations before it
        self.rotations: list[str] = []
        self.t0 = time.monotonic()
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
        at = (round(time.monotonic() - self.t0, 1), len(self.rotations))
        self.written_at.extend([at] * len(rows))
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

    def outbound_rows(self, scratch: Path) -> dict[str, int]:
        """The rows written, read by the batch reader: the outbound calls' `call_id|trunk` (as
        the daemon's pipeline remembers them), each with its row's index in `rows`."""
        scratch.write_bytes(b"".join(self.rows))
        lf = scan_cdrs([scratch], CdrOptions(timezone="UTC"))
        frame = lf.filter(pl.col("outbound") & pl.col("problem").is_null()).select(
            "call_id", "trunk", "origin").collect()
        return {f"{r['call_id']}|{r['trunk'] or ''}": int(r["origin"].rsplit(":", 1)[1]) - 1
                for r in frame.iter_rows(named=True)}

    def describe(self, index: int) -> str:
        """Where a row went: when it was written, into which file (before which rotation)."""
        at, rotations = self.written_at[index]
        nxt = (f"rotated by {self.rotations[rotations]}" if rotations < len(self.rotations)
               else "never rotated")
        return f"row {index + 1} written at {at:.0f}s after {rotations} rotation(s), {nxt}"


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


def read_status(data: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        doc: dict[str, Any] = json.loads((data / "status.json").read_text())
        return doc
    return {}


class Daemon:
    """`tollwatch run` in a child process, its memory sampled (soak_memory.split)."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        with log_path.open("wb") as log_fh:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
        self.cpu = psutil.Process(self.proc.pid)
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.t0 = time.monotonic()

    def sample(self, every: float) -> None:
        now = time.monotonic() - self.t0
        if self.samples and now - self.samples[-1][0] < every:
            return
        with contextlib.suppress(OSError):
            parts = memory.split(self.proc.pid)
            times = self.cpu.cpu_times()
            parts["cpu_s"] = round(times.user + times.system, 1)
            parts["load1"] = round(os.getloadavg()[0], 2)
            self.samples.append((now, parts))


async def drain(data: Path, stub: SlackStub, expected: dict[str, int], daemon: Daemon,
                timeout: float, sample_every: float) -> str:
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


def missing(data: Path, sent: dict[str, list[str]]) -> dict[str, list[str]]:
    """Calls sent that the daemon's pipeline does not remember (its last snapshot's call-id
    memory, exact while a PBX saw at most 20,000 calls), and calls it remembers twice over."""
    import pickle

    from tollwatch.state import StateStore

    store = StateStore.in_dir(data)
    out: dict[str, list[str]] = {}
    for pbx, keys in sent.items():
        blob = store.load_snapshot(pbx)
        remembered = set(pickle.loads(blob).get("seen", {})) if blob else set()
        out[pbx] = [k for k in keys if k not in remembered]
    store.close()
    return out


async def soak(minutes: float, every: float, calls: int, keep: bool = False,
               full_for: float = 30.0, trace_every: float = 0.0,
               extra_env: dict[str, str] | None = None, sample_every: float = 10.0,
               drain_timeout: float = 900.0) -> dict[str, Any]:
    stream = b"".join(generate(calls, concurrent=60, seed=11))
    frames = stream.count(b"\r\n\r\n")
    pace = minutes * 60 / frames
    ami_keys = calls_in(stream)
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
           "SOAK_AMI_SECRET": SECRET, **(extra_env or {})}
    log_path = tmp / "daemon.log"
    cmd = [sys.executable, "-m", "tollwatch", "run", "--config", str(cfg)]
    traces = tmp / "traces"
    if trace_every:
        traces.mkdir()
        cmd = [sys.executable, "-X", "tracemalloc=1", "-c", memory.TRACED, str(trace_every),
               str(traces), "run", "--config", str(cfg)]
    daemon = Daemon(cmd, env, log_path)
    for _ in range(120):  # logged in and the follower started
        if server.logins() and read_status(data):
            break
        await asyncio.sleep(0.5)
    started = daemon.t0 = writer.t0 = time.monotonic()
    replay = asyncio.create_task(server.replay(stream, pace))
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
                with filler.open("wb") as fh, contextlib.suppress(OSError):
                    while True:
                        fh.write(b"\0" * (1 << 20))
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
    traffic_s = time.monotonic() - started
    csv_rows = writer.outbound_rows(tmp / "written.csv")
    expected = {"pbx": len(ami_keys), "csvpbx": len(csv_rows)}
    drained = await drain(data, stub, expected, daemon, drain_timeout, sample_every)
    drain_s = time.monotonic() - started - traffic_s
    daemon.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(daemon.proc.wait, 120)
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
    lost = missing(data, {"pbx": ami_keys, "csvpbx": list(csv_rows)})
    log_text = log_path.read_text(errors="replace")
    result = {
        "minutes": round(traffic_s / 60, 1), "drain_s": round(drain_s), "drain": drained,
        "frames_sent": sent, "calls_sent": expected, "calls_seen": seen,
        "missing": {"pbx": lost["pbx"][:50],
                    "csvpbx": [f"{k}: {writer.describe(csv_rows[k])}" for k in lost["csvpbx"]]},
        "missing_count": {p: len(v) for p, v in lost.items()},
        "csv_rows_written": len(writer.rows),
        "csv_events": csv_status.get("events"), "csv_errors": csv_status.get("errors"),
        "incidents": len(incidents),
        "incidents_by_pbx": {p: sum(i["pbx"] == p for i in incidents) for p in ("pbx", "csvpbx")},
        "incidents_alerted": len(opened & {i["id"] for i in incidents}),
        "alerts_pending": pending, "slack_posts": len(stub.posts()), "logins": server.logins(),
        "faults": faults, "rotations": writer.rotations, "real_tmpfs": real_disk,
        "daemon_exit": code, "daemon_cpu_s": daemon.samples[-1][1].get("cpu_s"),
        "load1": [s["load1"] for _, s in memory.every(daemon.samples, 300.0)],
        "log": {"lines": log_text.count("\n"), "tracebacks": log_text.count("Traceback"),
                "storage_failed": log_text.count("keeping it in memory"),
                "storage_back": log_text.count("writable again"),
                "copytruncate": log_text.count("copytruncate"),
                "rotated": log_text.count("rotated, finishing"),
                "memory": [ln for ln in log_text.splitlines() if "memory: " in ln][-20:]},
        "rss_mib": memory.summary(daemon.samples, warmup=60.0),
        "env": extra_env or {},
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
    ap.add_argument("--tracemalloc", type=float, default=0.0, metavar="SECONDS",
                    help="trace the daemon's allocations, a snapshot every SECONDS")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set in the daemon's environment (e.g. MALLOC_ARENA_MAX=2)")
    ap.add_argument("--sample-every", type=float, default=10.0, metavar="SECONDS",
                    help="seconds between samples of the daemon's memory (/proc/PID/smaps)")
    ap.add_argument("--drain-timeout", type=float, default=900.0, metavar="SECONDS",
                    help="how long to wait after the traffic for calls seen to reach calls sent")
    args = ap.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.env)
    result = asyncio.run(soak(args.minutes, args.every, args.calls, args.keep,
                              args.full_for, args.tracemalloc, extra, args.sample_every,
                              args.drain_timeout))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
