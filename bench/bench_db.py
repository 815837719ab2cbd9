"""Benchmark `tollwatch scan --db` on MariaDB and PostgreSQL against polars alone reading the table.

Loads a generated Master.csv (bench/gen_cdr.py, with the planted attack) into a fresh database on
each local server: the FreePBX `asteriskcdrdb.cdr` schema on MariaDB (LOAD DATA), cdr_pgsql's
schema on PostgreSQL (COPY; calldate with time zone, written in Asia/Tokyo). Then, each in a
fresh interpreter (its own peak RSS):

* ``floor``: ``pl.read_database_uri("SELECT <the columns scan reads> FROM cdr",
  engine="connectorx")``: polars reading the table at all, in one query, into memory;
* ``scan``: ``tollwatch.scan.run_scan(database=...)``: the period read window by window,
  typed, classified, the rules replayed (country JP, Asia/Tokyo).

    python bench/bench_db.py --rows 5000000          # both servers; databases dropped after
    python bench/bench_db.py --rows 1000000 --keep   # keep tw_bench_<rows> for another run

Results: a table on stdout and bench/results/db-<rows>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_scan import AnonSampler, _attack_summary, _peak_rss_mb, machine  # noqa: E402

URLS = {
    "mariadb": "mysql://root@127.0.0.1:3306/{db}",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/{db}",
}
COLUMNS = ("calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp, lastdata, duration,"
           " billsec, disposition, accountcode, uniqueid, userfield, linkedid, sequence")
CSV_COLS = ("accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata, "
            "@start, @answer, @end, duration, billsec, disposition, @ama, uniqueid, userfield")


def _sh(cmd: list[str], stdin: str | None = None) -> None:
    subprocess.run(cmd, input=stdin, text=True, check=True, capture_output=True)


def load(kind: str, db: str, csv: Path) -> float:
    t0 = time.perf_counter()
    if kind == "mariadb":
        my = ["mysql", "-uroot", "-h127.0.0.1", "--local-infile=1"]
        _sh([*my, "-e", f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"])
        schema = (ROOT / "tests/sql/freepbx-cdr.mysql.sql").read_text()
        _sh([*my, db], schema)
        _sh([*my, db, "-e",
             f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE cdr FIELDS TERMINATED BY ',' "
             f"OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n' ({CSV_COLS}) "
             "SET calldate = @start, linkedid = uniqueid"])
    else:
        pg = ["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h127.0.0.1", "-Upostgres"]
        _sh([*pg, "-c", f"DROP DATABASE IF EXISTS {db}"])
        _sh([*pg, "-c", f"CREATE DATABASE {db}"])
        script = f"""
\\i {ROOT / 'tests/sql/cdr_pgsql.sql'}
CREATE UNLOGGED TABLE stage (accountcode text, src text, dst text, dcontext text, clid text,
  channel text, dstchannel text, lastapp text, lastdata text, start text, answer text,
  "end" text, duration text, billsec text, disposition text, amaflags text, uniqueid text,
  userfield text);
\\copy stage from '{csv}' with (format csv)
SET TIME ZONE 'Asia/Tokyo';
INSERT INTO cdr ({COLUMNS}) SELECT start::timestamp, clid, src, dst, dcontext, channel,
  dstchannel, lastapp, lastdata, duration::bigint, billsec::bigint, disposition, accountcode,
  uniqueid, userfield, uniqueid, 0 FROM stage;
DROP TABLE stage;
VACUUM ANALYZE cdr;
"""
        _sh([*pg, db], script)
    return time.perf_counter() - t0


def worker(mode: str, url: str) -> dict[str, Any]:
    import polars as pl

    out: dict[str, Any] = {"mode": mode}
    with AnonSampler() as anon:
        if mode == "floor":
            t0 = time.perf_counter()
            df = pl.read_database_uri(f"SELECT {COLUMNS} FROM cdr", url, engine="connectorx")
            out["seconds"] = time.perf_counter() - t0
            out["rows"] = df.height
        else:
            from tests.helpers import settings
            from tollwatch.cdr_ingest.database import CdrDatabase

            s = settings("JP", "Asia/Tokyo")
            db = CdrDatabase.open(url, "cdr")
            from tollwatch.scan import run_scan

            t0 = time.perf_counter()
            result = run_scan([], s, database=db)
            out["seconds"] = time.perf_counter() - t0
            st = result.stats
            out.update(rows=st.rows, outbound=st.outbound, skipped=st.skipped,
                       calls_scored=st.calls_scored, incidents=len(result.incidents),
                       attack=_attack_summary(result.incidents))
    out["peak_rss_mb"] = _peak_rss_mb()
    out["peak_anon_mb"] = anon.peak_kb / 1024.0
    return out


def measure(mode: str, url: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} {url} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    ap.add_argument("--servers", default="mariadb,postgresql")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    csv = HERE / "data" / f"master-{args.rows}.csv"
    if not csv.exists():
        csv.parent.mkdir(parents=True, exist_ok=True)
        _sh([sys.executable, str(HERE / "gen_cdr.py"), "--rows", str(args.rows), "--out",
             str(csv), "--attack"])
    db = f"tw_bench_{args.rows}"
    results: dict[str, Any] = {"rows": args.rows, "machine": machine(), "servers": {}}
    for kind in args.servers.split(","):
        url = URLS[kind].format(db=db)
        entry: dict[str, Any] = {"load_seconds": round(load(kind, db, csv), 1)}
        for mode in ("floor", "scan", "floor", "scan"):  # second round: warm server cache
            entry[mode] = measure(mode, url)
        entry["ratio"] = round(entry["scan"]["seconds"] / entry["floor"]["seconds"], 2)
        results["servers"][kind] = entry
        f, s = entry["floor"], entry["scan"]
        print(f"{kind:10} rows {s['rows']:>9}  floor {f['seconds']:6.1f}s "
              f"{f['peak_rss_mb']:6.0f} MB   scan {s['seconds']:6.1f}s {s['peak_rss_mb']:6.0f} MB"
              f"  ratio {entry['ratio']}  attack {s['attack']}", flush=True)
        if not args.keep:
            if kind == "mariadb":
                _sh(["mysql", "-uroot", "-h127.0.0.1", "-e", f"DROP DATABASE {db}"])
            else:
                _sh(["psql", "-q", "-h127.0.0.1", "-Upostgres", "-c", f"DROP DATABASE {db}"])
    out = HERE / "results" / f"db-{args.rows}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
