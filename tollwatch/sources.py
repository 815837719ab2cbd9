"""Build the daemon's sources from the settings: AMI servers and followed Master.csv files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cdr_ingest.live import LiveEvent, SourceStatus
from cdr_ingest.live.ami import AmiSource
from cdr_ingest.live.follow import CsvFollower, Position, PositionStore
from config import Settings
from config.secrets import read_secret
from tollwatch.settings import cdr_options
from tollwatch.state import StateStore


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


class SqlitePositions:
    """The Master.csv follower's positions, kept in the daemon's SQLite state."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def load(self, path: str) -> Position | None:
        row = self.store.load_position(path)
        return Position(*row) if row else None

    def save(self, path: str, pos: Position) -> None:
        self.store.save_position(path, pos.inode, pos.offset, pos.line)


def start_at_end(path: Path, positions: PositionStore) -> None:
    """On the very first start, follow from the end: history is for `tollwatch scan`."""
    if positions.load(str(path)) is not None or not path.is_file():
        return
    lines = 0
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk.rfind(b"\n")
            if last >= 0:
                offset = fh.tell() - len(chunk) + last + 1
    positions.save(str(path), Position(path.stat().st_ino, offset, lines))


class CsvFeed:
    """A Master.csv follower behind the supervisor's Source interface."""

    def __init__(self, follower: CsvFollower) -> None:
        self.follower = follower
        self.name = follower.status.name
        self.status: SourceStatus = follower.status

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        await self.follower.run(queue)


def csv_sources(settings: Settings, store: StateStore) -> list[CsvFeed]:
    positions = SqlitePositions(store)
    feeds = []
    for c in settings.csv_sources:
        path = Path(c.path)
        start_at_end(path, positions)
        feeds.append(CsvFeed(CsvFollower(c.name, path, cdr_options(settings), positions)))
    return feeds
