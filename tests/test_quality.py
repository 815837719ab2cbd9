"""Lint and types are part of the test suite: ruff clean, mypy --strict clean."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

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


SUBPACKAGES = ("cdr_ingest", "rules", "alerting", "config")


@pytest.mark.slow
def test_subpackages_imported_only_under_the_tollwatch_namespace() -> None:
    """cdr_ingest/, rules/, alerting/ and config/ install as tollwatch.*: a bare `import rules`
    works only in a source checkout and would load a second copy of the module there."""
    import ast

    offenders = []
    for top in ("tollwatch", "tests", "bench", "examples", *SUBPACKAGES):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "tollwatch/" in path.relative_to(ROOT).as_posix() and top != "tollwatch":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    if name.split(".")[0] in SUBPACKAGES:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not offenders, "\n".join(offenders)


def test_symlinks_map_the_top_level_packages_into_tollwatch() -> None:
    for name in SUBPACKAGES:
        link = ROOT / "tollwatch" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), link
