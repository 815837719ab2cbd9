"""Findings about the same attack join one incident: a source, a time span, its destinations.

An incident's score is the sum, over the rules that fired, of each rule's highest score; it
becomes a warning, then critical, as the score passes the configured thresholds. Severity only
rises. Findings whose calls all come from one source join that source's incident; PBX-wide
findings spanning several sources join a PBX-wide incident (source "*").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any

from tollwatch.rules.incident_calls import DEFAULT_LIMIT, IncidentCalls
from tollwatch.rules.model import Call, Finding, dest_block_key, dest_number_key, stamp

PBX = "*"
_DEST = "dest:"  # how the keys of destination numbers and blocks begin (rules.model)


class Severity(IntEnum):
    NONE = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


# bound once: reading an Enum member off its class costs more than a plain global read
_NONE, _WARNING, _CRITICAL = Severity.NONE, Severity.WARNING, Severity.CRITICAL


@dataclass
class RuleHit:
    rule: str
    rule_type: str
    score: int
    reason: str
    count: int
    first_at: datetime
    last_at: datetime
    size: int = 1  # calls in the finding whose reason is kept


@dataclass
class Incident:
    """`log` holds the calls: exact aggregates, and the details of the first and last few
    (`rules/incident_calls.py`); `calls` are the calls listed, `call_count` all of them."""

    id: str
    site: str
    source: str
    opened_at: datetime  # event time of the first finding
    last_activity: datetime
    hits: dict[str, RuleHit] = field(default_factory=dict)
    severity: Severity = Severity.NONE
    detected_at: dict[Severity, datetime] = field(default_factory=dict)
    version: int = 0  # bumped on every visible change
    refused: int = 0  # calls the dialplan refused because of a tollwatch block
    log: IncidentCalls = field(default_factory=IncidentCalls, repr=False)
    # `score` as the tracker last summed it (None: not yet, e.g. restored from a snapshot)
    points: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def calls(self) -> dict[str, Call]:
        """The calls whose details are kept (every call below the limit), by id."""
        return self.log.listed()

    @property
    def call_count(self) -> int:
        return self.log.count

    @property
    def calls_not_listed(self) -> int:
        return self.log.count - len(self.log.listed())

    def take(self, call: Call) -> bool:
        """Count a call in (False if it was in already)."""
        return self.log.add(call)

    @property
    def score(self) -> int:
        return sum(h.score for h in self.hits.values())

    @property
    def first_call_at(self) -> datetime:
        """The first call's start; for an incident without calls (failed logins), its opening."""
        return self.log.first_start or self.opened_at

    @property
    def last_call_at(self) -> datetime:
        return self.log.last_start or self.last_activity

    @property
    def accounts(self) -> list[str]:
        return list(self.log.sorted_set("accounts"))

    @property
    def sources(self) -> list[str]:
        return list(self.log.sorted_set("sources"))

    @property
    def regions(self) -> list[str]:
        return list(self.log.sorted_set("regions"))

    def ordered_calls(self) -> list[Call]:
        """The listed calls by start."""
        return self.log.ordered()

    def minutes(self, now: datetime | None = None) -> float:
        return self.log.seconds(now) / 60.0

    def reasons(self) -> list[str]:
        return [h.reason for h in sorted(self.hits.values(), key=lambda h: -h.score)]

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Snapshots from before the call log held every call in `calls`: counted in afresh."""
        calls = state.pop("calls", None)
        self.__dict__.update(state)
        if "log" not in state:
            self.log = IncidentCalls()
            for call in (calls or {}).values():
                self.log.add(call)


@dataclass(frozen=True)
class IncidentChange:
    """What alerting sees: an incident opened (reached warning), escalated, or grew."""

    kind: str  # "opened" | "escalated" | "updated"
    incident: Incident
    at: datetime


class IncidentTracker:
    def __init__(
        self,
        site: str,
        warning_score: int,
        critical_score: int,
        gap: timedelta,
        keep: tuple[int, int] | None = DEFAULT_LIMIT,
    ) -> None:
        """`keep`: (first, last) calls whose details an incident keeps; None: every call."""
        self.site = site
        self.keep = keep
        self.warning = warning_score
        self.critical = critical_score
        self.gap = gap
        self._open: dict[str, Incident] = {}
        self._dest_open = 0  # open incidents keyed by a destination number or block
        # the latest activity any of them had: once it is more than `gap` ago, every one of
        # them is quiet (closed when next looked up) and a call joins none
        self._dest_latest: datetime | None = None
        self.closed: list[Incident] = []  # closed incidents that reached at least a warning
        # Weak findings held back (`_hold`): a finding too weak to raise a warning on its own,
        # for a source or "*" with no incident open, by key. Most never get company within
        # the gap (a dense replay opened 26,139 incidents, 25,845 of them for one such finding
        # and never raised): the incident each would have opened is made only once something
        # else comes for its key (`_from_held`), exactly as it would have been made then.
        self._held: dict[str, Finding] = {}

    @property
    def open(self) -> dict[str, Incident]:
        """The open incidents by key: a source, "*" (PBX-wide), a destination number or block
        ("dest:+2327654xxx"), ... (read it; the tracker alone changes it)."""
        for key in list(self._held):  # the incidents held-back findings opened, made now
            self._from_held(key, None)
        return self._open

    @open.setter
    def open(self, incidents: dict[str, Incident]) -> None:  # restored from a snapshot
        self._held.clear()
        self._open = incidents
        dest = [inc.last_activity for key, inc in incidents.items() if key.startswith(_DEST)]
        self._dest_open = len(dest)
        self._dest_latest = max(dest, default=None)

    def raised(self) -> int:
        """How many open incidents reached at least a warning (a count for status pages: it
        makes no incident of a held-back finding, which never is one)."""
        return sum(1 for inc in self._open.values() if inc.severity > _NONE)

    def _severity(self, score: int) -> Severity:
        if score >= self.critical:
            return _CRITICAL
        if score >= self.warning:
            return _WARNING
        return _NONE

    def _current(self, key: str, now: datetime, create: bool) -> Incident | None:
        inc = self._open.get(key)
        if inc is not None and now - inc.last_activity > self.gap:
            self._close(key)
            inc = None
        if inc is None and create:
            inc = Incident(
                id=f"{self.site}:{key}:{stamp(now)}",
                site=self.site,
                source=key,
                opened_at=now,
                last_activity=now,
                log=IncidentCalls(self.keep),
            )
            inc.points = 0  # no hits yet (`Incident.score`)
            self._open[key] = inc
            if key.startswith(_DEST):
                self._dest_open += 1
                self._dest_active(now)
        return inc

    def _dest_active(self, now: datetime) -> None:
        """An incident keyed by a destination had activity at `now`."""
        latest = self._dest_latest
        if latest is None or now > latest:
            self._dest_latest = now

    def _close(self, key: str) -> None:
        inc = self._open.pop(key)
        if key.startswith(_DEST):
            self._dest_open -= 1
        if inc.severity > _NONE:
            self.closed.append(inc)

    def _hold(self, finding: Finding, key: str) -> bool:
        """Hold a finding back instead of opening an incident for it, if it is one of the
        kind `_held` keeps (the caller knows no incident is open for `key`)."""
        score = finding.score
        if score >= self.warning or score >= self.critical or finding.window is not None:
            return False
        if key.startswith(_DEST):  # (`add_call` looks keys of destinations up on its own)
            return False
        self._held[key] = finding
        return True

    def _from_held(self, key: str, now: datetime | None) -> None:
        """Open the incident a held-back finding for `key` opened, unless by `now` it has been
        quiet for longer than the gap (it would have closed unseen: never a warning)."""
        finding = self._held.pop(key)
        if now is None or now - finding.at <= self.gap:
            self._add(finding, key)

    def add_call(self, call: Call, now: datetime) -> IncidentChange | None:
        """A relevant call from a source with an open incident becomes part of it; else one to
        a destination number or block with an open incident (from any source) joins that."""
        held = self._held
        if held and call.source in held:
            self._from_held(call.source, now)
        open_ = self._open
        if not open_:
            return None
        # `_current(key, now, create=False)` for each key in turn, inlined: an incident quiet
        # for longer than the gap is closed on the way
        gap = self.gap
        key = call.source
        inc = open_.get(key)
        if inc is not None and now - inc.last_activity > gap:
            self._close(key)
            inc = None
        dest_latest = self._dest_latest
        if (inc is None and self._dest_open  # (else no destination key can be open)
                and dest_latest is not None and now - dest_latest <= gap):  # (else all quiet)
            key = dest_number_key(call)
            inc = open_.get(key)
            if inc is not None and now - inc.last_activity > gap:
                self._close(key)
                inc = None
            if inc is None:
                key = dest_block_key(call)
                inc = open_.get(key)
                if inc is not None and now - inc.last_activity > gap:
                    self._close(key)
                    inc = None
        if inc is None or not inc.log.add(call):
            return None
        inc.last_activity = now if now > inc.last_activity else inc.last_activity
        if key is not call.source:  # joined by its destination
            self._dest_active(now)
        if inc.severity == _NONE:
            return None
        inc.version += 1
        return IncidentChange("updated", inc, now)

    def add_refused(self, source: str, now: datetime) -> IncidentChange | None:
        """A call refused by a block, from a source with an open incident (else the PBX-wide
        one): counted on it. Refused attempts never open an incident."""
        for key in (source, PBX):
            if key in self._held:  # (made even if quiet: an open incident is taken as is)
                self._from_held(key, None)
        inc = self._open.get(source) or self._open.get(PBX)
        if inc is None:
            return None
        inc.refused += 1
        inc.last_activity = max(inc.last_activity, now)
        if inc.severity == _NONE:
            return None
        inc.version += 1
        return IncidentChange("updated", inc, now)

    def add(self, finding: Finding) -> IncidentChange | None:
        key = finding.key
        if key not in self._open:
            if key in self._held:
                self._from_held(key, finding.at)
            if key not in self._open and self._hold(finding, key):
                return None  # as the incident it would open: below a warning, unseen
        return self._add(finding, key)

    def _add(self, finding: Finding, key: str) -> IncidentChange | None:
        """Apply a finding to the incident of `key` (its `key`, worked out once: a window's
        finding may walk its calls for it)."""
        now = finding.at
        inc = self._open.get(key)
        if inc is None or now - inc.last_activity > self.gap:
            inc = self._current(key, now, create=True)
            assert inc is not None
        grew = inc.log.add_all(finding.calls_new_to(inc))
        inc.last_activity = now if now > inc.last_activity else inc.last_activity
        if self._dest_open and key.startswith(_DEST):
            self._dest_active(now)
        points = inc.points
        if points is None:
            points = inc.score
        hit = inc.hits.get(finding.rule)
        if hit is None:
            inc.hits[finding.rule] = RuleHit(
                finding.rule,
                finding.rule_type,
                finding.score,
                finding.reason,
                1,
                now,
                now,
                len(finding.calls),
            )
            points += finding.score
            grew = True
        else:
            hit.count += 1
            hit.last_at = now
            size = len(finding.calls)
            # Keep the strongest finding's words: the highest score, then the most calls.
            score = finding.score
            if score > hit.score or (score == hit.score and size >= hit.size):
                grew = grew or score > hit.score or finding.reason != hit.reason
                points += score - hit.score
                hit.score = score
                hit.reason = finding.reason
                hit.size = size
        inc.points = points  # the sum of the hits' scores (`Incident.score`), kept as they change
        before = inc.severity
        after = self._severity(points)
        if after > before:
            inc.severity = after
            for level in Severity:
                if before < level <= after:
                    inc.detected_at[level] = finding.trigger_time
            inc.version += 1
            kind = "opened" if before == _NONE else "escalated"
            return IncidentChange(kind, inc, now)
        if grew and after > _NONE:
            inc.version += 1
            return IncidentChange("updated", inc, now)
        return None

    def expire(self, now: datetime) -> None:
        gap = self.gap
        for key in [k for k, f in self._held.items() if now - f.at > gap]:
            del self._held[key]  # (the incident it opened closed unseen)
        # closed oldest first: one order however the incidents came to be open (a held-back
        # finding makes its incident later than one made at once would have been)
        stale = [(inc.first_call_at, k) for k, inc in self._open.items()
                 if now - inc.last_activity > gap]
        for _, key in sorted(stale):
            self._close(key)

    def all_incidents(self) -> list[Incident]:
        """Every incident that reached at least a warning, open or closed, oldest first."""
        found = self.closed + [i for i in self._open.values() if i.severity > _NONE]
        return sorted(found, key=lambda i: (i.first_call_at, i.source))
