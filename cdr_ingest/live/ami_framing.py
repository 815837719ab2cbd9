"""AMI framing: bytes from the socket -> complete messages, robust to what a peer may send.

Asterisk ends every message with an empty line (CRLF CRLF). `split_frames` cuts a buffer into
the complete frames and the unfinished rest. A frame that holds more than one message (a
message ended with bare LF line ends, which swallowed the next one, or a missing blank line)
is resynchronized: a new message starts at every `Event:`/`Response:` line and after every
blank line. A buffer that never sees CRLF CRLF cannot grow without end: past `MAX_PENDING`
bytes its complete bare-LF messages are cut out as well.

`_Protocol` is panoramisk's protocol with this framing, counting frames it cannot parse (or
whose handling crashed) instead of dropping them silently, noting every read (the keepalive
counts any bytes as a sign of life), and never logging sent actions (a Login has the secret).

Fast path: panoramisk builds a case-insensitive `Message` of every frame (a `.lower()` per
header) and matches its event name against every registered pattern. `Framer.feed_raw` cuts
the bytes as they come and leaves plain event frames undecoded; an owner (the manager) with a
`handle_frames(frames, skip_safe, slow)` method gets them in order: it reads the event name off
the first line (most events are ones the tracker only counts, never decoded nor parsed),
`parse_event` builds the plain dict the tracker reads in one pass, and anything unusual (a
second Event header, an ActionID, a line without ": ", a repeated header, headers differing
only in case) goes to `slow` (panoramisk's path) as before; on the rest they give exactly what
panoramisk's `Message` would (tests/test_ami_fastpath.py, tests/test_ami_framing_bytes.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from operator import methodcaller
from typing import Any

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

log = logging.getLogger("tollwatch.cdr_ingest.live.ami")

MAX_PENDING = 1 << 20  # bytes of a frame that never ends before bare-LF messages are cut out
_HEADS = ("Event:", "Response:")
_SEP = b"\r\n\r\n"
_EVENT = b"Event: "


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


def _add_part(part: str, frames: list[Any]) -> None:
    """One CRLF CRLF-delimited part -> its frames (none if blank; resynchronized if needed)."""
    part = part.strip("\r\n")
    if not part.strip():
        return
    if _needs_resync(part):
        frames.extend(_resync(part))
    else:
        frames.append(part)


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
        _add_part(part, frames)
    return frames, rest


# Headers after the first line that panoramisk treats specially (case-insensitive): another
# Event, the ids that route a message to a waiting action, the unquoted Result, `content`.
_SPECIAL = re.compile(r"\r\n(?i:event|actionid|commandid|result|content): ")
_SPECIAL_KEYS = frozenset({"event", "actionid", "commandid", "result", "content"})
_HEADER = methodcaller("split", ": ", 1)
_KEYS_OK: dict[tuple[str, ...], bool] = {}  # header-name tuples seen: parse_event may keep them


def event_name(frame: str) -> str | None:
    """The event name of a plain event frame ("Event: X" first, no header panoramisk treats
    specially after it), else None."""
    if not frame.startswith("Event: ") or _SPECIAL.search(frame) is not None:
        return None
    eol = frame.find("\r\n")
    return frame[7:eol] if eol >= 0 else frame[7:]


def parse_event(frame: str) -> dict[str, str] | None:
    """A plain event frame (see `event_name`) as the dict panoramisk's Message would give
    (`ami._plain`), or None when that takes panoramisk's own parser: a line without ": ", a
    repeated header, headers differing only in case, a header panoramisk treats specially
    after the first line (what `event_name` looks for, here read off the parsed names)."""
    lines = frame.split("\r\n")
    try:
        msg: dict[str, str] = dict(map(_HEADER, lines))
    except ValueError:  # a line without ": "
        return None
    if len(msg) != len(lines):  # a repeated header
        return None
    keys = tuple(msg)
    ok = _KEYS_OK.get(keys)
    if ok is None:
        low = [k.lower() for k in keys]
        ok = len(set(low)) == len(keys) and not _SPECIAL_KEYS.intersection(low[1:])
        if len(_KEYS_OK) < 4096:
            _KEYS_OK[keys] = ok
    return msg if ok else None


def _plain_frames(region: bytes) -> bool:
    """Whether every frame of `region` (frames joined by CRLF CRLF) that starts with "Event: "
    is one plain event: no bare-LF blank line, no Event or Response line after its first
    (what resynchronizing looks for), and no Event, ActionID or CommandID header after its
    first line in any case (what decides where panoramisk would send it: the only headers a
    reader that skips a frame by its event name must not miss). Each Event/Response line that
    is not a frame's first lacks the CRLF CRLF before it; one pass of each kind over the read
    instead of one per frame. False says nothing: check each frame."""
    low = region.lower()
    return (b"\n\n" not in low
            and low.count(b"\nevent:") == low.count(b"\r\n\r\nevent:")
            and b"\r\nactionid: " not in low and b"\r\ncommandid: " not in low
            and (b"\nresponse:" not in low
                 or low.count(b"\nresponse:") == low.count(b"\r\n\r\nresponse:")))


class Framer:
    """Bytes as they come from the socket -> complete frames. Bytes that are not UTF-8 become
    U+FFFD (a character cut between two reads is not mangled: frames are cut at ASCII CR LF, so
    decoding frame by frame is decoding the stream); the login banner ("Asterisk Call
    Manager/22.0.0") is taken off as `version`.

    `feed` gives every frame as text. `feed_raw` (the protocol's) leaves plain event frames
    ("Event: " first, nothing to resynchronize: nearly all of a busy stream) as bytes, not
    decoded, so events the tracker ignores are never decoded nor parsed; and says in
    `skip_safe` whether those byte frames are free of the headers that route a frame (see
    `_plain_frames`), checked once per read instead of once per frame."""

    def __init__(self) -> None:
        self._rest = b""
        self._first = True
        self.version = ""
        self.skip_safe = True
        self.discarded = 0  # bytes dropped because no frame ended in MAX_PENDING of them

    def feed(self, data: bytes) -> list[str]:
        return [f.decode("utf-8", "replace") if isinstance(f, bytes) else f
                for f in self.feed_raw(data)]  # fmt: skip

    def feed_raw(self, data: bytes) -> list[bytes | str]:
        buf = self._rest + data if self._rest else data
        if self._first:
            if b"\r\n" not in buf and len(buf) < 200:
                self._rest = buf  # the banner line is not complete yet
                return []
            self._first = False
            if buf.startswith(b"Asterisk Call Manager/"):
                banner, _, buf = buf.partition(b"\r\n")
                self.version = banner.decode("utf-8", "replace").partition("/")[2].strip()
        parts = buf.split(_SEP)
        rest = parts.pop()
        if len(rest) > MAX_PENDING and b"\n\n" in rest:  # a peer that never sends CRLF CRLF
            cut = rest.rfind(b"\n\n") + 2
            parts.append(rest[:cut])
            rest = rest[cut:]
        elif len(rest) > MAX_PENDING:  # no frame ends in a megabyte: not AMI; memory stays flat
            self.discarded += len(rest) - 3  # (the last bytes may begin a CRLF CRLF)
            rest = rest[-3:]
        self._rest = rest
        if not parts:
            return []
        plain = self.skip_safe = _plain_frames(buf[: len(buf) - len(rest)])
        frames: list[bytes | str] = []
        for part in parts:
            if part.startswith(_EVENT) and (plain or not _part_needs_resync(part)):
                frames.append(part.rstrip(b"\r\n"))
            else:
                _add_part(part.decode("utf-8", "replace"), frames)
        return frames


def _part_needs_resync(part: bytes) -> bool:
    return b"\n\n" in part or b"\nEvent:" in part or b"\nResponse:" in part


_NAMES = 1024  # event names remembered by the reader (names are whatever the peer sends)
_PANORAMISK = "\0panoramisk"  # (this very object) an event name the fast path leaves alone


class FastEvents:
    """The manager's side of the fast path (mixed into the panoramisk Manager subclass):
    plain event frames go straight to `self.source` (its `tracker.skip`, `_feed` and
    `_seen_event`), never through a panoramisk Message. Only events that reach nothing but
    the catch-all callback: not one panoramisk itself listens to (FullyBooted, any pattern
    registered other than "*"), not Shutdown (it closes the connection)."""

    source: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.own_events: set[str] = set()  # patterns other than "*": panoramisk's path
        self._names: dict[bytes, str] = {}  # event names read off frames
        super().__init__(*args, **kwargs)

    def register_event(self, pattern: str, callback: Any = None) -> Any:
        if pattern != "*":
            self.own_events.add(pattern)
            self._names.clear()
        return super().register_event(pattern, callback)  # type: ignore[misc]

    def fast_event(self, frame: str) -> bool:
        """One plain event frame as text: True if handled, False to take panoramisk's path."""
        name = event_name(frame)
        if name is None or name in self.own_events or name.lower() == "shutdown":
            return False
        source = self.source
        source._seen_event = True
        if source.tracker.skip(name):
            return True
        msg = parse_event(frame)
        if msg is None:
            return False
        source._feed(msg, name)
        return True
    def handle_frames(self, frames: list[bytes | str], skip_safe: bool,
                      slow: Callable[[str], None]) -> None:
        """One read's frames, in order (`_Protocol.data_received`): a plain event frame (bytes,
        see `Framer.feed_raw`) is skipped by its name alone when the tracker ignores that
        event (`skip_safe`: no frame of the read has a header that would route it elsewhere,
        else each is checked), parsed with `parse_event` and fed otherwise; anything else, or
        what the fast path declines, goes to `slow` (panoramisk's path)."""
        source = self.source
        skip = source.tracker.skip
        names = self._names
        for frame in frames:
            if isinstance(frame, str):
                if not self.fast_event(frame):
                    slow(frame)
                continue
            eol = frame.find(b"\r\n")
            raw = frame[7:eol] if eol >= 0 else frame[7:]
            name = names.get(raw)
            if name is None:
                name = self._name_of(raw)
            if name is _PANORAMISK:  # panoramisk's own event, or Shutdown
                slow(frame.decode("utf-8", "replace"))
                continue
            source._seen_event = True
            if skip_safe:
                if skip(name):
                    continue
                text = frame.decode("utf-8", "replace")
            else:
                text = frame.decode("utf-8", "replace")
                if event_name(text) is None:
                    slow(text)
                    continue
                if skip(name):
                    continue
            msg = parse_event(text)
            if msg is None:
                slow(text)
                continue
            source._feed(msg, name)

    def _name_of(self, raw: bytes) -> str:
        """An event name as read off a frame: the name, or `_PANORAMISK` for the events
        panoramisk must see. Remembered for the first `_NAMES` names."""
        name = raw.decode("utf-8", "replace")
        if name in self.own_events or name.lower() == "shutdown":
            name = _PANORAMISK
        if len(self._names) < _NAMES:
            self._names[raw] = name
        return name


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol with `Framer` (see the module docstring)."""

    framer: Framer | None = None

    def data_received(self, data: bytes) -> None:
        factory = getattr(self, "factory", None)
        if factory is not None:  # None for the banner, read before the manager takes over
            factory.received()
        if self.framer is None:
            self.framer = Framer()
        dropped = self.framer.discarded
        frames = self.framer.feed_raw(data)
        if self.framer.discarded != dropped and factory is not None:
            factory.bad_frame(f"{self.framer.discarded - dropped} bytes without a frame end")
        if self.framer.version:
            self.version = self.framer.version
        handle = getattr(factory, "handle_frames", None)
        if handle is not None:
            handle(frames, self.framer.skip_safe, self.slow_frame)
        else:
            for frame in frames:
                self.slow_frame(frame.decode("utf-8", "replace")
                                if isinstance(frame, bytes) else frame)  # fmt: skip
        if factory is not None:
            factory.read_done()

    def slow_frame(self, frame: str) -> None:
        """panoramisk's own path for one frame: a Message, routed to a waiting action or
        dispatched to the registered callbacks; a frame it cannot parse is counted."""
        message = Message.from_line(frame)
        if message is None:
            self.factory.bad_frame(frame)
            return
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
