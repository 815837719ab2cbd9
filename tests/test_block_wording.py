"""Dry run says WOULD BLOCK everywhere; [BLOCKED] / "blocked" only when AstDB took the block."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.test_remediation import NOW, Clock, Told, make, view
from tollwatch.alerting import blockkit
from tollwatch.alerting.console import ConsoleAlerter
from tollwatch.alerting.remediation import Blocker


class Sender:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.actions: list[Mapping[str, str]] = []

    async def send_action(self, action: Mapping[str, str]) -> Any:
        if self.fail:
            raise ConnectionError("AMI connection lost")
        self.actions.append(action)
        return {"Response": "Success", "Message": "Updated database successfully"}


async def told_by(tmp: Path, sender: Sender, **rem: Any) -> tuple[dict[str, Any], str]:
    """The "blocked" view the blocker notifies, and what the console prints for it."""
    told = Told()
    blocker = Blocker(make(tmp, hangup=False, **rem), {"acme": sender}, notify=told,
                      clock=Clock())
    await blocker.handle("escalated", view(first_call_at="2026-11-24T13:22:00+00:00"))
    assert told.kinds() == ["blocked"]
    out = io.StringIO()
    await ConsoleAlerter(out).send("blocked", told.calls[0][1])
    return told.calls[0][1], out.getvalue()


def slack_texts(v: dict[str, Any]) -> str:
    parent = blockkit.parent_message(v, v["blocks"])
    reply = blockkit.reply_message("blocked", v)
    return "\n".join([parent["text"], str(parent["blocks"]), reply["text"], str(reply["blocks"])])


async def test_dry_run_says_would_block_and_never_blocked(tmp_path: Path) -> None:
    sender = Sender()
    v, line = await told_by(tmp_path, sender)  # remediation.enabled = false: a dry run
    assert sender.actions == []
    assert line.startswith("[WOULD BLOCK] pbx acme: WOULD BLOCK the whole of Sierra Leone (+232)")
    assert "to block now: tollwatch block 232 --pbx acme" in line
    assert "BLOCKED" not in line and "blocked " not in line
    slack = slack_texts(v)
    assert "WOULD BLOCK (dry run)" in slack
    assert "Blocked" not in slack and "; blocked" not in slack and ": blocked" not in slack
    assert blockkit.notification(v, v["blocks"]).endswith("; WOULD BLOCK (dry run) [inc-1]")


async def test_a_real_block_says_blocked(tmp_path: Path) -> None:
    sender = Sender()
    v, line = await told_by(tmp_path, sender, enabled=True)
    assert [a["Action"] for a in sender.actions] == ["DBPut"]
    assert line.startswith("[BLOCKED] pbx acme: blocked the whole of Sierra Leone (+232) until ")
    assert f"{NOW}" not in line and "WOULD" not in line
    assert blockkit.notification(v, v["blocks"]).endswith("; blocked [inc-1]")
    assert blockkit.reply_message("blocked", v)["text"].startswith("[inc-1] blocked: calls to")


async def test_a_block_astdb_did_not_take_is_not_called_blocked(tmp_path: Path) -> None:
    v, line = await told_by(tmp_path, Sender(fail=True), enabled=True)
    assert v["blocks"][0]["failed"] == "AMI connection lost"
    assert line.startswith("[BLOCK FAILED] pbx acme: NOT applied yet: the whole of Sierra Leone")
    assert "[BLOCKED]" not in line
    assert blockkit.block_state(v["blocks"]) == "block NOT applied yet"
    assert blockkit.notification(v, v["blocks"]).endswith("; block NOT applied yet [inc-1]")
    assert "NOT applied yet (AMI connection lost)" in blockkit.reply_message("blocked", v)["text"]


def test_status_counts_blocks_and_what_a_dry_run_would_block(tmp_path: Path) -> None:
    from tollwatch.alerting.remediation.store import BlockStore
    from tollwatch.cli_status import blocks_line

    assert blocks_line(tmp_path) is None  # no remediation has run here
    store = BlockStore.in_dir(tmp_path)
    assert blocks_line(tmp_path) == "blocks: none in force"
    store.add("prefix", "232", "acme", "r", "inc-1", "auto", NOW, NOW + 60, True)
    assert blocks_line(tmp_path) == ("blocks: 0 in force; 1 WOULD BLOCK (dry run: [remediation] "
                                     "enabled = false) (tollwatch blocks)")
    store.add("prefix", "44", "acme", "r", "inc-2", "cli:root", NOW, NOW + 60, False, NOW)
    assert blocks_line(tmp_path).startswith("blocks: 1 in force; 1 WOULD BLOCK")  # type: ignore
    store.add("prefix", "1876", "csvonly", "r", "inc-3", "auto", NOW, NOW + 60, False)  # no AMI
    store.close()
    assert blocks_line(tmp_path).startswith(  # type: ignore
        "blocks: 1 in force; 1 recorded but NOT applied in Asterisk")


def test_console_times_for_people() -> None:
    from zoneinfo import ZoneInfo

    from tollwatch.alerting.console import format_change, format_update

    v = view(first_call_at="2026-11-24T13:22:00+00:00", calls=3, minutes=1.5, score=150,
             reasons=[])
    line = format_change("opened", v, ZoneInfo("Asia/Tokyo"))
    assert "3 call(s) since 2026-11-24 22:22:00 JST" in line
    assert "since 2026-11-24 13:22:00+00:00" in format_change("opened", v)
    assert "now 3 calls, talk time 1:30" in format_update(v)


async def test_a_csv_only_pbx_block_never_promises_ami_in_slack_or_console(tmp_path: Path) -> None:
    told = Told()
    blocker = Blocker(make(tmp_path, hangup=False, enabled=True), {}, notify=told, clock=Clock())
    await blocker.handle("escalated", view(first_call_at="2026-11-24T13:22:00+00:00"))
    v = told.calls[0][1]
    assert v["blocks"][0]["failed"] == "no AMI connection for this PBX"
    out = io.StringIO()
    await ConsoleAlerter(out).send("blocked", v)
    for text in (out.getvalue(), slack_texts(v)):
        assert "NOT applied yet" in text and "by hand" in text
        assert "when AMI is back" not in text
