"""The nightly report's Slack summary goes through the same outbox as alerts."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from tests.slack_stub import SlackStub
from tests.test_slack import (  # noqa: F401  (pytest fixtures)
    FakeTime,
    _token,
    bot_settings,
    fake,
    make,
    stub,
)


def tiny_png(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00\x00\x00\x00")
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    path.write_bytes(png)
    return path


async def test_report_summary_and_chart_posted_once(
    tmp_path: Path, stub: SlackStub, fake: FakeTime  # noqa: F811
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    chart = tiny_png(tmp_path / "calls-per-hour.png")
    await alerter.post_report("2026-11-23", "*tollwatch report 2026-11-23*: 812 calls", chart)
    await alerter.post_report("2026-11-23", "*tollwatch report 2026-11-23*: 812 calls", chart)
    assert await alerter.step() is None
    [post] = stub.calls("chat.postMessage")
    assert post.body["text"] == "*tollwatch report 2026-11-23*: 812 calls"
    apis = [c.api for c in stub.calls()]
    assert "files.completeUploadExternal" in apis
    [upload] = [c for c in stub.calls() if c.path.startswith("/upload/")]
    assert upload.raw.startswith(b"\x89PNG")
    complete = stub.calls("files.completeUploadExternal")[0]
    thread = alerter.outbox.thread("report:2026-11-23")
    assert thread is not None and complete.body.get("thread_ts") == thread.ts
    await alerter.close()


async def test_report_survives_an_outage(
    tmp_path: Path, stub: SlackStub, fake: FakeTime  # noqa: F811
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    stub.fail(500, times=2)
    await alerter.post_report("2026-11-23", "report text")
    for _ in range(5):
        wait = await alerter.step()
        if wait is None:
            break
        fake.advance(wait)
    posts = stub.calls("chat.postMessage")
    assert len(posts) == 3 and stub.refused == 2  # two 500s, then delivered, once
    assert alerter.pending() == 0
    await alerter.close()


async def test_report_text_from_cdrs_cannot_ping_or_link(
    tmp_path: Path, stub: SlackStub, fake: FakeTime  # noqa: F811
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    await alerter.post_report("2026-11-24",
                              "• CRITICAL: ext <!channel> → <https://x.example|y> & co")
    assert await alerter.step() is None
    [post] = stub.calls("chat.postMessage")
    want = "• CRITICAL: ext &lt;!channel&gt; → &lt;https://x.example|y&gt; &amp; co"
    assert post.body["text"] == want
    assert post.body["blocks"][0]["text"]["text"] == want
    await alerter.close()
