"""Asterisk Manager Interface source: one connection, call and auth events out.

`AmiSource.run()` connects with panoramisk, logs in, asks `CoreShowChannels` and resyncs the
tracker, then feeds every subscribed event (arrival time, UTC) to an `AmiCallTracker` and puts
the resulting `LiveEvent`s on `AmiSource.events` (an `asyncio.Queue`; the consumer `get()`s).
`run()` does not reconnect: it raises `AmiConnectError` / `AmiAuthError` if it cannot get in and
`AmiDisconnected` when the connection is lost; a supervisor decides when to call `run()` again
(the same source and tracker may be reused, so calls up survive the reconnect via resync).

panoramisk's Manager reconnects by itself (on refused connections and on connection loss) and
silently drops frames it cannot parse. A subclass turns both off: the connection is made here,
`connection_lost` only reports, and a protocol subclass counts bad frames. Its keep-alive Ping
(every `ping_interval` s) is kept. The secret is only ever written to the socket: it is not
kept in panoramisk's config, not in reprs, not in exceptions, and a failed write is logged
without the action's content.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from panoramisk import Manager
from panoramisk.message import Message

from tollwatch.alerting.textsafe import plain
from tollwatch.cdr_ingest._types import CdrOptions
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
from tollwatch.cdr_ingest.live.ami_framing import FastEvents, _Protocol
from tollwatch.cdr_ingest.live.ami_login import session_start
from tollwatch.cdr_ingest.live.backlog import EventQueue
from tollwatch.cdr_ingest.live.events import LiveEvent, SourceStatus

log = logging.getLogger(__name__)

# Login event mask: call (Dial*, Hangup), security (auth), system (FullyBooted, Shutdown),
# user (the dialplan snippet's UserEvent TollwatchRefused for a refused call).
EVENT_MASK = "system,call,security,user"


class AmiError(Exception):
    """An AMI source failure; str() is one line and never contains the secret."""


class AmiConnectError(AmiError):
    """Could not open the TCP connection (refused, unreachable, timeout)."""


class AmiAuthError(AmiError):
    """The server rejected the login."""


class AmiDisconnected(AmiError):
    """The connection was lost after login."""


class _Manager(FastEvents, Manager):  # type: ignore[misc]
    """One connection, no automatic reconnect, loss reported to the owner; plain event frames
    read by `FastEvents` (ami_framing), straight into the source's tracker."""

    pinger: Any

    def __init__(self, source: AmiSource, **config: Any) -> None:
        super().__init__(**config)
        self.source = source
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connected = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        if not self.lost.done():
            self.lost.set_result(exc if isinstance(exc, BaseException) else None)

    def bad_frame(self, frame: str, crashed: bool = False) -> None:
        self.source._bad_frame(frame, crashed)

    def received(self) -> None:
        source = self.source
        source._last_rx = time.monotonic()
        source._in_read = True
        source._read_at = None

    def read_done(self) -> None:
        source = self.source
        source._in_read = False
        source._read_at = None
        source._refresh()


class AmiSource:
    """Live call events from one Asterisk server over AMI (see the module docstring).

    `status.events` counts LiveEvents put on `events`; `status.last_event_at` is the arrival
    time of the last subscribed AMI event; `status.errors` counts bad frames, tracker failures
    and failed runs; `bad_frames` and `tracker.stats` have the details.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        options: CdrOptions | None = None,
        tracker: AmiCallTracker | None = None,
        events: asyncio.Queue[LiveEvent] | None = None,
        timeout: float = 10.0,
        ping_interval: int = 10,
        keepalive: float = 20.0,
        silence: float = 600.0,
        watch: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.username = username
        self.__secret = secret
        self.tracker = tracker or AmiCallTracker(name, options)
        self.events: asyncio.Queue[LiveEvent] = events if events is not None else asyncio.Queue()
        self.timeout = timeout
        self.ping_interval = ping_interval
        self.keepalive = keepalive
        self.silence = silence  # no call event for this long while channels are up: say so
        self.watch = watch  # False: a session for actions only (no events, no resync)
        self.clock = clock
        self.status = SourceStatus(name=name, kind="ami")
        self.bad_frames = 0
        self._logged: set[str] = set()
        self._manager: _Manager | None = None
        self._closing = False
        self._last_call_events = 0
        self._quiet_since: datetime | None = None
        self._last_rx = time.monotonic()  # when bytes last came from the peer
        self._paused = False  # reading paused: the daemon's backlog is at its limit
        self._transport: Any = None
        self._lost_at: datetime | None = None  # when the last session was lost
        self._told: set[str] = set()  # login check findings already logged
        self._seen_event = False  # an event came in the current read (its arrival time)
        self._in_read = False  # handling the frames of one socket read
        self._read_at: datetime | None = None  # that read's arrival time, once asked for

    def __repr__(self) -> str:
        return f"AmiSource({self.name!r}, {self.username}@{self.host}:{self.port})"

    @property
    def _where(self) -> str:
        return f"AMI {self.username}@{self.host}:{self.port}"

    async def run(self) -> None:
        """Connect, log in, resync, then stream until the connection is lost (raises) or
        `close()` is called (returns)."""
        self._closing = False
        self.status.state = "connecting"
        try:
            manager = await self._connect()
            self.status.connected = True
            self.status.state = "connected"
            if isinstance(self.events, EventQueue):
                self.events.add_pressure_listener(self._pressure)
            if self.watch:
                self._emit([await session_start(self.name, self.send_action, self.clock(),
                                                self._lost_at, self._told)])  # fmt: skip
                await self._resync()
            await self._watch(manager)
            exc = manager.lost.result()
            if self._closing:
                return
            why = f"{type(exc).__name__}: {exc}" if exc else "closed by server"
            raise AmiDisconnected(f"{self._where}: connection lost ({why})")
        except AmiError as err:
            if self._closing and self.status.connected:
                return  # close() during the login's resync: not a failure
            self.status.errors += 1
            self.status.state = str(err)
            raise
        finally:
            if self.status.connected and not self._closing:
                self._lost_at = self.clock()  # calls of the gap: recovered on reconnect
            self.status.connected = False
            if isinstance(self.events, EventQueue):
                self.events.remove_pressure_listener(self._pressure)
            self._paused = False
            if self._manager is not None:
                self._manager.close()
                self._manager = None

    async def _watch(self, manager: _Manager) -> None:
        """Wait for the connection to end. The keepalive measures the peer, not our backlog:
        any bytes read within `keepalive` seconds prove it alive (so a busy stream needs no
        Ping); a quiet peer gets a Ping, whose answer the connection's reader handles as soon
        as it arrives, whatever the daemon's event backlog. While reading is paused on purpose
        (backpressure) nothing is concluded. A peer silent through a Ping counts as gone."""
        while True:
            done, _ = await asyncio.wait({manager.lost}, timeout=self.keepalive)
            if done:
                return
            if self.watch:
                await self._check_silence()
            if self._paused or time.monotonic() - self._last_rx < self.keepalive:
                continue
            try:
                await self.send_action({"Action": "Ping"})
            except AmiError:
                if manager.lost.done():
                    return
                if self._paused or time.monotonic() - self._last_rx < self.timeout:
                    continue  # bytes came meanwhile (an answer stuck behind a burst): alive
                raise AmiDisconnected(
                    f"{self._where}: no answer to Ping within {self.timeout:g}s; "
                    "connection presumed dead"
                ) from None

    def _pressure(self, full: bool) -> None:
        """The daemon's queue reached its limit (pause reading: Asterisk and the kernel keep
        the rest) or drained (read again). Nothing received is ever dropped."""
        transport = self._transport
        if transport is None or full == self._paused:
            return
        self._paused = full
        try:
            if full:
                transport.pause_reading()
                self.status.state = "paused: the daemon's backlog is at its limit"
            else:
                transport.resume_reading()
                self._last_rx = time.monotonic()
                self.status.state = "connected"
        except (RuntimeError, AttributeError):  # the connection is closing
            pass

    async def _check_silence(self) -> None:
        """AMI traffic but no call event for `silence` seconds: ask Asterisk for its channels;
        if calls are up that we do not see, say so (the account's read= or an event filter
        hides call events, or an AMI dialect we do not read)."""
        now = self.clock()
        if self.tracker.stats.call_events != self._last_call_events or self._quiet_since is None:
            self._last_call_events = self.tracker.stats.call_events
            self._quiet_since = now
            self.status.warning = ""
            return
        quiet = (now - self._quiet_since).total_seconds()
        if quiet < self.silence or self.status.last_event_at is None:
            return
        try:
            resp = await self.send_action({"Action": "CoreShowChannels"})
        except AmiError:
            return
        msgs = resp if isinstance(resp, list) else [resp]
        up = sum(1 for m in msgs if m.get("Event") == "CoreShowChannel")
        if up == 0:
            self.status.warning = ""
            return
        self.status.warning = (
            f"AMI events arrive but no call event for {quiet / 60:.0f} min while Asterisk "
            f"reports {up} channel(s) up: check the AMI account's read= (needs call) and any "
            f"eventfilter; dialect {self.tracker.dialect_text}"
        )
        self._log_once("silence", "AMI %s: %s", self.name, self.status.warning)

    async def close(self) -> None:
        """Log off and make `run()` return."""
        self._closing = True
        manager = self._manager
        if manager is None:
            return
        if not manager.lost.done():
            bye = manager.send_action({"Action": "Logoff"})
            await asyncio.wait({bye, manager.lost}, timeout=2, return_when=asyncio.FIRST_COMPLETED)
            manager.close()
            if not manager.lost.done():
                manager.lost.set_result(None)
        self.status.state = "closed"

    async def send_action(self, action: Mapping[str, str]) -> Message | list[Message]:
        """Send an action (DBPut, Hangup, ...); the response, or for list responses
        (EventList: start) every message up to and including the ...Complete event.

        `timeout` measures the peer: while bytes keep arriving (the answer is queued behind
        a burst of events) or reading is paused on purpose, the wait goes on (up to 20 times
        `timeout`); a peer silent for `timeout` seconds gets an AmiError."""
        manager = self._manager
        if manager is None or manager.lost.done():
            raise AmiDisconnected(f"{self._where}: not connected")
        response = manager.send_action(dict(action))
        give_up = time.monotonic() + 20 * self.timeout
        while True:
            done, _ = await asyncio.wait(
                {response, manager.lost}, timeout=self.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if response in done:
                result: Message | list[Message] = response.result()
                return result
            now = time.monotonic()
            alive = self._paused or now - self._last_rx < self.timeout
            if manager.lost.done() or not alive or now >= give_up:
                break
        response.cancel()
        if manager.lost.done():
            raise AmiDisconnected(f"{self._where}: connection lost during {action.get('Action')}")
        raise AmiError(f"{self._where}: no answer to {action.get('Action')} in {self.timeout}s")

    # -- internals ------------------------------------------------------------------------

    async def _connect(self) -> _Manager:
        loop = asyncio.get_running_loop()
        manager = _Manager(
            self,
            host=self.host,
            port=self.port,
            loop=loop,
            log=log,
            events=EVENT_MASK,
            ping_delay=self.ping_interval,
            ping_interval=self.ping_interval,
        )
        # Every event: the dialect's call events, auth, and the rest counted as unknown.
        manager.register_event("*", self._on_event)
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, self.host, self.port), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timeout"
            raise AmiConnectError(f"{self._where}: cannot connect ({reason})") from None
        # Our own login's SuccessfulAuth can arrive in the same read as the login response.
        sock = transport.get_extra_info("sockname")
        if sock:
            self.tracker.ignore_own_login(self.username, f"IPV4/TCP/{sock[0]}/{sock[1]}")
        self._transport = transport
        self._last_rx = time.monotonic()
        connected: asyncio.Future[tuple[Any, Any]] = loop.create_future()
        connected.set_result((transport, protocol))
        manager.connection_made(connected)  # sets the protocol up and starts pinging
        self._manager = manager
        login = manager.send_action(
            {
                "Action": "Login",
                "Username": self.username,
                "Secret": self.__secret,
                "Events": EVENT_MASK if self.watch else "off",
            }
        )
        done, _ = await asyncio.wait({login, manager.lost}, timeout=self.timeout,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if login not in done:
            login.cancel()
            why = "connection closed" if manager.lost.done() else "no answer"
            raise AmiAuthError(f"{self._where}: login failed ({why})")
        resp = login.result()
        if not resp.success:
            raise AmiAuthError(f"{self._where}: login failed ({resp.get('Message', 'refused')})")
        version = str(getattr(protocol, "version", "") or "")
        if version:
            self.tracker.use_version(version)
        self.status.dialect = self.tracker.dialect_text
        return manager

    async def _resync(self) -> None:
        resp = await self.send_action({"Action": "CoreShowChannels"})
        msgs = resp if isinstance(resp, list) else [resp]
        chans = [_plain(m) for m in msgs if m.get("Event") == "CoreShowChannel"]
        self._emit(self.tracker.resync(chans, self.clock()))

    def _on_event(self, _manager: Any, message: Message) -> None:
        self._seen_event = True
        self._feed(_plain(message), message.get("Event"))

    def _feed(self, msg: dict[str, str], name: str | None) -> None:
        if self._in_read:  # the events of one socket read arrived at the same time
            at = self._read_at
            if at is None:
                at = self._read_at = self.clock()
        else:
            at = self.clock()
        self.status.last_event_at = at
        try:
            events = self.tracker.feed(msg, at)
        except Exception as exc:  # a tracker bug must not stop the stream
            self.status.errors += 1
            self._log_once(f"tracker:{type(exc).__name__}", "AMI %s: event %s failed: %r",
                           self.name, name, exc)  # fmt: skip
            return
        if events or self.tracker.rules.notes:
            self._emit(events)

    def _emit(self, events: list[LiveEvent]) -> None:
        put = self.events.put_nowait
        for event in events:
            put(event)
        self.status.events += len(events)
        notes = self.tracker.rules.notes
        while notes:
            note = plain(notes.pop(0))
            log.info("AMI %s: %s", self.name, note)
            if len(self.status.notes) < 20:
                self.status.notes.append(note)
        if not self._in_read:  # a read refreshes the status once, at its end
            self._refresh()

    def _refresh(self) -> None:
        """Status from the tracker and the queue: after each read from the socket, and after
        events were put on the queue."""
        if self._seen_event:
            self._seen_event = False
            self.status.last_event_at = self.clock()
        self.status.calls_in_progress = self.tracker.calls_up
        self.status.backlog = self.events.qsize()
        if isinstance(self.events, EventQueue):
            self.status.backlog_age = round(self.events.oldest_age(), 3)
        self.status.unknown_events = self.tracker.stats.unknown
        self.status.dialect = self.tracker.dialect_text

    def _bad_frame(self, frame: str, crashed: bool) -> None:
        self.bad_frames += 1
        self.status.bad_frames = self.bad_frames
        self.status.errors += 1
        kind = "crashing" if crashed else "malformed"
        self._log_once(
            kind, "AMI %s: %s frame ignored (logged once): %.80r", self.name, kind, frame
        )

    def _log_once(self, key: str, fmt: str, *args: object) -> None:
        level = logging.DEBUG if key in self._logged else logging.WARNING
        self._logged.add(key)
        log.log(level, fmt, *args)


def _plain(message: Mapping[str, Any]) -> dict[str, str]:
    """panoramisk Message -> plain dict; repeated headers are joined with ','."""
    return {
        str(k): v if isinstance(v, str) else ",".join(map(str, v))
        for k, v in message.items()
        if k != "content"
    }
