"""A longer Master.csv from a generated one: N copies, each shifted in time after the last.

Copy k has every date moved k x SPAN days later (SPAN: the input's whole days, rounded up to
weeks so weekdays stay weekdays), its uniqueids moved by the same seconds, and the last four
digits of each international number (``010...``) changed, so numbers stay mostly distinct.
Used for the 20M-row scan figure (generating 20M rows directly needs ~8 GB in gen_traffic.py).

    python bench/repeat_cdr.py bench/data/dense5m/large-1205/Master.csv \\
        bench/data/dense20m/Master.csv --times 4
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

_DATE = re.compile(r'"(\d{4})-(\d\d)-(\d\d) ')
_UID = re.compile(r'"(\d{10})\.(\d+)"')
_INTL = re.compile(r"(010\d{4,})(\d{4})")


def _span(path: Path) -> int:
    with path.open("rb") as fh:
        head = fh.read(2_000_000).decode("utf-8", "replace")
        fh.seek(max(0, path.stat().st_size - 2_000_000))
        tail = fh.read().decode("utf-8", "replace")
    days = [date(int(m[1]), int(m[2]), int(m[3])) for m in _DATE.finditer(head + tail)]
    span = (max(days) - min(days)).days + 1
    return -(-span // 7) * 7


_MOVED: dict[tuple[str, int], str] = {}


def _shifted(line: str, k: int, span: int) -> str:
    """line of copy k: dates k x span days later, uniqueids as many seconds, numbers changed."""
    shift = timedelta(days=span * k)

    def moved(m: re.Match[str]) -> str:
        key = (m.group(0), k)
        hit = _MOVED.get(key)
        if hit is None:
            d = date(int(m[1]), int(m[2]), int(m[3])) + shift
            hit = _MOVED[key] = f'"{d.isoformat()} '
        return hit

    seconds = int(shift.total_seconds())
    line = _DATE.sub(moved, line)
    line = _UID.sub(lambda m: f'"{int(m[1]) + seconds}.{m[2]}"', line)
    return _INTL.sub(lambda m: m[1] + f"{(int(m[2]) + 3779 * k) % 10000:04d}", line)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--times", type=int, default=4)
    a = p.parse_args(argv)
    span = _span(a.src)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("w", encoding="utf-8", newline="") as out:
        for k in range(a.times):
            with a.src.open(encoding="utf-8") as src:
                for line in src:
                    out.write(_shifted(line, k, span) if k else line)
            print(f"copy {k + 1}/{a.times}: +{span * k} days", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
