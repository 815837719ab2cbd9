from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "asterisk-22"


@pytest.fixture
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`-n 2 --dist loadgroup`): the real-Asterisk tests share fixed
    ports (SIP 5060, AMI 5038), so they all run in one worker, one after the other (a lock
    in tests/asterisk_pbx.py also keeps them apart, but a worker would wait on it idle).
    The soaks (a daemon and its world at full pace, ~2 min together) run one after the other
    too, so that two of them never share the two cores."""
    for item in items:
        for group in ("asterisk", "soak"):
            if item.get_closest_marker(group) is not None:
                item.add_marker(pytest.mark.xdist_group(group))
