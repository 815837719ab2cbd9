"""What a live source emits: call lifecycle and authentication events, on event time.

`call_id` is the calling channel's Uniqueid, which is also the `uniqueid` Asterisk writes to
Master.csv for that call, so live and batch name the same call the same way. `pbx` names the
Asterisk server (an MSP's daemon watches many).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class CallStarted:
    pbx: str
    call_id: str
    at: datetime  # UTC, aware
    source: str  # the phone endpoint that placed it (PJSIP/209-… -> "209"), else caller id
    account: str
    dialed: str  # the digits as dialed (what Master.csv writes as dst)
    trunk: str  # the trunk endpoint it goes out on ("carrier")
    channel: str = ""  # the calling channel, e.g. PJSIP/209-0000000a (for hang-up)
    dest_channel: str = ""  # the trunk channel, e.g. PJSIP/carrier-0000000b
    linkedid: str = ""  # the Asterisk call it belongs to (Master.csv linkedid)


@dataclass(frozen=True)
class CallAnswered:
    pbx: str
    call_id: str
    at: datetime


@dataclass(frozen=True)
class CallEnded:
    pbx: str
    call_id: str
    at: datetime
    cause: str = ""


@dataclass(frozen=True)
class AuthAttempt:
    """A security event: a failed or successful authentication (SIP registration, AMI login)."""

    pbx: str
    at: datetime
    outcome: Literal["failed", "success"]
    account: str  # AccountID
    address: str  # remote IP address ("" if unknown)
    service: str  # PJSIP, AMI, ...
    event: str  # the AMI event name, e.g. ChallengeResponseFailed


@dataclass(frozen=True)
class PbxBooted:
    """Asterisk (re)started (AMI FullyBooted): AstDB may have lost what we put there."""

    pbx: str
    at: datetime


@dataclass(frozen=True)
class CallRefused:
    """A call the dialplan refused because of a tollwatch block (UserEvent TollwatchRefused, or
    a CDR row whose userfield reads tollwatch-blocked:...). It never reached the trunk."""

    pbx: str
    call_id: str  # the calling channel's Uniqueid (the CDR row's uniqueid)
    at: datetime
    source: str
    dialed: str
    hit: str  # the block that refused it: "23276543" or "src:209"


@dataclass(frozen=True)
class PbxConnected:
    """An AMI session is up (first connection or reconnect), with Asterisk's CoreStatus.

    `started_at` is when Asterisk started (None if CoreStatus was refused); `down_since` when
    the previous session of this source was lost (None at the first connection)."""

    pbx: str
    at: datetime
    started_at: datetime | None
    down_since: datetime | None = None


LiveEvent = (
    CallStarted | CallAnswered | CallEnded | AuthAttempt | PbxBooted | CallRefused | PbxConnected
)


@dataclass
class SourceStatus:
    """What `tollwatch status` shows for a source."""

    name: str
    kind: Literal["ami", "csv", "db"]
    connected: bool = False
    last_event_at: datetime | None = None
    events: int = 0
    errors: int = 0
    calls_in_progress: int = 0
    events_per_s: float = 0.0  # over the last status interval (the daemon fills it in)
    state: str = "starting"  # human words: "connected", "retrying in 4s (connection refused)"
    bad_frames: int = 0  # AMI frames that could not be parsed or handled
    backlog: int = 0  # events received but not yet handed to the daemon (AMI reader queue)
    backlog_age: float = 0.0  # seconds the oldest of them has waited
    dialect: str = ""  # AMI: which Asterisk the banner says, e.g. "Asterisk 22 (AMI 11.0.0)"
    unknown_events: int = 0  # AMI: valid events no dialect uses (counted, not an error)
    warning: str = ""  # something the administrator should look at, in plain words
