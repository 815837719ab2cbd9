"""The same calls read from their CDR rows and from their AMI events (Asterisk 18 and 11) give
the same source, dialed number and class: forwarded on a DID, DISA (dst "s"), 9-digit phones."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdr_ingest import CdrOptions, scan_cdrs
from cdr_ingest.dialed import dialed_number
from cdr_ingest.live import CallStarted
from cdr_ingest.live.ami_calls import AmiCallTracker
from cdr_ingest.live.fake_ami import parse_frames
from rules.destinations import Classifier
from tests.helpers import settings

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
