"""run_scan keeps Python's cyclic collector off and hands what it made to the oldest
generation unwalked (`collector_aside`); the caller's collector state comes back as it was."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.helpers import settings
from tollwatch.scan import collector_aside, run_scan

ATTACK = ROOT / "samples" / "Master-attack.csv"


@pytest.fixture
def collector() -> Iterator[None]:
    was = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()
        else:
            gc.disable()


def _in_generation(obj: object, generation: int) -> bool:
    return any(o is obj for o in gc.get_objects(generation=generation))


@pytest.mark.usefixtures("collector")
def test_what_the_scan_made_is_in_the_oldest_generation_and_the_collector_back_on() -> None:
    gc.enable()
    result = run_scan([ATTACK], settings("JP", "UTC"))
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert result.incidents
    incident = result.incidents[0]
    assert _in_generation(incident, 2) and not _in_generation(incident, 0)


@pytest.mark.usefixtures("collector")
def test_a_collector_left_off_stays_off() -> None:
    gc.disable()
    run_scan([ATTACK], settings("JP", "UTC"))
    assert not gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_a_process_that_froze_objects_keeps_them_frozen() -> None:
    gc.enable()
    gc.freeze()
    frozen = gc.get_freeze_count()
    with collector_aside():
        made = [[i] for i in range(1000)]
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made)


@pytest.mark.usefixtures("collector")
def test_garbage_cycles_made_meanwhile_are_still_collected() -> None:
    gc.enable()

    class Node:
        other: object = None

    with collector_aside():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
    assert gc.collect() >= 2
