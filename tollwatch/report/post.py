"""Post a report's summary to Slack through the alert outbox (shared with the daemon)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alerting.slack import SlackAlerter
from config import Settings
from tollwatch.report.build import ReportResult, summary_text


async def queue_report(alerter: SlackAlerter, result: ReportResult) -> None:
    key = result.folder.name  # the day (or range) of the report: posted once
    await alerter.post_report(key, summary_text(result.summary), result.chart_png)


async def post_to_slack(settings: Settings, result: ReportResult, wait: float = 15.0) -> bool:
    """From the command line: queue it, try to deliver for a while; True when sent. What is
    not sent stays in the outbox in the data directory, and the daemon sends it."""
    alerter = SlackAlerter(settings.slack, Path(settings.daemon.data_dir))
    try:
        await queue_report(alerter, result)
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
