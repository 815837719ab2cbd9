"""The same calls read from their CDR rows and from their AMI events (Asterisk 18 and 11) give
the same source, dialed number and class: forwarded on a DID, DISA (dst "s"), 9-digit phones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import settings
from tollwatch.cdr_ingest import CdrOptions, scan_cdrs
from tollwatch.cdr_ingest.dialed import dialed_number, evidence_of, one, plan_one
from tollwatch.cdr_ingest.live import CallStarted
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
from tollwatch.cdr_ingest.live.fake_ami import parse_frames
from tollwatch.rules.destinations import Classifier

HERE = Path(__file__).resolve().parent / "fixtures/forwarded-dialed"
CLASSIFIER = Classifier(settings("DE", "UTC"))
AT = datetime(2026, 11, 24, 13, 33, tzinfo=UTC)


def from_cdr() -> list[tuple[str, str, str, str]]:
    df = scan_cdrs([HERE / "Master.csv"], CdrOptions()).collect()
    return [
        (r["call_id"], r["source"], r["dialed"], CLASSIFIER.classify(r["dialed"]).dest_class)
        for r in df.iter_rows(named=True)
        if r["outbound"]
    ]


@pytest.mark.parametrize("name", ["ami-18.txt", "ami-11.txt"])
def test_same_call_from_cdr_and_ami(name: str) -> None:
    data = (HERE / name).read_bytes()
    tracker = AmiCallTracker("pbx")
    tracker.use_version(data.split(b"\r\n", 1)[0].decode().partition("/")[2])
    started = [e for m in parse_frames(data)[1:] for e in tracker.feed(m, AT)
               if isinstance(e, CallStarted)]  # fmt: skip
    live = [(e.call_id, e.source, e.dialed, CLASSIFIER.classify(e.dialed).dest_class)
            for e in started]  # fmt: skip
    assert live == from_cdr()
    assert live == [
        ("1795527200.40", "211553", "0023276543210", "international"),
        ("1795527230.42", "211553", "0023276543211", "international"),
        ("1795527320.46", "150010001", "030123456", "domestic"),
    ]
    assert tracker.calls_up == 0


@pytest.mark.parametrize(
    ("lastapp", "lastdata", "dst", "dialed"),
    [
        ("Dial", "SIP/carrier/0023276543210,60,tT", "211553", "0023276543210"),
        ("Dial", "PJSIP/0023276543211@carrier,60", "s", "0023276543211"),
        ("Dial", "IAX2/user:secret@peer/0044207946,30", "s", "0044207946"),
        ("Dial", "DAHDI/g0/0044207946", "s", "0044207946"),
        ("Dial", "PJSIP/carrier/sip:+44207946@203.0.113.5:5060", "s", "+44207946"),
        ("Dial", "SIP/150010002,20", "150010002", "150010002"),  # a device: dst
        ("Dial", "PJSIP/201&PJSIP/202,20", "600", "600"),  # ring group
        ("Queue", "sales,t", "600", "600"),  # not a Dial: dst
        ("Dial", "Local/0044207946@from-internal/n", "s", "0044207946"),
        ("Dial", "", "0044", "0044"),
    ],
)
def test_dialed_number(lastapp: str, lastdata: str, dst: str, dialed: str) -> None:
    assert dialed_number(lastapp, lastdata, dst) == dialed


def test_live_notes_how_trunks_and_phones_were_told_apart() -> None:
    data = (HERE / "ami-18.txt").read_bytes()
    tracker = AmiCallTracker("pbx")
    for m in parse_frames(data)[1:]:
        tracker.feed(m, AT)
    assert tracker.rules.notes == [
        "treated SIP/carrier as a trunk because numbers were dialed through it "
        "(Dial SIP/carrier/0023276543210); set [outbound] trunks to be sure",
        "treated PJSIP/carrier as a trunk because numbers were dialed through it "
        "(Dial PJSIP/0023276543211@carrier); set [outbound] trunks to be sure",
        "treated SIP/150010002 as a phone, not a trunk, because it was dialed without a "
        "number (Dial SIP/150010002); set [outbound] phones to be sure",
    ]


def test_registered_endpoints_are_phones_when_no_dial_tells() -> None:
    begin = {"Event": "DialBegin", "Channel": "SIP/150010001-00000001",
             "Uniqueid": "1795527011.1", "CallerIDNum": "150010001", "Exten": "150010002",
             "Context": "from-internal", "DestChannel": "SIP/150010002-00000002"}  # fmt: skip
    tracker = AmiCallTracker("pbx")
    assert [type(e) for e in tracker.feed(begin, AT)] == [CallStarted]  # 9 digits: a trunk?
    assert tracker.rules.notes[-1].startswith("treated SIP/150010002 as a trunk because its name")
    tracker = AmiCallTracker("pbx")
    reg = {"Event": "PeerStatus", "ChannelType": "SIP", "Peer": "SIP/150010002",
           "PeerStatus": "Registered", "Address": "192.0.2.10:5060"}  # fmt: skip
    assert tracker.feed(reg, AT) == [] and tracker.stats.unknown == 0
    assert tracker.feed(begin, AT) == []  # it registers: a phone
    assert tracker.rules.notes == [
        "treated SIP/150010002 as a phone, not a trunk, because it registered (PeerStatus "
        "Registered); set [outbound] phones to be sure"
    ]


@pytest.mark.parametrize(
    ("lastdata", "dest", "evidence"),
    [
        ("PJSIP/0044207946@carrier,60", "PJSIP/carrier-0000000b", "number"),
        ("PJSIP/0044207946@carrier,60", "PJSIP/203-0000000c", None),  # not that peer
        ("SIP/carrier/0044207946", "SIP/carrier-", "number"),  # a failed dial's synthetic dest
        ("SIP/150010001&SIP/150010002,20", "SIP/150010002-0000001f", "device"),  # ring group
        ("SIP/150010002,20", "SIP/150010002-0000001f", "device"),
        ("SIP/201&SIP/carrier/0044207946,60", "SIP/carrier-00000002", None),  # mixed: by name
        ("SIP/201,20", "SIP/carrier-00000002", None),
        ("DAHDI/g0/0044207946", "DAHDI/1-1", None),  # a group: by name
        ("Local/0044207946@from-internal/n", "Local/0044207946@from-internal-0001;1", None),
    ],
)
def test_dial_evidence(lastdata: str, dest: str, evidence: str | None) -> None:
    assert evidence_of("Dial", lastdata, dest) == evidence


# Dial strings and channels built from the pieces the patterns care about.
_PIECE = st.sampled_from(["PJSIP", "SIP", "IAX2", "DAHDI", "Local", "carrier", "201", "g0",
                          "0044207946", "+44207946", "*97#", "sip:", "sips:", "user:secret",
                          "203.0.113.5", ":5060", "/", "@", ",", "&", "(", ")", "-", ";2", "-0a",
                          "-0000000b", "\n", " ", "", "n", "60", "tT", "\u00e9"])
_TEXT = st.lists(_PIECE, max_size=10).map("".join)


@pytest.mark.fuzz
@hsettings(max_examples=300, deadline=None)
@given(st.sampled_from(["Dial", "dial", "DIAL", "Queue", ""]), _TEXT, _TEXT, _TEXT)
@example("Dial", "PJSIP/0044207946@carrier,60", "s", "PJSIP/carrier-0000000b")
@example("Dial", "SIP/150010001&SIP/150010002,20", "600", "SIP/150010002-0000001f")
@example("Dial", "SIP/carrier/0044207946\n", "s", "SIP/carrier-")
@example("Dial", "SIP/201\n", "s", "SIP/201-0a\n")
def test_live_twin_gives_what_the_batch_plan_gives(
    lastapp: str, lastdata: str, dst: str, dest: str
) -> None:
    """The tracker's Python twin agrees with the polars plan batch runs, row for row."""
    assert one(lastapp, lastdata, dst, dest) == plan_one(lastapp, lastdata, dst, dest)
