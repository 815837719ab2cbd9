"""A/B: CPU time of the ingest and the scan, old checkout against new, interleaved.

    python bench/ab_scan.py OLD_TREE NEW_TREE FILE [--rounds 2] [--repeat 3]

On a shared machine wall time changes with the load from minute to minute, so one
`bench_scan.py` run before a change and one after compare two different machines. This runs
the same measurement from OLD_TREE and NEW_TREE alternately, each in a fresh interpreter with
its own PYTHONPATH, and counts CPU time (user + system, all threads) of the measured call,
`--repeat` times per interpreter (the first run pays regex compilation and warm-up): country JP,
time zone Asia/Tokyo as in bench_scan.py. Make OLD_TREE with e.g.
`git archive <commit> | tar -x -C /tmp/old`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

WORKER = """
import json, resource, sys
from pathlib import Path
from tollwatch.cdr_ingest import scan_cdrs
from tollwatch.scan import run_scan
from tollwatch.settings import cdr_options, load, overrides
mode, path, repeat = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
s = load(None, overrides("JP", "Asia/Tokyo"))
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = []
for _ in range(repeat):
    c = cpu()
    if mode == "ingest":
        scan_cdrs([path], cdr_options(s)).collect(engine="streaming")
    else:
        run_scan([path], s)
    out.append(round(cpu() - c, 3))
print(json.dumps(out))
"""


def run(tree: Path, mode: str, path: Path, repeat: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-c", WORKER, mode, str(path), str(repeat)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, check=True)
    result: list[float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    best: dict[tuple[str, str], float] = {}
    for r in range(args.rounds):
        for mode in ("ingest", "scan"):
            for name, tree in (("old", args.old), ("new", args.new)):
                times = run(tree.resolve(), mode, args.file.resolve(), args.repeat)
                key = (name, mode)
                best[key] = min(best.get(key, float("inf")), *times)
                print(f"round {r + 1} {mode:6} {name}: CPU s {times}", flush=True)
    print()
    for mode in ("ingest", "scan"):
        old, new = best[("old", mode)], best[("new", mode)]
        print(f"{mode:6} CPU best: old {old:.2f} s, new {new:.2f} s ({new / old - 1:+.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
