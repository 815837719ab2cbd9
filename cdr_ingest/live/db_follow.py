"""Follow a CDR table (FreePBX/Issabel MariaDB, cdr_pgsql, ODBC): new rows in, call events out.

Asterisk inserts a CDR row when the call ends, with the call's START time in `calldate`: a call
that lasted an hour arrives long after shorter calls that started later. Following `calldate`
(or `calldate` + uniqueid) would skip it — and long calls are what revenue-share fraud makes.
So rows are followed by their END time (the `end` column, or start + duration), the order they
are written in:

* each poll reads the rows whose end is at or after the floor: the highest end delivered less
  `settle` (how late a row may be inserted after others that ended later: CDR batch mode,
  clock steps, concurrent writers), and less an hour more around a DST fall-back in the
  table's zone; the start column bounds the query (`start >= floor - longest_call`) so the
  database uses its index on calldate;
* rows already delivered are recognized by their key (auto-increment id, or uniqueid +
  sequence) among the `seen` keys kept for the rows at or above the floor;
* the position (highest end, seen keys with their end) is saved after each batch of events is
  on the queue (when cancelled halfway, after the last row handed over whole): a restart
  neither reads a row twice nor skips one. Rows come in end order, so a position after any
  prefix of a poll's rows is exact.

On the very first start (no saved position) the follower begins at the table's end: history is
for `tollwatch scan --db`. A failing query raises `DbError` out of `run()`: the daemon's
supervisor logs it once per change of state and retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import polars as pl

from tollwatch.cdr_ingest._types import CdrOptions
from tollwatch.cdr_ingest.database import CdrDatabase, DbError, Table
from tollwatch.cdr_ingest.database._read import normalized, raw_frame
from tollwatch.cdr_ingest.live.events import LiveEvent, SourceStatus
from tollwatch.cdr_ingest.live.follow_rows import call_events

log = logging.getLogger(__name__)

MAX_ROWS = 50_000  # rows per query; a full batch is followed at once by the next
PROBE_AFTER = 2.0  # seconds a poll may take before a plain connection checks the server
_T = TypeVar("_T")


@dataclass
class DbPosition:
    """The highest end time delivered (as the table gives it, "" before any) and the keys of
    rows delivered whose end is within the settle window (key -> end)."""

    end: str = ""
    seen: dict[str, str] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({"end": self.end, "seen": self.seen}, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> DbPosition:
        data = json.loads(text)
        return cls(str(data["end"]), {str(k): str(v) for k, v in data["seen"].items()})


class DbPositionStore(Protocol):
    def load(self, key: str) -> DbPosition | None: ...

    def save(self, key: str, pos: DbPosition) -> None: ...


class MemoryDbPositions:
    """A dict-backed DbPositionStore (tests; the daemon keeps positions in its SQLite state)."""

    def __init__(self) -> None:
        self.positions: dict[str, str] = {}

    def load(self, key: str) -> DbPosition | None:
        text = self.positions.get(key)
        return DbPosition.loads(text) if text is not None else None

    def save(self, key: str, pos: DbPosition) -> None:
        self.positions[key] = pos.dumps()


@dataclass(frozen=True)
class _Row:
    key: str
    end: str
    events: tuple[LiveEvent, ...] = ()
    problem: str = ""


class DbFollower:
    """Call events from the rows a PBX writes into a CDR table (see the module docstring)."""

    def __init__(
        self,
        pbx: str,
        database: CdrDatabase,
        options: CdrOptions,
        positions: DbPositionStore,
        poll: float = 5.0,
        *,
        settle: timedelta = timedelta(minutes=10),
        longest_call: timedelta = timedelta(hours=24),
        max_rows: int = MAX_ROWS,
        timeout: float = 60.0,
        probe_after: float = PROBE_AFTER,
    ) -> None:
        self.pbx = pbx
        self.name = pbx
        self.database = database
        self.table: Table = database.table
        self.options = database.options(options)
        self.positions = positions
        self.poll = poll
        self.settle = settle
        self.longest_call = longest_call
        self.max_rows = max_rows
        self.timeout = timeout
        self.probe_after = probe_after
        self.status = SourceStatus(name=pbx, kind="db")
        self.key = f"{self.table.conn.url.shown}/{self.table.name}"
        self._end_sql, self._end_kind = self.table.end_expr()
        self._full = False  # the last query returned max_rows rows

    def __repr__(self) -> str:
        return f"DbFollower({self.pbx!r}, {self.key!r})"

    # -- public ------------------------------------------------------------------------------

    def poll_once(self) -> list[LiveEvent]:
        """Read every row not yet delivered; return their events (position saved)."""
        out: list[LiveEvent] = []
        strict = False
        while True:
            pos, rows = self._next(strict)
            for row in rows:
                out.extend(row.events)
                self._account(pos, row)
            self._save(pos)
            strict = self._full
            if not strict:
                return out

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        """Poll every `poll` seconds and put events on `queue` until cancelled or the database
        fails (DbError: the supervisor retries)."""
        try:
            strict = False
            while True:
                pos, rows = await self._ask(strict)
                try:
                    for row in rows:
                        for event in row.events:
                            await queue.put(event)
                        self._account(pos, row)
                finally:
                    self._save(pos)
                strict = self._full  # more to come: read on at once
                if not strict:
                    await asyncio.sleep(self.poll)
        finally:
            self.status.connected = False
            self.status.state = "stopped"

    async def _ask(self, strict: bool) -> tuple[DbPosition, list[_Row]]:
        """The next rows (`_next`, in a thread), within `timeout`. A query still unanswered
        after `probe_after` seconds gets one plain connection beside it (`Connection.check`):
        a server that went down, or refuses us now (a password changed), ends the wait at once
        with the driver's words, instead of after ConnectorX's 30 s of pool retries."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        query: asyncio.Future[Any] = asyncio.ensure_future(_in_thread(self._next, strict))
        check: asyncio.Future[Any] | None = None
        try:
            waiting = {query}
            done, _ = await asyncio.wait(waiting, timeout=min(self.probe_after, self.timeout))
            if not done:
                check = asyncio.ensure_future(_in_thread(self._check, strict))
                waiting.add(check)
            while not query.done() and (left := deadline - loop.time()) > 0:
                done, _ = await asyncio.wait(waiting, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                if check is not None and check in done and check in waiting:
                    waiting.discard(check)  # reachable, or no verdict: wait on the query
                    error = check.exception()
                    if isinstance(error, DbError):  # the server said no, or is not there
                        self._lost()
                        raise error
            if query.done():
                result: tuple[DbPosition, list[_Row]] = query.result()
                return result
            raise DbError(f"{self.key}: no answer within {self.timeout:.0f}s")
        finally:
            for future in (query, check):  # abandoned: its thread's outcome is dropped
                if future is not None and not future.done():
                    future.cancel()

    def _check(self, _strict: bool) -> None:
        self.table.conn.check()

    def _lost(self) -> None:
        """The table cannot be read now: said once, when it was being read."""
        if self.status.connected:
            log.warning("%s: lost %s", self.pbx, self.key)
        self.status.connected = False

    # -- position ----------------------------------------------------------------------------

    def _load(self) -> DbPosition:
        pos = self.positions.load(self.key)
        if pos is None:
            pos = self._at_end()
            self._save(pos)
        return pos

    def _at_end(self) -> DbPosition:
        """The position after every row now in the table (the first start)."""
        t = self.table
        start = t.mapping["start"]
        kind = t.types[start]
        last = t.conn.read(
            f"SELECT {t.text(f'MAX({t.q(start)})', kind)} AS hi FROM {t.ranged_name}"
        ).item()
        pos = DbPosition()
        if last is None:
            return pos
        lo = datetime.fromisoformat(str(last)) - self.longest_call
        sql = (
            f"SELECT {t.text(f'MAX({self._end_sql})', self._end_kind)} AS hi "
            f"FROM {t.ranged_name} WHERE {t.q(start)} >= {t.literal(lo, kind)}"
        )
        top = t.conn.read(sql).item()
        if top is not None:
            pos.end = str(top)
            self._fetch(pos, strict=False, mark_only=True)
        log.info("%s: following %s from its end (%s)", self.pbx, self.key, pos.end or "empty")
        return pos

    def _floor(self, end: str, strict: bool) -> datetime:
        top = datetime.fromisoformat(end)
        if strict:
            return top
        floor = top - self.settle
        if not self.table.aware and not self.options.usegmtime:
            floor -= _fold(top, self.options.timezone)
        return floor

    def _account(self, pos: DbPosition, row: _Row) -> None:
        """Count a row handed over and move the position past it."""
        if row.problem:
            log.warning("%s", row.problem)
            self.status.errors += 1
        if row.events:
            self.status.events += len(row.events)
            self.status.last_event_at = datetime.now(UTC)
        if not pos.end or datetime.fromisoformat(row.end) > datetime.fromisoformat(pos.end):
            pos.end = row.end
        pos.seen[row.key] = row.end

    def _save(self, pos: DbPosition) -> None:
        """Forget keys below the floor (those rows are not read again), then save."""
        if pos.end:
            floor = self._floor(pos.end, strict=False)
            pos.seen = {k: v for k, v in pos.seen.items() if datetime.fromisoformat(v) >= floor}
        self.positions.save(self.key, pos)

    # -- reading -----------------------------------------------------------------------------

    def _next(self, strict: bool) -> tuple[DbPosition, list[_Row]]:
        """The saved position and the rows after it (at most max_rows, seen ones included in
        that count; strict: from the highest end exactly, to get past a full batch)."""
        pos = self._load()
        return pos, self._fetch(pos, strict)

    def _fetch(self, pos: DbPosition, strict: bool, mark_only: bool = False) -> list[_Row]:
        """The rows at or above the floor not in pos.seen, in end order (or, mark_only: put
        the keys of those rows into pos.seen)."""
        t = self.table
        start = t.mapping["start"]
        kind = t.types[start]
        if pos.end:
            floor = self._floor(pos.end, strict)
            where = (
                f"{t.q(start)} >= {t.literal(floor - self.longest_call, kind)} AND "
                f"{self._end_sql} >= {t.literal(floor, self._end_kind)}"
            )
        else:  # an empty table when we started: everything
            where = "1=1"
        order = ", ".join([self._end_sql, *(t.q(k) for k in t.keys)])
        sql = (
            f"SELECT {', '.join(t.select_list())}, {t.text(self._end_sql, self._end_kind)} AS _e"
            f" FROM {t.ranged_name} WHERE {where} ORDER BY {order} LIMIT {self.max_rows}"
        )
        try:
            df = t.conn.read(sql)
        except Exception:
            self._lost()
            raise
        self._full = df.height >= self.max_rows
        if not self.status.connected:
            log.info("%s: reading %s", self.pbx, self.key)
        self.status.connected = True
        self.status.state = f"following {self.key}"
        raw = raw_frame(t, df.drop("_e")).with_columns(
            df["_e"].cast(pl.String).alias("_e"),
            pl.concat_str([pl.col(f"_k{i}") for i in range(len(t.keys))], separator="\x1f")
            .alias("_key"),
        )
        raw = raw.filter(~pl.col("_key").is_in(list(pos.seen)))
        if mark_only:
            for key, end in raw.select("_key", "_e").iter_rows():
                pos.seen[str(key)] = str(end)
            return []
        return self._rows(raw)

    def _rows(self, raw: pl.DataFrame) -> list[_Row]:
        frame = normalized(self.table, raw.lazy(), self.options).collect()
        out = []
        for key, end, r in zip(raw["_key"], raw["_e"], frame.iter_rows(named=True), strict=True):
            if r["problem"] is not None:
                out.append(_Row(key, end, problem=f"{r['origin']}: {r['problem']}"))
            elif r["outbound"]:
                out.append(_Row(key, end, call_events(self.pbx, r)))
            else:
                out.append(_Row(key, end))
        return out


async def _in_thread(work: Callable[[bool], _T], arg: bool) -> _T:
    """Run a blocking query in a daemon thread. The driver's pool keeps retrying a server that
    is down for up to 30 s: on timeout the caller moves on (the supervisor retries), and the
    thread, abandoned, can neither change the position nor delay the daemon's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(result: _T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = work(arg)
        except BaseException as exc:
            outcome: tuple[_T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        # an abandoned query may end after its loop closed (the daemon stopped): nobody waits
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name="db-follow", daemon=True).start()
    return await future


def _fold(naive: datetime, zone: str) -> timedelta:
    """How far local clocks went back (DST fall-back) within 3 hours either side of naive."""
    tz = zoneinfo.ZoneInfo(zone)
    here = naive.replace(tzinfo=tz)
    before = (here - timedelta(hours=3)).utcoffset() or timedelta(0)
    after = (here + timedelta(hours=3)).utcoffset() or timedelta(0)
    return max(before - after, timedelta(0))
