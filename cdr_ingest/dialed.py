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
``TECH/`` + DialString, as Asterisk writes ``lastdata``), step by step in Python (``one``; a
property test holds it to the polars plan on one row, ``plan_one``).
"""

from __future__ import annotations

import re

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


def with_dial_columns(
    lf: pl.LazyFrame, dest: str | None = None, devices: pl.Expr | None = None
) -> pl.LazyFrame:
    """Add `dialed` (from columns lastapp, lastdata, dst) and, given the column holding each
    leg's destination channel, `_evidence`: "number" when the first Dial target sends a
    number to that channel's peer, "device" when the Dial's targets are bare endpoints and that
    channel is one of them, else null (no evidence: another app, or a target for another
    endpoint such as a DAHDI group). `devices`: the rows whose "device" evidence the caller
    reads (default all); elsewhere it is left null, and the bare-target check not run."""
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
    lf = lf.with_columns(pl.coalesce(pl.col("_dial_number"), pl.col("dst")).alias("dialed")).drop(
        "_a", "_b", "_a_ok"
    )
    if dest is None:
        return lf.drop("_may", "_dial_number", "_dial_peer")
    has_number = pl.col("_dial_number").is_not_null()
    to_dest = pl.col(dest).str.starts_with(pl.col("_dial_peer"))
    # bare targets: is the destination one of them ("&PJSIP/201&PJSIP/202&" holds "&PJSIP/202&")
    bare = dial & ~may if devices is None else dial & ~may & devices
    lf = lf.with_columns(_targets=pl.when(bare).then(data).str.extract(_TARGETS, 1))
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


def plan_one(lastapp: str, lastdata: str, dst: str, dest: str) -> tuple[str, str | None]:
    """`with_dial_columns` on a one-row frame: (dialed, evidence). The reference the live
    twin below is tested against (tests/test_dialed_parity.py); ~2 ms a call."""
    frame = pl.LazyFrame(
        {"lastapp": [lastapp], "lastdata": [lastdata], "dst": [dst], "_d": [dest]},
        schema=dict.fromkeys(("lastapp", "lastdata", "dst", "_d"), pl.String()),
    )
    row = with_dial_columns(frame, "_d").select("dialed", "_evidence").collect().row(0)
    return str(row[0] or ""), row[1]


# The same plan for one live call, step by step in Python (the AMI tracker runs it on every
# DialBegin: a polars plan per call costs milliseconds on the latency path). Same patterns,
# compiled by Python's re: both engines are leftmost-first; `$` becomes `\Z` (Python's `$` also
# matches before a final newline, the Rust engine's does not).
def _py(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("$", r"\Z"))


_USER_AT_PY = _py(_USER_AT)
_PEER_PATH_PY = _py(_PEER_PATH)
_MAY_CARRY_PY = _py(_MAY_CARRY)
_NUMBER_PY = _py(_NUMBER)
_TARGETS_PY = _py(_TARGETS)
_CHANNEL_SUFFIX_PY = _py(_CHANNEL_SUFFIX)


def one(lastapp: str, lastdata: str, dst: str, dest: str) -> tuple[str, str | None]:
    """(dialed, evidence) of one Dial, as `with_dial_columns` gives them (see `plan_one`)."""
    dial = lastapp in _DIAL_APP
    may = dial and _MAY_CARRY_PY.match(lastdata) is not None
    number = tech = peer = None
    if may:
        a = _USER_AT_PY.match(lastdata)
        if a is not None and _NUMBER_PY.match(a["number"]):
            number, tech, peer = a["number"], a["tech"], a["peer"]
        else:
            b = _PEER_PATH_PY.match(lastdata)
            if b is not None:
                number, tech, peer = b["number"], b["tech"], b["peer"]
    dial_number = number if number is not None and _NUMBER_PY.match(number) else None
    dialed = dial_number if dial_number is not None else dst
    if dial_number is not None and dest.startswith(f"{tech}/{peer}-"):
        return dialed, "number"
    if dial and not may:
        targets = _TARGETS_PY.match(lastdata)
        if targets is not None:
            channel = _CHANNEL_SUFFIX_PY.sub("", dest, count=1)
            if f"&{channel}&" in f"&{targets[1]}&":
                return dialed, "device"
    return dialed, None


def dialed_number(lastapp: str, lastdata: str, dst: str) -> str:
    """The dialed number of one call (the live tracker): the batch plan's `dialed`."""
    return one(lastapp, lastdata, dst, "")[0]


def evidence_of(lastapp: str, lastdata: str, dest: str) -> str | None:
    """What one Dial says about its destination channel: "number", "device" or None."""
    return one(lastapp, lastdata, "", dest)[1]
