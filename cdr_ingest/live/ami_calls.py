"""Turn AMI events into call lifecycle and authentication events (pure logic, no I/O).

A call is an outbound leg: a `DialBegin` whose DestChannel is a trunk under the same rules batch
uses for Master.csv rows (`cdr_ingest._outbound`: not Local/, has an endpoint, matches the
`trunks` globs or else is not a phone). Its id is the Uniqueid of the channel that dialed the
trunk, which is the uniqueid Asterisk writes on that CDR row.

Local channels: a chain Local/N@from-internal;2 -> Dial(Local/N@pstn-trunk) -> Local ;2 ->
Dial(PJSIP/N@carrier) has one DialBegin whose destination is a trunk, the last one; the Local
hops before it dial Local channels, which are never trunks. So one chain gives one call, named
by the Local ;2 channel that dialed the trunk (the CDR row batch counts), with `source` taken
from its caller id number as batch takes `src`. The Hangup of a Local calling channel does not
end the call (Local channels may be optimized away while the trunk leg goes on); the trunk
channel's Hangup does.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tollwatch.cdr_ingest import attribution
from tollwatch.cdr_ingest._types import CdrOptions
from tollwatch.cdr_ingest.dialed import dialed_number
from tollwatch.cdr_ingest.live import ami_dialects
from tollwatch.cdr_ingest.live.ami_dialects import AmiDialect
from tollwatch.cdr_ingest.live.ami_fields import (
    EVENT_TV_SKEW,
    channel_duration,
    event_time,
    lastdata_of,
    remote_ip,
)
from tollwatch.cdr_ingest.live.events import (
    AuthAttempt,
    CallAnswered,
    CallEnded,
    CallRefused,
    CallStarted,
    LiveEvent,
    PbxBooted,
)
from tollwatch.cdr_ingest.live.legs import LOCAL, LegRules, endpoint

FAILED_AUTH = frozenset(
    {"ChallengeResponseFailed", "InvalidPassword", "InvalidAccountID", "FailedACL"}
)
OTHER_EVENTS = FAILED_AUTH | {"SuccessfulAuth", "FullyBooted", "UserEvent", "PeerStatus",
                               "ContactStatus"}  # fmt: skip
REFUSED_EVENT = "TollwatchRefused"  # the dialplan snippet's UserEvent for a refused call
# Event names the tracker acts on, in some dialect: what an AMI client needs to subscribe to.
EVENTS = ami_dialects.all_events() | OTHER_EVENTS

_BEFORE_DIALECT = frozenset({"Newchannel", "Dial"})  # read while the dialect is not known
_RECENT = 1024  # ended call ids remembered so a late resync snapshot doesn't revive them


@dataclass
class _Call:
    started: CallStarted
    answered: bool = False
    dests: set[str] = field(default_factory=set)  # trunk channels dialed, not yet failed


@dataclass
class TrackerStats:
    handled: int = 0  # messages that produced or changed call/auth state
    ignored: Counter[str] = field(default_factory=Counter)  # event name -> count
    malformed: int = 0  # relevant events missing required headers
    call_events: int = 0  # events of the dialect's call vocabulary seen (any outcome)
    unknown: int = 0  # valid events no dialect uses (VarSet, Newexten, ...): counted only


class AmiCallTracker:
    """Feed AMI messages in arrival order; get `LiveEvent`s back.

    State is per call (keyed by call id) and per channel of a call (channel name -> call id);
    both are dropped when the call ends, so memory is bounded by the calls up.
    """

    def __init__(
        self,
        pbx: str,
        options: CdrOptions | None = None,
        *,
        is_trunk: Callable[[str, str, str], bool] | None = None,
    ) -> None:
        rules = LegRules(options)
        self.rules = rules
        self.pbx = pbx
        self.dialect: AmiDialect = ami_dialects.by_name("asterisk12")
        self.dialect_chosen = False  # by the banner; until then an Asterisk 11 Dial switches
        self.dialect_text = "not known yet (no banner)"
        self._standby = ami_dialects.by_name("asterisk11")
        self.is_trunk = is_trunk or rules.is_trunk
        self.chains = attribution.LocalChains()  # who dialed the Local channels up
        self.stats = TrackerStats()
        self._calls: dict[str, _Call] = {}
        self._channels: dict[str, str] = {}  # calling and trunk channel names -> call id
        self._gone: OrderedDict[str, None] = OrderedDict()  # recently ended call ids
        self._own_logins: set[tuple[str, str]] = set()  # (AccountID, RemoteAddress)

    # -- public ---------------------------------------------------------------------------

    def ignore_own_login(self, account: str, remote_address: str) -> None:
        """Drop the SuccessfulAuth of our own AMI session (RemoteAddress as AMI writes it)."""
        self._own_logins.add((account, remote_address))

    def in_progress(self) -> list[CallStarted]:
        return [c.started for c in self._calls.values()]

    @property
    def calls_up(self) -> int:
        return len(self._calls)

    def use_version(self, version: str) -> None:
        """Pick the dialect for the AMI protocol version of the login banner ("11.0.0")."""
        dialect = ami_dialects.for_version(version)
        if dialect is not None:
            self.dialect = dialect
            self.dialect_chosen = True
            self.dialect_text = dialect.release(version)
        else:
            self.dialect_text = f"unknown AMI version {version!r}; reading it as Asterisk 12+"

    def skip(self, name: str) -> bool:
        """Count an event `feed` would ignore by its name alone (the reader need not parse
        it): True if it was one (counted as `feed` counts it), False if `feed` wants it."""
        if (
            not name
            or name in self.dialect.events
            or name in OTHER_EVENTS
            or (not self.dialect_chosen and name in _BEFORE_DIALECT)
        ):
            return False
        self.stats.ignored[name] += 1
        if name not in EVENTS:
            self.stats.unknown += 1
        return True

    def feed(self, msg: Mapping[str, str], at: datetime) -> list[LiveEvent]:
        name = msg.get("Event", "")
        # Without a (valid) Timestamp header call events are on our clock (their arrival), so
        # a security event's EventTV, on the PBX's clock, is taken only while the two clocks
        # agree. A PBX clock ahead of ours would otherwise push the rules' clock ahead of every
        # later call (incidents closed for "quiet" between two of their own calls), one behind
        # it would time a break-in before the calls it let in.
        when = event_time(msg, at, EVENT_TV_SKEW)
        if not self.dialect_chosen and name == "Newchannel":
            self._standby.translate(msg)  # in case this turns out to be an Asterisk 11
        if name == "Dial" and "SubEvent" in msg and not self.dialect_chosen:
            # no banner seen, but this is Asterisk 11's Dial event
            self.dialect, self.dialect_chosen = self._standby, True
            self.dialect_text = self._standby.release("1.x, from its events")
        try:
            if name in self.dialect.events:
                self.stats.call_events += 1
                out: list[LiveEvent] | None = None
                for canonical in self.dialect.translate(msg):
                    got = self._call_event(canonical, when)
                    if got is not None:
                        out = (out or []) + got
            elif name in FAILED_AUTH or name == "SuccessfulAuth":
                out = self._auth(name, msg, when)
            elif name == "FullyBooted":
                out = [PbxBooted(self.pbx, when)]
            elif name in ("PeerStatus", "ContactStatus"):
                out = [] if self.rules.learn(msg) else None
            elif name == "UserEvent" and msg.get("UserEvent") == REFUSED_EVENT:
                out = [self._refused(msg, when)]
            else:
                self.stats.ignored[name or "(not an event)"] += 1
                if name and name not in EVENTS:
                    self.stats.unknown += 1
                return []
        except KeyError:
            self.stats.malformed += 1
            return []
        if out is None:
            self.stats.ignored[name] += 1
            return []
        self.stats.handled += 1
        return out

    def _refused(self, msg: Mapping[str, str], at: datetime) -> CallRefused:
        dialed = msg.get("Dialed", "") or msg.get("Exten", "")
        return CallRefused(
            pbx=self.pbx,
            call_id=msg.get("Uniqueid", ""),
            at=at,
            source=self._source(msg, dialed),
            dialed=dialed,
            hit=msg.get("Hit", ""),
        )

    def _call_event(self, msg: Mapping[str, str], at: datetime) -> list[LiveEvent] | None:
        name = msg.get("Event", "")
        if name == "DialBegin":
            return self._dial_begin(msg, at)
        if name == "DialEnd":
            return self._dial_end(msg, at)
        if name == "Hangup":
            return self._hangup(msg, at)
        if name == "Rename":
            return self._rename(msg)
        return None

    def _rename(self, msg: Mapping[str, str]) -> list[LiveEvent] | None:
        """A channel of a call got a new name (masquerade, pickup): follow it."""
        old, new = msg.get("Channel", ""), msg.get("Newname", "")
        call_id = self._channels.pop(old, None)
        if call_id is None or not new:
            return None
        self._channels[new] = call_id
        call = self._calls[call_id]
        if old in call.dests:
            call.dests.discard(old)
            call.dests.add(new)
        return []

    def resync(self, channels: Sequence[Mapping[str, str]], at: datetime) -> list[LiveEvent]:
        """Reconcile with the CoreShowChannel events of a CoreShowChannels response.

        Calls we track whose channels are all gone end now; outbound calls up that we don't
        know start now (at `at` minus the calling channel's Duration) and are answered at
        `at` if the trunk channel is up.
        """
        names = {c.get("Channel", "") for c in channels}
        out: list[LiveEvent] = []
        for call_id, call in list(self._calls.items()):
            if not ({call.started.channel} | call.dests) & names:
                out.append(self._end(call_id, at, "gone at resync"))
        by_bridge: dict[str, list[Mapping[str, str]]] = {}
        by_linked: dict[str, list[Mapping[str, str]]] = {}
        for c in channels:
            if c.get("BridgeId"):
                by_bridge.setdefault(c["BridgeId"], []).append(c)
            by_linked.setdefault(c.get("Linkedid", ""), []).append(c)
        for trunk in channels:
            chan = trunk.get("Channel", "")
            if chan in self._channels or not trunk.get("Application", "").startswith("AppDial"):
                continue
            peers = by_bridge.get(trunk.get("BridgeId", ""), []) if trunk.get("BridgeId") else []
            callers = [
                c
                for c in [*peers, *by_linked.get(trunk.get("Linkedid", ""), [])]
                if c.get("Application") == "Dial" and c is not trunk
            ]
            if not callers:
                continue
            caller = callers[0]
            data = caller.get("ApplicationData", "")
            if not self.is_trunk(chan, caller.get("Context", ""), data):
                continue
            call_id = caller.get("Uniqueid", "")
            if not call_id or call_id in self._calls or call_id in self._gone:
                continue
            dialed = dialed_number("Dial", data, caller.get("Exten", ""))
            started = CallStarted(
                pbx=self.pbx,
                call_id=call_id,
                at=at - channel_duration(caller.get("Duration", "")),
                source=self._source(caller, dialed),
                account=caller.get("AccountCode", ""),
                dialed=dialed,
                trunk=endpoint(chan),
                channel=caller["Channel"],
                dest_channel=chan,
                linkedid=caller.get("Linkedid", ""),
            )
            self._start(started)
            out.append(started)
            if trunk.get("ChannelState") == "6":
                self._calls[call_id].answered = True
                out.append(CallAnswered(self.pbx, call_id, at))
        return out

    # -- events ---------------------------------------------------------------------------

    def _dial_begin(self, msg: Mapping[str, str], at: datetime) -> list[LiveEvent] | None:
        dest = msg.get("DestChannel", "")
        chan = msg.get("Channel", "")
        data = lastdata_of(dest, msg.get("DialString", ""))
        self.chains.dialed(dest, chan, msg.get("Context", ""), msg.get("Exten", ""))
        if not chan or not self.is_trunk(dest, msg.get("Context", ""), data):
            return None  # originate (no caller), or a Local / phone destination
        call_id = msg["Uniqueid"]
        call = self._calls.get(call_id)
        if call is not None:  # parallel or failover dial from the same channel
            call.dests.add(dest)
            self._channels[dest] = call_id
            return []
        dialed = dialed_number("Dial", data, msg.get("Exten", ""))
        started = CallStarted(
            pbx=self.pbx,
            call_id=call_id,
            at=at,
            source=self._source(msg, dialed),
            account=msg.get("AccountCode", ""),
            dialed=dialed,
            trunk=endpoint(dest),
            channel=chan,
            dest_channel=dest,
            linkedid=msg.get("Linkedid", ""),
        )
        self._start(started)
        return [started]

    def _dial_end(self, msg: Mapping[str, str], at: datetime) -> list[LiveEvent] | None:
        dest = msg.get("DestChannel", "")
        call_id = self._channels.get(dest)
        if call_id is None:
            return None
        call = self._calls[call_id]
        status = msg.get("DialStatus", "")
        if status == "ANSWER":
            if call.answered:
                return []
            call.answered = True
            return [CallAnswered(self.pbx, call_id, at)]
        call.dests.discard(dest)
        self._channels.pop(dest, None)
        if call.answered or call.dests:
            return []
        return [self._end(call_id, at, status)]

    def _source(self, caller: Mapping[str, str], dialed: str) -> str:
        """Who sent out the leg `caller` (a DialBegin or CoreShowChannel) dialed."""
        chan, context, exten, via_local = self.chains.start(
            caller.get("Channel", ""), caller.get("Context", ""), caller.get("Exten", ""))
        callerid = caller.get("CallerIDNum", "")
        return self.rules.source_of(chan, callerid, context, exten, dialed, via_local=via_local)

    def _hangup(self, msg: Mapping[str, str], at: datetime) -> list[LiveEvent] | None:
        chan = msg.get("Channel", "")
        self.chains.hungup(chan)
        call_id = self._channels.get(chan)
        if call_id is None:
            return None
        call = self._calls[call_id]
        cause = msg.get("Cause-txt", "") or msg.get("Cause", "")
        if chan == call.started.channel:
            if LOCAL.match(chan):  # may be Local optimization; the trunk leg decides
                self._channels.pop(chan, None)
                return []
            return [self._end(call_id, at, cause)]
        call.dests.discard(chan)
        self._channels.pop(chan, None)
        if call.dests and not call.answered:
            return []
        return [self._end(call_id, at, cause)]

    def _auth(self, name: str, msg: Mapping[str, str], at: datetime) -> list[LiveEvent] | None:
        account = msg.get("AccountID", "")
        remote = msg.get("RemoteAddress", "")
        service = msg.get("Service", "")
        if name == "SuccessfulAuth" and service == "AMI" and (account, remote) in self._own_logins:
            return None
        return [
            AuthAttempt(
                pbx=self.pbx,
                at=at,
                outcome="success" if name == "SuccessfulAuth" else "failed",
                account=account,
                address=remote_ip(remote),
                service=service,
                event=name,
            )
        ]

    # -- state ----------------------------------------------------------------------------

    def _start(self, started: CallStarted) -> None:
        self._calls[started.call_id] = _Call(started, dests={started.dest_channel})
        self._channels[started.channel] = started.call_id
        self._channels[started.dest_channel] = started.call_id
        self._gone.pop(started.call_id, None)

    def _end(self, call_id: str, at: datetime, cause: str) -> CallEnded:
        call = self._calls.pop(call_id)
        for chan in {call.started.channel, call.started.dest_channel} | call.dests:
            if self._channels.get(chan) == call_id:
                del self._channels[chan]
        self._gone[call_id] = None
        while len(self._gone) > _RECENT:
            self._gone.popitem(last=False)
        return CallEnded(self.pbx, call_id, at, cause)
