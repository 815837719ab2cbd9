"""Soak: the daemon under mixed AMI traffic with faults injected every few minutes.

A fake Asterisk (its own thread and event loop, so it sends at its own pace) streams a busy
PBX's generated traffic (bench/gen_ami.py: domestic, international, a few high-risk calls)
for `--minutes`; the daemon follows it with Slack (the local stub) and its data directory on
a small tmpfs (when run as root). Every `--every` seconds the next fault, in turn:

* AMI drop: the server drops the connection (traffic held meanwhile: Asterisk's own events
  during an outage are recovered from the CDR, issue 10; here we check the connection layer);
* Slack 500 x5, then Slack 429 (Retry-After 2) x3;
* disk full for 30 s (the tmpfs filled, then freed).

At the end: calls seen (LivePipeline) = calls sent (the same stream through a fresh tracker),
alerts sent (incidents with an 'opened' row sent in the outbox) = incidents (stored, warning
or critical), reconnects, storage failures, and RSS over time.

    sudo python3 bench/soak.py --minutes 30 --every 180
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gen_ami import generate  # noqa: E402
from tests.slack_stub import SlackStub  # noqa: E402
from tollwatch.cdr_ingest.live import CallStarted  # noqa: E402
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker  # noqa: E402
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, parse_frames  # noqa: E402
from tollwatch.config import load_settings  # noqa: E402
from tollwatch.runner import build  # noqa: E402

SECRET = "soak-secret"


def calls_in(stream: bytes) -> int:
    tracker = AmiCallTracker("pbx")
    now = datetime.now(UTC)
    n = 0
    for msg in parse_frames(stream):
        n += sum(isinstance(e, CallStarted) for e in tracker.feed(msg, now))
    return n


class Server:
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


def logins(fake: FakeAmi) -> int:
    return sum(1 for a in list(fake.actions) if a.get("Action") == "Login")


async def soak(minutes: float, every: float, calls: int) -> dict[str, Any]:
    stream = b"".join(generate(calls, concurrent=60, seed=11))
    frames = stream.count(b"\r\n\r\n")
    pace = minutes * 60 / frames
    expected = calls_in(stream)
    tmp = Path(tempfile.mkdtemp(prefix="tw-soak-"))
    real_disk = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(tmp)], check=False).returncode == 0
    stub = SlackStub().start()
    os.environ["SOAK_SLACK_TOKEN"] = "xoxb-soak"
    os.environ["SOAK_AMI_SECRET"] = SECRET
    server = Server()
    settings = load_settings(None, {
        "site": {"country": "JP", "timezone": "UTC", "name": "soak"},
        "daemon": {"data_dir": str(tmp / "data"), "max_backoff": "2s"},
        "ami": [{"name": "pbx", "host": "127.0.0.1", "port": server.fake.port,
                 "username": "tollwatch", "secret_env": "SOAK_AMI_SECRET"}],
        "slack": {"enabled": True, "channel": "#soak", "token_env": "SOAK_SLACK_TOKEN",
                  "base_url": stub.base_url},
    })
    daemon = build(settings)
    proc = psutil.Process()
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    replay = asyncio.create_task(server.replay(stream, pace))
    faults: list[str] = []
    rss: list[tuple[float, float]] = []
    started = time.monotonic()
    kinds = ["ami_drop", "slack_500", "slack_429", "disk_full"]
    nxt, k = started + every, 0
    while not replay.done():
        await asyncio.sleep(1)
        now = time.monotonic()
        if not rss or now - rss[-1][0] - started >= 10:
            rss.append((now - started, proc.memory_info().rss / 2**20))
        if now < nxt:
            continue
        kind = kinds[k % len(kinds)]
        k += 1
        nxt = now + every
        faults.append(f"{now - started:.0f}s {kind}")
        print(faults[-1], flush=True)
        if kind == "ami_drop":
            server.loop.call_soon_threadsafe(server.fake._running.clear)
            before = logins(server.fake)
            server.loop.call_soon_threadsafe(server.fake.drop_clients)
            while logins(server.fake) == before:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            server.loop.call_soon_threadsafe(server.fake.resume)
        elif kind == "slack_500":
            stub.fail(500, times=5)
        elif kind == "slack_429":
            stub.fail(429, times=3, retry_after=2)
        elif kind == "disk_full":
            filler = tmp / "filler"
            if real_disk:
                with filler.open("wb") as fh, contextlib.suppress(OSError):
                    while True:
                        fh.write(b"\0" * (1 << 20))
            await asyncio.sleep(30)
            filler.unlink(missing_ok=True)
    sent = replay.result()
    for _ in range(600):  # drain
        if daemon.queue.qsize() == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(5)  # let Slack catch up
    stop.set()
    await task
    seen = sum(p.calls_seen for p in daemon.pipelines.values())
    incidents = [i for i in daemon.store.incidents() if i["severity"] in ("warning", "critical")]
    daemon.store.close()
    from tollwatch.alerting.outbox import Outbox
    box = Outbox.in_dir(tmp / "data")
    opened = {r[0] for r in box._db.execute(
        "SELECT incident_id FROM outbox WHERE kind='opened' AND state IN ('sent','coalesced')")}
    pending = len(box.pending())
    box.close()
    posts = len(stub.posts())
    stub.down()
    server.call(server.fake.close())
    if real_disk:
        subprocess.run(["umount", "-l", str(tmp)], check=False)
    return {
        "minutes": round((time.monotonic() - started) / 60, 1), "frames_sent": sent,
        "calls_sent": expected, "calls_seen": seen,
        "incidents": len(incidents), "incidents_alerted": len(opened & {i["id"] for i in
                                                                        incidents}),
        "alerts_pending": pending, "slack_posts": posts, "logins": logins(server.fake),
        "faults": faults, "real_tmpfs": real_disk,
        "rss_mib": {"first": round(rss[0][1], 1), "max": round(max(r for _, r in rss), 1),
                    "last": round(rss[-1][1], 1), "samples": len(rss)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--every", type=float, default=180)
    ap.add_argument("--calls", type=int, default=6000)
    args = ap.parse_args()
    result = asyncio.run(soak(args.minutes, args.every, args.calls))
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results" / "soak.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
