"""Live sources: Asterisk AMI and a followed Master.csv, each a stream of call events."""

from cdr_ingest.live.events import (
    AuthAttempt,
    CallAnswered,
    CallEnded,
    CallStarted,
    LiveEvent,
    PbxBooted,
    SourceStatus,
)

__all__ = [
    "AuthAttempt",
    "CallAnswered",
    "CallEnded",
    "CallStarted",
    "LiveEvent",
    "PbxBooted",
    "SourceStatus",
]
