"""Live sources: Asterisk AMI and a followed Master.csv, each a stream of call events."""

from tollwatch.cdr_ingest.live.events import (
    AuthAttempt,
    CallAnswered,
    CallEnded,
    CallRefused,
    CallStarted,
    LiveEvent,
    PbxBooted,
    PbxConnected,
    SourceStatus,
)

__all__ = [
    "AuthAttempt",
    "CallAnswered",
    "CallEnded",
    "CallRefused",
    "CallStarted",
    "LiveEvent",
    "PbxBooted",
    "PbxConnected",
    "SourceStatus",
]
