"""Daemon logs: one line per event, no timestamp under journald (priority prefix instead), JSON
on request, third-party chatter only with --verbose."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tollwatch.logs import setup_logging, under_journald


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _log(stream: io.StringIO, fmt: str | None = None, verbose: bool = False) -> list[str]:
    setup_logging(verbose, fmt, stream=stream, force=True)
    logging.getLogger("tollwatch.daemon").warning("caller %s", "evil\nname\x1b[31m")
    logging.getLogger("panoramisk.manager").info("Sending awaiting actions")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("tollwatch.daemon").exception("failed")
    return stream.getvalue().splitlines()


def test_one_line_per_event_with_timestamp(restore_root: None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    lines = _log(io.StringIO())
    assert len(lines) == 2  # panoramisk's chatter is not shown
    assert lines[0][:4].isdigit() and "WARNING tollwatch.daemon: caller evil\\x0aname\\x1b[31m" \
        in lines[0]
    assert "RuntimeError: boom" in lines[1]


def test_journald_lines_have_priority_not_time(restore_root: None, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "journal").open("w+") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_journald(fh)  # type: ignore[arg-type]
        setup_logging(False, None, stream=fh, force=True)  # type: ignore[arg-type]
        logging.getLogger("tollwatch").warning("hello")
        logging.getLogger("tollwatch").error("bad")
        fh.flush()
        fh.seek(0)
        assert fh.read().splitlines() == ["<4>WARNING tollwatch: hello", "<3>ERROR tollwatch: bad"]


def test_json_lines_and_verbose_chatter(restore_root: None) -> None:
    lines = _log(io.StringIO(), "json", verbose=True)
    docs = [json.loads(line) for line in lines]
    assert docs[0]["message"] == "caller evil\\x0aname\\x1b[31m"  # one line, no ESC
    assert docs[0]["level"] == "warning"
    assert docs[1]["logger"] == "panoramisk.manager"
    assert "boom" in docs[2]["exception"]
    with pytest.raises(ValueError):
        setup_logging(False, "xml")
