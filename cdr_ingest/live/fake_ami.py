"""A small fake Asterisk Manager (AMI) server on 127.0.0.1 that replays recorded transcripts.

Used by the tests and by a demo: it logs clients in, answers the few actions tollwatch sends
(Ping, Logoff, Events, CoreShowChannels, CoreStatus, ListCommands, DBPut/DBGet/DBDel/DBDelTree/
DBGetTree, Hangup) the way
Asterisk 22 does in `ami-actions.txt`, records every action received, and streams the events
of a transcript to the logged-in clients. Test hooks: `pause_after`/`resume()`,
`drop_clients()`, `refuse()`, `inject()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType

_Reply = Callable[..., None]  # reply(response="Success", **fields) / event(name, **fields)
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
_SEP = b"\r\n\r\n"
# Channel fields a CoreShowChannel event carries, in Asterisk's order.
_CHANNEL_FIELDS = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context", "Exten",
    "Priority", "Uniqueid", "Linkedid",
)  # fmt: skip


def parse_message(frame: str) -> dict[str, str] | None:
    """One AMI frame ("Key: Value" lines) -> dict; None if it has no header line at all."""
    msg: dict[str, str] = {}
    for line in frame.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            msg[key] = value
        elif line.endswith(":"):  # "Challenge: " arrives with its space stripped by some tools
            msg[line[:-1]] = ""
    return msg or None


def parse_frames(data: bytes) -> list[dict[str, str]]:
    """All messages of a raw AMI byte stream; a leading banner line is dropped."""
    if data.startswith(b"Asterisk Call Manager/"):
        data = data.split(b"\r\n", 1)[1]
    out = []
    for frame in data.decode("utf-8", "replace").split("\r\n\r\n"):
        msg = parse_message(frame)
        if msg is not None:
            out.append(msg)
    return out


def encode(msg: Mapping[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in msg.items()).encode() + b"\r\n"


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.logged_in = False
        self.events = "on"  # event mask: "on", "off" or classes ("call,security")

    def wants(self, msg: Mapping[str, str]) -> bool:
        if not self.logged_in or self.events == "off":
            return False
        if self.events in ("on", "all"):
            return True
        classes = {c.strip() for c in msg.get("Privilege", "").split(",")} - {"all"}
        return bool(classes & {c.strip() for c in self.events.split(",")})

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class FakeAmi:
    """`async with FakeAmi("tollwatch", "s3cret") as ami:` ... `ami.port` ..."""

    def __init__(
        self, username: str = "tollwatch", secret: str = "secret", port: int = 0,
        banner: bytes = BANNER,
    ) -> None:
        self.banner = banner  # e.g. b"Asterisk Call Manager/1.3\r\n" to play an Asterisk 11
        self.muted = False  # set: stop answering actions (a hung Asterisk, a dead NAT path)
        self.username = username
        self._secret = secret
        self.port = port
        self.actions: list[dict[str, str]] = []  # every action received, in order
        self.db: dict[tuple[str, str], str] = {}  # AstDB: (family, key) -> value
        self.hung_up: list[str] = []  # channels hung up by Hangup actions
        self.sent = 0  # transcript messages sent by replay()
        self.paused = asyncio.Event()  # set while replay() waits for resume()
        self.started = ("2026-11-24", "09:00:00")  # CoreStatus: when "Asterisk" started
        # ListCommands: the actions the account may send (tests remove some)
        self.commands = ["Ping", "Logoff", "Events", "CoreShowChannels", "CoreStatus",
                         "DBPut", "DBGet", "DBDel", "DBDelTree", "DBGetTree", "Hangup",
                         "ListCommands"]  # fmt: skip
        self._running = asyncio.Event()
        self._running.set()
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # connection handlers
        self._logged_in = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._up: dict[str, dict[str, str]] = {}  # channel name -> CoreShowChannel fields
        self._born: dict[str, float] = {}  # channel name -> monotonic time seen
        self._killed: set[str] = set()  # Uniqueids hung up by an action

    async def __aenter__(self) -> FakeAmi:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        await self.refuse(True)
        self.drop_clients()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def refuse(self, on: bool) -> None:
        """Stop listening (connections are refused) or listen again on the same port."""
        if on and self._server is not None:
            self._server.close()
            self._server = None
        elif not on and self._server is None:
            await self.start()

    def drop_clients(self) -> None:
        """Close every client connection (the server keeps listening)."""
        for client in list(self._clients):
            client.writer.close()
        self._clients.clear()
        self._logged_in.clear()

    def inject(self, data: bytes) -> None:
        """Write raw bytes to every logged-in client (e.g. a garbage frame)."""
        for client in self._clients:
            if client.logged_in:
                client.send(data)

    def resume(self) -> None:
        self.paused.clear()
        self._running.set()

    @property
    def clients(self) -> int:
        return sum(c.logged_in for c in self._clients)

    async def replay(
        self,
        source: Path | str | bytes,
        pace: float = 0.0,
        start_after_login: bool = True,
        pause_after: int | Iterable[int] = (),
    ) -> int:
        """Stream a transcript's events (its leading Login response skipped) to logged-in clients.

        Waits for a first login if `start_after_login`; `pace` seconds between messages; after
        `pause_after` messages (one count or several) sets `paused` and waits for `resume()`.
        Returns the number of messages sent.
        """
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        msgs = parse_frames(data)
        if msgs and "Response" in msgs[0]:
            msgs = msgs[1:]
        pauses = {pause_after} if isinstance(pause_after, int) else set(pause_after)
        if start_after_login:
            await self._logged_in.wait()
        for i, msg in enumerate(msgs):
            if i in pauses:
                self._running.clear()
                self.paused.set()
            await self._running.wait()
            if {msg.get("Uniqueid"), msg.get("DestUniqueid")} & self._killed:
                continue
            self._track(msg)
            self.broadcast(msg)
            self.sent += 1
            await asyncio.sleep(pace)
        return self.sent

    def broadcast(self, msg: Mapping[str, str]) -> None:
        data = encode(msg)
        for client in self._clients:
            if client.wants(msg):
                client.send(data)

    # -- channel state for CoreShowChannels -----------------------------------------------

    def _track(self, msg: Mapping[str, str]) -> None:
        name, chan = msg.get("Event", ""), msg.get("Channel", "")
        if name == "Newchannel":
            self._up[chan] = {"Event": "CoreShowChannel"}
            self._born[chan] = time.monotonic()
        state = self._up.get(chan)
        if state is None:
            return
        if name == "Hangup":
            del self._up[chan]
            del self._born[chan]
            return
        state.update({k: msg[k] for k in _CHANNEL_FIELDS if k in msg})
        if name == "Newexten":
            state["Application"] = msg.get("Application", "")
            state["ApplicationData"] = msg.get("AppData", "")
        elif name == "BridgeEnter":
            state["BridgeId"] = msg.get("BridgeUniqueid", "")
        elif name == "BridgeLeave":
            state["BridgeId"] = ""

    def channels_up(self) -> list[dict[str, str]]:
        out = []
        for chan, state in self._up.items():
            secs = int(time.monotonic() - self._born[chan])
            duration = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
            out.append(
                {
                    **{k: v for k, v in state.items() if k not in ("Application", "BridgeId")},
                    "Application": state.get("Application", ""),
                    "ApplicationData": state.get("ApplicationData", ""),
                    "Duration": duration,
                    "BridgeId": state.get("BridgeId", ""),
                }
            )
        return out

    # -- connection -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(reader, writer)
        self._clients.add(client)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        writer.write(self.banner)
        try:
            while True:
                frame = await reader.readuntil(_SEP)
                action = parse_message(frame[: -len(_SEP)].decode("utf-8", "replace"))
                if action is None:
                    continue
                self.actions.append(action)
                if self.muted:  # a silently dead peer: the TCP session stays, nothing answers
                    continue
                if not self._answer(client, action):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._clients.discard(client)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, client: _Client, action: dict[str, str]) -> bool:
        """Answer one action; False to close the connection afterwards."""
        name = action.get("Action", "").lower()
        aid = {"ActionID": action["ActionID"]} if "ActionID" in action else {}

        def reply(response: str = "Success", **fields: str) -> None:
            client.send(encode({"Response": response, **aid, **fields}))

        def event(name: str, **fields: str) -> None:
            client.send(encode({"Event": name, **aid, **fields}))

        if name == "login":
            if action.get("Username") != self.username or action.get("Secret") != self._secret:
                reply("Error", Message="Authentication failed")
                return False
            client.logged_in = True
            client.events = action.get("Events", "on").lower()
            reply(Message="Authentication accepted")
            peer = client.writer.get_extra_info("peername")
            client.send(encode({"Event": "FullyBooted", "Privilege": "system,all",
                                "Status": "Fully Booted"}))  # fmt: skip
            self.broadcast(
                {
                    "Event": "SuccessfulAuth",
                    "Privilege": "security,all",
                    "Service": "AMI",
                    "AccountID": self.username,
                    "LocalAddress": f"IPV4/TCP/127.0.0.1/{self.port}",
                    "RemoteAddress": f"IPV4/TCP/{peer[0]}/{peer[1]}",
                }
            )
            self._logged_in.set()
            return True
        if name == "logoff":
            reply("Goodbye", Message="Thanks for all the fish.")
            return False
        if not client.logged_in:
            reply("Error", Message="Permission denied")
            return True
        if name == "ping":
            reply(Ping="Pong", Timestamp=f"{time.time():.6f}")
        elif name == "events":
            client.events = action.get("EventMask", "on").lower()
            reply(Events="Off" if client.events == "off" else "On")
        elif name == "coreshowchannels":
            chans = self.channels_up()
            reply(EventList="start", Message="Channels will follow")
            for chan in chans:
                event("CoreShowChannel", **{k: v for k, v in chan.items() if k != "Event"})
            event("CoreShowChannelsComplete", EventList="Complete", ListItems=str(len(chans)))
        elif name == "corestatus":
            reply(CoreStartupDate=self.started[0], CoreStartupTime=self.started[1],
                  CoreReloadDate=self.started[0], CoreReloadTime=self.started[1],
                  CoreCurrentCalls=str(len(self._up) // 2))  # fmt: skip
        elif name == "listcommands":
            reply(**{a: f"{a}. (Priv: system,all)" for a in self.commands})
        elif name == "dbgettree":
            family = action.get("Family", "")
            found = sorted((k, v) for k, v in self.db.items() if k[0] == family)
            if not found:
                reply("Error", Message="Database entry not found")
                return True
            reply(EventList="start", Message="Result will follow")
            for (fam, key), val in found:
                event("DBGetTreeResponse", Family=fam, Key=key, Val=val)
            event("DBGetTreeComplete", EventList="Complete", ListItems=str(len(found)))
        elif name.startswith("db"):
            self._db(action, reply, event)
        elif name == "hangup":
            self._hangup(action.get("Channel", ""), reply, event)
        else:
            reply("Error", Message="Invalid/unknown command")
        return True

    def _db(self, action: Mapping[str, str], reply: _Reply, event: _Reply) -> None:
        name = action["Action"].lower()
        family, key = action.get("Family", ""), action.get("Key", "")
        if not family:
            reply("Error", Message="No family specified.")
        elif name == "dbdeltree":
            gone = [k for k in self.db if k[0] == family and k[1].startswith(key)]
            for k in gone:
                del self.db[k]
            if gone:
                reply(Message="Key tree deleted successfully")
            else:
                reply("Error", Message="Database entry not found")
        elif not key:
            reply("Error", Message="No key specified.")
        elif name == "dbput":
            self.db[family, key] = action.get("Val", "")
            reply(Message="Updated database successfully")
        elif (family, key) not in self.db:
            reply("Error", Message="Database entry not found")
        elif name == "dbget":
            reply(EventList="start", Message="Result will follow")
            event("DBGetResponse", Family=family, Key=key, Val=self.db[family, key])
            event("DBGetComplete", EventList="Complete", ListItems="1")
        elif name == "dbdel":
            del self.db[family, key]
            reply(Message="Key deleted successfully")
        else:
            reply("Error", Message="Invalid/unknown command")

    def _hangup(self, channel: str, reply: _Reply, event: _Reply) -> None:
        regex = len(channel) > 1 and channel.startswith("/") and channel.endswith("/")
        if regex:
            try:
                rx = re.compile(channel[1:-1])
            except re.error:
                reply("Error", Message="Invalid regex")
                return
            matched = [c for c in self._up if rx.search(c)]
        else:
            matched = [channel] if channel in self._up else []
            if not matched:
                reply("Error", Message="No such channel")
                return
        if regex:
            reply(EventList="start", Message="Channels hung up will follow")
        else:
            reply(Message="Channel Hungup")
        for chan in matched:
            state = self._up.pop(chan)
            del self._born[chan]
            self.hung_up.append(chan)
            self._killed.add(state.get("Uniqueid", ""))
            if regex:
                event("ChannelHungup", Channel=chan)
            fields = {k: state[k] for k in _CHANNEL_FIELDS if k in state}
            self.broadcast({"Event": "Hangup", "Privilege": "call,all", **fields,
                            "Cause": "16", "Cause-txt": "Normal Clearing"})  # fmt: skip
        if regex:
            event("ChannelsHungupListComplete", EventList="Complete", ListItems=str(len(matched)))
