"""Against the real Asterisk 22: forwarded calls get the same source from Master.csv and AMI.

Regenerates a short version of tests/fixtures/forwarded (three calls on desk 201's forwarded
DID, one on the DID forwarded from the inbound context) and checks what the fast tests check
on the recording, so a change in Asterisk's CDRs or events shows up here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.asterisk_pbx import skip_reason
from tests.forwarded_record import HERE, forwarding_pbx, record
from tests.test_attribution import live_events, scanned
from tollwatch.cdr_ingest.live.events import CallStarted

pytestmark = pytest.mark.asterisk


def test_forwarded_calls_attributed_alike_on_a_real_asterisk(tmp_path: Path) -> None:
    lines = (HERE / "sipp" / "inbound.csv").read_text().splitlines()
    calls = tmp_path / "inbound.csv"
    calls.write_text("\n".join([lines[0], *lines[1:4], lines[-1]]) + "\n")
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with forwarding_pbx(tmp_path) as pbx:
        master, stream = record(pbx, calls, rate_ms=700)
    path = tmp_path / "Master.csv"
    path.write_bytes(master)
    legs = scanned(path)
    batch = dict(zip(legs["call_id"], legs["source"], strict=True))
    live = {e.call_id: e.source for e in live_events(stream) if isinstance(e, CallStarted)}
    assert live == batch
    assert sorted(batch.values()) == ["did:0312345679", "fwd:201", "fwd:201", "fwd:201"]
