"""Where did the call go: classify dialed digits under the site's dial plan.

One implementation serves a whole CDR batch and a single live call: classification is a chain
of polars expressions (dial-plan prefixes stripped with string operations, then the longest
E.164 prefix looked up in one table that merges regions, the high-risk list, the allowlist and
rates). A batch runs it over millions of rows; `classify()` runs it on a one-row frame, cached.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import phonenumbers
import polars as pl
from phonenumbers.shortnumberinfo import is_valid_short_number_for_region

from tollwatch.config.countries import country_code
from tollwatch.config.schema import Settings
from tollwatch.rules import numbering
from tollwatch.rules.destination import BLOCK_DIGITS as BLOCK_DIGITS
from tollwatch.rules.destination import CLASSES as CLASSES
from tollwatch.rules.destination import DEST_COLUMNS as DEST_COLUMNS
from tollwatch.rules.destination import Destination as Destination  # and older pickles' path
from tollwatch.rules.destinations_one import row_one
from tollwatch.rules.prefixes import high_risk_list, rate_table

if TYPE_CHECKING:
    from tollwatch.rules.destinations_fast import FastPlan

# Dialed numbers whose classification `classify()` keeps (the live path), least recently used
# first out: ~450 bytes each with the cache's own, ~7 MiB when full. A miss costs ~5 us
# (`row_one`), a hit ~0.2 us: the cache saves little CPU, and at 65,536 it took ~28 MiB and a
# day of fresh numbers to fill (issue 13's soak: ~3,000 new numbers an hour). A site calling
# more distinct numbers than this again and again pays ~5 us a call for the misses.
CACHE_NUMBERS = 16_384
_LOCAL_MIN = 7  # a number this long dialed without any prefix is a local/national number
_OURS = frozenset(DEST_COLUMNS) | {"e164_digits"}  # columns the plan adds (and drops)
_FAST_MIN = 32  # frames this small take the polars plan (the live path: no numpy import)


def _order(taken: Any) -> Any:
    """For each row, its index in (taken rows, then the other rows)."""
    import numpy as np

    pos = np.empty(taken.size, dtype=np.int64)
    n = int(taken.sum())
    pos[taken] = np.arange(n, dtype=np.int64)
    pos[~taken] = np.arange(n, taken.size, dtype=np.int64)
    return pos


@dataclass(frozen=True)
class _Entry:
    region: str | None
    risk: str | None  # label of the high-risk entry that applies
    allow: bool
    rate: float | None


def _longest(table: dict[str, Any], key: str) -> tuple[int, Any]:
    for n in range(len(key), 0, -1):
        if key[:n] in table:
            return n, table[key[:n]]
    return 0, None


class Classifier:
    """Classifies dialed strings for one site. Build once; reuse for every call."""

    def __init__(self, settings: Settings, cache_size: int = CACHE_NUMBERS) -> None:
        country = settings.site.country
        assert country is not None, "settings must be resolved (site.country)"
        dp = settings.dialplan
        self.country = country
        self.cc = str(country_code(country))
        # what may come before a number: access codes and dial prefixes (184, 0033 ...)
        self.access_codes = dp.outside_codes()
        self.code_leads = dp.code_leads()  # ... before an international or national prefix
        self.intl_prefixes = dp.international()
        self.national_prefix = dp.national_prefix or ""
        self.max_ext = dp.max_extension_length
        self.domestic = frozenset(dp.domestic_regions or [country])
        em = settings.emergency
        self.emergency = sorted(set(em.numbers or []) | set(em.extra))
        self.risk = {e.prefix: e for e in high_risk_list(settings)}
        self.allow = set(settings.allowlist.prefixes)
        self.rates = rate_table(settings)
        self._codes = numbering.calling_codes()
        self._build_table()
        self._short_cache: dict[str, str] = {}
        self._cache: OrderedDict[str, Destination] = OrderedDict()
        self._cache_size = cache_size
        self._steps: dict[str, list[list[pl.Expr]]] = {}
        self._fast: FastPlan | None = None

    # ---- the merged prefix table -------------------------------------------------------
    def _build_table(self) -> None:
        regions = numbering.region_prefixes()
        keys = set(regions) | set(self.risk) | self.allow | set(self.rates)
        entries: dict[str, _Entry] = {}
        for key in keys:
            _, region = _longest(regions, key)
            risk_len, risk = _longest(self.risk, key)
            allow_len = _longest({p: True for p in self.allow}, key)[0]
            _, rate = _longest(self.rates, key)
            allowed = allow_len > 0 and allow_len >= risk_len
            entries[key] = _Entry(
                region=region,
                risk=None if risk is None or allowed else risk.label,
                allow=allowed,
                rate=rate,
            )
        self._entries = entries
        ids = {key: i for i, key in enumerate(sorted(entries))}
        self._ids = ids
        self._by_len: dict[int, dict[str, int]] = {}
        for key, i in ids.items():
            self._by_len.setdefault(len(key), {})[key] = i
        ordered = sorted(entries)
        self._attr: dict[str, dict[int, Any]] = {
            "region": {ids[k]: entries[k].region for k in ordered},
            "risk": {ids[k]: entries[k].risk for k in ordered},
            "allow": {ids[k]: entries[k].allow for k in ordered},
            "rate": {ids[k]: entries[k].rate for k in ordered},
        }
        self._names = {r: numbering.region_name(r) for r in set(regions.values())}

    # ---- expressions ---------------------------------------------------------------------
    def _strong(self, x: pl.Expr) -> pl.Expr:
        cond = pl.lit(False)
        for ip in self.intl_prefixes:
            cond = cond | x.str.starts_with(ip)
        if self.national_prefix:
            cond = cond | x.str.starts_with(self.national_prefix)
        return cond

    def _candidate(self, digits: pl.Expr, plus: pl.Expr) -> pl.Expr:
        """The dialed digits with an outside-line access code removed, when one was dialed."""
        if not self.access_codes:
            return digits
        expr: Any = pl.when(plus).then(digits)
        for code, lead in self.code_leads:
            expr = expr.when(digits.str.starts_with(code + lead)).then(
                digits.str.slice(len(code)))
        expr = expr.when(self._strong(digits)).then(digits)
        for ac in self.access_codes:
            rest = digits.str.slice(len(ac))
            expr = expr.when(
                digits.str.starts_with(ac) & (rest.str.len_chars() >= _LOCAL_MIN)
            ).then(rest)
        return expr.otherwise(digits)  # type: ignore[no-any-return]

    def _e164(self, cand: pl.Expr, plus: pl.Expr) -> pl.Expr:
        expr: Any = pl.when(plus).then(cand)
        for ip in self.intl_prefixes:
            expr = expr.when(cand.str.starts_with(ip)).then(cand.str.slice(len(ip)))
        np_ = self.national_prefix
        if np_:
            expr = expr.when(cand.str.starts_with(np_)).then(
                pl.lit(self.cc) + cand.str.slice(len(np_))
            )
        else:
            expr = expr.when(cand.str.len_chars() >= _LOCAL_MIN).then(pl.lit(self.cc) + cand)
        if self.cc == "1":
            expr = expr.when(cand.str.len_chars() == 10).then(pl.lit("1") + cand)
        return expr.otherwise(None)  # type: ignore[no-any-return]

    def _lookup_id(self, e164: pl.Expr) -> pl.Expr:
        parts = [
            e164.str.slice(0, n).replace_strict(table, default=None, return_dtype=pl.Int32)
            for n, table in sorted(self._by_len.items(), reverse=True)
        ]
        return pl.coalesce(parts)

    def _calling_code(self, e164: pl.Expr) -> pl.Expr:
        codes = {c: c for c in self._codes}
        parts = [
            e164.str.slice(0, n).replace_strict(
                {c: c for c in codes if len(c) == n}, default=None, return_dtype=pl.String
            )
            for n in (3, 2, 1)
        ]
        return pl.coalesce(parts)

    def _short_kind(self, s: pl.Series) -> pl.Series:
        """emergency / service / internal for short dialed strings (phonenumbers short codes)."""
        cache = self._short_cache
        emergency = set(self.emergency)
        out: list[str | None] = []
        for value in s.to_list():
            if value is None:
                out.append(None)
                continue
            kind = cache.get(value)
            if kind is None:
                if value in emergency:
                    kind = "emergency"
                else:
                    try:
                        num = phonenumbers.parse(value, self.country)
                        ok = is_valid_short_number_for_region(num, self.country)
                    except phonenumbers.NumberParseException:
                        ok = False
                    kind = "service" if ok else "internal"
                if len(cache) < 100_000:
                    cache[value] = kind
            out.append(kind)
        return pl.Series(s.name, out, dtype=pl.String)

    def expressions(self, column: str) -> list[list[pl.Expr]]:
        """with_columns steps that add DEST_COLUMNS (and temporaries starting with _d_)."""
        raw = pl.col(column).cast(pl.String).fill_null("")
        norm = raw.str.replace_all(r"[\s\-().]", "")
        # a number with SIP URI parameters after it, "0102327654321;user=phone", is that
        # number (the carrier reads them as parameters); so is one ended with the send key,
        # "0102327654321#" (a trunk may strip it): read as "unknown" or a feature code, such
        # calls went unseen by every rule
        norm = pl.when(norm.str.contains(r"^\+?[0-9]+#?;")).then(
            norm.str.replace(r";.*$", "")).otherwise(norm)
        norm = pl.when(norm.str.contains(r"^\+?[0-9]+#$")).then(
            norm.str.strip_suffix("#")).otherwise(norm)
        step1 = [
            norm.str.starts_with("+").alias("_d_plus"),
            norm.str.strip_prefix("+").alias("_d_digits"),
        ]
        plus = pl.col("_d_plus")
        digits = pl.col("_d_digits")
        is_digits = digits.str.contains(r"^\d+$")
        step2 = [self._candidate(digits, plus).alias("_d_cand"), is_digits.alias("_d_isdig")]
        cand = pl.col("_d_cand")
        em = list(self.emergency)
        emergency = digits.is_in(em) | cand.is_in(em)
        for ac in self.access_codes:
            emergency = emergency | (
                digits.str.starts_with(ac) & digits.str.slice(len(ac)).is_in(em)
            )
        emergency = ~plus & emergency
        short = ~plus & (cand.str.len_chars() <= self.max_ext)
        step3 = [
            emergency.alias("_d_emerg"),
            (short & pl.col("_d_isdig")).alias("_d_short"),
            pl.when(pl.col("_d_isdig") & ~short & ~emergency)  # 0 184 110: no number
            .then(self._e164(cand, plus))
            .otherwise(None)
            .alias("e164_digits"),
        ]
        e164 = pl.col("e164_digits")
        step4 = [
            self._lookup_id(e164).alias("_d_id"),
            self._calling_code(e164).alias("calling_code"),
            pl.when(pl.col("_d_short") & ~pl.col("_d_emerg"))
            .then(cand)
            .otherwise(None)
            .map_batches(self._short_kind, return_dtype=pl.String)
            .alias("_d_shortkind"),
        ]
        ident = pl.col("_d_id")
        region = ident.replace_strict(self._attr["region"], default=None, return_dtype=pl.String)
        step5 = [
            region.alias("region"),
            ident.replace_strict(self._attr["risk"], default=None, return_dtype=pl.String).alias(
                "risk_prefix"
            ),
            ident.replace_strict(self._attr["allow"], default=False, return_dtype=pl.Boolean)
            .fill_null(False)
            .alias("allowlisted"),
            ident.replace_strict(self._attr["rate"], default=None, return_dtype=pl.Float64).alias(
                "rate"
            ),
        ]
        domestic = list(self.domestic)
        local = pl.col("_d_isdig") & ~pl.col("_d_short") & e164.is_null() & ~pl.col("_d_emerg")
        dest_class = (
            pl.when(norm == "")
            .then(pl.lit("unknown"))
            .when(pl.col("_d_emerg"))
            .then(pl.lit("emergency"))
            .when(digits.str.contains(r"^[0-9*#]+$") & ~pl.col("_d_isdig"))
            .then(pl.lit("internal"))  # feature codes such as *97
            .when(~pl.col("_d_isdig"))
            .then(pl.lit("unknown"))
            .when(pl.col("_d_short"))
            .then(pl.col("_d_shortkind"))
            .when(local)
            .then(pl.lit("domestic"))
            .when(pl.col("region").is_null() | (e164.str.len_chars() < 5))
            .then(pl.lit("unknown"))
            .when(pl.col("region").is_in(domestic))
            .then(pl.lit("domestic"))
            .otherwise(pl.lit("international"))
        )
        step6 = [
            dest_class.alias("dest_class"),
            pl.when(local).then(pl.lit(self.country)).otherwise(pl.col("region")).alias("region"),
            pl.when(local).then(pl.lit(self.cc)).otherwise(pl.col("calling_code")).alias(
                "calling_code"
            ),
            pl.when(e164.is_not_null()).then(pl.lit("+") + e164).otherwise(None).alias("e164"),
            # High-risk means international: a number at home (or in a domestic region) never
            # is, whatever the list holds (+7 for a Moscow office, +1 876 for a Jamaican one).
            pl.when(dest_class == "domestic")
            .then(None)
            .otherwise(pl.col("risk_prefix"))
            .alias("risk_prefix"),
        ]
        step6b = [pl.col("risk_prefix").is_not_null().alias("high_risk")]
        step7 = [
            pl.col("region")
            .replace_strict(self._names, default=pl.col("region"), return_dtype=pl.String)
            .alias("region_name"),
        ]
        return [step1, step2, step3, step4, step5, step6, step6b, step7]

    def _steps_for(self, column: str) -> list[list[pl.Expr]]:
        steps = self._steps.get(column)
        if steps is None:
            steps = self._steps[column] = self.expressions(column)
        return steps

    def _apply(self, frame: pl.DataFrame, column: str) -> pl.DataFrame:
        """Add DEST_COLUMNS: plain numbers ([+]digits) by the vectorized path, which gives
        what the polars plan gives (tests/test_destinations_fast.py), the rest by the plan."""
        if frame.height < _FAST_MIN:
            return self._apply_plan(frame, column)
        if self._fast is None:
            from tollwatch.rules.destinations_fast import FastPlan  # numpy, pyarrow: batch only

            self._fast = FastPlan(self)
        got = self._fast.columns(frame.get_column(column).cast(pl.String))
        if got is None:
            return self._apply_plan(frame, column)
        taken, cols = got
        if not taken.all():
            rest = self._apply_plan(frame.filter(pl.Series(~taken)), column)
            at = pl.Series(_order(taken))  # row i: position in fast rows then the rest
            cols = {k: pl.concat([v, rest.get_column(k)]).gather(at) for k, v in cols.items()}
        out = frame.with_columns(**cols)
        return out.drop([c for c in out.columns if c.startswith("_d_") or c == "e164_digits"])

    def _apply_plan(self, frame: pl.DataFrame, column: str) -> pl.DataFrame:
        """The polars plan (`expressions`) on every row."""
        df = frame
        for step in self._steps_for(column):
            df = df.with_columns(step)
        return df.drop([c for c in df.columns if c.startswith("_d_")] + ["e164_digits"])

    def classify_df(self, frame: pl.DataFrame, column: str = "dst") -> pl.DataFrame:
        """Add DEST_COLUMNS to an in-memory frame, classifying each distinct number once.

        Run it on the batches of a streaming query (not inside one: polars' lookup
        expressions would make the streaming engine hold the whole input in memory).
        Mostly distinct numbers (approximate count over half the rows) are classified row by
        row instead: same result, without the cost of `unique` and the join back.
        """
        if (
            frame.height >= _FAST_MIN
            and frame.schema.get(column) == pl.String
            and not any(c in _OURS or c.startswith("_d_") for c in frame.columns)
            and int(frame.select(pl.col(column).approx_n_unique()).item()) * 2 > frame.height
        ):
            return self._apply(frame, column)
        distinct = frame.select(pl.col(column).cast(pl.String)).unique()
        classified = self._apply(distinct, column)
        return frame.join(classified, on=column, how="left", nulls_equal=True)

    def classify(self, dialed: str) -> Destination:
        """Classify one dialed string (cached)."""
        hit = self._cache.get(dialed)
        if hit is not None:
            self._cache.move_to_end(dialed)
            return hit
        one = row_one(self, dialed)  # the same plan in Python (microseconds, not ms)
        row = one if one is not None else self._apply_one(dialed)
        dest = Destination.from_row(dialed, row)
        self._cache[dialed] = dest
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return dest

    def _apply_one(self, dialed: str) -> dict[str, Any]:
        """The polars plan on a one-row frame (what `row_one` is tested against)."""
        return self._apply_plan(pl.DataFrame({"dst": [dialed]}), "dst").row(0, named=True)

    def batches(self, column: str = "dst", limit: int = 2_000_000) -> BatchClassifier:
        """A classifier for one scan's batches (each batch's distinct numbers classified once)."""
        return BatchClassifier(self, column, limit)

    def source_allowlisted(self, allow: list[str], e164: str | None) -> bool:
        """Whether a per-source allowlist covers this number (longest prefix beats the list)."""
        if not e164 or not allow:
            return False
        digits = e164.lstrip("+")
        best = max((len(p) for p in allow if digits.startswith(p)), default=0)
        risk_len, _ = _longest(self.risk, digits)
        return best > 0 and best >= risk_len


class BatchClassifier:
    """classify_df for a stream of batches: each batch's distinct numbers classified once.

    No table of numbers seen before is kept: with mostly distinct numbers (what an attack
    and a big site look like) joining every batch against a growing table of millions of
    numbers costs more than classifying the batch's own distinct numbers again."""

    def __init__(self, classifier: Classifier, column: str, limit: int) -> None:
        self.classifier = classifier
        self.column = column
        self.limit = limit  # kept for callers; unused

    def distinct(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The distinct numbers of `frame`'s column with DEST_COLUMNS (one row each)."""
        col = self.column
        return self.classifier._apply(frame.select(pl.col(col).cast(pl.String)).unique(), col)

    def __call__(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.join(self.distinct(frame), on=self.column, how="left", nulls_equal=True)


__all__ = ["CLASSES", "DEST_COLUMNS", "BatchClassifier", "Classifier", "Destination"]
