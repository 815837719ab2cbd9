"""The Blocker: incident changes in, AstDB blocks and hang-ups out (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tollwatch.alerting.base import NO_AMI_CONNECTION, IncidentView
from tollwatch.alerting.remediation import astdb, sync
from tollwatch.alerting.remediation.astdb import ActionSender
from tollwatch.alerting.remediation.hangup import hang_up
from tollwatch.alerting.remediation.policy import Guard, Target, qualifies
from tollwatch.alerting.remediation.scope import Scope, SiteProfile
from tollwatch.alerting.remediation.store import BlockRecord, BlockStore
from tollwatch.alerting.remediation.views import block_entry, iso, reason_of, unblock_view
from tollwatch.config.schema import Settings
from tollwatch.rules.destinations import Classifier

log = logging.getLogger("tollwatch.remediation")
_V = TypeVar("_V")

Notify = Callable[[str, IncidentView], Awaitable[None]]
_WATCHED = ("opened", "escalated", "updated")
_HOUR = 3600
# incidents whose block evidence and refusal warnings are remembered, the most recently changed
# (a daemon runs for months; alerters are not told when an incident closes, and a closed one
# gets no more calls: new calls open a new incident, so only an incident quiet while this many
# others changed is forgotten, and it is treated as after a restart)
REMEMBER = 4096


class BlockRefused(Exception):
    """A block the safety rules or the rate limit forbid; str() says why."""


@dataclass
class BlockResult:
    """What one `block()` call did on each PBX."""

    target: Target
    records: list[BlockRecord] = field(default_factory=list)  # new rows
    existing: list[BlockRecord] = field(default_factory=list)  # already blocked there
    failed: dict[str, str] = field(default_factory=dict)  # pbx -> error (recorded anyway)


class Blocker:
    """An alerter that blocks: hand it incident changes like any alerter (`send`).

    `senders` maps PBX names to anything with `async send_action(Mapping) -> Any` (the daemon's
    AmiSource objects). `notify(kind, view)` is called with kind "blocked"/"unblocked" and a view
    whose "blocks" list says what was (or in dry run, would be) done; the daemon points it at its
    other alerters. `run()` lifts expired blocks every `interval` seconds (or call `expire()`)
    and checks AstDB every `check_every` seconds, putting back what it lost; `on_booted(pbx)`
    does that check at once (Asterisk restarted or AMI reconnected). `profile` is the site's
    baseline (what is routine, what is new) for the block scope (`scope.Scope`).
    """

    name = "remediation"

    def __init__(
        self,
        settings: Settings,
        senders: Mapping[str, ActionSender],
        store: BlockStore | None = None,
        *,
        classifier: Classifier | None = None,
        notify: Notify | None = None,
        clock: Callable[[], float] = time.time,
        interval: float = 5.0,
        check_every: float = 30.0,
        profile: SiteProfile | Mapping[str, SiteProfile] | None = None,
    ) -> None:
        self.settings = settings
        self.rem = settings.remediation
        self.senders = dict(senders)
        self.store = store if store is not None else BlockStore.in_dir(settings.daemon.data_dir)
        self.classifier = classifier or Classifier(settings)
        self.guard = Guard(settings, self.classifier)
        self.scope = Scope(settings, self.classifier, profile)
        self.check_every = check_every
        self.notify = notify
        self.clock = clock
        self.interval = interval
        self.families = astdb.families(self.rem.family)
        # incident -> the refusals said for it, (target, why): each is logged once
        self._told: OrderedDict[str, set[tuple[str, str]]] = OrderedDict()
        # incident -> target -> the fraudulent calls (per number) a block of it answered; once
        # that block expired or was lifted, only new such calls block it again
        self._covered: OrderedDict[str, dict[Target, dict[str, int]]] = OrderedDict()
        self._stop = asyncio.Event()
        self._queue: asyncio.Queue[tuple[str, IncidentView] | None] = asyncio.Queue()

    @property
    def dry_run(self) -> bool:
        return not self.rem.enabled

    def _now(self) -> int:
        return int(self.clock())

    # ---- the Alerter side ---------------------------------------------------------------
    async def send(self, kind: str, view: IncidentView) -> None:
        """Queue an incident change for `run()` (the Alerter contract: never wait on the
        network here). Changes that do not qualify are dropped at once."""
        if kind in _WATCHED and qualifies(self.settings, view):
            self._queue.put_nowait((kind, dict(view)))

    async def drain(self) -> None:
        """Handle every queued change now (tests; shutdown)."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                await self._handle_logged(*item)

    async def _handle_logged(self, kind: str, view: IncidentView) -> None:
        try:
            await self.handle(kind, view)
        except Exception:
            log.exception("remediation: incident %s failed", view.get("id"))

    async def handle(self, kind: str, view: IncidentView) -> None:
        """Act on one incident change now: block per policy, hang up, notify."""
        if kind not in _WATCHED or not qualifies(self.settings, view):
            return
        pbx = str(view.get("pbx", ""))
        incident = str(view.get("id", ""))
        dry = self.dry_run
        new: list[BlockRecord] = []
        failed: dict[int, str] = {}  # block id -> why AstDB did not take it (yet)
        refused: list[dict[str, str]] = []
        for target in self.scope.targets(view):
            if self.store.active(pbx, target.kind, target.value, dry_run=dry):
                self._covered_by(incident)[target] = self._calls_for(target, view)
                continue  # already blocked for this (or an earlier) incident
            if not self._fresh_evidence(pbx, incident, target, view):
                continue
            try:
                result = await self.block(target, [pbx], reason=reason_of(view), origin="auto",
                                          incident_id=incident, dry_run=dry)  # fmt: skip
            except BlockRefused as exc:
                told = _recent(self._told, incident, set)
                if (str(target), str(exc)) not in told:
                    told.add((str(target), str(exc)))
                    log.warning("incident %s: not blocking %s: %s", incident, target, exc)
                    refused.append({"kind": target.kind, "value": target.value, "why": str(exc)})
                continue
            self._covered_by(incident)[target] = self._calls_for(target, view)
            new.extend(result.records)
            failed.update({r.id: result.failed[r.pbx] for r in result.records
                           if r.pbx in result.failed})  # fmt: skip
        hung: list[str] = []
        if self.rem.hangup and view.get("call_ids") and new and dry:
            log.warning("pbx %s: WOULD HANG UP (dry run) the calls of incident %s still up "
                        "that these blocks apply to", pbx, incident)  # fmt: skip
        elif self.rem.hangup and view.get("call_ids") and not dry:
            force = [Target(r.kind, r.value) for r in self.store.active(pbx, dry_run=False)]
            hung = await hang_up(pbx, self.senders.get(pbx), view, force, self._covers, dry)
        if new or refused or hung:
            out = dict(view)
            out["blocks"] = [block_entry(r, failed.get(r.id)) for r in new]
            out["refused"] = refused
            out["hung_up"] = hung
            out["dry_run"] = dry
            await self._notify("blocked", out)

    def _calls_for(self, target: Target, view: IncidentView) -> dict[str, int]:
        """The incident's fraudulent calls a block of `target` applies to, counted per number:
        from the view's calls per number (every call; the listed call ids are only the first
        and last ones)."""
        source = str(view.get("source", ""))
        pbx = str(view.get("pbx", ""))
        numbers = view.get("numbers") or []
        counts = view.get("number_calls")
        if counts is None:  # a view stored before the counts: its listed calls
            per = Counter(str(n) for n in view.get("call_numbers") or [] if n)
            numbers, counts = list(per), list(per.values())
        out: dict[str, int] = {}
        for number, n in zip(numbers, counts, strict=False):
            if not number:
                continue
            dest = self.scope.destination(str(number))
            if self.scope.fraudulent(dest, source, pbx) and self.scope.covers(target, number,
                                                                               source):
                out[str(number)] = int(n)
        return out

    def _covered_by(self, incident: str) -> dict[Target, dict[str, int]]:
        return _recent(self._covered, incident, dict)

    def _fresh_evidence(self, pbx: str, incident: str, target: Target, view: IncidentView) -> bool:
        """False when this incident already had `target` blocked (since expired or lifted) and
        no new fraudulent call to it came since: the expiry stands."""
        before = self.store.for_incident(incident, target.kind, target.value, pbx)
        if not before:
            return True
        now = self._calls_for(target, view)
        known = self._covered_by(incident).setdefault(target, now)  # a restart forgot: now
        # calls are only ever added: a number with more calls than known = a new call to it
        return any(n > known.get(number, 0) for number, n in now.items())

    def _covers(self, blocks: Sequence[Target], dialed: str, source: str) -> Target | None:
        """The block in force that applies to a call from `source` dialing `dialed`."""
        dest = self.classifier.classify(dialed)
        if not dest.e164:
            return None
        digits = dest.e164.lstrip("+")
        for target in sorted(blocks, key=lambda t: (t.kind != "prefix", -len(t.value))):
            if target.kind == "prefix" and digits.startswith(target.value):
                return target
            if target.kind == "source" and target.value == source and dest.international:
                return target
        return None

    async def run(self) -> None:
        """Handle queued incident changes, and lift expired blocks every `interval` seconds,
        until `close()`."""
        self._stop.clear()
        loop = asyncio.get_running_loop()
        next_expiry = loop.time()
        next_check = loop.time() + self.check_every
        while not self._stop.is_set():
            if loop.time() >= next_expiry:
                try:
                    await self.expire()
                except Exception:
                    log.exception("remediation: expiry pass failed")
                next_expiry = loop.time() + self.interval
            if loop.time() >= next_check:
                for pbx in list(self.senders):
                    await self._check_logged(pbx)
                next_check = loop.time() + self.check_every
            try:
                item = await asyncio.wait_for(self._queue.get(), next_expiry - loop.time())
            except TimeoutError:
                continue
            if item is not None:
                await self._handle_logged(*item)

    async def close(self) -> None:
        """Stop `run()`; changes still queued are handled first."""
        self._stop.set()
        self._queue.put_nowait(None)
        await self.drain()

    # ---- blocking -------------------------------------------------------------------------
    async def block(
        self,
        target: Target,
        pbxes: list[str],
        *,
        reason: str,
        origin: str,
        ttl: float | None = None,
        incident_id: str | None = None,
        dry_run: bool = False,
    ) -> BlockResult:
        """Block a prefix or a source on these PBXes (raises BlockRefused). An automatic block
        counts against max_per_hour; an admin's (origin "cli:...") does not. A PBX that cannot
        be reached now gets the block recorded anyway: `on_booted` applies it on reconnect."""
        why = self.guard.check(target)
        if why:
            raise BlockRefused(why)
        now = self._now()
        if origin == "auto":
            done = self.store.auto_since(now - _HOUR)
            if done >= self.rem.max_per_hour:
                raise BlockRefused(
                    f"rate limit: {done} automatic blocks in the last hour "
                    f"(remediation.max_per_hour = {self.rem.max_per_hour})"
                )
        seconds = int(ttl if ttl is not None else self.rem.ttl.total_seconds())
        expires = now + max(1, seconds)
        result = BlockResult(target)
        family = self.families[target.kind]
        for pbx in pbxes:
            old = self.store.active(pbx, target.kind, target.value, dry_run=dry_run)
            if old and origin == "auto":
                result.existing.extend(old)
                continue
            value = astdb.block_value(expires, reason)
            applied_at: int | None = None
            if not dry_run:
                try:
                    await astdb.db_put(self._sender(pbx), family, target.value, value)
                    applied_at = now
                except Exception as exc:
                    result.failed[pbx] = str(exc) or type(exc).__name__
                    if pbx not in self.senders:  # a CSV-only PBX: no AMI will ever come back
                        result.failed[pbx] = NO_AMI_CONNECTION
                        log.warning(
                            "pbx %s: block %s recorded but NOT applied: tollwatch has no AMI "
                            "connection to this PBX (CDR file only); add an [[ami]] server "
                            "for it, or block the destination in its dialplan by hand",
                            pbx, target,
                        )
                    else:
                        log.warning(
                            "pbx %s: block %s recorded but not applied yet (%s); it will "
                            "be applied when AMI is back",
                            pbx,
                            target,
                            result.failed[pbx],
                        )
            for rec in old:  # an admin's block replaces the old one
                self.store.lift(rec.id, now, f"replaced:{origin}")
            rec = self.store.add(target.kind, target.value, pbx, reason, incident_id, origin,
                                 now, expires, dry_run, applied_at)  # fmt: skip
            result.records.append(rec)
            log.warning(
                "pbx %s: %s %s until %s (%s, %s)%s",
                pbx,
                "WOULD BLOCK (dry run)" if dry_run else "blocked",
                target,
                iso(expires),
                origin,
                reason,
                f" [incident {incident_id}]" if incident_id else "",
            )
        return result

    async def unblock(self, target: Target, pbxes: list[str], by: str) -> list[BlockRecord]:
        """Lift a block now on these PBXes (DBDel even if tollwatch has no record of it)."""
        now = self._now()
        lifted: list[BlockRecord] = []
        for pbx in pbxes:
            records = self.store.active(pbx, target.kind, target.value)
            if any(not r.dry_run for r in records) or not records:
                await astdb.db_del(self._sender(pbx), self.families[target.kind], target.value)
            for rec in records:
                lifted.append(self.store.lift(rec.id, now, by))
            log.warning("pbx %s: unblocked %s (%s)", pbx, target, by)
        if lifted:
            await self._notify("unblocked", unblock_view(self.settings, lifted))
        return lifted

    async def expire(self, now: float | None = None) -> list[BlockRecord]:
        """Lift the blocks whose expiry has come (DBDel). A DBDel that fails is harmless: the
        dialplan compares the stored expiry with the clock."""
        at = int(now if now is not None else self.clock())
        lifted: list[BlockRecord] = []
        for rec in self.store.due(at):
            if not rec.dry_run and rec.pbx in self.senders:
                try:
                    await astdb.db_del(self.senders[rec.pbx], self.families[rec.kind], rec.value)
                except Exception as exc:
                    log.warning(
                        "pbx %s: could not delete expired %s (%s); it is expired anyway",
                        rec.pbx,
                        Target(rec.kind, rec.value),
                        exc,
                    )
            lifted.append(self.store.lift(rec.id, at, "expiry"))
            log.warning(
                "%spbx %s: block of %s expired and lifted",
                "DRY RUN: " if rec.dry_run else "",
                rec.pbx,
                Target(rec.kind, rec.value),
            )
        if lifted:
            await self._notify("unblocked", unblock_view(self.settings, lifted))
        return lifted

    async def on_booted(self, pbx: str) -> None:
        """For `Daemon.on_booted`: Asterisk (re)started or AMI reconnected."""
        await self._check_logged(pbx)

    async def _check_logged(self, pbx: str) -> None:
        try:
            await self.reapply(pbx)
        except Exception as exc:
            log.warning("pbx %s: AstDB check failed (%s)", pbx, exc)

    async def reapply(self, pbx: str) -> list[BlockRecord]:
        """Put back the active blocks AstDB lost (DBGet each, DBPut the missing ones)."""
        await self.expire()
        sender = self.senders.get(pbx)
        if sender is None:
            return []
        records = self.store.active(pbx, dry_run=False)
        held: list[BlockRecord] = []
        restored = await sync.reapply(pbx, sender, records, self.families, held)
        self.store.mark_applied([r.id for r in held if r.applied_at is None], int(self.clock()))
        if restored:
            log.warning(
                "pbx %s: AstDB had lost %d block(s); re-applied: %s",
                pbx,
                len(restored),
                ", ".join(str(Target(r.kind, r.value)) for r in restored),
            )
        return restored

    # ---- helpers --------------------------------------------------------------------------
    def _sender(self, pbx: str) -> ActionSender:
        sender = self.senders.get(pbx)
        if sender is None:
            raise KeyError(f"no AMI connection for pbx {pbx!r}")
        return sender

    async def _notify(self, kind: str, view: IncidentView) -> None:
        if self.notify is None:
            return
        try:
            await self.notify(kind, view)
        except Exception:
            log.exception("remediation: notify %s failed", kind)


def _recent(memory: OrderedDict[str, _V], key: str, make: Callable[[], _V]) -> _V:
    """`memory[key]` (made when missing) as the most recently used; past REMEMBER keys the
    least recently used is forgotten."""
    value = memory.get(key)
    if value is None:
        value = memory[key] = make()
    memory.move_to_end(key)
    while len(memory) > REMEMBER:
        memory.popitem(last=False)
    return value
