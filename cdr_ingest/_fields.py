"""Cutting a CSV line into fields with regexes, leniently, and cleaning undecodable bytes.

Strict fields are what cdr_csv writes (``"..."`` with ``""`` for a quote, or bare text without
quotes). Lenient fields are what Python's csv module reads without error: any run of quoted
segments and bare characters up to the next separator, which covers writers that quote a value
without doubling its inner quotes (FreePBX's old CDR export writes the clid ``"User 10" <114>``
bare; database exports wrap it as ``""Name" <1115>"``). A lenient field's value is the text
inside its outer quotes when it has them, else the text as written.
"""

from __future__ import annotations

import re

import polars as pl

# One lenient field as a capture group (a strict field is a lenient one too).
FIELD = r'((?:"[^"]*"|[^,"])*)'
_STRICT_FIELD = '(?:"(?:[^"]|"")*"|[^,"]*)'
_STRICT_QUOTED = r'^"(?:[^"]|"")*"$'
GROUPS_PER_REGEX = 9
REPLACEMENT = "\ufffd"
_BAD = re.compile("[\udc80-\udcff\x00]")


def strict_regex(n: int) -> str:
    """Whole line of exactly n strict CSV fields (no captures, so a DFA can run it)."""
    return f"^{_STRICT_FIELD}(?:,{_STRICT_FIELD}){{{n - 1}}}$"


def extract_fields(lf: pl.LazyFrame, n: int, source: str, prefix: str) -> pl.LazyFrame:
    """Add columns {prefix}0..{prefix}{n-1}: the lenient fields of column `source`, raw (still
    quoted), all null unless the line has exactly n fields. Anchored regexes of at most
    GROUPS_PER_REGEX groups, chained through a "rest of line" group (few groups let Rust's
    regex crate use its fast capture engines)."""
    rest = source
    i = 0
    while i < n:
        m = min(GROUPS_PER_REGEX, n - i)
        last = i + m == n
        rx = "^" + ",".join([FIELD] * m) + ("$" if last else ",(.*)$")
        names = [f"{prefix}{j}" for j in range(i, i + m)] + ([] if last else [f"{prefix}r{i}"])
        groups = pl.col(rest).str.extract_groups(rx).struct.rename_fields(names)
        lf = lf.with_columns(groups.struct.unnest())
        rest = f"{prefix}r{i}"
        i += m
    return lf


def unquote(field: pl.Expr) -> pl.Expr:
    """A raw field's value: strict quoting undone, else outer quotes dropped, else as is."""
    inner = field.str.slice(1, field.str.len_chars() - 2)
    wrapped = field.str.starts_with('"') & field.str.ends_with('"') & (field.str.len_chars() > 1)
    return (
        pl.when(field.str.contains(_STRICT_QUOTED))
        .then(inner.str.replace_all('""', '"', literal=True))
        .when(wrapped)
        .then(inner)
        .otherwise(field)
    )


def clean(piece: bytes) -> tuple[bytes, bool]:
    """piece with every byte that is not UTF-8 (and every NUL) replaced by U+FFFD, one per
    byte, so that counting U+FFFD in a line counts its replaced bytes; and whether any was."""
    if b"\x00" not in piece:
        if piece.isascii():
            return piece, False
        try:
            piece.decode("utf-8")
            return piece, False
        except UnicodeDecodeError:
            pass
    text = piece.decode("utf-8", errors="surrogateescape")
    return _BAD.sub(REPLACEMENT, text).encode("utf-8"), True
