"""auth_failures: repeated failed authentications, and the break-in-then-fraud sequence.

N failures for one account, or from one address, within a window is a finding. Failures
followed by a success for that account, and then international calls from it, are critical:
someone guessed the password and is now using the phone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.model import AuthEvent, Call, Finding


class AuthFailuresOptions(RuleOptions):
    score: int = 60
    count: int = Field(default=5, ge=2)
    window: Duration = timedelta(minutes=10)
    compromise_window: Duration = timedelta(hours=24)  # success after failures, then calls
    compromise_score: int = Field(default=100, ge=0)


@register
class AuthFailures(Rule[AuthFailuresOptions]):
    rule_type = "auth_failures"
    options_model = AuthFailuresOptions

    def setup(self) -> None:
        self.failures: dict[str, list[datetime]] = {}  # "account 209" / "address 1.2.3.4"
        self.suspect: dict[str, datetime] = {}  # account -> when failures reached the count
        self.broken: dict[str, datetime] = {}  # account -> success after failures

    def _count(self, key: str, now: datetime) -> int:
        limit = now - self.options.window
        kept = [t for t in self.failures.get(key, []) if t > limit]
        kept.append(now)
        self.failures[key] = kept
        return len(kept)

    def on_auth(self, event: AuthEvent) -> list[Finding]:
        o = self.options
        now = event.at
        self._forget(now)
        if event.outcome == "success":
            if not event.account:
                return []
            since = self.suspect.get(event.account)
            if since is not None and now - since <= o.compromise_window:
                self.broken[event.account] = now
            return []
        found: list[Finding] = []
        span = format_duration(o.window)
        # no AccountID (e.g. a ChallengeResponseFailed before the peer named itself): only its
        # address can be counted; an empty account is nobody, not the whole PBX
        n = self._count(f"account {event.account}", now) if event.account else 0
        if n >= o.count:
            self.suspect.setdefault(event.account, now)
            reason = f"{n} failed authentications for account {event.account} within {span}"
            found.append(self.finding(now, None, [], reason, group=event.account))
        if event.address:
            n = self._count(f"address {event.address}", now)
            if n >= o.count:
                reason = f"{n} failed authentications from {event.address} within {span}"
                found.append(self.finding(now, None, [], reason, group=f"from {event.address}"))
        return found

    def start_idle(self) -> bool:
        """No account logged in after failures: on_start finds nothing (only on_auth adds)."""
        return not self.broken

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        when = self.broken.get(call.source)
        if when is None or now - when > self.options.compromise_window:
            return []
        reason = (
            f"account {call.source} logged in at {when:%Y-%m-%d %H:%M:%S} UTC after repeated "
            f"failed attempts, and now calls {call.label()}"
        )
        return [self.finding(now, call, [call], reason, score=self.options.compromise_score)]

    def _forget(self, now: datetime) -> None:
        limit = now - self.options.compromise_window
        for table in (self.suspect, self.broken):
            for key in [k for k, t in table.items() if t < limit]:
                del table[key]
        if len(self.failures) > 10_000:
            window = now - self.options.window
            self.failures = {k: v for k, v in self.failures.items() if v and v[-1] > window}
