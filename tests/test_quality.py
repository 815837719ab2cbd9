"""Lint and types are part of the test suite: ruff clean, mypy --strict clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import ROOT


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_clean() -> None:
    exe = shutil.which("ruff")
    cmd = (exe,) if exe else (sys.executable, "-m", "ruff")
    result = run(*cmd, "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
