"""matplotlib costs ~0.7 s to import: only drawing a report may load it, never scan or status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def imported(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules `python -X importtime ARGS` imported, and the finished process."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names, proc


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["scan", "--country", "JP", "--tz", "UTC", "samples/Master-attack.csv"],
        ["status", "--help"],
        ["run", "--help"],
        ["--version"],
    ],
)
def test_commands_do_not_import_matplotlib(command: list[str]) -> None:
    names, proc = imported("-m", "tollwatch", *command)
    assert "tollwatch.cli" in names, proc.stderr[-2000:]  # the probe sees our imports
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert not {n for n in names if n.split(".")[0] == "matplotlib"}


@pytest.mark.slow
def test_the_probe_sees_matplotlib_when_the_charts_load() -> None:
    names, proc = imported("-c", "import tollwatch.report.charts")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "matplotlib" in names


@pytest.mark.slow
def test_scan_does_not_import_the_other_commands_modules() -> None:
    names, proc = imported("-m", "tollwatch", "scan", "--country", "JP", "--tz", "UTC",
                           "samples/Master-attack.csv")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "tollwatch.scan" in names
    others = ("tollwatch.report", "tollwatch.alerting.remediation", "tollwatch.cli_blocks",
              "tollwatch.cli_status", "tollwatch.cli_baseline")  # fmt: skip
    assert not names & set(others)


def test_help_lists_every_command_in_order() -> None:
    proc = subprocess.run([sys.executable, "-m", "tollwatch", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = proc.stdout.split("Commands:")[1].splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("  ") and line.strip()]
    commands = ["scan", "classify", "check-config", "run", "demo", "report", "learn", "block",
                "unblock", "blocks", "dialplan", "status", "slack-test", "baseline"]  # fmt: skip
    assert listed == commands
