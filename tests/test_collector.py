"""The daemon's garbage-collector policy: short passes, and no cycle left behind for good."""

from __future__ import annotations

import gc
import weakref

from tollwatch.collector import Collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def test_what_lived_through_a_tick_is_out_of_sight_until_the_full_collection() -> None:
    now = 0.0
    col = Collector(full_every=60.0, clock=lambda: now)
    try:
        col.start()
        young, young_ref = cycle()
        del young
        gc.collect()
        assert young_ref() is None  # garbage made since the last tick: collected as usual
        old, old_ref = cycle()
        col.tick()  # it lived through a tick: frozen
        assert gc.get_freeze_count() > 0
        del old
        gc.collect()
        assert old_ref() is not None  # a full pass no longer walks it
        now = 59.0
        col.tick()
        gc.collect()
        assert old_ref() is not None and col.full_collections == 0
        now = 61.0
        col.tick()  # the hourly (here: every minute) full collection of everything
        assert old_ref() is None and col.full_collections == 1 and col.full_found >= 2
        assert gc.get_freeze_count() > 0  # and frozen again
    finally:
        col.stop()
    assert gc.get_freeze_count() == 0


def test_frozen_objects_are_still_freed_by_reference_counting() -> None:
    col = Collector()
    try:
        col.start()
        node = Node()
        ref = weakref.ref(node)
        col.tick()
        del node
        assert ref() is None
    finally:
        col.stop()
