"""Build the daemon's sources from the settings: AMI servers and followed Master.csv files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cdr_ingest.live import LiveEvent, SourceStatus
from cdr_ingest.live.ami import AmiSource
from config import Settings
from config.secrets import read_secret
from tollwatch.settings import cdr_options


class AmiFeed:
    """An AmiSource behind the supervisor's Source interface (it writes to the daemon queue)."""

    def __init__(self, source: AmiSource) -> None:
        self.source = source
        self.name = source.name
        self.status: SourceStatus = source.status

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        assert self.source.events is queue, "built with the daemon's queue"
        await self.source.run()


def ami_sources(settings: Settings, queue: asyncio.Queue[LiveEvent]) -> list[AmiFeed]:
    """One source per [[ami]] server; the secret is read here, from the environment or a file."""
    feeds = []
    for i, server in enumerate(settings.ami):
        secret = read_secret(server.secret_env, server.secret_file, f"ami.{i}.secret")
        source = AmiSource(
            server.name,
            server.host,
            server.port,
            server.username,
            secret,
            options=cdr_options(settings),
            events=queue,
        )
        feeds.append(AmiFeed(source))
    return feeds


def source_names(settings: Settings) -> list[str]:
    return [s.name for s in settings.ami] + [c.name for c in settings.csv_sources]


def data_path(settings: Settings) -> Path:
    return Path(settings.daemon.data_dir)
