"""AstDB and Hangup actions over AMI, and a tiny direct AMI connection for the CLI.

Anything with `async send_action(Mapping[str, str]) -> Any` can carry the actions: the daemon's
`AmiSource` (answers are panoramisk Messages, or a list of them for EventList responses) or
`AmiClient` here (plain dicts). Both shapes are read through `messages()`.

AstDB layout (what the dialplan snippet reads):
    <family>/block/<E.164 prefix digits> = "<expiry epoch>|<reason>"
    <family>/src/<extension>             = "<expiry epoch>|<reason>"
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Mapping
from typing import Any, Protocol


class ActionSender(Protocol):
    async def send_action(self, action: Mapping[str, str]) -> Any: ...


class ActionError(Exception):
    """Asterisk answered an action with an error (the message is Asterisk's)."""


def messages(resp: Any) -> list[Mapping[str, Any]]:
    """A response (one message or a list of them) as a list of mappings."""
    if resp is None:
        return []
    if isinstance(resp, list | tuple):
        return [m for m in resp if isinstance(m, Mapping)]
    return [resp] if isinstance(resp, Mapping) else []


def _first(resp: Any) -> Mapping[str, Any]:
    msgs = messages(resp)
    return msgs[0] if msgs else {}


def succeeded(resp: Any) -> bool:
    return str(_first(resp).get("Response", "")).lower() == "success"


def error_text(resp: Any) -> str:
    return str(_first(resp).get("Message", "") or "no answer")


_CLEAN = re.compile(r"[\x00-\x1f|]+")


def block_value(expires_at: int, reason: str) -> str:
    """The AstDB value: "<expiry epoch>|<reason>" (reason on one line, at most 120 chars)."""
    text = _CLEAN.sub(" ", reason).strip()[:120]
    return f"{int(expires_at)}|{text}"


def parse_value(value: str) -> tuple[int | None, str]:
    head, _, reason = value.partition("|")
    try:
        return int(head), reason
    except ValueError:
        return None, value


def families(family: str) -> dict[str, str]:
    """{"prefix": "<family>/block", "source": "<family>/src"}."""
    return {"prefix": f"{family}/block", "source": f"{family}/src"}


async def db_put(sender: ActionSender, family: str, key: str, value: str) -> None:
    resp = await sender.send_action({"Action": "DBPut", "Family": family, "Key": key,
                                     "Val": value})  # fmt: skip
    if not succeeded(resp):
        raise ActionError(f"DBPut {family}/{key}: {error_text(resp)}")


async def db_get(sender: ActionSender, family: str, key: str) -> str | None:
    """The value, or None when AstDB has no such key ("Database entry not found")."""
    resp = await sender.send_action({"Action": "DBGet", "Family": family, "Key": key})
    if not succeeded(resp):
        if "not found" in error_text(resp).lower():
            return None
        raise ActionError(f"DBGet {family}/{key}: {error_text(resp)}")
    for msg in messages(resp):
        if msg.get("Event") == "DBGetResponse":
            return str(msg.get("Val", ""))
    return None


async def db_del(sender: ActionSender, family: str, key: str) -> bool:
    """Delete a key; False if AstDB did not have it (that is not an error)."""
    resp = await sender.send_action({"Action": "DBDel", "Family": family, "Key": key})
    if succeeded(resp):
        return True
    if "not found" in error_text(resp).lower():
        return False
    raise ActionError(f"DBDel {family}/{key}: {error_text(resp)}")


async def channels(sender: ActionSender) -> list[dict[str, str]]:
    """The channels up (CoreShowChannels)."""
    resp = await sender.send_action({"Action": "CoreShowChannels"})
    if not succeeded(resp):
        raise ActionError(f"CoreShowChannels: {error_text(resp)}")
    return [
        {str(k): str(v) for k, v in m.items() if k != "content"}
        for m in messages(resp)
        if m.get("Event") == "CoreShowChannel"
    ]


async def hangup(sender: ActionSender, channel: str) -> list[str]:
    """Hang up one channel, or every channel a "/regex/" matches; the channels hung up."""
    resp = await sender.send_action({"Action": "Hangup", "Channel": channel})
    if not succeeded(resp):
        if "no such channel" in error_text(resp).lower():
            return []  # it ended meanwhile
        raise ActionError(f"Hangup {channel}: {error_text(resp)}")
    if len(channel) > 1 and channel.startswith("/") and channel.endswith("/"):
        return [str(m.get("Channel", "")) for m in messages(resp)
                if m.get("Event") == "ChannelHungup"]  # fmt: skip
    return [channel]


# -- a tiny direct connection ------------------------------------------------------------


def _encode(msg: Mapping[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in msg.items()).encode() + b"\r\n"


def _parse(frame: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in frame.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


class AmiClient:
    """One short AMI session for a command: `async with AmiClient(...) as ami:` then
    `await ami.send_action({...})`. Logs in with events off; list responses (EventList: start)
    are collected up to their ...Complete event. The secret is only written to the socket."""

    def __init__(
        self, name: str, host: str, port: int, username: str, secret: str, timeout: float = 10.0
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.username = username
        self.__secret = secret
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"AmiClient({self.name!r}, {self.username}@{self.host}:{self.port})"

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        where = f"AMI {self.username}@{self.host}:{self.port}"
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
            self._reader = reader
            await asyncio.wait_for(reader.readline(), self.timeout)  # banner
        except (OSError, TimeoutError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timeout"
            raise ConnectionError(f"{where}: cannot connect ({why})") from None
        resp = await self.send_action({"Action": "Login", "Username": self.username,
                                       "Secret": self.__secret, "Events": "off"})  # fmt: skip
        if not succeeded(resp):
            await self.close()
            raise ConnectionError(f"{where}: login failed ({error_text(resp)})")

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        with contextlib.suppress(Exception):
            writer.write(_encode({"Action": "Logoff", "ActionID": "tw-bye"}))
            await asyncio.wait_for(writer.drain(), 2)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)

    async def send_action(self, action: Mapping[str, str]) -> dict[str, str] | list[dict[str, str]]:
        return await asyncio.wait_for(self._send(action), self.timeout)

    async def _send(self, action: Mapping[str, str]) -> dict[str, str] | list[dict[str, str]]:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise ConnectionError(f"AMI {self.name}: not connected")
        aid = f"tw-{next(self._ids)}"
        writer.write(_encode({**action, "ActionID": aid}))
        await writer.drain()
        out: list[dict[str, str]] = []
        while True:
            try:
                frame = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                raise ConnectionError(f"AMI {self.name}: connection closed") from None
            msg = _parse(frame[:-4])
            if msg.get("ActionID") != aid:
                continue  # an event or someone else's answer
            out.append(msg)
            if out[0].get("EventList", "").lower() != "start":
                return out[0]
            if msg.get("EventList", "").lower() == "complete":
                return out
