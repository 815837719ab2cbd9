"""The number an outbound leg dialed: ONE definition for batch (CDR rows) and live (AMI).

Asterisk writes the number the caller dialed in ``dst`` (the dialplan extension), but on ring
groups, follow-me, call forwarding, Local chains and DISA ``dst`` is the DID (``211553``) or
``s`` while the trunk was sent another number: the Dial target in ``lastdata``
(``SIP/carrier/00232...``, ``PJSIP/00232...@carrier``, ``IAX2/user@peer/00232...``,
``DAHDI/g0/00232...``). So the dialed number is the Dial target's number when the target
carries one, else ``dst``.

A target "carries a number" when it names a user part (``NUMBER@peer``) or a path after the
peer (``peer/NUMBER``, ``peer/sip:NUMBER@host``) made of digits (``+``, ``*``, ``#``
allowed). A bare endpoint (``PJSIP/201``, ``SIP/150010001``) is a device, not a number.

``dialed_expr`` builds the polars expression batch runs over whole files; ``dialed_number``
runs that same expression for one live call (AMI gives the Dial string without the channel
technology, so the tracker passes ``TECH/`` + DialString, as Asterisk writes ``lastdata``).
"""

from __future__ import annotations

from functools import lru_cache

import polars as pl

_TARGET = r"^[^/,&()]+/([^,&]*)"  # first Dial target, after TECH/
_NUMBER = r"^\+?[0-9*#]+$"


def dial_target_number(lastapp: pl.Expr, lastdata: pl.Expr) -> pl.Expr:
    """The number the first Dial target of lastdata carries, else null."""
    target = lastdata.str.extract(_TARGET, 1)
    segment = (
        pl.when(lastdata.str.contains("(?i)^local/"))  # Local/NUMBER@context/n
        .then(target.str.extract(r"^([^@/]*)@", 1))
        .when(target.str.contains("/", literal=True))
        .then(target.str.extract(r"/([^/]*)$", 1))
        .otherwise(target)
    )
    user = segment.str.replace(r"^sips?:", "").str.replace(r"@.*$", "")
    carries = lastapp.str.contains("(?i)^dial$") & target.str.contains(r"[/@]")
    return pl.when(carries & user.str.contains(_NUMBER)).then(user)


def dialed_expr(
    lastapp: pl.Expr | None = None, lastdata: pl.Expr | None = None, dst: pl.Expr | None = None
) -> pl.Expr:
    """The dialed number of each row: the Dial target's number, else dst (default columns)."""
    app = pl.col("lastapp") if lastapp is None else lastapp
    data = pl.col("lastdata") if lastdata is None else lastdata
    ext = pl.col("dst") if dst is None else dst
    return pl.coalesce(dial_target_number(app, data), ext)


@lru_cache(maxsize=4096)
def dialed_number(lastapp: str, lastdata: str, dst: str) -> str:
    """dialed_expr for one call (the live tracker): the same expression on a one-row frame."""
    frame = pl.DataFrame({"lastapp": [lastapp], "lastdata": [lastdata], "dst": [dst]})
    value = frame.select(dialed_expr()).item()
    return str(value) if value is not None else ""


_ENDPOINT = r"^[^/]+/(.*?)(?:-[0-9A-Fa-f]*)?(?:;[0-9]+)?$"
# Every target of the Dial a bare endpoint: TECH/ep&TECH/ep... (a phone, a ring group).
_ALL_BARE = r"(?i)^[^/&@,]+/[^/&@,]+(?:&[^/&@,]+/[^/&@,]+)*(?:,|$)"


def target_endpoint(lastdata: pl.Expr) -> pl.Expr:
    """The peer the first Dial target goes to: 0102@carrier, carrier/0102,
    user:pw@peer/0102 -> carrier, carrier, peer (a port after the peer is dropped)."""
    target = lastdata.str.extract(_TARGET, 1)
    peer = (
        pl.when(target.str.contains("/", literal=True))
        .then(target.str.extract(r"^(?:[^/@]*@)?([^/]*)/", 1))
        .otherwise(target.str.extract(r"@([^/]*)$", 1))
    )
    return peer.str.replace(r":[0-9]+$", "")


def dial_evidence(lastapp: pl.Expr, lastdata: pl.Expr, dest: pl.Expr) -> pl.Expr:
    """What the Dial says about its destination channel `dest` (e.g. PJSIP/carrier-0000000b):
    "number" when its first target sends a number to that channel's endpoint, "device" when
    every target is a bare endpoint (``PJSIP/201``, ``SIP/150010001&SIP/150010002``), else
    null (no evidence: another app, or a target for another endpoint such as a DAHDI group).
    """
    dial = lastapp.str.contains("(?i)^dial$")
    endpoint = dest.str.extract(_ENDPOINT, 1)
    number = dial_target_number(lastapp, lastdata).is_not_null() & (
        target_endpoint(lastdata) == endpoint
    )
    return (
        pl.when(dial & number)
        .then(pl.lit("number"))
        .when(dial & lastdata.str.contains(_ALL_BARE))
        .then(pl.lit("device"))
    )


@lru_cache(maxsize=4096)
def evidence_of(lastapp: str, lastdata: str, dest: str) -> str | None:
    """dial_evidence for one live leg: the same expression on a one-row frame."""
    frame = pl.DataFrame({"a": [lastapp], "d": [lastdata], "c": [dest]})
    value = frame.select(dial_evidence(pl.col("a"), pl.col("d"), pl.col("c"))).item()
    return str(value) if value is not None else None
