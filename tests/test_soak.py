"""A short run of the soak benchmark (bench/soak.py): the real `tollwatch run` in its own
process, a fake Asterisk and the Slack stub in this one, each fault once (AMI drop, logrotate,
Slack 500, disk full, Slack 429). Every call is seen, every incident is alerted once, nothing is
left in the outbox, no traceback, a clean exit."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import pytest

from bench import soak
from tollwatch.state import StateStore


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_short_soak_loses_nothing() -> None:
    result = soak.main(
        [
            "--minutes",
            "0.6",
            "--every",
            "8",
            "--calls",
            "150",
            "--full-for",
            "8",
            "--env",
            "TOLLWATCH_MALLOC_TRIM=3",
            "--env",
            "TOLLWATCH_MEMORY_LOG=3",
        ]
    )
    kinds = {f.split()[1] for f in result["faults"]}
    assert kinds == set(soak.KINDS), result["faults"]
    assert result["drain"] == "complete", result
    assert result["frames_sent"] == result["frames_in_stream"]
    assert result["calls_seen"] == result["calls_sent"], result
    assert result["stores_unsaved_at_exit"] == 0
    assert result["missing_count"] == {"pbx": 0, "csvpbx": 0}, result["missing"]
    assert result["calls_sent"]["pbx"] == 150 and result["calls_sent"]["csvpbx"] > 15
    assert result["csv_errors"] == 0
    assert result["incidents"] >= 1
    assert result["incidents_alerted"] == result["incidents"]
    assert result["alerts_pending"] == 0
    assert result["logins"] >= 2  # the drop was followed by a new login
    assert result["log"]["tracebacks"] == 0
    assert result["daemon_exit"] == 0
    assert any("trims returned" in line for line in result["log"]["memory"]), result["log"]
    parts = result["rss_mib"]["parts"]
    assert set(parts) == {"heap", "arenas", "anon", "file"}
    assert parts["file"]["end"] > 10 and parts["heap"]["end"] + parts["anon"]["end"] > 10
    if result["real_tmpfs"]:  # root: a real full filesystem, logged and recovered from
        assert result["log"]["storage_failed"] >= 1
        assert result["log"]["storage_back"] == result["log"]["storage_failed"]


def test_missing_names_the_calls_the_daemon_does_not_remember(tmp_path: Path) -> None:
    """The end-of-soak check on its own: rows written across a rotation, read back as the
    daemon's pipeline keys them, compared with a snapshot's call-id memory."""
    writer = soak.CdrWriter(tmp_path / "Master.csv")
    while len(writer.rows) < 4:
        writer.write_calls()
    writer.rotate("copytruncate")
    writer.write_calls(attack=True)
    rows = writer.outbound_rows(tmp_path / "written.csv")
    assert len(rows) == len(writer.rows) and sorted(rows.values()) == list(range(len(rows)))
    keys = list(rows)
    store = StateStore.in_dir(tmp_path / "data")
    remembered = OrderedDict.fromkeys(k for k in keys if k not in (keys[1], keys[-1]))
    store.save_snapshot("csvpbx", pickle.dumps({"seen": remembered}))
    store.close()
    lost = soak.missing(tmp_path / "data", {"csvpbx": keys, "pbx": ["x|y"]})
    assert lost == {"csvpbx": [keys[1], keys[-1]], "pbx": ["x|y"]}  # no snapshot: all missing
    assert "after 0 rotation(s), rotated by copytruncate -> Master.csv-1" in writer.describe(
        rows[keys[1]]
    )
    assert writer.describe(rows[keys[-1]]).endswith("after 1 rotation(s), never rotated")
