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

# First Dial target after TECH/: NUMBER@peer (PJSIP, SIP, Local/NUMBER@context/n), tried
# first; where that gives no number: [user[:secret]@]peer[:port]/[sip:]NUMBER[@host] (chan_sip,
# IAX2, DAHDI groups, PJSIP/peer/URI). Two simple regexes run faster than one with both.
_USER_AT = r"^(?P<tech>[^/,&()]+)/(?P<number>[^@/,&]*)@(?P<peer>[^/,&:]*)"
_PEER_PATH = (
    r"^(?P<tech>[^/,&()]+)/(?:[^@/,&]*@)?(?P<peer>[^/,&:]*)(?::[0-9]+)?/(?:sips?:)?"
    r"(?P<number>[^@/,&]*)"
)
_MAY_CARRY = r"^[^/,&()]+/[^,&]*[@/]"
_NUMBER = r"^\+?[0-9*#]+$"
_DIAL_APP = ["Dial", "dial", "DIAL"]
_TARGETS = r"^([^/,&@]+/[^/,&@]+(?:&[^/,&@]+/[^/,&@]+)*)(?:,|$)"  # all bare: TECH/ep&TECH/ep
_CHANNEL_SUFFIX = r"-[0-9A-Fa-f]*(?:;[0-9]+)?$"


def with_dial_columns(lf: pl.LazyFrame, dest: str | None = None) -> pl.LazyFrame:
    """Add `dialed` (from columns lastapp, lastdata, dst) and, given the column holding each
    leg's destination channel, `_evidence`: "number" when the first Dial target sends a
    number to that channel's peer, "device" when the Dial's targets are bare endpoints and that
    channel is one of them, else null (no evidence: another app, or a target for another
    endpoint such as a DAHDI group)."""
    dial = pl.col("lastapp").is_in(_DIAL_APP)
    data = pl.col("lastdata")
    # Only a target with "@" or a second "/" can carry a number: a capture-free check first
    # keeps the capturing regexes off the rows that dial bare endpoints (internal calls).
    lf = lf.with_columns(_may=dial & data.str.contains(_MAY_CARRY))
    may = pl.col("_may")
    lf = lf.with_columns(_a=pl.when(may).then(data).str.extract_groups(_USER_AT))
    a_ok = pl.col("_a").struct.field("number").str.contains(_NUMBER).fill_null(False)
    lf = lf.with_columns(_a_ok=a_ok)
    lf = lf.with_columns(
        _b=pl.when(may & ~pl.col("_a_ok")).then(data).str.extract_groups(_PEER_PATH)
    )

    def part(name: str) -> pl.Expr:
        a, b = pl.col("_a").struct.field(name), pl.col("_b").struct.field(name)
        return pl.when(pl.col("_a_ok")).then(a).otherwise(b)

    number = part("number")
    lf = lf.with_columns(
        pl.when(number.str.contains(_NUMBER)).then(number).alias("_dial_number"),
        pl.concat_str(part("tech"), pl.lit("/"), part("peer"), pl.lit("-")).alias("_dial_peer"),
    )
    lf = lf.with_columns(
        pl.coalesce(pl.col("_dial_number"), pl.col("dst")).alias("dialed")
    ).drop("_a", "_b", "_a_ok")
    if dest is None:
        return lf.drop("_may", "_dial_number", "_dial_peer")
    has_number = pl.col("_dial_number").is_not_null()
    to_dest = pl.col(dest).str.starts_with(pl.col("_dial_peer"))
    # bare targets: is the destination one of them ("&PJSIP/201&PJSIP/202&" holds "&PJSIP/202&")
    lf = lf.with_columns(_targets=pl.when(dial & ~may).then(data).str.extract(_TARGETS, 1))
    targets = pl.col("_targets")
    # the destination's channel less its suffix, only where there are targets to look in
    channel = pl.when(targets.is_not_null()).then(pl.col(dest)).str.replace(_CHANNEL_SUFFIX, "")
    listed = pl.concat_str(pl.lit("&"), targets, pl.lit("&")).str.contains(
        pl.concat_str(pl.lit("&"), channel, pl.lit("&")), literal=True
    )
    return lf.with_columns(
        pl.when(has_number & to_dest)
        .then(pl.lit("number"))
        .when(listed)
        .then(pl.lit("device"))
        .alias("_evidence")
    ).drop("_may", "_dial_number", "_dial_peer", "_targets")


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
