"""A short run of the soak benchmark (bench/soak.py): the real `tollwatch run` in its own
process, a fake Asterisk and the Slack stub in this one, each fault once (AMI drop, logrotate,
Slack 500, disk full, Slack 429). Every call is seen, every incident is alerted once, nothing is
left in the outbox, no traceback, a clean exit."""

from __future__ import annotations

import pytest

from bench import soak

pytestmark = [pytest.mark.soak, pytest.mark.timeout(240)]


def test_short_soak_loses_nothing() -> None:
    result = soak.main(["--minutes", "0.6", "--every", "8", "--calls", "150", "--full-for", "8"])
    kinds = {f.split()[1] for f in result["faults"]}
    assert kinds == set(soak.KINDS), result["faults"]
    assert result["calls_seen"] == result["calls_sent"], result
    assert result["calls_sent"]["pbx"] == 150 and result["calls_sent"]["csvpbx"] > 15
    assert result["csv_errors"] == 0
    assert result["incidents"] >= 1
    assert result["incidents_alerted"] == result["incidents"]
    assert result["alerts_pending"] == 0
    assert result["logins"] >= 2  # the drop was followed by a new login
    assert result["log"]["tracebacks"] == 0
    assert result["daemon_exit"] == 0
    if result["real_tmpfs"]:  # root: a real full filesystem, logged and recovered from
        assert result["log"]["storage_failed"] >= 1
        assert result["log"]["storage_back"] == result["log"]["storage_failed"]
