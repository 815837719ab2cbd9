"""`scan --problems FILE`: every skipped row as CSV (`origin`, `problem`), formula-escaped."""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType
from typing import IO

from tollwatch.alerting.textsafe import csv_cell


class ProblemFile:
    """A CSV of problem rows; a no-op when no path is given."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh: IO[str] | None = None
        self._writer: csv.DictWriter[str] | None = None
        self.rows = 0

    def __enter__(self) -> ProblemFile:
        if self.path is not None:
            self._fh = self.path.open("w", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._fh, fieldnames=("origin", "problem"))
            self._writer.writeheader()
        return self

    def write(self, rows: list[tuple[str, str]]) -> None:
        if self._writer is None:
            return
        for origin, problem in rows:
            self._writer.writerow({"origin": csv_cell(origin), "problem": csv_cell(problem)})
        self.rows += len(rows)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()
