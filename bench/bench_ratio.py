"""`tollwatch scan` as a whole process against polars' bare read of the same file.

Each measurement is a fresh interpreter (cold: imports included), run one after the other and
interleaved (read, scan, read, scan, ...) so that both see the same machine load; the ratio is
taken per round and over the best of each. CPU is user+sys of the child process (all threads),
peak RSS its own ``ru_maxrss`` (``wait4``). The bare read is
``pl.scan_csv(path, has_header=False, infer_schema=False).collect(engine="streaming")``.

    python bench/bench_ratio.py FILE [FILE...] [--repeat 3] [--json out.jsonl]
    python bench/bench_ratio.py FILE --scan-args --baseline base.json
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

READ = (
    "import sys, polars as pl; "
    "df = pl.scan_csv(sys.argv[1], has_header=False, infer_schema=False)"
    ".collect(engine='streaming'); print(df.height)"
)


def _run(cmd: list[str]) -> dict[str, Any]:
    """Run cmd; its own wall time, CPU (user+sys) and peak RSS (wait4: this child only)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in (0, 1):  # scan: 1 means a critical incident
        raise SystemExit(f"{cmd}: exit {proc.returncode}\n{stderr[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "stdout": stdout, "stderr": stderr}


def measure(path: Path, repeat: int, scan_args: list[str]) -> dict[str, Any]:
    read_cmd = [sys.executable, "-c", READ, str(path)]
    scan_cmd = [sys.executable, "-m", "tollwatch", "scan", str(path), "--country", "JP",
                "--tz", "Asia/Tokyo", "-q", "-f", "jsonl", *scan_args]
    _run(read_cmd)  # page cache
    reads: list[dict[str, Any]] = []
    scans: list[dict[str, Any]] = []
    for _ in range(repeat):
        reads.append(_run(read_cmd))
        scans.append(_run(scan_cmd))
        r, s = reads[-1], scans[-1]
        print(f"  read {r['wall']:6.2f} s (cpu {r['cpu']:6.2f}, {r['rss_mb']:5.0f} MB)   "
              f"scan {s['wall']:6.2f} s (cpu {s['cpu']:6.2f}, {s['rss_mb']:5.0f} MB)   "
              f"ratio wall {s['wall'] / r['wall']:.2f}  cpu {s['cpu'] / r['cpu']:.2f}",
              flush=True)
    rows = int(reads[0]["stdout"].strip())
    incidents = [json.loads(x) for x in scans[-1]["stdout"].splitlines() if x.strip()]
    crit = sum(1 for i in incidents if i.get("severity") == "critical")
    best_r = min(x["wall"] for x in reads)
    best_s = min(x["wall"] for x in scans)
    best_rc = min(x["cpu"] for x in reads)
    best_sc = min(x["cpu"] for x in scans)
    return {
        "file": str(path), "rows": rows, "bytes": path.stat().st_size, "repeat": repeat,
        "load_before": os.getloadavg(),
        "read_wall": best_r, "scan_wall": best_s, "ratio_wall": best_s / best_r,
        "read_cpu": best_rc, "scan_cpu": best_sc, "ratio_cpu": best_sc / best_rc,
        "ratio_wall_rounds": [s["wall"] / r["wall"] for r, s in zip(reads, scans, strict=True)],
        "read_rss_mb": max(x["rss_mb"] for x in reads),
        "scan_rss_mb": max(x["rss_mb"] for x in scans),
        "incidents": len(incidents), "critical": crit,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path, help="append each result as a JSON line")
    p.add_argument("--no-compile", action="store_true",
                   help="do not byte-compile the checkout's modules first")
    p.add_argument("--scan-args", nargs=argparse.REMAINDER, default=[],
                   help="extra arguments for tollwatch scan (last)")
    a = p.parse_args(argv)
    if not a.no_compile:
        for package in ("tollwatch", "cdr_ingest", "rules", "alerting", "config"):
            compileall.compile_dir(ROOT / package, quiet=1)
    for path in a.files:
        print(f"{path} (load {os.getloadavg()[0]:.1f}):", flush=True)
        res = measure(path, a.repeat, a.scan_args)
        res["load_after"] = os.getloadavg()
        res["compiled"] = not a.no_compile
        print(f"  {res['rows']:,} rows: best read {res['read_wall']:.2f} s / cpu "
              f"{res['read_cpu']:.2f}; best scan {res['scan_wall']:.2f} s / cpu "
              f"{res['scan_cpu']:.2f}; ratio wall {res['ratio_wall']:.2f}x cpu "
              f"{res['ratio_cpu']:.2f}x; scan peak RSS {res['scan_rss_mb']:.0f} MB; "
              f"{res['incidents']} incidents ({res['critical']} critical)")
        if a.json:
            with a.json.open("a") as fh:
                fh.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
