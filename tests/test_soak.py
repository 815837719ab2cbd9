"""A short run of the soak benchmark (bench/soak.py): the real `tollwatch run` in its own
process, a fake Asterisk and the Slack stub in this one, each fault once (AMI drop, logrotate,
Slack 500, disk full, Slack 429). Every call is seen, every incident is alerted once, nothing is
left in the outbox, no traceback, a clean exit."""

from __future__ import annotations

import os
import pickle
import subprocess
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


def test_frame_count_and_calls_fed_in_pieces_match_the_whole_stream() -> None:
    """The long soak never holds its stream: the frames are counted without generating them
    and the calls sent are tracked a slot at a time; both equal what the whole stream gives."""
    from bench.gen_ami import generate
    from bench.soak_world import CallCounter, calls_in, frame_count

    for calls in (1, 7, 150):
        frames = list(generate(calls, concurrent=60, seed=11))
        stream = b"".join(frames)
        assert frame_count(calls) == len(frames) == stream.count(b"\r\n\r\n")
        counter = CallCounter()
        for i in range(0, len(frames), 37):
            counter.feed(b"".join(frames[i : i + 37]))
        assert counter.keys == calls_in(stream) and len(set(counter.keys)) == calls


def test_speed_without_libfaketime_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import soak_clock

    monkeypatch.setattr(soak_clock, "FAKETIME_LIBS", [tmp_path / "libfaketimeMT.so.1"])
    monkeypatch.delenv("TOLLWATCH_SOAK_SPEED", raising=False)
    with pytest.raises(SystemExit, match=r"libfaketimeMT\.so\.1 not found .*apt-get install"):
        soak.main(["--speed", "8", "--minutes", "1"])
    (tmp_path / "libfaketimeMT.so.1").write_bytes(b"")
    env = soak_clock.faketime_env(12.5)
    assert env["LD_PRELOAD"] == str(tmp_path / "libfaketimeMT.so.1")
    assert env["FAKETIME"] == "+0 x12.5" and env["TOLLWATCH_SOAK_SPEED"] == "12.5"


def test_halves_and_real_time_table() -> None:
    """Slopes over the first and second half of the clock's time: rising then flat; the
    5-minute table by real seconds (the clock ran 10x)."""
    from bench import soak_memory

    samples = []
    for i in range(121):  # a sample a clock minute, 2 clock hours
        t = 60.0 * i
        heap = 20 + min(t, 3600) / 3600 * 30  # +30 MiB in the first hour, then flat
        parts = {"heap": heap, "arenas": 1.0, "anon": 50.0, "file": 40.0 + (i % 2)}
        parts["rss"] = sum(parts.values())
        samples.append((t, {**parts, "real_s": t / 10}))
    halves = soak_memory.summary(samples, warmup=0.0)["halves"]
    assert halves["split_at_min"] == 60.0
    assert 29 < halves["first"]["slope_without_files"] < 31
    assert halves["second"]["slope_without_files"] == 0.0
    assert 29 < halves["first"]["slope_heap"] < 31 and halves["second"]["slope_heap"] == 0.0
    table = soak_memory.per_real(samples, 300.0)  # every 5 real min = every 50 clock min
    assert [row["clock_min"] for row in table] == [0.0, 50.0, 100.0]
    assert [row["real_min"] for row in table] == [0.0, 5.0, 10.0]


@pytest.mark.soak
@pytest.mark.timeout(240)
def test_short_soak_on_a_fast_clock() -> None:
    """Two clock minutes at 8x (libfaketime on the bench and the daemon): every fault once,
    every call seen, every incident alerted, in a fraction of the clock's time."""
    from bench import soak_clock

    if not any(p.exists() for p in soak_clock.FAKETIME_LIBS):
        pytest.skip("libfaketime not installed (apt-get install faketime)")
    result = soak.main(
        ["--speed", "8", "--minutes", "2", "--every", "20", "--calls", "400",
         "--full-for", "10", "--sample-every", "40", "--learn-days", "2"]
    )  # fmt: skip
    assert result["learned"]["pbx"]["days"] == 3  # 2 days of history over 3 dates
    # saved at exit with the history in it: the daemon started from the learned baseline
    assert result["baseline_days_at_exit"]["pbx"] >= 3
    assert result["baseline_days_at_exit"]["csvpbx"] >= 3
    assert result["speed"] == 8.0
    assert {f.split()[1] for f in result["faults"]} == set(soak.KINDS), result["faults"]
    assert result["drain"] == "complete", result
    assert result["calls_seen"] == result["calls_sent"], result
    assert result["missing_count"] == {"pbx": 0, "csvpbx": 0}, result["missing"]
    assert result["incidents_alerted"] == result["incidents"] >= 1
    assert result["alerts_pending"] == 0 and result["log"]["tracebacks"] == 0
    assert result["daemon_exit"] == 0
    assert result["real_minutes"] < result["minutes"] / 3  # the clock ran fast
    assert result["rss_per_5_real_min"][0]["real_min"] == 0.0


@pytest.mark.slow
def test_history_learned_as_the_daemon_own_baseline(tmp_path: Path) -> None:
    """`soak.py --learn-days N`: N days of both PBXes' calls before now, learned with `tollwatch
    learn`'s code and stored per PBX where the daemon keeps its baseline, so `run` starts from
    it with the period full (bench/soak_history.py)."""
    from datetime import UTC, datetime

    from bench import soak_history, soak_world
    from tollwatch.config import load_settings
    from tollwatch.daemon import Daemon
    from tollwatch.rules.base import check_rules

    data = tmp_path / "data"
    cfg = soak_world.config(tmp_path, data, tmp_path / "Master.csv", 5038, "http://127.0.0.1:9")
    end = datetime(2026, 12, 1, 6, tzinfo=UTC)
    learned = soak_history.in_child(data, cfg, 2, tmp_path)
    assert learned["pbx"]["days"] == learned["csvpbx"]["days"] == 3  # 2 days over 3 dates
    assert learned["csvpbx"] == {"days": 3, "destinations": 1, "sources": 100}
    assert learned["pbx"]["sources"] == 800 and learned["pbx"]["destinations"] >= 18
    assert not list(tmp_path.glob("history-*"))  # the history is removed once learned
    settings = load_settings(cfg, rule_checks=check_rules)
    daemon = Daemon(settings, StateStore.in_dir(data), [], [], ["pbx", "csvpbx"])
    daemon.restore()
    csv = daemon.pipelines["csvpbx"].baseline
    assert csv.days and max(csv.days) >= end.date()  # ends now (after `end`)
    assert set(csv.dest_days) == {"US"} and set(csv.src_dests) == {str(x) for x in range(200, 300)}
    ami = daemon.pipelines["pbx"].baseline
    assert sum(s.intl[b] for s in ami.days.values() for b in range(288)) > 2 * 24 * 2_900
    daemon.store.close()


def test_filling_the_disk_never_raises_even_when_a_write_is_cut_short(tmp_path: Path) -> None:
    """The soak's disk-full fault: writes of 3,000 bytes end part-way into a 3 MiB tmpfs; a
    buffered file then raised ENOSPC at close every time (the bench died)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=False
    ).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        for _ in range(3):
            soak.fill(disk / "filler", chunk=3000)
            assert (disk / "filler").stat().st_size >= 3 * 2**20 - 3000 * 2
            (disk / "filler").unlink()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
