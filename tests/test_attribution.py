"""Who sent a call out: the same source from Master.csv and from AMI, never the inbound caller id.

tests/fixtures/forwarded is a real Asterisk 22 recording (see its README): twelve inbound calls
with rotating caller ids on desk 201's DID, forwarded abroad by 201's call forward through a
Local channel, and four on a DID forwarded straight from the inbound context.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import settings
from tests.test_parity import summary
from tollwatch.cdr_ingest import CdrOptions, scan_cdrs
from tollwatch.cdr_ingest._outbound import _is_phone
from tollwatch.cdr_ingest.attribution import source_expr, source_of
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker, LegRules
from tollwatch.cdr_ingest.live.events import CallStarted, LiveEvent
from tollwatch.cdr_ingest.live.fake_ami import parse_frames
from tollwatch.live import LivePipeline
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.incidents import Severity
from tollwatch.scan import run_scan
from tollwatch.settings import rule_specs

FORWARDED = Path(__file__).resolve().parent / "fixtures" / "forwarded"
MASTER = FORWARDED / "Master-forwarded.csv"
AMI = FORWARDED / "ami-forwarded.txt"
AT = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


def live_events(data: bytes) -> list[LiveEvent]:
    tracker = AmiCallTracker("pbx")
    return [e for m in parse_frames(data) for e in tracker.feed(m, AT)]


def scanned(path: Path) -> pl.DataFrame:
    """Outbound legs with their sources as `tollwatch scan` attributes them."""
    from tollwatch.cdr_ingest import dials_local, local_dials, resolve_local_chains

    rows = scan_cdrs([path], CdrOptions()).collect()
    dials = local_dials(rows.filter(dials_local()))
    legs = rows.filter(pl.col("outbound"))
    return resolve_local_chains(legs, dials, CdrOptions())


def test_forwarded_calls_same_source_in_cdr_and_ami() -> None:
    legs = scanned(MASTER)
    batch = dict(zip(legs["call_id"], legs["source"], strict=True))
    started = [e for e in live_events(AMI.read_bytes()) if isinstance(e, CallStarted)]
    live = {e.call_id: e.source for e in started}
    assert live == batch
    assert sorted(batch.values()) == ["did:0312345679"] * 4 + ["fwd:201"] * 12
    # the inbound caller ids rotate: none of them is a source
    callers = {r[1] for r in csv.reader(MASTER.open())}
    assert len(callers) == 16 and not callers & set(batch.values())


def test_twelve_forwarded_calls_to_sierra_leone_are_critical_for_the_forward() -> None:
    s = settings("JP", "UTC")
    [inc] = run_scan([MASTER], s).incidents
    assert (inc.source, inc.severity) == ("fwd:201", Severity.CRITICAL)
    assert len(inc.calls) == 12 and inc.regions == ["SL"]
    # live, on the recorded event times (timestampevents=yes), the same incident
    pipeline = LivePipeline("pbx", s, Classifier(s), rule_specs(s))
    for ev in live_events(AMI.read_bytes()):
        pipeline.feed(ev)
    pipeline.tick(max(c.end or c.start for c in inc.calls.values()) + timedelta(seconds=5))
    [live] = pipeline.engine.tracker.all_incidents()
    assert live.detected_at[Severity.CRITICAL].replace(microsecond=0) == inc.detected_at[
        Severity.CRITICAL]  # AMI has sub-second times, Master.csv whole seconds
    live.detected_at = inc.detected_at
    assert summary([live]) == summary([inc])


# -- the decision, CDR row and AMI event alike ---------------------------------------------


def _cdr(channel: str, dst: str, dcontext: str, lastdata: str, src: str, n: int,
         dstchannel: str = "PJSIP/carrier-000000ff", uid: str = "") -> str:
    fields = ["acme", src, dst, dcontext, f'"x" <{src}>', channel, dstchannel, "Dial",
              lastdata, "2026-11-24 13:30:11", "2026-11-24 13:30:11", "2026-11-24 13:30:14",
              "3", "3", "ANSWERED", "DOCUMENTATION", uid or f"1795527011.{n}", ""]
    return ",".join('"' + f.replace('"', '""') + '"' for f in fields)


def _dial(chan: str, dest: str, context: str, exten: str, dial: str, cid: str,
          uid: str) -> dict[str, str]:
    return {"Event": "DialBegin", "Channel": chan, "DestChannel": dest, "Context": context,
            "Exten": exten, "DialString": dial, "CallerIDNum": cid, "Uniqueid": uid,
            "Linkedid": uid, "AccountCode": ""}


CASES = [
    # a phone calls out itself
    ("phone", ["PJSIP/209-00000001", "0102327654300", "from-internal",
               "PJSIP/0102327654300@carrier,60", "209"], None, "209"),
    # blind transfer: the inbound trunk channel redirected into from-internal dials out
    ("transfer", ["PJSIP/carrier-00000001", "0102327654300", "from-internal",
                  "PJSIP/0102327654300@carrier,60", "+4420555"], None, "carrier"),
    # DISA: the caller dialed the number in context disa
    ("disa", ["PJSIP/carrier-00000001", "0102327654300", "disa",
              "PJSIP/0102327654300@carrier,60", "+4420555"], None, "carrier"),
    # a DID routed to desk 202 whose forward dials out directly from the trunk channel
    ("desk forward", ["PJSIP/carrier-00000001", "202", "from-internal",
                      "PJSIP/0102327654300@carrier,60", "+4420555"], None, "did:202"),
    # a forward written into the inbound context at the DID
    ("did forward", ["PJSIP/carrier-00000001", "0312345679", "from-carrier",
                     "PJSIP/0102327654300@carrier,60", "+4420555"], None, "did:0312345679"),
    # phone 201 calls 202, whose forward goes out through a Local channel
    ("internal forward", ["Local/0102327654300@from-internal-00000001;2", "0102327654300",
                          "from-internal", "PJSIP/0102327654300@carrier,60", "201"],
     ["PJSIP/201-00000005", "202", "from-internal"], "fwd:202"),
    # phone 201's own call through a Local-channel outbound route
    ("local route", ["Local/0102327654300@from-internal-00000001;2", "0102327654300",
                     "from-internal", "PJSIP/0102327654300@carrier,60", "201"],
     ["PJSIP/201-00000005", "0102327654300", "from-internal"], "201"),
]


@pytest.mark.parametrize(("name", "leg", "dialer", "want"), CASES, ids=[c[0] for c in CASES])
def test_cdr_and_ami_attribute_alike(
    tmp_path: Path, name: str, leg: list[str], dialer: list[str] | None, want: str
) -> None:
    channel, dst, dcontext, lastdata, src = leg
    lines = [_cdr(channel, dst, dcontext, lastdata, src, 1)]
    msgs = []
    if dialer is not None:
        base = channel.rsplit(";", 1)[0]
        lines.append(_cdr(dialer[0], dialer[1], dialer[2], "Local/x@from-internal,60", src, 2,
                          dstchannel=base + ";1"))
        msgs.append(_dial(dialer[0], base + ";1", dialer[2], dialer[1], "x@y", src, "1.2"))
    msgs.append(_dial(channel, "PJSIP/carrier-000000ff", dcontext, dst,
                      lastdata.split("/", 1)[1].split(",")[0], src, "1795527011.1"))
    path = tmp_path / "Master.csv"
    path.write_text("\n".join(lines) + "\n")
    legs = scanned(path)
    assert legs["source"].to_list() == [want]
    [started] = [e for e in live_events(b"".join(_frame(m) for m in msgs))
                 if isinstance(e, CallStarted)]
    assert started.source == want


def _frame(msg: dict[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in msg.items()).encode() + b"\r\n"


_names = st.sampled_from([
    "PJSIP/201-0000000a", "PJSIP/carrier-0000000b", "SIP/lobby-00000001", "DAHDI/1-1",
    "Local/0102@from-internal-00000001;2", "IAX2/1234567-0000000c", "PJSIP/s-00000001",
    # CDR text is anyone's: names with no endpoint (no slash, a line break after it)
    "x", 'a"b', "/201", "PJSIP/carrier\n-00000001", "2026-11-01 01:30:00",
])
_extens = st.sampled_from(["", "s", "201", "202", "0312345678", "0102327654300", "99999999"])


@pytest.mark.fuzz
@hsettings(max_examples=200, deadline=None)
@given(
    dialer=st.none() | _names, via_local=st.booleans(),
    context=st.sampled_from(["", "from-internal", "from-carrier", "disa"]),
    exten=_extens, dialed=_extens, options=st.sampled_from(
        [CdrOptions(), CdrOptions(phones=("SIP/lobby",), max_extension_length=3)]),
)
def test_polars_and_python_agree(
    dialer: str | None, via_local: bool, context: str, exten: str, dialed: str,
    options: CdrOptions,
) -> None:
    rules = LegRules(options)
    py = source_of(dialer, via_local, context, exten, dialed, "cid", is_phone=rules.is_phone,
                   max_ext=options.max_extension_length)
    frame = pl.DataFrame({"d": [dialer]}, schema={"d": pl.String})
    expr = source_expr(pl.col("d"), pl.lit(via_local), pl.lit(context), pl.lit(exten),
                       pl.lit(dialed), pl.lit("cid"), is_phone=lambda c: _is_phone(c, options),
                       max_ext=options.max_extension_length)
    assert frame.select(expr).item() == py
