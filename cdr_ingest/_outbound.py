"""Classify legs: is the destination channel a trunk, who placed the call."""

from __future__ import annotations

import polars as pl

from ._types import CdrOptions

# TECH/resource-suffix, e.g. PJSIP/carrier-0000000b, Local/0102@from-internal-00000001;2
_CHANNEL = r"^(?P<tech>[^/]+)/(?P<ep>.*?)(?:-[0-9A-Fa-f]+)?(?:;\d+)?$"
# First Dial target: PJSIP/0102@carrier,60 / SIP/carrier/0102 / IAX2/user:pw@peer/0102
_DIAL = r"^(?P<tech>[^/,&]+)/(?:[^@/,&]*@)?(?P<ep>[^/@,&]*)"
_REGEX_META = set("\\.+*?()|[]{}^$#&-~")
_TRUNK_TECH = r"(?i)^(?:dahdi|zap)$"
_LOCAL_TECH = r"(?i)^local$"


def glob_to_regex(glob: str) -> str:
    """Translate an fnmatch glob (case-sensitive) to an anchored Rust regex."""
    out = ["^"]
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in glob[i + 2 :]:
            j = glob.index("]", i + 2)
            body = glob[i + 1 : j]
            neg = body.startswith("!")
            body = body[1:] if neg else body
            body = body.replace("\\", "\\\\").replace("[", "\\[").replace("^", "\\^")
            out.append("[" + ("^" if neg else "") + body + "]")
            i = j
        else:
            out.append("\\" + c if c in _REGEX_META else c)
        i += 1
    out.append("$")
    return "".join(out)


def _matches(globs: tuple[str, ...], *names: pl.Expr) -> pl.Expr:
    if not globs:
        return pl.lit(False)
    rx = "|".join(f"(?:{glob_to_regex(g)})" for g in globs)
    return pl.any_horizontal(*[n.str.contains(rx) for n in names])


def _is_phone(tech: pl.Expr, ep: pl.Expr, name: pl.Expr, options: CdrOptions) -> pl.Expr:
    extension = (
        ep.str.contains(r"^[0-9]+$")
        & (ep.str.len_chars() <= options.max_extension_length)
        & ~tech.str.contains(_TRUNK_TECH)
    )
    return _matches(options.phones, name, tech + "/" + ep, ep) | extension


def classify(lf: pl.LazyFrame, options: CdrOptions) -> pl.LazyFrame:
    """Add outbound, source and trunk; intermediate parts are materialized once."""
    use_dst = pl.col("dstchannel") != ""
    use_dial = ~use_dst & pl.col("lastapp").str.contains("(?i)^dial$")
    dst = pl.col("dstchannel").str.extract_groups(_CHANNEL)
    # Only failed dials need lastdata parsed: regex work is skipped for null rows.
    dial = pl.when(use_dial).then(pl.col("lastdata")).str.extract_groups(_DIAL)
    chan = pl.col("channel").str.extract_groups(_CHANNEL)
    lf = lf.with_columns(
        pl.when(use_dst).then(dst).otherwise(dial).alias("_dest"),
        chan.alias("_chan"),
        use_dst.alias("_use_dst"),
    )
    tech, ep = pl.col("_dest").struct.field("tech"), pl.col("_dest").struct.field("ep")
    name = pl.when(pl.col("_use_dst")).then(pl.col("dstchannel")).otherwise(tech + "/" + ep + "-")
    real = ~tech.str.contains(_LOCAL_TECH) & (ep != "")
    if options.trunks:
        trunk = real & _matches(options.trunks, name, tech + "/" + ep, ep)
    else:
        trunk = real & ~_is_phone(tech, ep, name, options)
    if options.contexts:
        trunk = trunk & pl.col("dcontext").is_in(list(options.contexts))

    ctech, cep = pl.col("_chan").struct.field("tech"), pl.col("_chan").struct.field("ep")
    calling_phone = ~ctech.str.contains(_LOCAL_TECH) & _is_phone(
        ctech, cep, pl.col("channel"), options
    )
    source = pl.when(calling_phone.fill_null(False)).then(cep).otherwise(pl.col("src"))
    lf = lf.with_columns(trunk.fill_null(False).alias("outbound"), source.alias("source"))
    return lf.with_columns(
        pl.when(pl.col("outbound")).then(ep).otherwise(pl.lit("")).alias("trunk")
    )
