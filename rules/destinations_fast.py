"""`Classifier.expressions` over plain numbers, vectorized with numpy on the strings' bytes.

A CDR's dialed strings are nearly all plain numbers: ASCII digits, maybe one leading "+". For
those, every step of the polars plan (strip the access code, add the country code, find the
longest prefix in the merged table, the class `when` chain) is a comparison of a few leading
bytes, done here on a matrix of each number's first bytes (8 bytes compared at once as one
64-bit word); the longest-prefix lookups become one `searchsorted` over the prefix tables cut
into non-overlapping code intervals (a number's first digits read as a base-11 integer, 0
standing for "no more digits", so a short number never matches a longer prefix). Every other
string (spaces, dashes, letters, *#, Unicode, empty, null) takes the polars plan itself. Same
tables, same order of branches; tests/test_destinations_fast.py holds the result to the
polars plan, column by column.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

if TYPE_CHECKING:
    from tollwatch.rules.destinations import Classifier

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]

_LOCAL_MIN = 7  # as destinations._LOCAL_MIN
_MAX_KEY = 17  # 11**17 < 2**63: longer table keys (never from parse_prefix) disable this path
_CLASSES = ["unknown", "emergency", "service", "domestic", "international", "internal"]
_UNKNOWN, _EMERGENCY, _DOMESTIC, _INTERNATIONAL = 0, 1, 3, 4


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _code(prefix: str, width: int) -> int:
    value = 0
    for i in range(width):
        value = value * 11 + (ord(prefix[i]) - 47 if i < len(prefix) else 0)
    return value


class _Intervals:
    """Longest-prefix lookup in several prefix tables at once, over base-11 codes."""

    def __init__(self, tables: list[dict[str, int]], width: int) -> None:
        spans = [
            (len(key), lo, lo + 11 ** (width - len(key)), t, value)
            for t, table in enumerate(tables)
            for key, value in table.items()
            for lo in [_code(key, width)]
        ]
        bounds = sorted({0} | {s[1] for s in spans} | {s[2] for s in spans})
        values = [[-1] * len(bounds) for _ in tables]
        for _, lo, hi, t, value in sorted(spans):  # shorter first: longer prefixes overwrite
            for i in range(bisect_left(bounds, lo), bisect_left(bounds, hi)):
                values[t][i] = value
        self.bounds = np.array(bounds, dtype=np.int64)
        self.values = [np.array(v, dtype=np.int64) for v in values]

    def __call__(self, codes: Ints) -> list[Ints]:
        at = np.searchsorted(self.bounds, codes, side="right") - 1
        return [v[at] for v in self.values]


def _strings(series: pl.Series, pad: int) -> tuple[Bytes, Ints, Ints, Bools]:
    """(bytes, start, length, null): row i is bytes[start[i]:start[i]+length[i]]; `pad` zero
    bytes end `bytes`, so any row can be read `pad` bytes past its start."""
    series = series.rechunk()
    arr: Any = series.to_arrow(compat_level=pl.CompatLevel.newest())
    n = len(arr)
    null = series.is_null().to_numpy()
    zeros = np.zeros(pad, dtype=np.uint8)
    if _is_view(arr):  # 16 bytes a row: length, then the string (<= 12 bytes) or where it is
        bufs = arr.buffers()
        views = np.frombuffer(bufs[1], dtype=np.uint8)[arr.offset * 16 : (arr.offset + n) * 16]
        data = [np.zeros(0, dtype=np.uint8) if b is None else np.frombuffer(b, dtype=np.uint8)
                for b in bufs[2:]]  # kept in place: views name their buffer by position
        flat = np.concatenate([views, *data, zeros])
        fields = views.view(np.int32).reshape(n, 4)
        length = np.where(null, 0, fields[:, 0]).astype(np.int64)
        start = np.arange(n, dtype=np.int64) * 16 + 4
        far = length > 12
        if far.any():
            base = np.cumsum([views.size] + [d.size for d in data], dtype=np.int64)
            at = np.where(far, fields[:, 2], 0)
            start = np.where(far, base[at] + fields[:, 3], start)
    else:
        arr = series.to_arrow()  # large_string (pyarrow, polars without string views)
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
        data = [np.frombuffer(bufs[2], dtype=np.uint8)] if bufs[2] is not None else []
        flat = np.concatenate([*data, zeros])
        start, length = offsets[:-1].astype(np.int64), np.where(null, 0, np.diff(offsets))
    return flat, start, length, null


def _is_view(arr: Any) -> bool:
    return str(arr.type) == "string_view"


_LOW = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_HIGH = np.uint64(0xF0F0F0F0F0F0F0F0)
_DIGIT_HIGH = np.uint64(0x3030303030303030)
_SIX = np.uint64(0x0606060606060606)
_CARRY = np.uint64(0x1010101010101010)


def _digits(series: pl.Series, words: int) -> tuple[Bytes, Ints, Bools, Bools]:
    """(the first 8*words digits of each plain number, 0 past its end; how many digits; its
    "+"; which rows are plain numbers: ASCII digits, at most one leading "+", one digit or
    more). Read 8 bytes at a time: every 8-byte window of the strings as one 64-bit word."""
    flat, start, length, null = _strings(series, 8 * words + 8)
    window = np.ndarray(shape=(flat.size - 7,), dtype="<u8", buffer=flat, strides=(1,))
    plus = (length > 0) & (flat[start] == ord("+"))
    dstart, dlen = start + plus, length - plus
    out = np.empty((start.size, words), dtype=np.uint64)
    plain = ~null & (dlen >= 1)
    for k in range(words):
        valid = _LOW[np.clip(dlen - 8 * k, 0, 8)]
        w = window[dstart + 8 * k] & valid
        out[:, k] = w
        plain &= ((w & _HIGH) == (_DIGIT_HIGH & valid)) & ((((w & _NIBBLES) + _SIX) & _CARRY) == 0)
    longer = np.flatnonzero(plain & (dlen > 8 * words))
    if longer.size:  # digits past the words: the regex on those rows ([0-9] is ASCII only)
        rest = series.gather(longer).str.contains(r"^\+?[0-9]+$").to_numpy()
        plain[longer] = rest
    return out.view(np.uint8), dlen, plus, plain


def _present(values: Ints) -> list[int]:
    """The distinct values >= 0 of small non-negative integers (no sort)."""
    counts = np.bincount(values[values >= 0]) if values.size else np.zeros(0, dtype=np.int64)
    return [int(v) for v in np.flatnonzero(counts)]


class _Digits:
    """Plain numbers' digits (the "+" dropped), as bytes and as 64-bit words."""

    def __init__(self, mat: Bytes, length: Ints) -> None:
        self.mat = np.ascontiguousarray(mat)
        self.words = self.mat.view(np.uint64)
        self.length = length
        self.width = mat.shape[1]

    def starts(self, at: int, prefix: str) -> Bools:
        """Whether the digits from position `at` start with `prefix`."""
        rows = self.mat.shape[0]
        if not prefix:
            return np.ones(rows, dtype=np.bool_)
        if not _is_digits(prefix) or at + len(prefix) > self.width:
            return np.zeros(rows, dtype=np.bool_)
        mask, want = np.zeros(self.width, np.uint8), np.zeros(self.width, np.uint8)
        mask[at : at + len(prefix)] = 0xFF
        want[at : at + len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
        masks, wants = mask.view(np.uint64), want.view(np.uint64)
        out: Bools | None = None
        for w in np.flatnonzero(masks):
            hit = (self.words[:, w] & masks[w]) == wants[w]
            out = hit if out is None else out & hit
        assert out is not None
        return out

    def equals(self, at: int, text: str) -> Bools:
        """Whether the digits from position `at` are `text`."""
        return np.asarray((self.length - at == len(text)) & self.starts(at, text), np.bool_)

    def code(self, at: int, count: int) -> Ints:
        """Digits at..at+count-1 as a base-11 number (digit d -> d + 1, none -> 0)."""
        out = np.zeros(self.mat.shape[0], dtype=np.int64)
        for col in self.mat.T[at : at + count]:
            out = out * 11 + np.where(col > 0, col.astype(np.int64) - 47, 0)
        return out


class FastPlan:
    """The classifier's plan for plain numbers. Build once per Classifier."""

    def __init__(self, c: Classifier) -> None:
        self.c = c
        keys = list(c._ids)
        self.usable = all(_is_digits(k) and len(k) <= _MAX_KEY for k in keys)
        self.key_width = max([len(k) for k in keys] + [3])
        self.codes = sorted(c._codes)
        code_ids = {code: i for i, code in enumerate(self.codes) if _is_digits(code)}
        self.lookup = _Intervals([c._ids, code_ids], self.key_width)
        regions = sorted({r for r in c._attr["region"].values() if r is not None} | {c.country})
        self.regions = regions
        where = {r: i for i, r in enumerate(regions)}
        size = max(c._ids.values(), default=-1) + 2  # the last slot: no entry (-1)
        self.region_of = np.full(size, -1, dtype=np.int64)
        self.risks = sorted({r for r in c._attr["risk"].values() if r is not None})
        risk_at = {r: i for i, r in enumerate(self.risks)}
        self.risk_of = np.full(size, -1, dtype=np.int64)
        self.allow_of = np.zeros(size, dtype=np.bool_)
        self.rate_of = np.full(size, np.nan, dtype=np.float64)
        self.has_rate = np.zeros(size, dtype=np.bool_)
        for i in c._ids.values():
            region, risk = c._attr["region"].get(i), c._attr["risk"].get(i)
            self.region_of[i] = -1 if region is None else where[region]
            self.risk_of[i] = -1 if risk is None else risk_at[risk]
            self.allow_of[i] = bool(c._attr["allow"].get(i, False))
            rate = c._attr["rate"].get(i)
            if rate is not None:
                self.rate_of[i], self.has_rate[i] = float(rate), True
        self.domestic = np.array([r in c.domestic for r in regions] + [False], dtype=np.bool_)
        self.country_at = where[c.country]
        self.emergency = [e for e in c.emergency if _is_digits(e)]
        ac = self.ac_len = max([len(a) for a in c.access_codes] + [0])
        self._cuts = sorted({0} | {len(a) for a in c.access_codes})  # what _candidate cuts
        lead = max([len(p) for p in c.intl_prefixes] + [len(c.national_prefix), 0])
        need = ac + lead + max([self.key_width] + [len(e) for e in self.emergency])
        self.width = -(-need // 8) * 8  # whole 64-bit words

    # ---- the steps, on the plain rows ---------------------------------------------------
    def _strong(self, d: _Digits, at: int) -> Bools:
        out = np.zeros(d.mat.shape[0], dtype=np.bool_)
        for ip in self.c.intl_prefixes:
            out |= d.starts(at, ip)
        if self.c.national_prefix:
            out |= d.starts(at, self.c.national_prefix)
        return out

    def _candidate(self, d: _Digits, plus: Bools) -> Ints:
        """How many leading digits the access code takes (0: none)."""
        cut = np.zeros(d.mat.shape[0], dtype=np.int64)
        acs = self.c.access_codes
        if not acs:
            return cut
        open_ = ~plus
        for code, lead in self.c.code_leads:
            hit = open_ & d.starts(0, code + lead)
            cut[hit], open_ = len(code), open_ & ~hit
        open_ &= ~self._strong(d, 0)
        for ac in acs:
            hit = open_ & d.starts(0, ac) & (d.length - len(ac) >= _LOCAL_MIN)
            cut[hit], open_ = len(ac), open_ & ~hit
        return cut

    def _by_cut(self, cut: Ints, test: Any) -> Bools:
        """test(k) for the candidate (the digits from k on), on the rows whose cut is k."""
        out = np.zeros(cut.size, dtype=np.bool_)
        for k in self._cuts:
            out |= (cut == k) & test(k)
        return out

    def _emergency(self, d: _Digits, cut: Ints, plus: Bools) -> Bools:
        """Only numbers no longer than an access code and an emergency number can be one."""
        out = np.zeros(d.mat.shape[0], dtype=np.bool_)
        most = max((len(e) for e in self.emergency), default=0) + self.ac_len
        rows = np.flatnonzero(~plus & (d.length <= most) & bool(self.emergency))
        if rows.size == 0:
            return out
        sub, cut = _Digits(d.mat[rows], d.length[rows]), cut[rows]
        hit = np.zeros(rows.size, dtype=np.bool_)
        for e in self.emergency:
            hit |= sub.equals(0, e) | self._by_cut(cut, lambda k, e=e: sub.equals(k, e))
            for ac in self.c.access_codes:
                hit |= sub.starts(0, ac) & sub.equals(len(ac), e)
        out[rows] = hit
        return out

    def _e164(self, d: _Digits, cut: Ints, clen: Ints, plus: Bools,
              short: Bools) -> tuple[Bools, Ints, Ints]:
        """(has an E.164 number, digits of the candidate it drops, its lead: 0 none, 1 the
        country code, 2 "1")."""
        c = self.c
        drop = np.zeros(cut.size, dtype=np.int64)
        lead = np.zeros(cut.size, dtype=np.int64)
        open_ = ~short & ~plus
        for ip in c.intl_prefixes:
            hit = open_ & self._by_cut(cut, lambda k, ip=ip: d.starts(k, ip))
            drop[hit], open_ = len(ip), open_ & ~hit
        np_ = c.national_prefix
        if np_:
            hit = open_ & self._by_cut(cut, lambda k: d.starts(k, np_))
            drop[hit], lead[hit] = len(np_), 1
        else:
            hit = open_ & (clen >= _LOCAL_MIN)
            lead[hit] = 1
        open_ &= ~hit
        if c.cc == "1":
            hit = open_ & (clen == 10)
            lead[hit], open_ = 2, open_ & ~hit
        return ~short & ~open_, drop, lead

    def _codes(self, d: _Digits, skip: Ints, lead: Ints, has: Bools) -> Ints:
        """Base-11 code of each E.164 number's first key_width digits: its lead, then the
        digits from `skip` on."""
        width = self.key_width
        leads = ["", self.c.cc, "1"]
        code = np.zeros(skip.size, dtype=np.int64)
        for key in _present(np.where(has, skip * 3 + lead, -1)):
            at, which = divmod(key, 3)
            text = leads[which][:width]
            rows = np.flatnonzero(has & (skip == at) & (lead == which))
            sub = _Digits(d.mat[rows], d.length[rows])
            code[rows] = _code(text, width) + sub.code(at, width - len(text))
        return code

    def _short_kinds(self, series: pl.Series, rows: Ints, cut: Ints) -> Ints:
        if rows.size == 0:
            return np.zeros(0, dtype=np.int64)
        cands = pl.DataFrame({"v": series.gather(rows), "o": cut}).select(
            pl.col("v").str.slice(pl.col("o"))
        ).to_series()
        kinds = self.c._short_kind(cands).to_list()
        return np.array([_CLASSES.index(k) if k in _CLASSES else _UNKNOWN for k in kinds],
                        dtype=np.int64)

    # ---- the whole plan -----------------------------------------------------------------
    def columns(self, series: pl.Series) -> tuple[Bools, dict[str, pl.Series]] | None:
        """(rows taken, DEST_COLUMNS for those rows), or None if the path is unusable."""
        if not self.usable:
            return None
        c = self.c
        digits, dlen, plus, taken = _digits(series, self.width // 8)
        rows = np.flatnonzero(taken)
        if rows.size < taken.size:
            digits, dlen, plus, series = digits[rows], dlen[rows], plus[rows], series.gather(rows)
        d = _Digits(digits, dlen)
        cut = self._candidate(d, plus)
        clen = d.length - cut
        emerg = self._emergency(d, cut, plus)
        short = ~plus & (clen <= c.max_ext)
        has, drop, lead = self._e164(d, cut, clen, plus, short)
        has &= ~emerg  # 0 184 110: an emergency call, no number
        ident, code_at = self.lookup(self._codes(d, cut + drop, lead, has))
        ident, code_at = np.where(has, ident, -1), np.where(has, code_at, -1)
        lead_len = np.array([0, len(c.cc), 1], dtype=np.int64)[lead]
        region = self.region_of[ident]
        local = ~short & ~has & ~emerg
        kinds_at = np.flatnonzero(short & ~emerg)
        dest = np.full(rows.size, _INTERNATIONAL, dtype=np.int64)
        dest[self.domestic[region]] = _DOMESTIC
        dest[(region < 0) | (lead_len + clen - drop < 5)] = _UNKNOWN
        dest[local] = _DOMESTIC
        dest[kinds_at] = self._short_kinds(series, kinds_at, cut[kinds_at])
        dest[emerg] = _EMERGENCY
        region = np.where(local, self.country_at, region)
        risk = np.where(dest == _DOMESTIC, -1, self.risk_of[ident])
        code_at = np.where(local, len(self.codes), code_at)
        return taken, self._frame(series, dest, region, risk, ident, code_at, has, lead,
                                  plus + cut + drop)

    def _frame(self, strings: pl.Series, dest: Ints, region: Ints, risk: Ints, ident: Ints,
               code_at: Ints, has: Bools, lead: Ints, e164_start: Ints) -> dict[str, pl.Series]:
        c = self.c

        def pick(vocab: list[str], at: Ints) -> pl.Series:
            table = pl.Series([*vocab, None], dtype=pl.String)
            return table.gather(np.where(at < 0, len(vocab), at))

        lead_text = pick(["+", "+" + c.cc, "+1"], np.where(has, lead, -1))
        e164 = pl.DataFrame({"s": strings, "o": e164_start, "l": lead_text}).select(
            pl.col("l") + pl.col("s").str.slice(pl.col("o"))
        ).to_series()
        rate = pl.Series(self.rate_of[ident], dtype=pl.Float64)
        if not self.has_rate[ident].all():
            rate = rate.set(pl.Series(~self.has_rate[ident]), None)
        return {
            "calling_code": pick([*self.codes, c.cc], code_at),
            "region": pick(self.regions, region),
            "risk_prefix": pick(self.risks, risk),
            "allowlisted": pl.Series(self.allow_of[ident], dtype=pl.Boolean),
            "rate": rate,
            "dest_class": pick(_CLASSES, dest),
            "e164": e164,
            "high_risk": pl.Series(risk >= 0, dtype=pl.Boolean),
            "region_name": pick([c._names.get(r, r) for r in self.regions], region),
        }
