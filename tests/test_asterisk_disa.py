"""Against the real Asterisk 22: calls abroad through DISA and FollowMe, and source blocks on
endpoints whose names hold a dash.

DISA is the classic way into a PBX from outside: a call from the carrier reaches DISA, the
caller keys a number (here as SIP INFO digits, `dtmf_mode=info` on the trunk) and DISA dials it
in from-internal, through the outbound route and its snippet. FollowMe forwards a DID to an
outside number (which an intruder rewrites) through a Local channel. What only a real
Asterisk shows:
the CDR row and AMI events such a call really leaves, the source tollwatch gives it from each
(the trunk, alike), and that the snippet refuses it by destination or as that source.
"""

from __future__ import annotations

import csv
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.asterisk_pbx import ETC, Pbx, asterisk_pbx, config_dir, manager_conf, skip_reason
from tests.forwarded_record import READ, AmiRecorder, _wait_idle
from tests.helpers import settings
from tests.test_asterisk_blocking import DOMESTIC, SL
from tests.test_asterisk_blocking import EXTENSIONS as BLOCKING_EXTENSIONS
from tests.test_attribution import live_events, scanned
from tollwatch.alerting.remediation.dialplan import render
from tollwatch.cdr_ingest.live.events import CallStarted
from tollwatch.scan import run_scan

pytestmark = pytest.mark.asterisk

DISA_DID = "0312345670"
FOLLOWME_DID = "0312345671"
EXTENSIONS = BLOCKING_EXTENSIONS.replace("[from-carrier]\n", f"""[from-carrier]
exten => {DISA_DID},1,Answer()
 same => n,DISA(no-password,from-internal)
exten => {FOLLOWME_DID},1,FollowMe(201,d)
 same => n,Hangup()
""")
FOLLOWME = f"""[general]
enable_callee_prompt=>false

[201]
context=>from-internal
number=>{SL},20
"""
DASHED = """
; a phone named the way multi-tenant PBXes name them
[acme-210](phone-template)
auth=acme-210-auth
aors=acme-210
callerid="Acme desk 210" <210>
[acme-210-auth](auth-template)
username=acme-210
password=secretacme-210
[acme-210](aor-template)
contact=sip:acme-210@127.0.0.1:5061
"""
INFO = """  <pause milliseconds="200"/>
  <send retrans="500"><![CDATA[
      INFO sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "[field0]" <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: %d INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=%s
      Duration=160
    ]]></send>
  <recv response="200"/>
"""
CARRIER_UAC = Path(__file__).resolve().parent / "fixtures" / "forwarded" / "sipp" / \
    "uac_carrier.xml"


def disa_scenario(keys: str) -> str:
    """The carrier's inbound call to DISA_DID: answered, `keys` sent one SIP INFO each, then
    4 s (DISA dials, the carrier answers that leg) and a BYE."""
    text = CARRIER_UAC.read_text(encoding="utf-8")
    cut = text.index('  <pause milliseconds="3000"/>')
    infos = "".join(INFO % (n, key) for n, key in enumerate(keys, start=2))
    tail = text[cut:].replace('"3000"', '"4000"').replace("CSeq: 2 BYE",
                                                          f"CSeq: {len(keys) + 2} BYE")
    return text[:cut] + infos + tail


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("asterisk-disa")
    pjsip = (ETC / "pjsip.conf").read_text(encoding="utf-8")
    pjsip = pjsip.replace("context=from-carrier\n", "context=from-carrier\ndtmf_mode=info\n")
    pjsip = pjsip.replace("match=127.0.0.1:5070\n", "match=127.0.0.1:5070,127.0.0.1:5072\n")
    etc = config_dir(tmp / "etc", extensions=EXTENSIONS,
                     manager=manager_conf(READ, "system,call"),
                     extra={"tollwatch-block.conf": render(settings("JP")),
                            "pjsip.conf": pjsip + DASHED,
                            "followme.conf": FOLLOWME})  # fmt: skip
    with asterisk_pbx(tmp, etc) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(pbx: Pbx) -> None:
    pbx.cli("database deltree tollwatch")


def disa_call(pbx: Pbx, dialed: str, caller: str = "+442040427945",
              did: str = DISA_DID) -> None:
    """An inbound call from the carrier to `did`; on DISA's DID, `dialed` is keyed in."""
    n = len(list(pbx.dir.glob("disa-*.xml")))
    scenario = pbx.dir / f"disa-{n}.xml"
    scenario.write_text(disa_scenario(dialed + "#" if dialed else ""), encoding="utf-8")
    inf = pbx.dir / f"disa-{n}.csv"
    inf.write_text(f"SEQUENTIAL\n{caller};{did}\n", encoding="utf-8")
    # a refused call is hung up by Asterisk before the caller's BYE: sipp then fails, and
    # the CDR row says what happened
    subprocess.run(["sipp", "127.0.0.1:5060", "-i", "127.0.0.1", "-nostdin", "-sf",
                    str(scenario), "-inf", str(inf), "-p", "5072", "-m", "1",
                    "-timeout", "40s"], capture_output=True, timeout=60, cwd=pbx.dir)  # fmt: skip
    _wait_idle(pbx)


def block(pbx: Pbx, kind: str, key: str) -> None:
    pbx.cli(f'database put tollwatch/{kind} {key} "{int(time.time()) + 600}|test"')


def rows_since(pbx: Pbx, before: int) -> list[list[str]]:
    with pbx.cdr.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[before:]


def count(pbx: Pbx) -> int:
    """CDR rows so far, once the calls before (a test's last) have ended and been written."""
    _wait_idle(pbx)
    return len(rows_since(pbx, 0)) if pbx.cdr.exists() else 0


def test_disa_call_abroad_is_the_trunks_and_refused_by_destination_or_source(
        pbx: Pbx, tmp_path: Path) -> None:
    before = count(pbx)
    ami = AmiRecorder()
    time.sleep(0.5)
    disa_call(pbx, SL)
    stream = ami.stop()
    [row] = rows_since(pbx, before)
    # the caller keyed the number into DISA, which dialed it from the carrier's own channel
    assert (row[1], row[2], row[3], row[14]) == ("+442040427945", SL, "from-internal",
                                                 "ANSWERED")
    assert row[5].startswith("PJSIP/carrier-") and row[6].startswith("PJSIP/carrier-")
    master = tmp_path / "Master.csv"
    with pbx.cdr.open(encoding="utf-8", newline="") as fh, master.open("w", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL).writerows(list(csv.reader(fh))[before:])
    legs = scanned(master)
    batch = dict(zip(legs["call_id"], legs["source"], strict=True))
    live = {e.call_id: e.source for e in live_events(stream) if isinstance(e, CallStarted)}
    assert live == batch and list(batch.values()) == ["carrier"]  # not the caller's number
    scan = run_scan([master], settings("JP", "UTC"))
    assert [i.source for i in scan.incidents] == ["carrier"]  # one call to Sierra Leone

    block(pbx, "block", "232")  # the destination
    disa_call(pbx, SL)
    pbx.cli("database deltree tollwatch")
    block(pbx, "src", "carrier")  # the source: what DISA and the trunk's transfers dial
    disa_call(pbx, SL)
    assert pbx.call("201", SL) is True  # a phone is another source
    got = [(r[2], r[17]) for r in rows_since(pbx, before + 1)]
    assert got == [(SL, "tollwatch-blocked:232"), (SL, "tollwatch-blocked:src:carrier"),
                   (SL, "")]


def test_followme_forward_abroad_is_the_dids_and_refused_by_a_block(pbx: Pbx,
                                                                   tmp_path: Path) -> None:
    before = count(pbx)
    ami = AmiRecorder()
    time.sleep(0.5)
    disa_call(pbx, "", did=FOLLOWME_DID)
    stream = ami.stop()
    rows = rows_since(pbx, before)
    # the inbound leg ran FollowMe into a Local channel, whose other half dialed the carrier
    # written as each leg ended; a uniqueid is <epoch>.<sequence>
    by_start = sorted(rows, key=lambda r: tuple(int(x) for x in r[16].split(".")))
    assert [(r[2], r[7], r[6].split("/")[0]) for r in by_start] == [
        (FOLLOWME_DID, "FollowMe", "Local"), (SL, "Dial", "PJSIP")]
    master = tmp_path / "Master.csv"
    with master.open("w", newline="") as out:
        csv.writer(out, quoting=csv.QUOTE_ALL).writerows(rows)
    legs = scanned(master)
    batch = dict(zip(legs["call_id"], legs["source"], strict=True))
    live = {e.call_id: e.source for e in live_events(stream) if isinstance(e, CallStarted)}
    assert live == batch and list(batch.values()) == [f"did:{FOLLOWME_DID}"]
    block(pbx, "block", "232")
    disa_call(pbx, "", did=FOLLOWME_DID)
    assert [r[17] for r in rows_since(pbx, before + 2) if r[2] == SL] == [
        "tollwatch-blocked:232"]


def test_a_source_block_on_an_endpoint_named_with_a_dash(pbx: Pbx) -> None:
    """The snippet took the channel name up to its first '-': a block of source acme-210 (as
    tollwatch names PJSIP/acme-210-0000000a) was looked up as 'acme' and never matched."""
    before = count(pbx)
    block(pbx, "src", "acme-210")
    assert pbx.call("acme-210", SL) is False
    assert pbx.call("acme-210", DOMESTIC) is True  # a source block is international only
    assert pbx.call("201", SL) is True
    got = [(r[5].rsplit("-", 1)[0], r[2], r[17]) for r in rows_since(pbx, before)]
    assert got == [("PJSIP/acme-210", SL, "tollwatch-blocked:src:acme-210"),
                   ("PJSIP/acme-210", DOMESTIC, ""), ("PJSIP/201", SL, "")]
