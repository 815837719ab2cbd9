"""The machine's MariaDB (127.0.0.1:3306, root) and PostgreSQL (127.0.0.1:5432, trust): a fresh
database per test session, dropped at the end; skipped with the reason when a server is down.
Also: loading Master.csv rows into a CDR table, and a TCP proxy whose connections can be cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SQL = Path(__file__).resolve().parent / "sql"
MASTER = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
          "lastdata", "start", "answer", "end", "duration", "billsec", "disposition",
          "amaflags", "uniqueid", "userfield")


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Server:
    kind: str  # "mysql" | "postgresql"
    database: str
    port: int
    user: str

    @property
    def url(self) -> str:
        return f"{self.kind}://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def connect(self, database: str | None = None) -> Any:
        if self.kind == "mysql":
            import pymysql

            return pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                                   database=database or self.database, autocommit=True,
                                   local_infile=True)
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                               dbname=database or self.database, autocommit=True)

    def execute(self, sql: str, params: Sequence[Any] | None = None, many: bool = False) -> None:
        with contextlib.closing(self.connect()) as conn:
            cur = conn.cursor()
            if many:
                cur.executemany(sql, params or [])
            else:
                cur.execute(sql, params)

    def script(self, path: Path) -> None:
        text = path.read_text()
        for stmt in text.split(";"):
            body = "\n".join(ln for ln in stmt.splitlines() if not ln.strip().startswith("--"))
            if body.strip():
                self.execute(body)

    @contextlib.contextmanager
    def mysql_user(self, user: str, password: str, grant_on: str) -> Iterator[None]:
        """A MariaDB account from anywhere and from localhost (README's grant: SELECT on
        `grant_on`, a table or `db.*`, and nothing more), dropped on the way out."""
        hosts = ("%", "localhost")
        try:
            for host in hosts:
                self.execute(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' "
                             f"IDENTIFIED BY '{password}'")
                self.execute(f"GRANT SELECT ON {grant_on} TO '{user}'@'{host}'")
            yield
        finally:
            for host in hosts:
                self.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")

    def set_mysql_password(self, user: str, password: str) -> None:
        for host in ("%", "localhost"):
            self.execute(f"ALTER USER '{user}'@'{host}' IDENTIFIED BY '{password}'")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as conn:
            cur = conn.cursor()
            cur.execute(sql)
            return list(cur.fetchall())


def _create(kind: str, port: int) -> Iterator[Server]:
    if not reachable(port):
        pytest.skip(f"no {kind} server on 127.0.0.1:{port} (CI and the dev machines run one)")
    name = f"tw_test_{uuid.uuid4().hex[:12]}"
    admin = Server(kind, "mysql" if kind == "mysql" else "postgres", port,
                   "root" if kind == "mysql" else "postgres")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield Server(kind, name, port, admin.user)
    finally:
        if kind == "postgresql":  # close what is still connected (a follower under test)
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        admin.execute(f"DROP DATABASE {name}")
        if kind == "postgresql":  # roles are server-wide: the tests' read-only one goes too
            admin.execute(f"DROP ROLE IF EXISTS tw_ro_{name}")


@pytest.fixture(scope="session")
def mariadb() -> Iterator[Server]:
    yield from _create("mysql", 3306)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    yield from _create("postgresql", 5432)


def master_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [dict(zip(MASTER, row, strict=True)) for row in csv.reader(fh)]


def insert_freepbx(server: Server, table: str, rows: Sequence[dict[str, str]]) -> None:
    """Rows of Master.csv as FreePBX/cdr_pgsql write them (calldate = start)."""
    cols = ("calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
            "lastdata", "duration", "billsec", "disposition", "accountcode", "uniqueid",
            "userfield", "linkedid", "sequence")
    values = [
        (r["start"], r["clid"], r["src"], r["dst"], r["dcontext"], r["channel"],
         r["dstchannel"], r["lastapp"], r["lastdata"], int(r["duration"]), int(r["billsec"]),
         r["disposition"], r["accountcode"], r["uniqueid"], r["userfield"], r["uniqueid"], i)
        for i, r in enumerate(rows)
    ]
    marks = ", ".join(["%s"] * len(cols))
    server.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", values,
                   many=True)


class CutProxy:
    """A TCP proxy on an ephemeral port to a server; `cut()` drops every connection and
    refuses new ones until `resume()`."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.open = True
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        self.open = False
        for w in list(self._pipes):
            w.transport.abort()
        self._pipes.clear()

    def resume(self) -> None:
        self.open = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_w))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._pipes.discard(writer)
        self._pipes.discard(up_w)
