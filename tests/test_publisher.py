"""The decision does not wait for its publication; publications keep their order; none is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers import settings
from tests.test_daemon import Recorder, attack_events
from tests.test_snapshots import feed, pending_incidents
from tollwatch import publisher as publisher_mod
from tollwatch.daemon import Daemon
from tollwatch.state import StateStore


class Gate(Recorder):
    """An alerter that waits for `open` before it takes each change."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()

    async def send(self, kind: str, view: dict[str, object]) -> None:  # type: ignore[override]
        await self.open.wait()
        await super().send(kind, view)


def daemon_with(tmp_path: Path, rec: Recorder) -> Daemon:
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)})
    return Daemon(s, StateStore.in_dir(tmp_path), [], [rec], ["pbx"])


async def test_the_decision_returns_before_the_publication(tmp_path: Path) -> None:
    rec = Gate()
    daemon = daemon_with(tmp_path, rec)
    for event in feed(daemon, 3):
        await asyncio.wait_for(daemon.process(event), 1.0)  # never waits on the alerter
    assert daemon.publisher.outgoing and rec.sent == [] and daemon.store.incidents() == []
    publishing = asyncio.create_task(daemon.publisher.publish_queued())
    await asyncio.sleep(0.05)
    assert not publishing.done() and rec.sent == []  # the alerter holds it, in order
    rec.open.set()
    await publishing
    assert [k for k, _ in rec.sent] == ["opened"] and not daemon.publisher.outgoing
    await daemon.publisher.written()  # rows go to SQLite from the writer thread
    assert len(daemon.store.incidents()) == 1


async def test_views_show_the_incident_as_its_decision_left_it(
    tmp_path: Path, fixtures: Path
) -> None:
    """The consumer publishes each event's changes before it takes the next event, so the
    opening says "warning" even though later calls (already queued) make it critical."""
    events = [e for e in attack_events(fixtures) if e.pbx == "pbx"]
    rec = Recorder()
    daemon = daemon_with(tmp_path, rec)
    for event in events:
        daemon.queue.put_nowait(event)
    consumer = asyncio.create_task(daemon._consume())
    while daemon.queue.qsize() or daemon.publisher.outgoing:
        await asyncio.sleep(0.01)
    consumer.cancel()
    kinds = [(k, v["severity"]) for k, v in rec.sent]
    assert kinds[0] == ("opened", "warning") and ("escalated", "critical") in kinds


async def test_a_snapshot_is_taken_only_once_everything_decided_is_published(
    tmp_path: Path,
) -> None:
    rec = Recorder()
    daemon = daemon_with(tmp_path, rec)
    for event in feed(daemon, 3):
        await daemon.process(event)
    assert rec.sent == []
    await daemon.flush_async()
    assert [k for k, _ in rec.sent] == ["opened"] and not daemon.publisher.outgoing
    assert daemon.store.load_snapshot("pbx") is not None
    restarted = daemon_with(tmp_path, Recorder())
    restarted.restore()  # the snapshot's incidents are all in the store already
    stored = {i["id"] for i in daemon.store.incidents()}
    snapshot = {i.id for i in restarted.pipelines["pbx"].engine.tracker.open.values() if i.severity}
    assert snapshot and snapshot <= stored


async def test_an_event_during_a_ticks_views_is_published_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_mod, "PUBLISH_SLICE", 0.0)  # hand the loop back per view
    rec = Recorder()
    daemon = daemon_with(tmp_path, rec)
    ids = pending_incidents(daemon, 5)
    daemon._queue_publication("pbx", [], flush=True)  # a tick's growth: 5 views
    tick = asyncio.create_task(daemon.publisher.publish_queued())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert 0 < len(rec.sent) < 5
    for event in feed(daemon, 3):
        await daemon.process(event)
    await asyncio.wait_for(daemon.publisher.publish_now(), 0.01)  # does not wait for the tick
    await tick  # ... whose publisher takes the event's changes too, after its own
    assert [v["id"] for _, v in rec.sent[:5]] == ids
    assert [k for k, _ in rec.sent[5:]] == ["opened"] and not daemon.publisher.outgoing


async def test_a_failing_publication_does_not_stop_the_next(tmp_path: Path) -> None:
    rec = Recorder()
    daemon = daemon_with(tmp_path, rec)
    real = daemon.views.view
    calls = 0

    def flaky(incident: object, now: object = None) -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a broken view")
        return real(incident, now)  # type: ignore[arg-type]

    daemon.views.view = flaky  # type: ignore[method-assign]
    ids = pending_incidents(daemon, 2)
    daemon._queue_publication("pbx", [], flush=True)
    await daemon.publisher.publish_queued()
    assert daemon.publisher.failed == 1 and [v["id"] for _, v in rec.sent] == ids[1:]
    for event in feed(daemon, 3):  # and the publications after it go on
        await daemon.process(event)
    await daemon.publisher.publish_queued()
    assert [k for k, _ in rec.sent] == ["updated", "opened"] and not daemon.publisher.outgoing


async def test_status_written_from_a_thread_never_goes_back_in_time(tmp_path: Path) -> None:
    from tollwatch.state import read_status_file

    daemon = daemon_with(tmp_path, Recorder())
    old = daemon.reporter.figures(daemon)
    daemon.events = 7
    await daemon.write_status_async()  # the newer figures
    daemon.reporter.write(daemon.store, *old)  # taken earlier, written late: skipped
    doc = read_status_file(tmp_path)
    assert doc is not None and doc["daemon"]["events"] == 7
    assert daemon.store.read_status()["daemon"][1]["events"] == 7


async def test_a_slow_disk_holds_no_event_and_the_snapshot_comes_after_the_rows(
    tmp_path: Path,
) -> None:
    import time

    rec = Recorder()
    daemon = daemon_with(tmp_path, rec)
    save = daemon.store.save_incidents

    def slow_save(*args: object, **kwargs: object) -> None:
        time.sleep(0.3)  # a commit behind another process's gigabytes
        save(*args, **kwargs)  # type: ignore[arg-type]

    daemon.store.save_incidents = slow_save  # type: ignore[method-assign]
    started = time.perf_counter()
    for event in feed(daemon, 3):
        await daemon.process(event)
        await daemon.publisher.publish_now()
    assert time.perf_counter() - started < 0.2 and [k for k, _ in rec.sent] == ["opened"]
    assert daemon.store.incidents() == []  # still being written
    await daemon.flush_async()  # the snapshot waits for the rows before it
    assert daemon.store.load_snapshot("pbx") is not None and len(daemon.store.incidents()) == 1
    await daemon.publisher.close()


async def test_the_snapshot_waits_for_alerts_queued_from_a_thread(tmp_path: Path) -> None:
    order: list[str] = []

    class Queuing(Recorder):
        async def written(self) -> None:
            await asyncio.sleep(0.05)
            order.append("alerts written")

    daemon = daemon_with(tmp_path, Queuing())
    save = daemon.store.save_snapshot

    def saving(pbx: str, blob: bytes) -> None:
        order.append("snapshot")
        save(pbx, blob)

    daemon.store.save_snapshot = saving  # type: ignore[method-assign]
    for event in feed(daemon, 3):
        await daemon.process(event)
    await daemon.flush_async()
    assert order == ["alerts written", "snapshot"]
    await daemon.publisher.close()


async def test_rows_waiting_for_the_writer_go_in_one_transaction_latest_view_kept(
    tmp_path: Path,
) -> None:
    import threading

    daemon = daemon_with(tmp_path, Recorder())
    pub = daemon.publisher
    store = daemon.store
    gate = threading.Event()
    batches: list[list[tuple[str, str, object]]] = []
    save = store.save_incidents

    def counting(rows: list[tuple[str, dict[str, object], bool]]) -> None:
        gate.wait(5)  # the thread is busy while the loop publishes
        batches.append([(pbx, str(view["id"]), view["score"]) for pbx, view, _ in rows])
        save(rows)  # type: ignore[arg-type]

    store.save_incidents = counting  # type: ignore[method-assign]

    def view(iid: str, score: int) -> dict[str, object]:
        return {"id": iid, "source": "201", "severity": "warning", "score": score,
                "first_call_at": "2026-12-02T00:00:00+00:00", "detected_at": None}

    pub._save("pbx", view("a", 1), True)  # the thread takes it, then waits at the gate
    for score in range(2, 40):  # meanwhile a busy second's views
        pub._save("pbx", view("a", score), True)
        pub._save("pbx", view(f"b{score % 3}", score), score < 30)
    gate.set()
    await pub.close()
    assert batches[0] == [("pbx", "a", 1)]
    assert batches[1:] == [[("pbx", "a", 39), ("pbx", "b2", 38), ("pbx", "b0", 39),
                            ("pbx", "b1", 37)]]  # one transaction, each incident's last view
    assert {r["id"]: r["score"] for r in store.incidents()} == {"a": 39, "b0": 39, "b1": 37,
                                                                 "b2": 38}
    assert {r["id"] for r in store.incidents(open_only=True)} == {"a"}


async def test_a_row_that_cannot_be_written_costs_only_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    daemon = daemon_with(tmp_path, Recorder())
    pub = daemon.publisher
    good = {"id": "ok", "source": "201", "severity": "warning", "score": 5,
            "first_call_at": "2026-12-02T00:00:00+00:00", "detected_at": None}
    bad = {**good, "id": "bad", "score": object()}  # not JSON: the batch fails
    gate = threading.Event()
    pub._submit(gate.wait, 5)  # the thread busy: both rows wait, then go in one batch
    pub._save("pbx", bad, True)
    pub._save("pbx", good, True)
    gate.set()
    await pub.close()
    assert [r["id"] for r in daemon.store.incidents()] == ["ok"]
    assert pub.failed == 1 and "cannot save incident bad" in caplog.text
