"""The dialplan snippet that enforces blocks: `tollwatch dialplan` writes it from the settings.

The normalization is a table built from the same dial-plan settings the Python `Classifier`
uses (access codes, international prefixes, national prefix, country code, extension length,
emergency numbers), in the same order of precedence. `Plan.e164()` evaluates the table in
Python (the tests compare it with the Classifier); `render()` emits it as a Gosub subroutine of
plain `GotoIf`/`Set`/`${var:offset}` steps, so what Asterisk runs is the table, step by step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tollwatch.config.countries import country_code
from tollwatch.config.schema import Settings

CONTEXT = "tollwatch-check"
MAX_PREFIX = 8
_LOCAL_MIN = 7  # rules.destinations._LOCAL_MIN: a number this long without prefix is national
# What the snippet keeps of the dialed string before reading the digits (FILTER): anything
# else (spaces, parentheses, dashes, letters) could otherwise make a blocked number pass it,
# and a SIP URI brings such characters into EXTEN (%20, %28) while the route still dials it
_KEEP = "0-9+#*"
_KEPT = frozenset("0123456789+#*")


@dataclass(frozen=True)
class CandRule:
    """If the digits start with `prefix` (and what follows is at least `min_rest` long):
    the candidate is the digits minus the first `strip` characters (an access code)."""

    prefix: str
    strip: int
    min_rest: int = 0


@dataclass(frozen=True)
class E164Rule:
    """If the candidate starts with `prefix` (and is `length_op` `length` long): E.164 digits
    are `add` + the candidate minus its first `strip` characters."""

    prefix: str
    strip: int
    add: str = ""
    length_op: str = ""  # "", ">=" or "="
    length: int = 0


@dataclass
class Plan:
    family: str
    emergency: list[str]  # dialed strings that pass first, always
    cand_rules: list[CandRule] = field(default_factory=list)
    max_ext: int = 6
    e164_rules: list[E164Rule] = field(default_factory=list)

    def e164(self, dialed: str) -> str | None:
        """The E.164 digits the dialplan looks blocks up for (None: never blocked by prefix)."""
        n = "".join(c for c in dialed.split(";", 1)[0] if c in _KEPT)
        if n in self.emergency:
            return None
        plus = n.startswith("+")
        d = n[1:] if plus else n
        if d.endswith("#"):  # the send key after the number: the number (as the classifier)
            d = d[:-1]
        if not d or not d.isdigit() or not d.isascii():
            return None
        if plus:
            return d
        cand = d
        for rule in self.cand_rules:
            if d.startswith(rule.prefix) and len(d) - rule.strip >= rule.min_rest:
                cand = d[rule.strip :]
                break
        if len(cand) <= self.max_ext:
            return None
        for er in self.e164_rules:
            if cand.startswith(er.prefix) and _length_ok(len(cand), er.length_op, er.length):
                return er.add + cand[er.strip :]
        return None


def _length_ok(n: int, op: str, length: int) -> bool:
    return op == "" or (op == ">=" and n >= length) or (op == "=" and n == length)


def _emergency(settings: Settings) -> list[str]:
    return sorted(set(settings.emergency.numbers or []) | set(settings.emergency.extra))


def plan(settings: Settings) -> Plan:
    """The table, as rules.destinations.Classifier reads the dial plan."""
    country = settings.site.country
    if country is None:
        raise ValueError("site.country is not set: the dialplan needs the home country")
    dp = settings.dialplan
    cc = str(country_code(country))
    access = dp.outside_codes()  # access codes and dial prefixes, as the classifier takes them
    intl = dp.international()
    national = dp.national_prefix or ""
    strong = [*intl, *([national] if national else [])]
    em = _emergency(settings)
    # an emergency number after one code ("0" "110", "184" "110") passes first; after more,
    # it is too long to pass as an extension but never reads as a number to block either
    one = {*dp.access_codes, *(dp.dial_prefixes or [])}
    one |= {ac + p for ac in dp.access_codes for p in dp.dial_prefixes or []}
    emergency = sorted(set(em) | {c + e for c in one for e in em}, key=lambda s: (len(s), s))
    cands: list[CandRule] = []
    # a code + an international or national prefix, in the classifier's order
    cands.extend(CandRule(code + lead, len(code)) for code, lead in dp.code_leads())
    cands.extend(CandRule(p, 0) for p in strong)  # a prefix without access code
    cands.extend(CandRule(ac, len(ac), _LOCAL_MIN) for ac in access)  # access code + number
    rules = [E164Rule(ip, len(ip)) for ip in intl]
    if national:
        rules.append(E164Rule(national, len(national), cc))
    else:
        rules.append(E164Rule("", 0, cc, ">=", _LOCAL_MIN))
    if cc == "1":
        rules.append(E164Rule("", 0, "1", "=", 10))
    return Plan(settings.remediation.family, emergency, cands, dp.max_extension_length, rules)


def _starts(var: str, prefix: str) -> str:
    return f'"${{{var}:0:{len(prefix)}}}" = "{prefix}"'


# Asterisk sound file names, "&"-joined for several: nothing that could end the application's
# arguments (")" "," ";" a line end) or start a variable ("$")
_SOUND = re.compile(r"[A-Za-z0-9_./-]+(&[A-Za-z0-9_./-]+)*")


def render(settings: Settings, sound: str | None = None) -> str:
    """The snippet: a Gosub subroutine `tollwatch-check,s,1(<dialed>)`."""
    p = plan(settings)
    fam = p.family
    country = settings.site.country
    cc = str(country_code(country)) if country else ""
    dp = settings.dialplan
    out: list[str] = [
        "; tollwatch-block.conf: refuse calls to destinations and from sources tollwatch blocked.",
        "; Generated by `tollwatch dialplan` - regenerate it when the [dialplan] or [emergency]",
        "; settings change; do not edit.",
        f";   country {country}, access codes {dp.access_codes or 'none'}, international "
        f"prefixes {dp.international_prefixes or 'none'},",
        f";   national prefix {dp.national_prefix or 'none'}, extensions up to {p.max_ext} digits,",
        f";   dial prefixes (privacy, carrier) {', '.join(dp.dial_prefixes or []) or 'none'},",
        f";   emergency {', '.join(_emergency(settings)) or 'none'} (also after those codes)",
        ";",
        "; In extensions.conf, outside any context (at the top, before the first [section]):",
        ";   #include tollwatch-block.conf",
        "; and first thing in each outbound route:",
        ";   same => n,Gosub(tollwatch-check,s,1(${EXTEN}))",
        "; A blocked call is hung up with cause 21 (call rejected), its CDR(userfield) reads",
        "; tollwatch-blocked:<prefix> (or tollwatch-blocked:src:<extension>) and AMI gets a",
        "; UserEvent TollwatchRefused (class user). A source block refuses international calls",
        f"; only: numbers in the home country (+{cc}) and emergency numbers pass.",
        f"; Blocks live in AstDB: {fam}/block/<E.164 prefix> and {fam}/src/<extension>,",
        "; value <expiry epoch>|<reason>; an expired entry is ignored.",
        "",
        f"[{CONTEXT}]",
        "exten => s,1,NoOp(tollwatch: checking ${ARG1})",
        " same => n,Set(LOCAL(tw_raw)=${ARG1})",
        "; SIP URI parameters after the number (0102327654321;user=phone) come off",
        " same => n,Set(LOCAL(tw_raw)=${CUT(tw_raw,\\;,1)})",
        f" same => n,Set(LOCAL(tw_n)=${{FILTER({_KEEP},${{tw_raw}})}})",
        "; 1. emergency numbers pass first, always",
    ]
    s = out.append
    for e in p.emergency:
        s(f' same => n,GotoIf($["${{tw_n}}" = "{e}"]?pass)')
    s("; 2. digits only, '+' allowed in front; anything else is not an outside number")
    s(" same => n,Set(LOCAL(tw_d)=${tw_n})")
    s(' same => n,GotoIf($["${tw_n:0:1}" != "+"]?digits)')
    s(" same => n,Set(LOCAL(tw_d)=${tw_n:1})")
    s("; the send key after the number ('0102327654321#'): the number, as tollwatch reads it")
    s(' same => n(digits),GotoIf($["${tw_d:-1}" != "#"]?sent)')
    s(" same => n,Set(LOCAL(tw_d)=${tw_d:0:-1})")
    s(' same => n(sent),GotoIf($["${tw_d}" = ""]?pass)')
    s(' same => n,GotoIf($["${FILTER(0-9,${tw_d})}" != "${tw_d}"]?pass)')
    s(' same => n,GotoIf($["${tw_n:0:1}" = "+"]?plus)')
    s("; 3. an outside-line access code comes off")
    for i, r in enumerate(p.cand_rules, 1):
        cond = _starts("tw_d", r.prefix)
        if r.min_rest:
            cond += f" & ${{LEN(${{tw_d}})}} >= {r.min_rest + r.strip}"
        s(f" same => n,GotoIf($[{cond}]?c{i})")
    s(" same => n,Set(LOCAL(tw_c)=${tw_d})")
    s(" same => n,Goto(short)")
    for i, r in enumerate(p.cand_rules, 1):
        tail = f"${{tw_d:{r.strip}}}" if r.strip else "${tw_d}"
        s(f" same => n(c{i}),Set(LOCAL(tw_c)={tail})")
        s(" same => n,Goto(short)")
    s("; 4. short numbers (extensions, service numbers) are never blocked")
    s(f" same => n(short),GotoIf($[${{LEN(${{tw_c}})}} <= {p.max_ext}]?pass)")
    s("; 5. the E.164 digits")
    for i, er in enumerate(p.e164_rules, 1):
        conds = [_starts("tw_c", er.prefix)] if er.prefix else []
        if er.length_op:
            conds.append(f"${{LEN(${{tw_c}})}} {er.length_op} {er.length}")
        s(f" same => n,GotoIf($[{' & '.join(conds)}]?e{i})")
    s(" same => n,Goto(pass)")
    for i, er in enumerate(p.e164_rules, 1):
        tail = f"${{tw_c:{er.strip}}}" if er.strip else "${tw_c}"
        s(f" same => n(e{i}),Set(LOCAL(tw_e)={er.add}{tail})")
        s(" same => n,Goto(lookup)")
    s(" same => n(plus),Set(LOCAL(tw_e)=${tw_d})")
    s(f"; 6. the longest blocked prefix (1..{MAX_PREFIX} digits) whose expiry is still ahead")
    s(" same => n(lookup),NoOp(tollwatch: E.164 ${tw_e})")
    for n in range(MAX_PREFIX, 0, -1):
        nxt = f"p{n - 1}" if n > 1 else "source"
        s(f" same => n(p{n}),GotoIf($[${{LEN(${{tw_e}})}} < {n}]?{nxt})")
        s(f" same => n,GotoIf($[${{DB_EXISTS({fam}/block/${{tw_e:0:{n}}})}} = 0]?{nxt})")
        s(f" same => n,Set(LOCAL(tw_hit)=${{tw_e:0:{n}}})")
        s(' same => n,GotoIf($["${CUT(DB_RESULT,|,1)}" > "${EPOCH}"]?blocked)')
    s("; 7. international calls only: the calling extension (the channel's endpoint, then the")
    s(";    caller id number) blocked as a source")
    s(f' same => n(source),GotoIf($["${{tw_e:0:{len(cc)}}}" = "{cc}"]?pass)')
    s(";    the endpoint as tollwatch names it: PJSIP/acme-201-0000000a is acme-201 (the")
    s(";    channel's own number is the last '-' part), Local/201@ctx-00000001;2 is 201@ctx")
    s(" same => n,Set(LOCAL(tw_ep)=${CHANNEL(name)})")
    s(" same => n,Set(LOCAL(tw_ep)=${CUT(tw_ep,\\;,1)})")
    s(" same => n,Set(LOCAL(tw_ep)=${CUT(tw_ep,/,2-)})")
    s(' same => n,GotoIf($[${FIELDQTY(tw_ep,-)} < 2]?endpoint)')
    s(" same => n,Set(LOCAL(tw_last)=${CUT(tw_ep,-,${FIELDQTY(tw_ep,-)})})")
    s(' same => n,GotoIf($["${FILTER(0-9a-fA-F,${tw_last})}" != "${tw_last}"]?endpoint)')
    s(" same => n,Set(LOCAL(tw_ep)=${tw_ep:0:-${LEN(-${tw_last})}})")
    s(' same => n(endpoint),GotoIf($["${tw_ep}" = ""]?cid)')
    s(f" same => n,GotoIf($[${{DB_EXISTS({fam}/src/${{tw_ep}})}} = 0]?cid)")
    s(" same => n,Set(LOCAL(tw_hit)=src:${tw_ep})")
    s(' same => n,GotoIf($["${CUT(DB_RESULT,|,1)}" > "${EPOCH}"]?blocked)')
    s(" same => n(cid),Set(LOCAL(tw_ep)=${CALLERID(num)})")
    s(' same => n,GotoIf($["${tw_ep}" = ""]?pass)')
    s(f" same => n,GotoIf($[${{DB_EXISTS({fam}/src/${{tw_ep}})}} = 0]?pass)")
    s(" same => n,Set(LOCAL(tw_hit)=src:${tw_ep})")
    s(' same => n,GotoIf($["${CUT(DB_RESULT,|,1)}" > "${EPOCH}"]?blocked)')
    s(" same => n,Goto(pass)")
    s("; refused: say why in the CDR, on AMI (class user) and in the log, then reject")
    s(" same => n(blocked),Set(CDR(userfield)=tollwatch-blocked:${tw_hit})")
    s(" same => n,UserEvent(TollwatchRefused,Hit: ${tw_hit},Dialed: ${tw_d})")
    s(
        " same => n,Log(NOTICE,tollwatch: refused call to ${tw_n} from ${CALLERID(num)}"
        " - blocked ${tw_hit} - ${CUT(DB_RESULT,|,2)})"
    )
    if sound:
        if not _SOUND.fullmatch(sound):  # it goes into extensions.conf as written
            raise ValueError(f"--sound {sound!r}: a sound name is letters, digits and _ - . / "
                             "(several joined by &), like ss-noservice")
        s(f" same => n,Playback({sound})")
    s(" same => n,Hangup(21)")
    s(" same => n(pass),Return()")
    return "\n".join(out) + "\n"


generate = render
