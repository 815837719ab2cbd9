"""Build the daemon's sources from the settings: AMI servers, followed Master.csv files and
followed CDR tables."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tollwatch.cdr_ingest.live import LiveEvent, SourceStatus
from tollwatch.cdr_ingest.live.ami import AmiSource
from tollwatch.cdr_ingest.live.db_follow import DbFollower, DbPosition
from tollwatch.cdr_ingest.live.follow import CsvFollower, Position, PositionStore
from tollwatch.cdr_ingest.live.rotation import fingerprint
from tollwatch.config import Settings
from tollwatch.config.secrets import SecretError, read_secret
from tollwatch.dbsource import merged, open_database
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
    return (
        [s.name for s in settings.ami]
        + [c.name for c in settings.csv_sources]
        + [d.name for d in settings.db_sources]
    )


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
        self.store.save_position(path, pos.inode, pos.offset, pos.line, pos.fp)


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
        fp = fingerprint(fh.fileno(), offset)
    positions.save(str(path), Position(path.stat().st_ino, offset, lines, fp))


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


class SqliteDbPositions:
    """The CDR table follower's positions, kept in the daemon's SQLite state."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def load(self, key: str) -> DbPosition | None:
        text = self.store.load_db_position(key)
        return DbPosition.loads(text) if text is not None else None

    def save(self, key: str, pos: DbPosition) -> None:
        self.store.save_db_position(key, pos.dumps())


class DbFeed:
    """A CDR table follower behind the supervisor's Source interface. The table is opened
    (and its columns recognized) on the first run, so a database that is down when the daemon
    starts is retried like a lost connection."""

    def __init__(self, settings: Settings, index: int, positions: SqliteDbPositions) -> None:
        source = settings.db_sources[index]
        self.settings = settings
        self.spec = merged(settings, source)
        self.what = f"db_sources.{index}"
        self.name = source.name
        self.status = SourceStatus(name=source.name, kind="db")
        self.positions = positions
        self.follower: DbFollower | None = None

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        if self.follower is None:
            self.status.state = "connecting"
            database = await asyncio.to_thread(open_database, self.spec, self.what)
            self.follower = DbFollower(
                self.name,
                database,
                cdr_options(self.settings),
                self.positions,
                self.spec.poll.total_seconds(),
                settle=self.spec.settle,
                longest_call=self.spec.longest_call,
            )
            self.follower.status = self.status
        else:  # run again after a failure: a database still down, or now refusing us (a
            # password changed), is told by one plain connection at once, not after
            # ConnectorX's 30 s of pool retries (cdr_ingest.database._probe)
            await asyncio.to_thread(self.follower.table.conn.check)
        await self.follower.run(queue)


def db_sources(settings: Settings, store: StateStore) -> list[DbFeed]:
    """One follower per [[db_sources]] entry; its password is read here (a missing one stops
    the daemon at start with a one-line error)."""
    positions = SqliteDbPositions(store)
    feeds = []
    for i, source in enumerate(settings.db_sources):
        spec = merged(settings, source)
        if spec.database is None:
            raise SecretError(f"db_sources.{i}: no database (set it here or in [cdr])")
        if spec.password_env is not None or spec.password_file is not None:
            read_secret(spec.password_env, spec.password_file, f"db_sources.{i}.password")
        feeds.append(DbFeed(settings, i, positions))
    return feeds
