"""Asterisk 11 and older (AMI protocol 1.x): Issabel, Elastix, FreePBX before 13.

Calls are reported by (from the Asterisk 11 AMI event documentation):

* ``Newchannel``: Channel, Exten, Context, AccountCode, Uniqueid (the dialed extension and the
  account the later Dial event lacks);
* ``Dial`` with ``SubEvent: Begin``: Channel, Destination, CallerIDNum, UniqueID,
  DestUniqueID, Dialstring -> ``DialBegin``;
* ``Newstate`` with ChannelState 6 (Up) of a dialed channel, or ``Bridge`` with
  ``Bridgestate: Link`` (Channel1 caller, Channel2 dialed) -> ``DialEnd`` ANSWER (Asterisk 11's
  ``Dial`` End only comes when the Dial application returns, after the call);
* ``Dial`` with ``SubEvent: End``: Channel, UniqueID, DialStatus -> ``DialEnd`` for each
  dialed channel still ringing;
* ``Hangup`` (Channel, Uniqueid, Cause, Cause-txt) and ``Rename`` (Channel, Newname) as later;
* ``Masquerade`` (Clone, Original): the channel under the clone's name carries on (Asterisk
  sends the ``Rename`` events of the swap), so it needs no event of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tollwatch.cdr_ingest.live.ami_dialects import AmiDialect, Msg, register

_MAX_CHANNELS = 100_000  # bound on remembered channels (a lost Hangup must not leak forever)


@dataclass
class _Dial:
    caller: str  # calling channel
    dests: set[str] = field(default_factory=set)  # dialed channels still ringing


@register
class Asterisk11(AmiDialect):
    name = "asterisk11"
    description = "Asterisk 11 or older (Dial SubEvent Begin/End, Bridge, Masquerade)"
    protocol = (1, 1)
    events = frozenset({"Newchannel", "Dial", "Newstate", "Bridge", "Masquerade", "Hangup",
                        "Rename"})  # fmt: skip

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, str]] = {}  # Uniqueid -> Exten, Context, Account
        self._dials: dict[str, _Dial] = {}  # caller UniqueID -> its Dial
        self._ringing: dict[str, str] = {}  # dialed channel name -> caller UniqueID

    def release(self, version: str) -> str:
        return f"Asterisk 11 or older (AMI {version})"

    def translate(self, msg: Msg) -> list[Msg]:
        name = msg.get("Event", "")
        if name == "Newchannel":
            if len(self._channels) < _MAX_CHANNELS:
                self._channels[msg.get("Uniqueid", "")] = {
                    "Exten": msg.get("Exten", ""),
                    "Context": msg.get("Context", ""),
                    "AccountCode": msg.get("AccountCode", ""),
                }
            return []
        if name == "Dial":
            sub = msg.get("SubEvent", "").lower()
            return self._begin(msg) if sub == "begin" else self._end(msg) if sub == "end" else []
        if name == "Newstate":
            up = msg.get("ChannelState") == "6" or msg.get("ChannelStateDesc") == "Up"
            return self._answered(msg.get("Channel", "")) if up else []
        if name == "Bridge":
            if msg.get("Bridgestate", "").lower() != "link":
                return []
            return self._answered(msg.get("Channel2", "")) + self._answered(
                msg.get("Channel1", "")
            )
        if name == "Hangup":
            self._channels.pop(msg.get("Uniqueid", ""), None)
            self._ringing.pop(msg.get("Channel", ""), None)
            self._dials.pop(msg.get("Uniqueid", ""), None)
            return [msg]
        if name == "Rename":
            old, new = msg.get("Channel", msg.get("Oldname", "")), msg.get("Newname", "")
            if old in self._ringing:
                self._ringing[new] = self._ringing.pop(old)
            return [{"Event": "Rename", "Channel": old, "Newname": new}]
        return []  # Masquerade: see the module docstring

    def _begin(self, msg: Msg) -> list[Msg]:
        uid = msg.get("UniqueID", msg.get("Uniqueid", ""))
        dest = msg.get("Destination", "")
        caller = msg.get("Channel", "")
        known = self._channels.get(uid, {})
        out = {
            "Event": "DialBegin",
            "Channel": caller,
            "CallerIDNum": msg.get("CallerIDNum", ""),
            "CallerIDName": msg.get("CallerIDName", ""),
            "AccountCode": known.get("AccountCode", ""),
            "Context": known.get("Context", ""),
            "Exten": known.get("Exten", ""),
            "DestChannel": dest,
            "DestUniqueid": msg.get("DestUniqueID", ""),
            "DialString": msg.get("Dialstring", msg.get("DialString", "")),
        }
        if uid:
            out["Uniqueid"] = uid  # missing: the tracker counts the event as malformed
            dial = self._dials.setdefault(uid, _Dial(caller))
            dial.dests.add(dest)
            self._ringing[dest] = uid
        return [out]

    def _answered(self, channel: str) -> list[Msg]:
        uid = self._ringing.pop(channel, None)
        if uid is None:
            return []
        dial = self._dials.get(uid)
        if dial is not None:
            dial.dests.discard(channel)
        return [{"Event": "DialEnd", "DestChannel": channel, "DialStatus": "ANSWER"}]

    def _end(self, msg: Msg) -> list[Msg]:
        dial = self._dials.pop(msg.get("UniqueID", msg.get("Uniqueid", "")), None)
        if dial is None:
            return []
        status = msg.get("DialStatus", "")
        out: list[Msg] = []
        for dest in sorted(dial.dests):
            self._ringing.pop(dest, None)
            out.append({"Event": "DialEnd", "DestChannel": dest, "DialStatus": status})
        return out
