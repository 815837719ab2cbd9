"""`tollwatch run`: sources -> one live pipeline per PBX -> incident changes -> alerters.

Everything runs in one asyncio loop: the sources (each under a supervisor that reconnects),
the consumer that drives the rules, a one-second ticker for rule timers, and a writer that
snapshots state to SQLite so a restart continues the same incidents.

The rule decision does not wait for its publication (tollwatch.publisher): `process` queues
the incident changes and returns, and the consumer publishes them before the next event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from tollwatch.alerting.base import Alerter, Background
from tollwatch.cdr_ingest.live import LiveEvent, PbxBooted, PbxConnected
from tollwatch.cdr_ingest.live.backlog import EventQueue
from tollwatch.collector import Collector
from tollwatch.config import Settings
from tollwatch.config.sqlite import HEALTH, recover_all
from tollwatch.daemon_status import StatusReporter
from tollwatch.live import LivePipeline
from tollwatch.live_views import IncidentViews
from tollwatch.memory import housekeeper
from tollwatch.notify import Notifier
from tollwatch.publisher import Publisher
from tollwatch.recovery import Sessions
from tollwatch.rules.baseline_io import BaselineError, dumps, load, loads
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.incidents import IncidentChange
from tollwatch.settings import rule_specs
from tollwatch.snapshots import Snapshotter
from tollwatch.state import StateStore, StatusFile
from tollwatch.supervisor import Source, supervise

log = logging.getLogger("tollwatch.daemon")
BASELINE_EVERY = 900.0  # seconds between saves of a changed baseline (0.2-0.5 s at 8000 phones)
_BASELINE = "baseline\0"  # a baseline's key among a snapshot child's work (then the pbx)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        sources: Sequence[Source],
        alerters: Sequence[Alerter],
        pbx_names: Sequence[str],
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sources = list(sources)
        self.alerters = list(alerters)
        self.clock = clock
        self.tz = ZoneInfo(settings.site.timezone)
        classifier = Classifier(settings)
        specs = rule_specs(settings)
        self.pipelines = {
            name: LivePipeline(name, settings, classifier, specs) for name in pbx_names
        }
        # Never refuses an event (a dropped one could be the call that makes an incident
        # critical); past `max_backlog` the sources pause reading instead. Measured for status.
        self.queue: EventQueue[LiveEvent] = EventQueue(settings.daemon.max_backlog)
        self.notifier = Notifier()
        self.status_file = StatusFile(settings.daemon.data_dir)
        self.stall_after = settings.daemon.stall_after.total_seconds()
        self._progress_at = time.monotonic()  # the consumer handled an event or was idle
        self._tick_at = time.monotonic()
        self._busy_since: float | None = None  # when the event being handled was taken
        # called with the PBX name when Asterisk (re)booted (remediation re-applies blocks)
        self.on_booted: list[Callable[[str], Awaitable[None]]] = []
        self.events = 0
        self.errors = 0
        self._dirty: set[str] = set()
        self._learned: set[str] = set()  # pbx whose baseline changed since it was saved
        self._learned_mark = time.monotonic()
        self.started = utcnow()
        self.reporter = StatusReporter(self.status_file)  # status.json and the status row
        # AMI sessions: restart vs reconnect, and the calls of an outage from the CDR file
        self.sessions = Sessions(self.tz)
        self.snapshotter = Snapshotter()  # pickles a big state off the event loop
        self.collector = Collector()
        self.views = IncidentViews(self.tz)  # incident views built call by call
        # views, SQLite rows and alerts of incident changes: after the decision, in order
        self.publisher = Publisher(store, self.alerters, self.views, self.now)

    # ---- state ----------------------------------------------------------------------------
    def restore(self) -> None:
        stored = self.store.baselines()
        start_file = self.settings.baseline.file
        for name, pipeline in self.pipelines.items():
            try:
                if name in stored:
                    loads(pipeline.baseline, stored[name])
                elif start_file is not None:
                    load(pipeline.baseline, start_file)
                    log.info("pbx %s: baseline loaded from %s", name, start_file)
            except BaselineError as exc:
                log.warning("pbx %s: cannot load the baseline (%s); learning afresh", name, exc)
                pipeline.baseline.clear()
            pipeline.baseline.index()  # at start, not at the first midnight's roll
        for name, pipeline in self.pipelines.items():
            blob = self.store.load_snapshot(name)
            if blob is None:
                continue
            try:
                pipeline.restore(blob)
            except Exception as exc:  # a snapshot from another version: start afresh
                log.warning("pbx %s: cannot restore saved state (%s); starting afresh", name, exc)
                continue
            open_n = len(pipeline.engine.tracker.open)
            log.info("pbx %s: state restored (%d open incident candidates)", name, open_n)

    async def flush_async(self) -> None:
        """The writer task's save of the PBXes that changed: a big state is pickled in a
        child process while the loop goes on handling events (tollwatch.snapshots); a state
        that takes long to pickle is saved less often than `snapshot_every` (and always at
        stop: flush_final). A baseline that is due (every BASELINE_EVERY) is written out by
        the same child: its JSON (0.2-0.5 s at 8000 phones) held the loop every 15 minutes."""
        if not self.snapshotter.due():
            return
        await self.publisher.publish_queued()  # no snapshot holds a change not yet published
        names = sorted(self._dirty)  # (from here to the fork nothing else runs)
        self._dirty.clear()  # events from now on mark their PBX again
        now = time.monotonic()
        learned = sorted(self._learned.union(names)) if self._baselines_due(now) else []
        try:
            blobs = await self.snapshotter.take(self._work(names, learned))
            await self._alerts_written()  # the alerts of the changes it holds are queued
            for key, blob in blobs.items():  # megabytes into SQLite: not on the loop, and
                await self.publisher.write(*self._save_call(key, blob))  # after rows
        except BaseException:
            self._dirty.update(names)  # not saved: the next flush (or the final one) does
            raise
        self._learned.update(names)
        if learned:
            self._learned.difference_update(learned)
            self._learned_mark = now

    async def flush_final(self) -> None:
        """At stop: every changed state and learned baseline, made in a child like the
        periodic ones: the pickler's memo and the baseline's dicts stay out of the daemon,
        only the bytes come back (the dense stream's state: +6-8 MB at stop instead of
        +13-18 MB made in place; bench/README.md). A child that fails: made in place."""
        self._learned.update(self._dirty)
        work = self._work(sorted(self._dirty), sorted(self._learned))
        blobs = await self.snapshotter.take(work, child=True)
        for key in list(blobs):  # each one let go once written
            save, pbx, data = self._save_call(key, blobs.pop(key))
            save(pbx, data)
        self._dirty.clear()
        self._learned.clear()
        self._learned_mark = time.monotonic()

    def _work(self, names: list[str], learned: list[str]) -> dict[str, Callable[[], bytes]]:
        """What a snapshot child makes: the states of `names`, the baselines of `learned`."""
        work: dict[str, Callable[[], bytes]] = {n: self.pipelines[n].snapshot for n in names}
        for name in learned:
            work[_BASELINE + name] = functools.partial(self._baseline_json, name)
        return work

    def _save_call(self, key: str, blob: bytes) -> tuple[Callable[..., None], str, str | bytes]:
        """The store write for one of `_work`'s results: (method, pbx, data)."""
        if key.startswith(_BASELINE):
            return self.store.save_baseline, key[len(_BASELINE) :], blob.decode()
        return self.store.save_snapshot, key, blob

    def _baseline_json(self, pbx: str) -> bytes:
        return dumps(self.pipelines[pbx].baseline, self.settings.site.name).encode()

    def _baselines_due(self, now: float) -> bool:
        return now - self._learned_mark >= BASELINE_EVERY

    async def _alerts_written(self) -> None:
        """Wait for alerters that queue from a thread (Slack's outbox) to have written."""
        for alerter in self.alerters:
            written = getattr(alerter, "written", None)
            if written is not None:
                await written()

    # ---- processing -----------------------------------------------------------------------
    async def process(self, event: LiveEvent) -> None:
        pipeline = self.pipelines.get(event.pbx)
        if pipeline is None:
            self.errors += 1
            return
        self.events += 1
        if isinstance(event, PbxConnected):
            self.sessions.say(event)
            for ev in await self.sessions.recover(event):
                await self.process(ev)
        if isinstance(event, PbxBooted | PbxConnected):
            for callback in self.on_booted:  # re-applies blocks AstDB may have lost
                try:
                    await callback(event.pbx)
                except Exception:
                    log.exception("pbx %s: boot handler failed", event.pbx)
            return
        try:
            changes = pipeline.feed(event)
        except Exception:  # a bug on one event must not stop monitoring
            self.errors += 1
            log.exception("pbx %s: failed to process %s", event.pbx, type(event).__name__)
            return
        self._dirty.add(event.pbx)
        if changes or pipeline.engine.tracker.closed:
            self._queue_publication(event.pbx, changes, flush=False)

    async def skip_recovered(self) -> None:
        """While AMI is connected, move the paired CDR files past what AMI already saw."""
        for src in self.sources:
            if src.status.connected:
                await self.sessions.skip(src.name)

    def now(self, pbx: str) -> datetime:
        """The PBX's present: our clock, or its event time when that runs ahead (Asterisk's
        `Timestamp:` from a clock ahead of ours, a replay faster than real time). Incidents
        expire, and views count minutes of calls still up, on the clock the rules see: by the
        wall clock alone an incident whose last call is "in the future" would never expire
        at a tick, and a call up would count negative minutes."""
        wall = self.clock()
        pipeline = self.pipelines.get(pbx)
        clock = pipeline.engine.clock if pipeline is not None else None
        return clock if clock is not None and clock > wall else wall

    async def tick(self) -> None:
        now = self.clock()
        for name, pipeline in self.pipelines.items():
            changes = pipeline.tick(now)  # the engine's clock never goes back: max(now, events)
            pipeline.engine.tracker.expire(self.now(name))
            if changes or pipeline.engine.tracker.closed:
                self._dirty.add(name)
            self._queue_publication(name, changes, flush=True)
        await self.publisher.publish_now()  # (or the publication under way takes them)

    def _queue_publication(self, pbx: str, changes: list[IncidentChange], flush: bool) -> None:
        """Hand decided changes (and the incidents closed meanwhile) to the publisher."""
        tracker = self.pipelines[pbx].engine.tracker
        closed = list(tracker.closed)
        tracker.closed.clear()
        self.publisher.queue(pbx, changes, closed, flush)

    def stalled(self) -> str:
        """Why the pipeline is not making progress ("" when it is): events wait but none was
        handled for `stall_after` seconds, or the rule timers stopped."""
        now = time.monotonic()
        if self._busy_since is not None and now - self._busy_since > self.stall_after:
            return f"one event has been handled for {now - self._busy_since:.0f}s"
        if self.queue.qsize() == 0:
            self._progress_at = now
        if now - self._progress_at > self.stall_after:
            return (
                f"no event handled for {now - self._progress_at:.0f}s with "
                f"{self.queue.qsize()} waiting"
            )
        if now - self._tick_at > self.stall_after:
            return f"rule timers stopped {now - self._tick_at:.0f}s ago"
        return ""

    def health_line(self) -> str:
        """One line for systemd's STATUS=: events, backlog, storage, stall."""
        backlog = self.queue.measures()
        parts = [
            f"{self.events} events",
            f"backlog {backlog['events']} (oldest {backlog['oldest_s']:.1f}s)",
        ]
        for problem in HEALTH.problems():
            parts.append(f"storage {problem['errno']} at {problem['path']} (in memory)")
        stall = self.stalled()
        if stall:
            parts.append(f"STALLED: {stall}")
        return "; ".join(parts)

    def write_status(self) -> None:
        self.reporter.write(self.store, *self.reporter.figures(self))  # at start and at stop

    async def write_status_async(self) -> None:
        """`write_status()` for the writer task: the figures taken on the loop, the SQLite
        row and status.json written from a thread (a commit or a slow disk holds no event)."""
        await asyncio.to_thread(self.reporter.write, self.store, *self.reporter.figures(self))

    # ---- the loop -------------------------------------------------------------------------
    async def _consume(self) -> None:
        """Handle events in order; hand the loop back every few milliseconds even with a
        backlog (a queue that is not empty never suspends `get()`), so the sources' readers
        (and their keepalive answers) are never starved by our own processing."""
        queue = self.queue
        clock = time.monotonic
        yielded = clock()
        while True:
            event = queue.get_nowait() if queue.qsize() else await queue.get()
            self._busy_since = clock()
            try:
                await self.process(event)  # the decision
                await self.publisher.publish_now()  # then its views, rows and alerts
            except Exception:  # one event must never stop the consumer
                self.errors += 1
                log.exception("pbx %s: failed to handle %s", event.pbx, type(event).__name__)
            self._busy_since = None
            now = self._progress_at = clock()
            if now - yielded > 0.005:
                await asyncio.sleep(0)
                yielded = clock()

    async def _ticker(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.tick()
            except Exception:
                self.errors += 1
                log.exception("rule timers failed")
            self._tick_at = time.monotonic()
            self.collector.tick()
            n += 1
            if n % 30 == 0:
                await self.skip_recovered()

    async def _writer(self) -> None:
        d = self.settings.daemon
        since_status = 0.0
        while True:
            await asyncio.sleep(d.snapshot_every.total_seconds())
            try:
                recover_all()  # a store kept in memory goes back to its file when it can
                await self.flush_async()
            except Exception:
                log.exception("cannot save the state")
            since_status += d.snapshot_every.total_seconds()
            if since_status >= d.status_every.total_seconds():
                await self.write_status_async()
                since_status = 0.0

    async def _watchdog(self) -> None:
        """systemd: WATCHDOG=1 only while the pipeline makes progress; STATUS= always."""
        every = self.notifier.watchdog or 5.0
        while True:
            stall = self.stalled()
            line = self.health_line()
            if stall or self.notifier.watchdog is None:
                self.notifier.status(line)
                if stall:
                    log.error("pipeline stalled (%s): not feeding the watchdog", stall)
            else:
                self.notifier.alive(line)
            await asyncio.sleep(every)

    async def run(self, stop: asyncio.Event) -> None:
        self.restore()
        self.collector.start()  # short garbage-collector pauses (tollwatch.collector)
        self._tick_at = self._progress_at = time.monotonic()  # stalls count from here
        backoff = self.settings.daemon.max_backoff.total_seconds()
        tasks = [
            asyncio.create_task(supervise(s, self.queue, backoff), name=f"source:{s.name}")
            for s in self.sources
        ]
        tasks += [
            asyncio.create_task(_guarded(a.run, a.name), name=f"alerter:{a.name}")
            for a in self.alerters
            if isinstance(a, Background)
        ]
        tasks += [
            asyncio.create_task(self._consume(), name="consume"),
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self._writer(), name="writer"),
            asyncio.create_task(housekeeper().run(), name="memory"),  # malloc_trim: issue 13
        ]
        log.info("tollwatch running: %d source(s), %d pbx", len(self.sources), len(self.pipelines))
        self.write_status()
        self.notifier.ready(self.health_line())
        tasks.append(asyncio.create_task(self._watchdog(), name="watchdog"))
        try:
            await stop.wait()
        finally:
            self.notifier.stopping()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            while not self.queue.empty():  # what was already read is not lost
                await self.process(self.queue.get_nowait())
                await self.publisher.publish_now()
            for name in self.pipelines:  # with the growth not yet published
                self._queue_publication(name, [], flush=True)
            await self.publisher.publish_queued()
            await self.publisher.close()
            await self._alerts_written()
            await self.flush_final()
            self.write_status()
            for alerter in self.alerters:
                if isinstance(alerter, Background):
                    await alerter.close()
            self.notifier.close()
            self.collector.stop()
            log.info("tollwatch stopped; state saved")


async def _guarded(work: Callable[[], Awaitable[None]], name: str) -> None:
    """Run an alerter's own loop; if it dies, say so and start it again after a pause."""
    while True:
        try:
            await work()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alerter %s stopped unexpectedly; restarting it in 5s", name)
            await asyncio.sleep(5)
