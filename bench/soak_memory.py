"""The soak's memory figures: the daemon's RSS split by kind of mapping, over time.

`split(pid)` reads /proc/PID/smaps and sums the resident size (Rss) of each mapping into:

* `heap`: glibc's main arena (`[heap]`, grown with brk);
* `arenas`: glibc's per-thread arenas (anonymous mappings that start on a 64 MiB boundary and,
  with the reserved `---p` rest that follows, span 64 MiB: HEAP_MAX_SIZE on 64-bit);
* `anon`: every other anonymous mapping: pymalloc's arenas, blocks of 128 KiB and more that
  glibc maps by themselves, polars' allocator (jemalloc), thread stacks;
* `file`: mapped files (the interpreter, shared libraries, polars' 100+ MiB library, SQLite
  files if mapped): pages read from disk, mostly shared and clean.

`summary()` gives first/mid/last/max and the least-squares slope after warm-up for the total and
for each part, and a table with the first sample of every 5 minutes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ARENA = 64 << 20  # glibc HEAP_MAX_SIZE on 64-bit: a thread arena reserves this much
PARTS = ("heap", "arenas", "anon", "file")
_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$")


def split(pid: int) -> dict[str, float]:
    """Resident MiB of the process by part (see the module docstring), and `rss` in total."""
    maps: list[tuple[int, int, str, str, int]] = []  # start, end, perms, name, rss KiB
    with Path(f"/proc/{pid}/smaps").open() as fh:
        for line in fh:
            m = _HEADER.match(line)
            if m:
                start, end = int(m[1], 16), int(m[2], 16)
                maps.append((start, end, m[3], m[4].strip(), 0))
            elif line.startswith("Rss:") and maps:
                s, e, p, n, _ = maps[-1]
                maps[-1] = (s, e, p, n, int(line.split()[1]))
    out = dict.fromkeys(PARTS, 0.0)
    arena_end = -1
    for i, (start, end, _perms, name, rss) in enumerate(maps):
        if name == "[heap]":
            part = "heap"
        elif name.startswith("/"):
            part = "file"
        elif name.startswith("[") and not name.startswith("[anon"):
            part = "anon"  # [stack], [vdso], [vvar]
        else:
            if start % ARENA == 0:
                span = end
                j = i + 1
                while j < len(maps) and maps[j][0] == span and not maps[j][3]:
                    span = maps[j][1]
                    j += 1
                    if span - start >= ARENA:
                        break
                if span - start == ARENA:
                    arena_end = span
            part = "arenas" if start < arena_end else "anon"
        out[part] += rss / 1024
    out["rss"] = sum(out[p] for p in PARTS)
    return {k: round(v, 1) for k, v in out.items()}


def summary(samples: list[tuple[float, dict[str, float]]], warmup: float) -> dict[str, Any]:
    """Total RSS: first (after warm-up), middle, last, max, slope; the same for each part; the
    first sample of every 5 minutes."""
    kept = [(t, s) for t, s in samples if t >= warmup] or samples
    total = [(t, s["rss"]) for t, s in kept]
    mid = total[len(total) // 2]
    result: dict[str, Any] = {
        "start": total[0][1],
        "start_at_s": round(total[0][0]),
        "mid": mid[1],
        "mid_at_s": round(mid[0]),
        "end": total[-1][1],
        "end_at_s": round(total[-1][0]),
        "max": max(r for _, r in total),
        "slope_mib_per_hour": slope(total),
        "samples": len(samples),
    }
    result["parts"] = {
        p: {
            "start": kept[0][1][p],
            "end": kept[-1][1][p],
            "slope_mib_per_hour": slope([(t, s[p]) for t, s in kept]),
        }
        for p in PARTS
    }
    result["halves"] = halves(kept)
    result["per_5_min"] = [{"at_min": round(t / 60, 1), **s} for t, s in every(samples, 300.0)]
    result["per_minute"] = [{"at_min": round(t / 60, 1), **s} for t, s in every(samples, 60.0)]
    return result


def halves(kept: list[tuple[float, dict[str, float]]]) -> dict[str, Any]:
    """Slopes (MiB/h) of the total, the total without mapped files and each part over the first
    and the second half of the samples' time (after warm-up), and the mean of each half."""
    if len(kept) < 4:
        return {}
    mid_t = (kept[0][0] + kept[-1][0]) / 2
    out: dict[str, Any] = {"split_at_min": round(mid_t / 60, 1)}
    for name, part in (("first", [x for x in kept if x[0] < mid_t]),
                       ("second", [x for x in kept if x[0] >= mid_t])):  # fmt: skip
        out[name] = {
            "slope_mib_per_hour": slope([(t, s["rss"]) for t, s in part]),
            "slope_without_files": slope([(t, s["rss"] - s["file"]) for t, s in part]),
            "mean": round(sum(s["rss"] for _, s in part) / len(part), 1),
            **{f"slope_{p}": slope([(t, s[p]) for t, s in part]) for p in PARTS},
        }
    return out


def per_real(samples: list[tuple[float, dict[str, float]]], step: float) -> list[dict[str, Any]]:
    """The first sample of each `step` seconds of real time (`real_s`, set when the clock runs
    fast), with the clock's minute beside it."""
    timed = [(s["real_s"], (t, s)) for t, s in samples if "real_s" in s]
    return [
        {"real_min": round(r / 60, 1), "clock_min": round(t / 60, 1), **s}
        for r, (t, s) in every(timed, step)
    ]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope in MiB per hour of (seconds, MiB) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points) or 1.0
    return round(sum((t - mean_t) * (r - mean_r) for t, r in points) / var * 3600, 1)


def every(samples: list[tuple[float, Any]], step: float) -> list[tuple[float, Any]]:
    """The first sample of each `step` seconds."""
    out: list[tuple[float, Any]] = []
    for t, r in samples:
        if not out or t - out[-1][0] >= step:
            out.append((t, r))
    return out


# The daemon under tracemalloc: a thread dumps a snapshot every N seconds into a directory.
TRACED = """
import runpy, sys, threading, time, tracemalloc
every, where = float(sys.argv[1]), sys.argv[2]
def dump():
    n = 0
    while True:
        time.sleep(every)
        tracemalloc.take_snapshot().dump(f"{where}/snap-{n:04d}")
        n += 1
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["tollwatch", *sys.argv[3:]]
runpy.run_module("tollwatch", run_name="__main__", alter_sys=True)
"""


def growth(
    where: Path, warmup_s: float, every_s: float, root: Path, top: int = 20
) -> dict[str, Any]:
    """What grew most (by source line) from the first snapshot after warm-up to the last."""
    import tracemalloc

    snaps = sorted(where.glob("snap-*"))
    first_i = min(len(snaps) - 1, max(0, int(warmup_s // every_s)))
    if len(snaps) < 2 or first_i >= len(snaps) - 1:
        return {"snapshots": len(snaps)}
    first = tracemalloc.Snapshot.load(str(snaps[first_i]))
    last = tracemalloc.Snapshot.load(str(snaps[-1]))
    stats = last.compare_to(first, "lineno")
    total = sum(s.size_diff for s in stats)
    return {
        "snapshots": len(snaps),
        "from_s": round((first_i + 1) * every_s),
        "to_s": round(len(snaps) * every_s),
        "traced_mib_first": round(sum(s.size for s in first.statistics("filename")) / 2**20, 1),
        "traced_mib_last": round(sum(s.size for s in last.statistics("filename")) / 2**20, 1),
        "net_growth_kib": round(total / 1024, 1),
        "top": [
            f"{s.size_diff / 1024:+.1f} KiB {s.count_diff:+d} blocks "
            f"{s.traceback[0].filename.replace(str(root) + '/', '')}:"
            f"{s.traceback[0].lineno}"
            for s in stats[:top]
        ],
    }
