"""Block scope and prefixes (fast path): what the evidence shows is blocked, nothing more; an
expired block is not re-applied by the same incident without new fraudulent calls; a lift is
said on the console and in Slack without errors."""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import settings
from tests.slack_stub import SlackStub
from tollwatch.alerting.console import ConsoleAlerter
from tollwatch.alerting.remediation import (
    Blocker,
    PrefixError,
    Profile,
    Scope,
    Target,
    read_prefix,
)
from tollwatch.alerting.slack import SlackAlerter
from tollwatch.config.schema import Slack
from tollwatch.rules.destinations import Classifier, Destination

NOW = 1_795_526_552


class Clock:
    def __init__(self) -> None:
        self.t = float(NOW)

    def __call__(self) -> float:
        return self.t


class Sender:
    """Answers every action with Success and keeps them."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []

    async def send_action(self, action: Mapping[str, str]) -> Any:
        self.actions.append(dict(action))
        if action["Action"] == "CoreShowChannels":
            return [{"Response": "Success", "EventList": "start"},
                    {"Event": "CoreShowChannelsComplete", "ListItems": "0"}]  # fmt: skip
        return {"Response": "Success", "Message": "ok"}

    def keys(self, action: str = "DBPut") -> list[str]:
        return [a["Key"] for a in self.actions if a["Action"] == action]


def view(numbers: list[str], source: str = "209", iid: str = "inc-1", **kw: Any) -> dict[str, Any]:
    ids = [f"c{i}" for i in range(len(numbers))]
    base: dict[str, Any] = {"id": iid, "pbx": "acme", "severity": "critical", "rules": ["burst"],
                            "source": source, "numbers": sorted(set(numbers)), "call_ids": ids,
                            "call_numbers": list(numbers)}  # fmt: skip
    base.update(kw)
    return base


ATTACK = [f"+23276543{n:02d}" for n in range(8)]


# ---- prefixes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("typed", "digits", "what", "note"),
    [
        ("232", "232", "the whole of Sierra Leone (+232)", ""),
        ("+232", "232", "the whole of Sierra Leone (+232)", ""),
        ("010232", "232", "the whole of Sierra Leone (+232)", "international prefix 010"),
        ("00 232", "232", "the whole of Sierra Leone (+232)", "international prefix 00"),
        ("1-876", "1876", "numbers starting +1 876 (Jamaica)", ""),
        ("+44 20", "4420", "numbers starting +44 20 (United Kingdom)", ""),
    ],
)
def test_prefixes_accepted(typed: str, digits: str, what: str, note: str) -> None:
    check = read_prefix(typed, Classifier(settings("JP")))
    assert (check.digits, check.what) == (digits, what)
    assert note in check.note and bool(note) == bool(check.note)


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("2", "shorter than a calling code"),
        ("3", "shorter than a calling code"),
        ("+0232", r"never starts with 0, e.g. \+232"),
        ("0232", "looks dialed"),
        ("123456789", "longer than 8 digits"),
        ("23x", "not an E.164 prefix"),
        ("", "not an E.164 prefix"),
    ],
)
def test_prefixes_refused(typed: str, why: str) -> None:
    with pytest.raises(PrefixError, match=why):
        read_prefix(typed, Classifier(settings("JP")))


# ---- scope ----------------------------------------------------------------------------------
def scope(profile: Profile | None = None, **rem: Any) -> Scope:
    s = settings("JP", remediation=rem, allowlist={"sources": {"201": ["44"]}})
    return Scope(s, Classifier(s), profile)


def test_scope_blocks_the_attacks_number_range_only() -> None:
    assert scope().targets(view(ATTACK)) == [Target("prefix", "23276543")]
    # a later UK call by the same source: not high-risk, no baseline says it is new
    assert scope().targets(view([*ATTACK, "+442079460000"])) == [Target("prefix", "23276543")]
    # spread over Sierra Leone: the calling code; one number alone: its range of 100
    assert scope().targets(view(["+23276543000", "+23288123456"])) == [Target("prefix", "232")]
    assert scope().targets(view(["+2327654321"])) == [Target("prefix", "23276543")]
    assert scope(prefix="calling_code").targets(view(ATTACK)) == [Target("prefix", "232")]
    # NANP: 1 + area code at the least
    assert scope(prefix="calling_code").targets(view(["+18765550100"])) == [
        Target("prefix", "1876")]


def test_scope_follows_the_baseline_and_allowlists() -> None:
    def uk(d: Destination) -> bool:
        return d.calling_code == "44"

    new_uk = Profile(new=uk)
    routine_sl = Profile(routine=lambda d: d.calling_code == "232")
    assert scope(new_uk).targets(view(["+442079460000"])) == [Target("prefix", "44207946")]
    assert scope(routine_sl).targets(view(ATTACK)) == []
    # 201's per-source allowlist covers +44 for 201 only
    assert scope(new_uk).targets(view(["+442079460000"], source="201")) == []
    # domestic and emergency numbers are never fraudulent destinations
    assert scope(Profile(new=lambda d: True)).targets(view(["+81312345678"])) == []


def test_source_block_only_with_fraudulent_calls_and_covers_only_international() -> None:
    sc = scope(block="source")
    assert sc.targets(view(ATTACK)) == [Target("source", "209")]
    assert sc.targets(view(["+442079460000"])) == []
    src = Target("source", "209")
    assert sc.covers(src, "+442079460000", "209")
    assert not sc.covers(src, "+81312345678", "209")
    assert not sc.covers(src, "+442079460000", "201")


# ---- expiry stands unless new fraudulent calls arrive ---------------------------------------
async def test_expired_block_not_reapplied_by_the_same_incident(tmp_path: Path) -> None:
    s = settings("JP", remediation={"enabled": True}, daemon={"data_dir": str(tmp_path)})
    clock = Clock()
    sender = Sender()
    blocker = Blocker(s, {"acme": sender}, clock=clock)
    await blocker.handle("escalated", view(ATTACK))
    assert sender.keys() == ["23276543"]
    clock.t += 86_400
    await blocker.expire()
    assert sender.keys("DBDel") == ["23276543"]
    # the still-open incident grows with a UK call: +232 stays unblocked
    await blocker.handle("updated", view([*ATTACK, "+442079460000"]))
    assert sender.keys() == ["23276543"]
    # a new call to the range: blocked again
    await blocker.handle("updated", view([*ATTACK, "+442079460000", "+2327654399"]))
    assert sender.keys() == ["23276543", "23276543"]


async def test_expiry_stands_after_a_daemon_restart(tmp_path: Path) -> None:
    s = settings("JP", remediation={"enabled": True}, daemon={"data_dir": str(tmp_path)})
    clock = Clock()
    sender = Sender()
    await Blocker(s, {"acme": sender}, clock=clock).handle("escalated", view(ATTACK))
    clock.t += 86_400
    again = Blocker(s, {"acme": sender}, clock=clock)  # a new daemon: its memory is gone
    await again.expire()
    await again.handle("updated", view(ATTACK))
    assert sender.keys() == ["23276543"]
    await again.handle("updated", view([*ATTACK, "+2327654350"]))
    assert sender.keys() == ["23276543", "23276543"]


# ---- the lift, said on the console and in Slack ---------------------------------------------
async def test_lift_on_console_and_slack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = SlackStub().start()
    try:
        monkeypatch.setenv("TW_SLACK_TOKEN", "xoxb-test")
        s = settings("JP", remediation={"enabled": True}, daemon={"data_dir": str(tmp_path)})
        out = io.StringIO()
        console = ConsoleAlerter(out)
        slack = SlackAlerter(
            Slack(enabled=True, channel="#fraud", token_env="TW_SLACK_TOKEN",
                  base_url=stub.base_url),
            tmp_path, rng=random.Random(7), close_timeout=2.0,
        )  # fmt: skip
        clock = Clock()

        async def notify(kind: str, v: dict[str, Any]) -> None:
            await console.send(kind, v)
            await slack.send(kind, v)

        full = view(ATTACK, score=150, calls=8, minutes=1.0, first_call_at="2026-11-24T13:30:11Z",
                    destinations=["Sierra Leone (+232)"])  # fmt: skip
        await slack.send("opened", full)
        await console.send("opened", full)
        blocker = Blocker(s, {"acme": Sender()}, notify=notify, clock=clock)
        await blocker.handle("escalated", full)
        clock.t += 86_400
        await blocker.expire()
        await slack.close()
        lines = out.getvalue().splitlines()
        assert any(line.startswith("[BLOCKED] pbx acme: blocked numbers starting +232 7654")
                   for line in lines), lines  # fmt: skip
        assert lines[-1] == ("[UNBLOCKED] pbx acme: numbers starting +232 76543 (Sierra Leone): "
                             "block ended  [inc-1]")  # fmt: skip
        posts = [c for c in stub.calls("chat.postMessage")]
        assert len([p for p in posts if not p.body.get("thread_ts")]) == 1
        replies = [p.body["text"] for p in posts if p.body.get("thread_ts")]
        assert any("calls to +23276543: block expired" in r for r in replies), replies
    finally:
        stub.down()


@pytest.mark.parametrize("source", ["209\n", "209\r\nAction: Originate", "20 9", ""])
def test_a_source_with_a_line_end_is_never_an_astdb_key(source: str) -> None:
    """The pattern ended in `$`, which also matches before a final line end: "209\\n" passed as
    an extension and would have gone into a DBPut's Key header."""
    from tollwatch.alerting.remediation.policy import Guard

    guard = Guard(settings("JP", "Asia/Tokyo"))
    assert guard.check_source(source) is not None
    assert guard.check_source("209") is None


def test_fleet_and_table_names_with_a_final_line_end_are_refused() -> None:
    from tollwatch.cdr_ingest.database._table import _NAME
    from tollwatch.config.fleet import NAME

    assert NAME.match("pbx") and not NAME.match("pbx\n")
    assert _NAME.match("cdr") and not _NAME.match("cdr\n")
