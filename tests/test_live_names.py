"""Live calls from one phone share one source string, as batch calls do
(tests/test_calls_from_frame.py): the rules' and the baseline's tables are keyed by it."""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import at, settings
from tollwatch.cdr_ingest.live import CallStarted
from tollwatch.live import LivePipeline
from tollwatch.rules.destinations import Classifier
from tollwatch.settings import rule_specs


def test_calls_from_one_phone_share_one_source_string() -> None:
    s = settings("JP", "UTC")
    pipeline = LivePipeline("pbx", s, Classifier(s), rule_specs(s))
    t0 = at("2026-11-24T10:00")
    for i in range(2):
        source = "".join(["2", "0", "9"])  # a new str each time, as a parsed AMI event's is
        pipeline.feed(CallStarted("pbx", f"c{i}", t0 + timedelta(seconds=i), source, "acme",
                                  f"01023276543{i:02d}", "carrier"))  # fmt: skip
    first, second = pipeline.up.values()
    assert first.source == "209" and first.source is second.source
