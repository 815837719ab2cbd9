"""Which channel of a live call is a trunk and which a phone: batch's rules, one channel at a
time (``cdr_ingest._outbound.classify`` does the same over whole CDR files).

Order: ``[outbound] trunks`` when configured; else not a ``phones`` glob; else what the Dial
shows (a number sent to the channel's peer: trunk; the bare endpoint dialed: phone); else phones
learned live (an endpoint that registers: chan_sip ``PeerStatus: Registered``, PJSIP
``ContactStatus: Created``); else the name (an extension-like endpoint is a phone).
Every decision made without configuration is noted once per endpoint, in plain words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tollwatch.alerting.textsafe import clip
from tollwatch.cdr_ingest import attribution
from tollwatch.cdr_ingest._outbound import glob_to_regex
from tollwatch.cdr_ingest._types import CdrOptions
from tollwatch.cdr_ingest.dialed import evidence_of

# Same patterns as cdr_ingest._outbound (Rust regex there, Python re here; both leftmost-first).
_CHANNEL = re.compile(r"^[^/]+/(.*?)(?:-[0-9A-Fa-f]*)?(?:;[0-9]+)?$")
LOCAL = re.compile(r"(?i)^local/")
_TDM = re.compile(r"(?i)^(?:dahdi|zap)/")
_HAS_ENDPOINT = re.compile(r"^[^/]+/[^-;]")
_MAX_LEARNED = 10_000
TO_BE_SURE = {
    "trunk": "set [outbound] trunks to be sure",
    "phone": "set [outbound] phones to be sure",
}


def endpoint(channel: str) -> str:
    """PJSIP/209-0000000a -> 209, Local/0102@from-internal-00000001;2 -> 0102@from-internal."""
    m = _CHANNEL.match(channel)
    return m.group(1) if m else ""


def peer(channel: str) -> str:
    """PJSIP/209-0000000a -> PJSIP/209."""
    return f"{channel.split('/', 1)[0]}/{endpoint(channel)}"


class LegRules:
    """Is a channel a trunk or a phone (see the module docstring)."""

    def __init__(self, options: CdrOptions | None = None) -> None:
        self.options = options or CdrOptions()
        n = self.options.max_extension_length
        self._ext = (
            re.compile(rf"^[^/]+/[0-9]{{1,{n}}}(?:-[0-9A-Fa-f]*)?(?:;[0-9]+)?$") if n >= 1 else None
        )
        self._phones = _globs(self.options.phones)
        self._trunks = _globs(self.options.trunks)
        self.registered: dict[str, str] = {}  # TECH/endpoint -> how it was seen registering
        self.notes: list[str] = []  # decisions made without configuration, one per endpoint
        self._noted: set[str] = set()

    def learn(self, msg: Mapping[str, str]) -> bool:
        """Remember an endpoint that registers (a phone); True if the event was one."""
        name = msg.get("Event", "")
        if name == "PeerStatus" and msg.get("PeerStatus", "").lower() == "registered":
            who, how = msg.get("Peer", ""), "it registered (PeerStatus Registered)"
        elif name == "ContactStatus" and msg.get("ContactStatus", "").lower() == "created":
            ep = msg.get("EndpointName") or msg.get("AOR", "")
            who, how = f"PJSIP/{ep}" if ep else "", "a contact registered for it (ContactStatus)"
        else:
            return False
        if "/" in who and len(self.registered) < _MAX_LEARNED:
            self.registered.setdefault(who, how)
        return True

    def is_phone(self, channel: str) -> bool:
        if self._ext is not None and self._ext.match(channel) and not _TDM.match(channel):
            return True
        return self._phones is not None and _glob_match(self._phones, channel)

    def is_trunk(self, channel: str, context: str = "", lastdata: str = "") -> bool:
        """Is a dialed channel a trunk; `context` is the calling channel's (CDR dcontext),
        `lastdata` its Dial data (``TECH/`` + the AMI DialString)."""
        if not _HAS_ENDPOINT.match(channel) or LOCAL.match(channel):
            return False
        if self._trunks is not None:
            trunk = _glob_match(self._trunks, channel)
        elif self._phones is not None and _glob_match(self._phones, channel):
            trunk = False
        else:
            trunk = self._decide(channel, lastdata)
        return trunk and (not self.options.contexts or context in self.options.contexts)

    def _decide(self, channel: str, lastdata: str) -> bool:
        evidence = evidence_of("Dial", lastdata, channel) if lastdata else None
        who = peer(channel)
        if evidence == "number":
            self._note(who, "trunk", f"numbers were dialed through it (Dial {clip(lastdata)})")
            return True
        if evidence == "device":
            if not self.is_phone(channel):
                self._note(who, "phone",
                           f"it was dialed without a number (Dial {clip(lastdata)})")
            return False
        if who in self.registered:
            self._note(who, "phone", self.registered[who])
            return False
        if self.is_phone(channel):
            return False
        self._note(who, "trunk", "its name is not an extension number (no Dial showed a "
                                 "number sent to it)")  # fmt: skip
        return True

    def _note(self, who: str, kind: str, why: str) -> None:
        who = clip(who)
        if who in self._noted or len(self._noted) >= _MAX_LEARNED:
            return
        self._noted.add(who)
        article = "a trunk" if kind == "trunk" else "a phone, not a trunk,"
        self.notes.append(f"treated {who} as {article} because {why}; {TO_BE_SURE[kind]}")

    def source_of(
        self,
        channel: str,
        callerid: str,
        context: str = "",
        exten: str = "",
        dialed: str = "",
        *,
        via_local: bool = False,
    ) -> str:
        """Who sent a leg out (cdr_ingest.attribution) from the channel at the start of its
        chain and where its dial plan was (context, exten); a Local channel: its caller id."""
        return attribution.source_of(
            None if LOCAL.match(channel) else channel,
            via_local,
            context,
            exten,
            dialed,
            callerid,
            is_phone=self.is_calling_phone,
            max_ext=self.options.max_extension_length,
        )

    def is_calling_phone(self, channel: str) -> bool:
        """A phone placing a call: a phone that is not a configured trunk."""
        if not self.is_phone(channel):
            return False
        return self._trunks is None or not _glob_match(self._trunks, channel)


def _globs(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{glob_to_regex(g)})" for g in globs)) if globs else None


def _glob_match(rx: re.Pattern[str], channel: str) -> bool:
    """Globs match the channel name, TECH/endpoint or the bare endpoint."""
    ep = endpoint(channel)
    tech = channel.split("/", 1)[0]
    return any(rx.match(name) for name in (channel, f"{tech}/{ep}", ep))
