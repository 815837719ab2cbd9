"""The wheel, installed non-editable in a fresh venv, works from any directory and puts no
generic top-level packages (rules, config, alerting, cdr_ingest) into site-packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.packaging

GENERIC = ("cdr_ingest", "rules", "alerting", "config")


def run(*cmd: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TOLLWATCH_CONFIG")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def tracked_copy(dest: Path) -> Path:
    """The repository's tracked files (symlinks kept), so the build leaves the checkout alone."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


def build_wheel(src: Path, out: Path) -> Path:
    """pip wheel: without build isolation when setuptools can (fast, offline), else isolated
    (pip fetches the build backend from the package index, as CI may)."""
    base = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, src]
    proc = run(*base[:5], "--no-build-isolation", *base[5:], cwd=out.parent)
    if proc.returncode != 0:
        proc = run(*base, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = sorted(out.glob("tollwatch-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tracked_copy(tmp / "src"), tmp / "dist")
    tops = {n.split("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist()}
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert tops == {"tollwatch", dist_info}, tops  # nothing else at the top of site-packages
    env = tmp / "venv"
    # the dependencies come from this interpreter's site-packages; the package from the wheel
    proc = run(sys.executable, "-m", "venv", "--system-site-packages", env, cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    proc = run(env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index",
               wheel, cwd=tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env


def outside(tmp: Path) -> Path:
    """A working directory outside the checkout."""
    where = tmp / "elsewhere"
    where.mkdir(exist_ok=True)
    assert ROOT not in where.parents
    return where


def test_the_wheel_is_what_the_venv_imports(venv: Path, tmp_path: Path) -> None:
    proc = run(venv / "bin" / "python", "-c",
               "import tollwatch, tollwatch.rules, tollwatch.config; "
               "print(tollwatch.__file__); print(tollwatch.config.__file__)",
               cwd=outside(tmp_path))
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert Path(line).is_relative_to(venv), line  # not the checkout, not an editable copy
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not [n for n in GENERIC if (site / n).exists()]


@pytest.mark.parametrize("name", GENERIC)
def test_no_generic_top_level_package(venv: Path, tmp_path: Path, name: str) -> None:
    proc = run(venv / "bin" / "python", "-c", f"import {name}", cwd=outside(tmp_path))
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, (proc.stdout,
                                                                            proc.stderr)


def test_scan_the_sample_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    sample = tmp_path / "Master.csv"
    shutil.copy(ROOT / "samples" / "Master-attack.csv", sample)
    proc = run(venv / "bin" / "tollwatch", "scan", "--country", "JP", "--tz", "UTC", sample,
               cwd=outside(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # 1: the attack (critical) is found
    assert "critical" in proc.stdout and "Sierra Leone (+232)" in proc.stdout


def test_demo_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    proc = run(venv / "bin" / "tollwatch", "demo", cwd=outside(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 incident(s), 1 critical" in proc.stdout
    assert "[WOULD BLOCK]" in proc.stdout and "[BLOCKED]" not in proc.stdout
