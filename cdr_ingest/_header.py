"""CSV files with a header row: cdr_custom with a header, FreePBX asteriskcdrdb.cdr exports."""

from __future__ import annotations

# Output field -> accepted header names (lower case), first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "accountcode": ("accountcode", "account", "account_code"),
    "src": ("src", "source"),
    "dst": ("dst", "destination"),
    "dcontext": ("dcontext", "context", "destination_context"),
    "clid": ("clid", "callerid", "caller_id"),
    "channel": ("channel",),
    "dstchannel": ("dstchannel", "dst_channel", "destination_channel"),
    "lastapp": ("lastapp", "last_app", "lastapplication"),
    "lastdata": ("lastdata", "last_data"),
    "start": ("start", "calldate", "call_date", "starttime", "start_time"),
    "answer": ("answer", "answertime", "answer_time"),
    "end": ("end", "endtime", "end_time"),
    "duration": ("duration",),
    "billsec": ("billsec", "billable_seconds"),
    "disposition": ("disposition",),
    "uniqueid": ("uniqueid", "unique_id"),
    "userfield": ("userfield", "user_field"),
    "linkedid": ("linkedid", "linked_id"),
}


def looks_like_header(fields: list[str]) -> bool:
    """A header names at least src and dst."""
    names = {f.strip().lower() for f in fields}
    return "src" in names and "dst" in names


def map_header(fields: list[str]) -> dict[str, int]:
    """Map output field names to column positions of a header row."""
    names = [f.strip().lower() for f in fields]
    found: dict[str, int] = {}
    for field, aliases in ALIASES.items():
        for alias in aliases:
            if alias in names:
                found[field] = names.index(alias)
                break
    return found


def kind(fields: list[str]) -> str:
    """Short description of a header file for describe_layout."""
    names = {f.strip().lower() for f in fields}
    if "calldate" in names and "recordingfile" in names:
        return "FreePBX cdr export"
    return "CSV with header"
