"""Benchmark fleet scans: every PBX one after another in one process vs a Dask LocalCluster.

The fleet is gen_fleet.py's ``cdr`` kind (gen_cdr.py's Japanese office, every tenth PBX with
the planted attack), generated under bench/data/fleet-<pbxes>x<rows>/ if missing. Each mode
runs in a fresh interpreter, so its peak RSS is its own:

* ``sequential``: ``run_fleet(fleet, workers=0)``: the same tasks, in this process, no Dask;
* ``dask``: ``tollwatch.fleet_exec.local_cluster(N)`` (N worker processes, one task at a time
  each, polars with CPUs // N threads each, as ``scan --fleet --workers N``), then ``run_fleet``;
  peak memory per worker is read in each worker (``ru_maxrss``, and the peak ``RssAnon``
  sampled every 50 ms by a thread started in the worker before the scan).

Both record wall time, rows/s, incidents, and the 1-minute load average before and after
(the machine is shared). Results: a table on stdout and bench/results/fleet-<pbxes>x<rows>.json.

    python bench/bench_fleet.py --pbxes 100 --rows 200000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_scan import AnonSampler  # noqa: E402


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _summary(result: Any, seconds: float) -> dict[str, Any]:
    incidents = [i for s in result.scans.values() for i in s.incidents]
    return {
        "seconds": round(seconds, 2),
        "pbxes_scanned": len(result.scans),
        "failed": result.failed,
        "rows": result.rows,
        "rows_per_s": round(result.rows / seconds),
        "incidents": len(incidents),
        "critical": sum(1 for i in incidents if i.severity.label == "critical"),
        "per_pbx_scan_s_mean": round(
            sum(s.stats.seconds for s in result.scans.values()) / max(1, len(result.scans)), 3),
    }


def _start_sampler(dask_worker: Any) -> None:
    sampler = AnonSampler(interval=0.05)
    sampler.__enter__()
    dask_worker._tollwatch_sampler = sampler


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _read_sampler(dask_worker: Any) -> dict[str, float]:
    sampler = dask_worker._tollwatch_sampler
    sampler.__exit__()
    return {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
        "peak_anon_mb": round(sampler.peak_kb / 1024.0),
        "cpu_s": round(_cpu_seconds(), 1),
    }


def measure(mode: str, fleet_path: Path, workers: int) -> dict[str, Any]:
    """One mode in this process."""
    from tollwatch.config.fleet import load_fleet
    from tollwatch.fleet_scan import run_fleet
    from tollwatch.rules.base import check_rules

    fleet = load_fleet(fleet_path, rule_checks=check_rules)
    out: dict[str, Any] = {"mode": mode, "load_before": _load()}
    if mode == "sequential":
        with AnonSampler() as anon:
            cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            result = run_fleet(fleet, workers=0)
            secs = time.perf_counter() - t0
            out["cpu_s"] = round(_cpu_seconds() - cpu0, 1)
        out.update(_summary(result, secs))
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        out["peak_anon_mb"] = round(anon.peak_kb / 1024.0)
    else:
        from distributed import Client

        from tollwatch.fleet_exec import local_cluster

        t_cluster = time.perf_counter()
        with local_cluster(workers) as cluster, Client(cluster) as client:
            client.run(_start_sampler)
            out["cluster_start_s"] = round(time.perf_counter() - t_cluster, 2)
            t0 = time.perf_counter()
            result = run_fleet(fleet, scheduler=cluster.scheduler_address)
            secs = time.perf_counter() - t0
            out.update(_summary(result, secs))
            out["workers"] = list(client.run(_read_sampler).values())
            out["cpu_s"] = round(sum(w["cpu_s"] for w in out["workers"]), 1)
        out["seconds_with_cluster_start"] = round(time.perf_counter() - t_cluster, 2)
    out["load_after"] = _load()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pbxes", type=int, default=100)
    ap.add_argument("--rows", type=int, default=200_000, help="rows per PBX")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="sequential,dask")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the modes this many times, alternating (load drifts)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one mode, JSON on stdout
    ap.add_argument("--fleet", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.measure:
        print(json.dumps(measure(a.measure, a.fleet, a.workers)))
        return 0
    import gen_fleet

    root = HERE / "data" / f"fleet-{a.pbxes}x{a.rows}"
    t0 = time.perf_counter()
    fleet_path = gen_fleet.generate_cdr_fleet(root, a.pbxes, a.rows)
    print(f"fleet {fleet_path} ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for f in root.glob("*/Master.csv"):  # warm the page cache like bench_scan.py
        f.read_bytes()
    runs = []
    env = {**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{HERE}"}
    for mode in a.modes.split(",") * a.repeat:
        print(f"measuring {mode} ...", file=sys.stderr)
        proc = subprocess.run(
            [sys.executable, __file__, "--measure", mode, "--fleet", str(fleet_path),
             "--workers", str(a.workers)], capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), file=sys.stderr)
    seqs = [r for r in runs if r["mode"] == "sequential"]
    best_seq = min((r["seconds"] for r in seqs), default=None)
    for r in runs:
        if best_seq is not None and r["mode"] != "sequential":
            r["speedup"] = round(best_seq / r["seconds"], 2)
            r["speedup_with_cluster_start"] = round(
                best_seq / r["seconds_with_cluster_start"], 2)
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "pbxes": a.pbxes, "rows_per_pbx": a.rows, "workers": a.workers, "runs": runs,
    }
    out = HERE / "results" / f"fleet-{a.pbxes}x{a.rows}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print("| mode | s | rows/s | speedup | CPU s | peak memory | load 1m before/after |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        if r["mode"] == "sequential":
            mem = f"{r['peak_rss_mb']} MB RSS ({r['peak_anon_mb']} MB anon)"
        else:
            mem = "; ".join(f"{w['peak_rss_mb']} MB RSS ({w['peak_anon_mb']} MB anon)"
                            for w in r["workers"])
        print(f"| {r['mode']} | {r['seconds']} | {r['rows_per_s']:,} | "
              f"{r.get('speedup', '-')} | {r['cpu_s']} | {mem} | "
              f"{r['load_before']}/{r['load_after']} |")
    print(f"results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
