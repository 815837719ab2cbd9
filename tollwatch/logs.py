"""Logging for the daemon: one line per event, fit for journald, optionally JSON.

- Under systemd (stderr is the journal: $JOURNAL_STREAM names its device and inode) lines carry
  no timestamp (journald adds its own) and start with a syslog priority prefix (`<4>`), so
  `journalctl -p warning` works.
- Elsewhere: `2026-11-24T13:30:15+0000 WARNING tollwatch.daemon: ...`.
- `json`: one object per line: `{"time", "level", "logger", "message"}` (+ `"exception"`).
- Every line is one line: newlines and control characters (also in tracebacks and in text
  from CDRs or AMI) are shown as `\\xNN` escapes (alerting.textsafe.plain).
- Third-party chatter (panoramisk's "Sending awaiting actions", apscheduler's job runs) is
  shown only with --verbose.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

from tollwatch import logsafe
from tollwatch.alerting.textsafe import plain

CHATTY = ("panoramisk", "apscheduler", "asyncio")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


def under_journald(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr) is connected to the journal ($JOURNAL_STREAM = dev:inode)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


class OneLine(logging.Formatter):
    """Text lines: `[time ]LEVEL logger: message`, with the traceback folded into the line."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        text = plain(text)
        if self.journal:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"
        when = datetime.fromtimestamp(record.created, UTC).astimezone()
        return f"{when.strftime('%Y-%m-%dT%H:%M:%S%z')} {text}"


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a record is emitted (not a closed old one)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup_logging(verbose: bool, fmt: str | None, stream: TextIO | None = None,
                  force: bool = False) -> None:
    """Configure the root logger for `run`/`demo`. fmt: None/"text" or "json". Like
    logging.basicConfig, it leaves a root logger that already has handlers alone (a test
    runner's) unless `force`."""
    if fmt not in (None, "text", "json"):
        raise ValueError(f"--log-format: {fmt!r} is not text or json")
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    root = logging.getLogger()
    if root.handlers and not force:
        return
    handler: logging.Handler = logging.StreamHandler(stream) if stream else _Stderr()
    journal = under_journald(stream or sys.stderr)
    handler.setFormatter(JsonLines() if fmt == "json" else OneLine(journal))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logsafe.install()
