"""The soak's world: the fake Asterisk in its own thread (`Server`), the Master.csv of a PBX
without AMI written and rotated as Asterisk and logrotate do (`CdrWriter`), the calls of an AMI
stream as the daemon counts them (`calls_in`), and the daemon's settings (`config`)."""

from __future__ import annotations

import asyncio
import gzip
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import polars as pl

from bench.gen_ami import load_templates
from tollwatch.cdr_ingest import CdrOptions, scan_cdrs
from tollwatch.cdr_ingest.live import CallStarted
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, parse_frames

SECRET = "soak-secret"
KINDS = ["ami_drop", "logrotate", "slack_500", "disk_full", "slack_429"]
ROTATIONS = ["create", "copytruncate", "copytruncate_gz"]


class CallCounter:
    """The calls of an AMI stream fed in pieces (whole frames), as the daemon's pipeline
    remembers them (`call_id|trunk`), in the order they started."""

    def __init__(self) -> None:
        self.tracker = AmiCallTracker("pbx")
        self.keys: list[str] = []

    def feed(self, data: bytes) -> None:
        now = datetime.now(UTC)
        for msg in parse_frames(data):
            for e in self.tracker.feed(msg, now):
                if isinstance(e, CallStarted):
                    self.keys.append(f"{e.call_id}|{e.trunk}")


def calls_in(stream: bytes) -> list[str]:
    """The calls of an AMI stream, as the daemon's pipeline remembers them (`call_id|trunk`)."""
    counter = CallCounter()
    counter.feed(stream)
    return counter.keys


def frame_count(calls: int) -> int:
    """How many frames `gen_ami.generate(calls)` yields, end marker included, without
    generating them: call i plays template i mod T, one frame per template message."""
    sizes = [len(t.msgs) for t in load_templates()]
    whole, rest = divmod(calls, len(sizes))
    return whole * sum(sizes) + sum(sizes[:rest]) + 1


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

    async def replay(
        self,
        frames: Iterator[bytes],
        total: int,
        seconds: float,
        slot: float = 30.0,
        seen: Callable[[bytes], None] | None = None,
    ) -> int:
        """Send `total` frames, taken from `frames` one slot at a time (a long stream is never
        held whole), spread over `seconds` of wall time on a schedule: the frames of each
        `slot` seconds are due by the slot's end, so time lost to a loaded machine or a paused
        connection is made up later instead of adding up. `seen` gets each slot's frames."""
        slots = max(1, round(seconds / slot))
        size = -(-total // slots)
        t0 = time.monotonic()
        sent = done = 0
        while part := list(islice(frames, size)):
            data = b"".join(part)
            if seen is not None:
                seen(data)
            done += len(part)
            due = t0 + done / total * seconds
            pace = max(0.0, (due - time.monotonic()) / len(part))
            coro = self.fake.replay(data, pace=pace)
            sent = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))
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
        cols = [
            "soak",
            src,
            dialed,
            "from-internal",
            f'"Desk {src}" <{src}>',
            chan,
            peer,
            "Dial",
            f"PJSIP/{dialed}@carrier,60",
            start.strftime(t),
            answer.strftime(t),
            end.strftime(t),
        ]
        quoted = ",".join('"' + c.replace('"', '""') + '"' for c in cols)
        return (f'{quoted},{talk + 5},{talk},"ANSWERED","DOCUMENTATION","{uid}",""\n').encode()

    def write_calls(self, attack: bool = False) -> int:
        """A few ordinary outbound calls, or a burst of 12 to Sierra Leone from one phone."""
        if attack:
            ext = str(self.rng.randrange(200, 300))
            base = self.rng.randrange(1000000, 9000000)
            rows = [
                self._row(ext, f"010232{base + k}", self.rng.randrange(30, 300)) for k in range(12)
            ]
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
        frame = (
            lf.filter(pl.col("outbound") & pl.col("problem").is_null())
            .select("call_id", "trunk", "origin")
            .collect()
        )
        return {
            f"{r['call_id']}|{r['trunk'] or ''}": int(r["origin"].rsplit(":", 1)[1]) - 1
            for r in frame.iter_rows(named=True)
        }

    def describe(self, index: int) -> str:
        """Where a row went: when it was written, into which file (before which rotation)."""
        at, rotations = self.written_at[index]
        nxt = (
            f"rotated by {self.rotations[rotations]}"
            if rotations < len(self.rotations)
            else "never rotated"
        )
        return f"row {index + 1} written at {at:.0f}s after {rotations} rotation(s), {nxt}"


# Every time span of the rules and incidents at most 10 minutes (`--short-windows`): the state
# that the spans bound (rule windows, open incidents) is full after 10-20 minutes instead of
# 6 hours, so a run of an hour shows whether memory stays flat once nothing more may be held
# (long_call's 2 h exposure window stays: it holds only calls longer than 30 minutes).
SHORT_WINDOWS = """
[incidents]
gap = "10m"
""" + "".join(
    f'\n[[rules]]\nname = "{name}"\n{key} = "10m"\n'
    for name, key in [
        ("high_risk_destination", "window"), ("off_hours", "many_window"),
        ("burst_off_hours", "window"), ("burst_high_risk", "window"),
        ("burst_destination", "window"), ("sequential_dialing", "window"),
        ("spend", "window"), ("auth_failures", "compromise_window"),
    ]
)  # fmt: skip


def config(
    tmp: Path, data: Path, cdr: Path, ami_port: int, slack_url: str, extra: str = ""
) -> Path:
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
{extra}""")
    return path


def missing(data: Path, sent: dict[str, list[str]]) -> dict[str, list[str]]:
    """Calls sent that the daemon's pipeline does not remember (its last snapshot's call-id
    memory, which holds the last 20,000 calls of each PBX: pass at most the last 20,000 sent)."""
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
