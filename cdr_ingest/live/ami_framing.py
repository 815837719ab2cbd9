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
"""

from __future__ import annotations

import asyncio
import codecs
import logging
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
        for frame in frames:
            message = Message.from_line(frame)
            if message is None:
                self.factory.bad_frame(frame)
                continue
            try:
                self.handle_message(message)
            except Exception:  # never let one message kill the connection
                self.factory.bad_frame(frame, crashed=True)

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
