"""Post a report's summary to Slack through the alert outbox (shared with the daemon)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tollwatch.alerting.slack import SlackAlerter
from tollwatch.config import Settings
from tollwatch.config.schema import Slack
from tollwatch.report.build import ReportResult
from tollwatch.report.summary import summary_text


async def queue_report(alerter: SlackAlerter, result: ReportResult) -> None:
    key = result.folder.name  # the day (or range) of the report: posted once
    await alerter.post_report(key, summary_text(result.summary), result.chart_png)


async def post_to_slack(settings: Settings, result: ReportResult, wait: float = 15.0) -> bool:
    """From the command line: queue it, try to deliver for a while; True when sent. What is
    not sent stays in the outbox in the data directory, and the daemon sends it."""
    return await post_text(settings.slack, Path(settings.daemon.data_dir), result.folder.name,
                           summary_text(result.summary), result.chart_png, wait)


async def post_text(
    slack: Slack, data_dir: Path, key: str, text: str, chart: Path | None = None,
    wait: float = 15.0,
) -> bool:
    """Queue a report text (posted once per `key`) and try to deliver it for `wait` seconds."""
    alerter = SlackAlerter(slack, data_dir)
    try:
        await alerter.post_report(key, text, chart)
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        while loop.time() < end:
            delay = await alerter.step()
            if delay is None:
                return True
            await asyncio.sleep(min(delay, max(0.0, end - loop.time())))
        return alerter.pending() == 0
    finally:
        await alerter.close()
