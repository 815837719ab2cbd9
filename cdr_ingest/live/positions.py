"""Where the Master.csv follower stopped reading a file, and where that is kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Position:
    """Where reading stopped in one file: bytes and physical lines consumed."""

    inode: int
    offset: int
    line: int
    fp: str = field(default="", compare=False)  # content fingerprint at offset (.rotation)


class PositionStore(Protocol):
    def load(self, path: str) -> Position | None: ...

    def save(self, path: str, pos: Position) -> None: ...


class MemoryPositions:
    """A dict-backed PositionStore (tests; the daemon uses a persistent one)."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}

    def load(self, path: str) -> Position | None:
        return self.positions.get(path)

    def save(self, path: str, pos: Position) -> None:
        self.positions[path] = pos
