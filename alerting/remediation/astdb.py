"""AstDB and Hangup actions over AMI, and a short AMI session for the CLI.

Anything with `async send_action(Mapping[str, str]) -> Any` can carry the actions: the daemon's
`AmiSource` (answers are panoramisk Messages, or a list of them for EventList responses), or
`AmiClient` here, which runs an AmiSource for one command. Answers are read through
`messages()`.

AstDB layout (what the dialplan snippet reads):
    <family>/block/<E.164 prefix digits> = "<expiry epoch>|<reason>"
    <family>/src/<extension>             = "<expiry epoch>|<reason>"
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from typing import Any, Protocol

from tollwatch.cdr_ingest.live.ami import AmiError, AmiSource


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


# -- a short session for a command, over the same AMI source the daemon uses ----------------


class AmiClient:
    """One short AMI session for a command: `async with AmiClient(...) as ami:` then
    `await ami.send_action({...})`. It runs an `AmiSource` (panoramisk, the secret only ever
    written to the socket) for the length of the block; failures are ConnectionError."""

    def __init__(
        self, name: str, host: str, port: int, username: str, secret: str, timeout: float = 10.0
    ) -> None:
        self.name = name
        self._source = AmiSource(name, host, port, username, secret, timeout=timeout,
                                 watch=False)
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"AmiClient({self._source!r})"

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        source = self._source
        self._task = asyncio.create_task(source.run())
        while not source.status.connected and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            try:
                self._task.result()
            except AmiError as exc:
                raise ConnectionError(str(exc)) from None
            raise ConnectionError(f"AMI {self.name}: session ended at once")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await self._source.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)

    async def send_action(self, action: Mapping[str, str]) -> Any:
        try:
            return await self._source.send_action(action)
        except AmiError as exc:
            raise ConnectionError(str(exc)) from None
