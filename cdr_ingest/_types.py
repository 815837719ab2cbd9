"""Options and the error type of cdr_ingest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CdrOptions:
    """How to read CDR files and which legs count as outbound calls."""

    timezone: str = "UTC"
    usegmtime: bool = False
    layout: str = "auto"
    columns: tuple[str, ...] = ()  # a headerless file's columns, as configured ([cdr] columns)
    trunks: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    max_extension_length: int = 6


class IngestError(Exception):
    """A CDR file is missing, unreadable or not a CDR file; str() is one line."""
