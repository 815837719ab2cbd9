"""AMI framing: bytes from the socket -> complete messages, robust to what a peer may send.

Asterisk ends every message with an empty line (CRLF CRLF). `split_frames` cuts a buffer into
the complete frames and the unfinished rest. A frame that holds more than one message (a
message ended with bare LF line ends, which swallowed the next one, or a missing blank line)
is resynchronized: a new message starts at every `Event:`/`Response:` line and after every
blank line. A buffer that never sees CRLF CRLF cannot grow without end: past `MAX_PENDING`
characters its complete bare-LF messages are cut out as well.

`_Protocol` is panoramisk's protocol with this framing, counting frames it cannot parse (or
whose handling crashed) instead of dropping them silently, noting every read (the keepalive
counts any bytes as a sign of life), and never logging sent actions (a Login has the secret).

Fast path: panoramisk builds a case-insensitive `Message` of every frame (a `.lower()` per
header) and matches its event name against every registered pattern. An owner (the manager)
with a `fast_event(frame)` method gets plain event frames first: `event_name` reads the name
off the first line without parsing (most events are ones the tracker only counts), and
`parse_event` builds the plain dict the tracker reads in one pass. Both give up (None) on
anything unusual (a second Event header, an ActionID, a line without ": ", a repeated header,
headers differing only in case), which then takes panoramisk's path as before; on the rest they
give exactly what panoramisk's `Message` would (tests/test_ami_fastpath.py).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
from operator import methodcaller
from typing import Any

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

log = logging.getLogger("tollwatch.cdr_ingest.live.ami")

MAX_PENDING = 1 << 20
_HEADS = ("Event:", "Response:")


def _resync(part: str) -> list[str]:
    frames: list[str] = []
    current: list[str] = []
    for raw in part.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip("\r")
        if not line.strip():
            if current:
                frames.append("\r\n".join(current))
                current = []
            continue
        if current and line.startswith(_HEADS):
            frames.append("\r\n".join(current))
            current = []
        current.append(line)
    if current:
        frames.append("\r\n".join(current))
    return frames


def _needs_resync(part: str) -> bool:
    return "\n\n" in part or "\nEvent:" in part or "\nResponse:" in part


def split_frames(text: str) -> tuple[list[str], str]:
    """The complete frames of `text` (each without its blank line) and the unfinished rest."""
    parts = text.split("\r\n\r\n")
    rest = parts.pop()
    if len(rest) > MAX_PENDING and "\n\n" in rest:  # a peer that never sends CRLF CRLF
        cut = rest.rfind("\n\n") + 2
        parts.append(rest[:cut])
        rest = rest[cut:]
    frames: list[str] = []
    for part in parts:
        part = part.strip("\r\n")
        if not part.strip():
            continue
        if _needs_resync(part):
            frames.extend(_resync(part))
        else:
            frames.append(part)
    return frames, rest


# Headers after the first line that panoramisk treats specially (case-insensitive): another
# Event, the ids that route a message to a waiting action, the unquoted Result, `content`.
_SPECIAL = re.compile(r"\r\n(?i:event|actionid|commandid|result|content): ")
_HEADER = methodcaller("split", ": ", 1)
_CASE_OK: dict[tuple[str, ...], bool] = {}  # header-name tuples seen: no two differ only in case


def event_name(frame: str) -> str | None:
    """The event name of a plain event frame ("Event: X" first, no header panoramisk treats
    specially after it), else None."""
    if not frame.startswith("Event: ") or _SPECIAL.search(frame) is not None:
        return None
    eol = frame.find("\r\n")
    return frame[7:eol] if eol >= 0 else frame[7:]


def parse_event(frame: str) -> dict[str, str] | None:
    """A plain event frame (see `event_name`) as the dict panoramisk's Message would give
    (`ami._plain`), or None when that takes panoramisk's own parser."""
    lines = frame.split("\r\n")
    try:
        msg: dict[str, str] = dict(map(_HEADER, lines))
    except ValueError:  # a line without ": "
        return None
    if len(msg) != len(lines):  # a repeated header
        return None
    keys = tuple(msg)
    ok = _CASE_OK.get(keys)
    if ok is None:
        ok = len({k.lower() for k in keys}) == len(keys)
        if len(_CASE_OK) < 4096:
            _CASE_OK[keys] = ok
    return msg if ok else None


class Framer:
    """Bytes as they come from the socket -> complete frames. UTF-8 is decoded incrementally
    (a character cut between two reads is not mangled); bytes that are not UTF-8 become
    U+FFFD; the login banner ("Asterisk Call Manager/22.0.0") is taken off as `version`."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._rest = ""
        self._first = True
        self.version = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._rest + self._decoder.decode(data)
        if self._first:
            if "\r\n" not in text and len(text) < 200:
                self._rest = text  # the banner line is not complete yet
                return []
            self._first = False
            if text.startswith("Asterisk Call Manager/"):
                banner, _, text = text.partition("\r\n")
                self.version = banner.partition("/")[2].strip()
        frames, self._rest = split_frames(text)
        return frames


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with `Framer` (see the module docstring)."""

    framer: Framer | None = None

    def data_received(self, data: bytes) -> None:
        factory = getattr(self, "factory", None)
        if factory is not None:  # None for the banner, read before the manager takes over
            factory.received()
        if self.framer is None:
            self.framer = Framer()
        frames = self.framer.feed(data)
        if self.framer.version:
            self.version = self.framer.version
        fast = getattr(factory, "fast_event", None)
        for frame in frames:
            if fast is not None and fast(frame):
                continue
            message = Message.from_line(frame)
            if message is None:
                self.factory.bad_frame(frame)
                continue
            try:
                self.handle_message(message)
            except Exception:  # never let one message kill the connection
                self.factory.bad_frame(frame, crashed=True)
        if factory is not None:
            factory.read_done()

    def send(self, data: Any, as_list: bool | None = False) -> asyncio.Future[Any]:
        action = data if isinstance(data, Action) else Action(data, as_list=as_list)
        action.as_list = as_list
        self.responses[action.id] = action
        try:
            self.transport.write(str(action).encode(getattr(self, "encoding", "utf-8")))
        except Exception as exc:  # panoramisk logs the whole action here (with Secret)
            log.error("AMI: could not send %s action: %s", action.get("Action", "?"), exc)
        fut: asyncio.Future[Any] = action.future
        return fut
