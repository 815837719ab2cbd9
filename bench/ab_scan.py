"""A/B: the same scan benchmark worker run from two checkouts, interleaved.

    python bench/ab_scan.py OLD_TREE NEW_TREE FILE [--rounds 5]

On a shared machine the load changes from minute to minute, so one `bench_scan.py` run before
a change and one after compare two different machines. This runs `bench_scan.py --worker`
(ingest, then scan) from OLD_TREE and NEW_TREE alternately, each in a fresh interpreter with
its own PYTHONPATH, and reports the best and the median of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run(tree: Path, mode: str, path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(tree / "bench/bench_scan.py"), "--worker", mode, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(out["seconds"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for mode in ("ingest", "scan"):
            for name, tree in (("old", args.old), ("new", args.new)):
                t = run(tree.resolve(), mode, args.file.resolve())
                times.setdefault((name, mode), []).append(t)
                print(f"round {r + 1} {mode:6} {name}: {t:.2f} s", flush=True)
    print()
    for mode in ("ingest", "scan"):
        old, new = times[("old", mode)], times[("new", mode)]
        m_old, m_new = statistics.median(old), statistics.median(new)
        print(f"{mode:6} best old {min(old):.2f} s, new {min(new):.2f} s "
              f"({min(new) / min(old) - 1:+.0%}); median old {m_old:.2f} s, "
              f"new {m_new:.2f} s ({m_new / m_old - 1:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
