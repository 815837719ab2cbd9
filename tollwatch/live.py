"""One PBX's live pipeline: source events in, calls classified, the rule engine driven, incident
changes out. The same engine and rules as `tollwatch scan`; only the driver differs.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from sys import intern
from typing import Any

from tollwatch.cdr_ingest.live import (
    AuthAttempt,
    CallAnswered,
    CallEnded,
    CallRefused,
    CallStarted,
    LiveEvent,
    PbxBooted,
    PbxConnected,
)
from tollwatch.config import Settings
from tollwatch.rules.baseline import Baseline
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine, relevant
from tollwatch.rules.incidents import IncidentChange
from tollwatch.rules.model import AuthEvent, Call, CallEvent, Kind

SNAPSHOT_VERSION = 1
_SEEN = 20_000  # call ids remembered for counting each call once


class LivePipeline:
    def __init__(
        self,
        pbx: str,
        settings: Settings,
        classifier: Classifier,
        rule_specs: Mapping[str, Mapping[str, Any]],
        baseline: Baseline | None = None,
    ) -> None:
        self.pbx = pbx
        self.settings = settings
        self.classifier = classifier
        self.engine = Engine.from_settings(settings, rule_specs, baseline)
        self.engine.tracker.site = f"{settings.site.name}/{pbx}"
        self.up: dict[str, Call] = {}  # calls in progress that rules look at
        self.other_up: set[str] = set()  # calls in progress that rules ignore (domestic, ...)
        self.calls_seen = 0
        # call ids seen lately (calls and refused attempts): a call recovered from the CDR file
        # after an AMI outage, or seen again at a resync, is counted once
        self.seen: OrderedDict[str, None] = OrderedDict()

    @property
    def baseline(self) -> Baseline:
        assert self.engine.baseline is not None  # from_settings always makes one
        return self.engine.baseline

    @property
    def in_progress(self) -> int:
        return len(self.up) + len(self.other_up)

    def feed(self, event: LiveEvent) -> list[IncidentChange]:
        if isinstance(event, CallStarted):
            return self._started(event)
        if isinstance(event, CallAnswered):
            call = self.up.get(event.call_id)
            if call is None or call.answer is not None:
                return []
            call.answer = event.at
            return self.engine.handle(CallEvent(event.at, Kind.ANSWERED, call))
        if isinstance(event, CallEnded):
            self.other_up.discard(event.call_id)
            call = self.up.pop(event.call_id, None)
            if call is None:
                return []
            call.end = max(event.at, call.answer or call.start)
            return self.engine.handle(CallEvent(call.end, Kind.ENDED, call))
        if isinstance(event, PbxBooted | PbxConnected):
            return []  # no rule cares; the daemon tells its listeners (re-applying blocks)
        if isinstance(event, CallRefused):
            if not self._first_time(f"{event.call_id}|"):
                return []
            change = self.engine.tracker.add_refused(event.source, event.at)
            return [change] if change is not None else []
        if isinstance(event, AuthAttempt):
            auth = AuthEvent(event.at, event.outcome, event.account, event.address, event.service)
            return self.engine.handle_auth(auth)
        return []

    def _started(self, event: CallStarted) -> list[IncidentChange]:
        if event.call_id in self.up or event.call_id in self.other_up:
            return []  # seen again after a resync
        if not self._first_time(f"{event.call_id}|{event.trunk}"):
            return []  # seen live, now again from the CDR file (failover legs: per trunk)
        self.calls_seen += 1
        dest = self.classifier.classify(event.dialed)
        allow = self.settings.allowlist.sources.get(event.source, [])
        call = Call(
            call_id=event.call_id,
            source=intern(event.source),  # one object per source: rules' tables key on it
            account=event.account,
            dest=dest,
            start=event.at,
            trunk=event.trunk,
            origin=f"{self.pbx}:{event.channel}",
            linkedid=event.linkedid,
            allowlisted=dest.allowlisted or self.classifier.source_allowlisted(allow, dest.e164),
        )
        if not relevant(call):
            self.other_up.add(event.call_id)
            return []
        self.up[event.call_id] = call
        return self.engine.handle(CallEvent(event.at, Kind.STARTED, call))

    def _first_time(self, call_id: str) -> bool:
        if call_id.startswith("|"):
            return True
        if call_id in self.seen:
            self.seen.move_to_end(call_id)
            return False
        self.seen[call_id] = None
        while len(self.seen) > _SEEN:
            self.seen.popitem(last=False)
        return True

    def tick(self, now: datetime) -> list[IncidentChange]:
        """Fire rule timers due by `now` (long calls and spend while calls are up)."""
        return self.engine.advance(now)

    # ---- surviving a restart -------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Rules' state, open incidents and calls in progress, pickled together."""
        state = {
            "version": SNAPSHOT_VERSION,
            "rules": {r.name: (r.rule_type, r.snapshot()) for r in self.engine.rules},
            "open": self.engine.tracker.open,
            "closed": self.engine.tracker.closed,
            "clock": self.engine.clock,
            "up": self.up,
            "attempts": self.engine.attempts,
            "other_up": self.other_up,
            "seen": self.seen,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> None:
        """Continue from a snapshot taken by the same version (rules matched by name and type)."""
        state = pickle.loads(blob)  # our own file in our own data directory
        if state.get("version") != SNAPSHOT_VERSION:
            return
        saved = state["rules"]
        for rule in self.engine.rules:
            if rule.name in saved and saved[rule.name][0] == rule.rule_type:
                rule.restore(saved[rule.name][1])
        self.engine.tracker.open = state["open"]
        self.engine.tracker.closed = state["closed"]
        self.engine.clock = state["clock"]
        self.up = state["up"]
        if "attempts" in state:
            self.engine.attempts = state["attempts"]
        self.other_up = state["other_up"]
        self.seen = state.get("seen", OrderedDict())
