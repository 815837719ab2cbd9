"""Generate a synthetic Asterisk cdr_csv ``Master.csv`` for benchmarks.

Office PBX of ~300 extensions (200-499) behind one trunk (``PJSIP/carrier``), Japanese dial
plan (national numbers start with ``0``, international prefix ``010``), Asia/Tokyo wall-clock
times, traffic mostly in weekday business hours. 18 columns without a header, quoted exactly as
Asterisk 22 writes them (every string quoted, ``""`` escapes, integers bare, the answer time
of an unanswered call empty and unquoted).

Everything is vectorized (numpy draws, polars string building) and written in chunks, so
10M rows take well under a minute and a few hundred MB of memory.

    python bench/gen_cdr.py --rows 1000000 --out bench/data/master-1000000.csv --attack
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import holidays
import numpy as np
import numpy.typing as npt
import polars as pl

# Call kinds.
INTERNAL, INBOUND, OUT_DOMESTIC, OUT_INTL, ATTACK = 0, 1, 2, 3, 4

EXT_FIRST, EXT_COUNT = 200, 300
START_DAY = datetime(2026, 10, 5)  # a Monday; Asia/Tokyo wall clock
# Unix time of START_DAY in Tokyo (UTC+9, no DST): uniqueids are "<unix time>.<counter>".
START_EPOCH = int((START_DAY - datetime(1970, 1, 1)).total_seconds()) - 9 * 3600
ATTACK_EXT = 377
ATTACK_CALLS = 40
ATTACK_FIRST = 102327654300  # dialed 0102327654300, +232 7654300 (Sierra Leone)
CHUNK_ROWS = 500_000

# Relative call volume by local hour of day (weekdays); weekends and nights are quiet.
HOUR_WEIGHTS = np.array(
    [0.004, 0.003, 0.002, 0.002, 0.002, 0.004, 0.01, 0.05,  # 00-07
     0.35, 1.0, 1.0, 1.0, 0.55, 0.95, 1.0, 1.0,  # 08-15
     0.95, 0.8, 0.45, 0.22, 0.1, 0.05, 0.02, 0.01],  # 16-23
)  # fmt: skip
WEEKEND_FACTOR = 0.04

# Domestic number shapes: (prefix, digits after the prefix, weight).
DOMESTIC = (
    ("03", 8, 0.33),  # Tokyo
    ("06", 8, 0.10),  # Osaka
    ("045", 7, 0.05),  # Yokohama
    ("052", 7, 0.04),  # Nagoya
    ("011", 7, 0.02),  # Sapporo (not an international prefix in Japan)
    ("092", 7, 0.02),  # Fukuoka
    ("090", 8, 0.16),  # mobile
    ("080", 8, 0.12),
    ("070", 8, 0.04),
    ("0120", 6, 0.08),  # toll free
    ("050", 8, 0.04),  # IP phone
)
# International: (dialed prefix after 010, digits after it, weight). US area codes are real
# mainland ones: a random NPA could land on a Caribbean (high-risk) NANP member.
INTERNATIONAL = (
    *((f"1{npa}", 7, 0.03) for npa in (212, 415, 646, 310, 206, 617, 312, 512, 408, 650)),
    ("4420", 8, 0.07),  # UK London
    ("447", 9, 0.07),  # UK mobile
    ("8610", 8, 0.06),  # CN Beijing
    ("8621", 8, 0.06),  # CN Shanghai
    ("861", 10, 0.07),  # CN mobile
    ("822", 8, 0.06),  # KR Seoul
    ("8210", 8, 0.06),  # KR mobile
    ("4930", 8, 0.05),  # DE Berlin
    ("4989", 8, 0.03),  # DE Munich
    ("331", 8, 0.03),  # FR Paris
    ("336", 8, 0.03),  # FR mobile
    ("656", 7, 0.04),  # SG fixed
    ("659", 7, 0.03),  # SG mobile
    ("23276", 6, 0.008),  # Sierra Leone (high risk)
    ("535", 7, 0.008),  # Cuba mobile (high risk)
    ("1876", 7, 0.008),  # Jamaica (high risk)
)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, required=True, help="number of CDR rows")
    p.add_argument("--out", type=Path, required=True, help="output file")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--attack",
        action="store_true",
        help=f"plant {ATTACK_CALLS} calls to Sierra Leone at 3 a.m. on a Sunday",
    )
    p.add_argument(
        "--intl-share",
        type=float,
        default=0.02,
        help="fraction of rows that are international calls (default 0.02)",
    )
    p.add_argument("--days", type=int, default=28, help="span of the traffic (default 28)")
    p.add_argument("--gzip", action="store_true", help="gzip the output (level 6)")
    return p.parse_args(argv)


def _shares(intl: float) -> npt.NDArray[np.float64]:
    """Kind probabilities: internal 45%, inbound 15%, domestic 38%, international 2% by
    default; a different international share is taken from the domestic/internal ones."""
    if not 0.0 <= intl <= 0.9:
        raise SystemExit("--intl-share must be within 0..0.9")
    rest = np.array([0.45, 0.15, 0.38])
    return np.append(rest / rest.sum() * (1.0 - intl), intl)


def _start_times(rng: np.random.Generator, n: int, days: int) -> npt.NDArray[np.int64]:
    """n sorted local wall-clock times in seconds since START_DAY."""
    hours = np.arange(days * 24)
    day = hours // 24
    jp_holidays = holidays.country_holidays("JP")
    closed = np.array(
        [(START_DAY + timedelta(days=int(d))).weekday() >= 5
         or (START_DAY + timedelta(days=int(d))) in jp_holidays for d in range(days)]
    )
    # The office is closed at weekends and on Japanese public holidays.
    weights = HOUR_WEIGHTS[hours % 24] * np.where(closed[day], WEEKEND_FACTOR, 1.0)
    per_hour = rng.multinomial(n, weights / weights.sum())
    secs = np.repeat(hours.astype(np.int64) * 3600, per_hour)
    secs += rng.integers(0, 3600, n)
    secs.sort()
    return secs


def _digits(rng: np.random.Generator, n: int, k: int) -> pl.Series:
    return pl.Series(rng.integers(0, 10**k, n, dtype=np.int64)).cast(pl.String).str.zfill(k)


def _pool(
    rng: np.random.Generator, size: int, shapes: Sequence[tuple[str, int, float]]
) -> pl.Series:
    """size distinct-ish numbers drawn from the shapes, in random order (the Zipf rank)."""
    w = np.array([s[2] for s in shapes])
    counts = rng.multinomial(size, w / w.sum())
    parts = [
        prefix + _digits(rng, int(c), k)
        for (prefix, k, _), c in zip(shapes, counts, strict=True)
        if c
    ]
    numbers = pl.concat(parts).unique(maintain_order=True)
    return numbers.sample(fraction=1.0, shuffle=True, seed=int(rng.integers(2**31)))


def _zipf(rng: np.random.Generator, n: int, size: int, s: float = 1.05) -> npt.NDArray[np.int64]:
    """n indices in [0, size) with P(rank r) proportional to 1 / (r + 1)**s."""
    cdf = np.cumsum(1.0 / np.arange(1, size + 1) ** s)
    idx: npt.NDArray[np.int64] = np.searchsorted(cdf, rng.random(n) * cdf[-1]).astype(np.int64)
    return idx


def _stamp(col: str) -> pl.Expr:
    return (pl.lit(START_DAY) + pl.duration(seconds=pl.col(col))).dt.strftime("%Y-%m-%d %H:%M:%S")


def _q(e: pl.Expr) -> pl.Expr:
    """A quoted CSV field (the strings built here never contain a quote themselves)."""
    return pl.lit('"') + e + pl.lit('"')


def _chunk(
    rng: np.random.Generator,
    starts: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.int8],
    first_row: int,
    attack_rank: npt.NDArray[np.int64],
    dom_pool: pl.Series,
    intl_pool: pl.Series,
    ext_p: npt.NDArray[np.float64],
) -> pl.DataFrame:
    """One chunk of rows as a single-column frame of finished CSV lines."""
    n = len(starts)
    exts = np.arange(EXT_FIRST, EXT_FIRST + EXT_COUNT)
    caller = rng.choice(exts, n, p=ext_p)
    callee = rng.choice(exts, n)
    callee = np.where(callee == caller, EXT_FIRST + (callee - EXT_FIRST + 1) % EXT_COUNT, callee)
    caller = np.where(kinds == ATTACK, ATTACK_EXT, caller)
    dom_idx = _zipf(rng, n, len(dom_pool))
    intl_idx = _zipf(rng, n, len(intl_pool))

    # Dispositions: ~15% NO ANSWER, ~5% BUSY, the rest answered (the attack is answered).
    u = rng.random(n)
    disp = np.where(u < 0.15, 1, np.where(u < 0.20, 2, 0))
    disp = np.where(kinds == ATTACK, 0, disp)
    # Log-normal talk time; medians: internal 50 s, domestic 110 s, international 200 s.
    median = np.choose(kinds, [50.0, 120.0, 110.0, 200.0, 40.0])
    billsec = np.clip(np.rint(median * rng.lognormal(0.0, 1.0, n)), 1, 4 * 3600).astype(np.int64)
    ring = rng.integers(2, 16, n)
    ring = np.where(disp == 1, np.where(kinds <= INBOUND, 30, 60), ring)  # Dial timeout
    ring = np.where(disp == 2, rng.integers(0, 3, n), ring)
    ring = np.where(kinds == ATTACK, 0, ring)
    billsec = np.where(disp == 0, billsec, 0)

    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    df = pl.DataFrame(
        {
            "kind": kinds,
            "start": starts,
            "answer": starts + ring,
            "end": starts + ring + billsec,
            "duration": ring + billsec,
            "billsec": billsec,
            "disp": disp.astype(np.int8),
            "caller": caller,
            "callee": callee,
            "chan": 2 * rows + 10,
            "dom": dom_pool.gather(dom_idx),
            "intl": intl_pool.gather(intl_idx),
            "attack": attack_rank,
        }
    )
    kind = pl.col("kind")
    caller_s = pl.col("caller").cast(pl.String)
    callee_s = pl.col("callee").cast(pl.String)
    attack_dst = (pl.col("attack") + ATTACK_FIRST).cast(pl.String)
    dst = (
        pl.when(kind == INTERNAL).then(callee_s)
        .when(kind == INBOUND).then(callee_s)
        .when(kind == OUT_DOMESTIC).then(pl.col("dom"))
        .when(kind == OUT_INTL).then(pl.lit("010") + pl.col("intl"))
        .otherwise(pl.lit("0") + attack_dst)
    )  # fmt: skip
    inbound = kind == INBOUND
    src = pl.when(inbound).then(pl.col("dom")).otherwise(caller_s)
    clid_name = pl.when(inbound).then(pl.col("dom")).otherwise(pl.lit("Desk ") + caller_s)
    clid = pl.lit('"""') + clid_name + pl.lit('"" <') + src + pl.lit('>"')
    chan_a = pl.col("chan").cast(pl.UInt32).map_batches(_hex8, return_dtype=pl.String)
    chan_b = (pl.col("chan") + 1).cast(pl.UInt32).map_batches(_hex8, return_dtype=pl.String)
    to_phone = kind <= INBOUND
    channel = (
        pl.when(inbound).then(pl.lit("PJSIP/carrier-")).otherwise(pl.lit("PJSIP/") + caller_s + "-")
        + chan_a
    )
    dstchannel = (
        pl.when(to_phone)
        .then(pl.lit("PJSIP/") + callee_s + "-")
        .otherwise(pl.lit("PJSIP/carrier-"))
        + chan_b
    )
    lastdata = (
        pl.when(to_phone).then(pl.lit("PJSIP/") + callee_s + pl.lit(",30"))
        .otherwise(pl.lit("PJSIP/") + dst + pl.lit("@carrier,60"))
    )  # fmt: skip
    dcontext = pl.when(inbound).then(pl.lit("from-trunk")).otherwise(pl.lit("from-internal"))
    disposition = (
        pl.when(pl.col("disp") == 0).then(pl.lit("ANSWERED"))
        .when(pl.col("disp") == 1).then(pl.lit("NO ANSWER"))
        .otherwise(pl.lit("BUSY"))
    )  # fmt: skip
    answer = pl.when(pl.col("disp") == 0).then(_q(_stamp("answer"))).otherwise(pl.lit(""))
    uniqueid = (
        (pl.col("start") + START_EPOCH).cast(pl.String)
        + pl.lit(".")
        + pl.col("chan").cast(pl.String)
    )
    line = pl.concat_str(
        [
            pl.lit('"acme"'),
            _q(src),
            _q(dst),
            _q(dcontext),
            clid,
            _q(channel),
            _q(dstchannel),
            pl.lit('"Dial"'),
            _q(lastdata),
            _q(_stamp("start")),
            answer,
            _q(_stamp("end")),
            pl.col("duration").cast(pl.String),
            pl.col("billsec").cast(pl.String),
            _q(disposition),
            pl.lit('"DOCUMENTATION"'),
            _q(uniqueid),
            pl.lit('""'),
        ],
        separator=",",
    )
    return df.select(line.alias("line"))


def _hex8(s: pl.Series) -> pl.Series:
    """Asterisk channel suffixes: 8 lower-case hex digits."""
    values = s.to_numpy().astype(np.uint32)
    nibbles = (values[:, None] >> np.arange(28, -4, -4, dtype=np.uint32)) & 0xF
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    return pl.Series(chars.view("S8").ravel()).cast(pl.String)


def generate(
    rows: int,
    out: Path,
    seed: int = 1,
    attack: bool = False,
    intl_share: float = 0.02,
    days: int = 28,
    compress: bool = False,
) -> dict[str, Any]:
    """Write the file; return a summary (rows by kind, attack time)."""
    rng = np.random.default_rng(seed)
    n_attack = ATTACK_CALLS if attack else 0
    normal = rows - n_attack
    if normal < 0:
        raise SystemExit(f"--rows must be at least {n_attack}")
    starts = _start_times(rng, normal, days)
    kinds = rng.choice(np.arange(4, dtype=np.int8), normal, p=_shares(intl_share))
    attack_rank = np.full(normal, -1, dtype=np.int64)
    attack_at: datetime | None = None
    if attack:
        # 03:00 local on the first Sunday of the span, 2 calls a second.
        sunday = (6 - START_DAY.weekday()) % 7
        t0 = sunday * 86400 + 3 * 3600
        attack_at = START_DAY + timedelta(seconds=t0)
        a_starts = t0 + np.arange(n_attack, dtype=np.int64) // 2
        pos = np.searchsorted(starts, a_starts, side="right")
        starts = np.insert(starts, pos, a_starts)
        kinds = np.insert(kinds, pos, np.int8(ATTACK))
        attack_rank = np.insert(attack_rank, pos, np.arange(n_attack, dtype=np.int64))

    pool = max(2000, rows // 20)  # ~5% of rows distinct destination numbers
    intl_pool_size = max(300, int(pool * intl_share / (intl_share + 0.53)))
    dom_pool = _pool(rng, pool - intl_pool_size, DOMESTIC)
    intl_pool = _pool(rng, intl_pool_size, INTERNATIONAL)
    ext_w = rng.lognormal(0.0, 0.8, EXT_COUNT)
    ext_w[ATTACK_EXT - EXT_FIRST] = ext_w.min()  # a quiet phone (a lobby phone, say)
    ext_p = ext_w / ext_w.sum()

    out.parent.mkdir(parents=True, exist_ok=True)
    opened = cast(IO[bytes], gzip.open(out, "wb", 6) if compress else out.open("wb"))  # noqa: SIM115
    with opened as f:
        for lo in range(0, rows, CHUNK_ROWS):
            hi = min(rows, lo + CHUNK_ROWS)
            frame = _chunk(
                rng, starts[lo:hi], kinds[lo:hi], lo, attack_rank[lo:hi],
                dom_pool, intl_pool, ext_p,
            )  # fmt: skip
            frame.write_csv(f, include_header=False, quote_style="never")
    counts = np.bincount(kinds, minlength=5)
    names = ("internal", "inbound", "outbound_domestic", "outbound_international", "attack")
    return {
        "rows": rows,
        "by_kind": {k: int(c) for k, c in zip(names, counts, strict=True)},
        "distinct_domestic": len(dom_pool),
        "distinct_international": len(intl_pool),
        "attack_at": attack_at.isoformat() if attack_at else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    t0 = time.perf_counter()
    summary = generate(
        args.rows, args.out, args.seed, args.attack, args.intl_share, args.days, args.gzip
    )
    secs = time.perf_counter() - t0
    size = args.out.stat().st_size / 1e6
    print(f"{args.out}: {args.rows:,} rows, {size:,.0f} MB in {secs:.1f} s; {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
