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

``with_dial_columns`` adds the columns batch needs over whole files (one regex pass for the
first target's number and peer); ``dialed_number`` and ``evidence_of`` run that same plan for
one live call (AMI gives the Dial string without the channel technology, so the tracker passes
``TECH/`` + DialString, as Asterisk writes ``lastdata``).
"""

from __future__ import annotations

from functools import lru_cache

import polars as pl

# First Dial target after TECH/: NUMBER@peer[:port][/opts] (n1, p1), or
# [user[:secret]@]peer[:port]/[sip:]NUMBER[@host] (p2, n2).
_TARGET = (
    r"^(?P<tech>[^/,&()]+)/(?:(?P<n1>[^@/,&]*)@(?P<p1>[^/,&:]*)(?::[0-9]+)?(?:/[A-Za-z]*)?"
    r"|(?:[^@/,&]*@)?(?P<p2>[^/,&:]*)(?::[0-9]+)?/(?:sips?:)?(?P<n2>[^@/,&]*)[^,&]*)(?:[,&]|$)"
)
_NUMBER = r"^\+?[0-9*#]+$"
# Every target of the Dial a bare endpoint: TECH/ep&TECH/ep... (a phone, a ring group).
_ALL_BARE = r"^[^/&@,]+/[^/&@,]+(?:&[^/&@,]+/[^/&@,]+)*(?:,|$)"
_IS_DIAL = "(?i)^dial$"


def with_dial_columns(lf: pl.LazyFrame, dest: str | None = None) -> pl.LazyFrame:
    """Add `dialed` (from columns lastapp, lastdata, dst) and, given the column holding each
    leg's destination channel, `_evidence`: "number" when the first Dial target sends a
    number to that channel's peer, "device" when every target is a bare endpoint, else null
    (no evidence: another app, or a target for another endpoint such as a DAHDI group)."""
    dial = pl.col("lastapp").str.contains(_IS_DIAL)
    lf = lf.with_columns(
        _dial_parts=pl.when(dial).then(pl.col("lastdata")).str.extract_groups(_TARGET)
    )
    parts = pl.col("_dial_parts")  # a column: the regex runs once, whatever the engine
    number = pl.coalesce(parts.struct.field("n1"), parts.struct.field("n2"))
    peer = pl.coalesce(parts.struct.field("p1"), parts.struct.field("p2"))
    lf = lf.with_columns(
        pl.when(number.str.contains(_NUMBER)).then(number).alias("_dial_number"),
        pl.concat_str(parts.struct.field("tech"), pl.lit("/"), peer, pl.lit("-")).alias(
            "_dial_peer"
        ),
    )
    lf = lf.with_columns(pl.coalesce(pl.col("_dial_number"), pl.col("dst")).alias("dialed"))
    if dest is None:
        return lf
    has_number = pl.col("_dial_number").is_not_null()
    to_dest = pl.col(dest).str.starts_with(pl.col("_dial_peer"))
    bare = pl.when(dial & ~has_number).then(pl.col("lastdata")).str.contains(_ALL_BARE)
    return lf.with_columns(
        pl.when(has_number & to_dest)
        .then(pl.lit("number"))
        .when(bare)
        .then(pl.lit("device"))
        .alias("_evidence")
    )


def _one(lastapp: str, lastdata: str, dst: str, dest: str) -> tuple[str, str | None]:
    frame = pl.LazyFrame(
        {"lastapp": [lastapp], "lastdata": [lastdata], "dst": [dst], "_d": [dest]},
        schema=dict.fromkeys(("lastapp", "lastdata", "dst", "_d"), pl.String()),
    )
    row = with_dial_columns(frame, "_d").select("dialed", "_evidence").collect().row(0)
    return str(row[0] or ""), row[1]


@lru_cache(maxsize=4096)
def dialed_number(lastapp: str, lastdata: str, dst: str) -> str:
    """The dialed number of one call (the live tracker): the batch plan on a one-row frame."""
    return _one(lastapp, lastdata, dst, "")[0]


@lru_cache(maxsize=4096)
def evidence_of(lastapp: str, lastdata: str, dest: str) -> str | None:
    """What one Dial says about its destination channel: "number", "device" or None."""
    return _one(lastapp, lastdata, "", dest)[1]
