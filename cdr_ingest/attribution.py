"""Who sent an outbound leg out: the party on the PBX, never only the inbound caller id.

One decision, written twice over the same inputs: as polars expressions for a CDR batch
(`source_expr`) and as a plain function for one live AMI leg (`source_of`); tests check that
they agree. The inputs:

* dialer: the channel at the start of the leg's chain that is not a Local channel: the leg's
  calling channel itself, or, when that is a Local channel (`Local/N@ctx-00000001;2`), the
  channel that dialed its `;1` half, followed back through further Local hops. From Master.csv
  rows (a row whose dstchannel is the `;1` half) or AMI DialBegin events. None when the chain's
  start is not seen (e.g. an AMI Originate into a Local channel).
* context, exten: where the dialer's dial plan was when it dialed (CDR dcontext/dst of that row,
  DialBegin Context/Exten): the DID of an inbound call, the extension whose forward ran.
* dialed: the number the leg dialed (cdr_ingest.dialed: the Dial target's number, else dst).

The source, in this order:

* `201`: a phone placed the call itself (its channel dialed the trunk).
* `fwd:202`: the call reached extension 202 (an internal number: digits, at most
  `max_extension_length`) whose dial plan sent it out through a Local channel: call forward,
  follow-me, a DID routed to a desk that forwards.
* `201`: a phone's own call that went out through Local channels (exten not another extension).
* `did:0312345678`: an inbound call was sent out by its dial plan at exten 0312345678 (its DID,
  or the exten it was routed to) with another number dialed: a forward in the inbound context.
* `carrier`: an endpoint that is not a phone (a trunk) sent the call out where the number
  itself was the exten (DISA, a blind transfer into an outbound context); also a phone not
  recognized as one by its name (`lobby`, a 9-digit `150010001`): its endpoint.
* the caller id number: a Local chain whose start was not seen (as before).

An inbound caller id never names the source of a call from a trunk, so rotating caller ids
cannot spread a forwarding attack over many "sources".
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable

import polars as pl

LOCAL = re.compile(r"(?i)^local/")
_LOCAL_RX = r"(?i)^local/"
_HALF = r";[0-9]+$"
_CHANNEL = re.compile(r"^[^/]+/(.*?)(?:-[0-9A-Fa-f]*)?(?:;[0-9]+)?$")
_AFTER_TECH = r"^[^/]+/(.*)$"
_SUFFIX = r"(?:-[0-9A-Fa-f]*)?(?:;[0-9]+)?$"


def local_base(channel: str) -> str:
    """Local/N@ctx-00000001;2 -> Local/N@ctx-00000001 (both halves share it)."""
    return re.sub(_HALF, "", channel)


def local_base_expr(channel: pl.Expr) -> pl.Expr:
    return channel.str.replace(_HALF, "")


def is_local(channel: str) -> bool:
    return bool(LOCAL.match(channel))


def is_local_expr(channel: pl.Expr) -> pl.Expr:
    return channel.str.contains(_LOCAL_RX)


def _endpoint(channel: str) -> str:
    m = _CHANNEL.match(channel)
    return m.group(1) if m else ""


def _endpoint_expr(channel: pl.Expr) -> pl.Expr:
    """`_endpoint` over a column: "" for a name without one (never null: a source is text)."""
    return channel.str.extract(_AFTER_TECH, 1).str.replace(_SUFFIX, "").fill_null("")


def _internal(exten: str, max_ext: int) -> bool:
    return exten.isascii() and exten.isdigit() and len(exten) <= max_ext


def _internal_expr(exten: pl.Expr, max_ext: int) -> pl.Expr:
    if max_ext < 1:
        return pl.lit(False)
    return exten.str.contains(rf"^[0-9]{{1,{max_ext}}}$")


def source_of(
    dialer: str | None,
    via_local: bool,
    context: str,
    exten: str,
    dialed: str,
    callerid: str,
    *,
    is_phone: Callable[[str], bool],
    max_ext: int,
) -> str:
    """The source of one outbound leg (see the module docstring)."""
    if dialer is None or is_local(dialer):
        return callerid
    if is_phone(dialer):
        phone = _endpoint(dialer)
        if via_local and _internal(exten, max_ext) and exten != phone:
            return f"fwd:{exten}"
        return phone
    if via_local and _internal(exten, max_ext):
        return f"fwd:{exten}"
    if exten not in ("", "s") and exten != dialed:
        return f"did:{exten}"
    return _endpoint(dialer)


def source_expr(
    dialer: pl.Expr,
    via_local: pl.Expr,
    context: pl.Expr,
    exten: pl.Expr,
    dialed: pl.Expr,
    callerid: pl.Expr,
    *,
    is_phone: Callable[[pl.Expr], pl.Expr],
    max_ext: int,
) -> pl.Expr:
    """`source_of` over columns (null dialer: chain start unknown)."""
    context = context.fill_null("")
    exten = exten.fill_null("")
    dialed = dialed.fill_null("")
    unknown = dialer.is_null() | is_local_expr(dialer).fill_null(True)
    phone = is_phone(dialer).fill_null(False)
    internal = _internal_expr(exten, max_ext).fill_null(False)
    return (
        pl.when(unknown)
        .then(callerid)
        .when(phone & via_local & internal & (exten != _endpoint_expr(dialer)))
        .then(pl.lit("fwd:") + exten)
        .when(phone)
        .then(_endpoint_expr(dialer))
        .when(via_local & internal)
        .then(pl.lit("fwd:") + exten)
        .when(~exten.is_in(["", "s"]) & (exten != dialed))
        .then(pl.lit("did:") + exten)
        .otherwise(_endpoint_expr(dialer))
    )


class LocalChains:
    """Live: who dialed each Local channel up (from DialBegin events), to follow a Local chain
    back to its start as batch does from the rows that dialed its `;1` halves."""

    def __init__(self, limit: int = 8192, max_hops: int = 8) -> None:
        self.limit = limit
        self.max_hops = max_hops
        # Local base name -> (channel that dialed its ;1 half, that channel's context, exten)
        self._dialers: OrderedDict[str, tuple[str, str, str]] = OrderedDict()

    def dialed(self, dest: str, channel: str, context: str, exten: str) -> None:
        """A DialBegin from `channel` (in context/exten) to `dest`: remember Local dests."""
        if channel and is_local(dest):
            self._dialers[local_base(dest)] = (channel, context, exten)
            while len(self._dialers) > self.limit:
                self._dialers.popitem(last=False)

    def hungup(self, channel: str) -> None:
        if is_local(channel) and channel.endswith(";2"):
            self._dialers.pop(local_base(channel), None)

    def start(self, channel: str, context: str, exten: str) -> tuple[str, str, str, bool]:
        """(dialer, context, exten, via_local) for a leg dialed by `channel` in context/exten;
        the dialer stays a Local channel when the chain's start was not seen."""
        via_local = False
        for _ in range(self.max_hops):
            if not is_local(channel):
                break
            found = self._dialers.get(local_base(channel))
            if found is None:
                break
            channel, context, exten = found
            via_local = True
        return channel, context, exten, via_local

    def __len__(self) -> int:
        return len(self._dialers)


__all__ = [
    "LocalChains",
    "is_local",
    "is_local_expr",
    "local_base",
    "local_base_expr",
    "source_expr",
    "source_of",
]
