"""The dialplan snippet agrees with the Python classifier, checked by running it.

`Dialplan` below is a small interpreter of exactly the constructs `render()` emits (Set,
LOCAL(), GotoIf/Goto with labels, ${var:off:len}, LEN, FILTER, REPLACE, CUT, DB_EXISTS with
DB_RESULT, CHANNEL(name), CALLERID(num), EPOCH, $[a op b & ...], Hangup, Return). It refuses
anything else, so a new construct in the generator needs a matching line here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import settings
from tollwatch.alerting.remediation.dialplan import CONTEXT, plan, render
from tollwatch.cdr_ingest.attribution import _endpoint
from tollwatch.rules.destinations import Classifier

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_795_526_552
_LINE = re.compile(r"^\s*(?:exten\s*=>\s*s,1|same\s*=>\s*n(?:\((\w+)\))?),(\w+)\((.*)\)\s*$")
_INNER = re.compile(r"\$\{([^${}]*)\}")
_EXPR = re.compile(r"\$\[([^\[\]]*)\]")
_CMP = re.compile(r'^\s*("[^"]*"|\S+)\s*(!=|>=|<=|=|>|<)\s*("[^"]*"|\S+)\s*$')


class Dialplan:
    def __init__(self, text: str) -> None:
        self.steps: list[tuple[str, str]] = []
        self.labels: dict[str, int] = {}
        context = None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith("["):
                context = line.strip("[]")
                continue
            m = _LINE.match(raw)
            assert m and context == CONTEXT, f"unexpected line: {raw}"
            label, app, args = m.groups()
            if label:
                assert label not in self.labels, f"duplicate label {label}"
                self.labels[label] = len(self.steps)
            self.steps.append((app, args))

    def call(
        self, dialed: str, db: dict[str, str] | None = None, channel: str = "PJSIP/201-00000001",
        callerid: str = "201",
    ) -> dict[str, Any]:  # fmt: skip
        self.db = db or {}
        self.channel = channel
        self.callerid = callerid
        self.vars: dict[str, str] = {"ARG1": dialed}
        self.cdr: dict[str, str] = {}
        self.events: list[str] = []
        pc = 0
        for _ in range(10_000):
            app, args = self.steps[pc]
            pc += 1
            if app == "Set":
                name, _, value = args.partition("=")
                value = self.sub(value)
                if name.startswith("LOCAL("):
                    self.vars[name[6:-1]] = value
                elif name.startswith("CDR("):
                    self.cdr[name[4:-1]] = value
                else:
                    raise AssertionError(f"Set of {name}")
            elif app == "GotoIf":
                cond, _, label = self.sub(args).partition("?")
                if cond.strip() not in ("", "0"):
                    pc = self.labels[label]
            elif app == "Goto":
                pc = self.labels[args]
            elif app in ("NoOp", "Log", "Playback"):
                self.sub(args)
            elif app == "UserEvent":
                self.events.append(self.sub(args))
            elif app == "Hangup":
                assert args == "21"
                return {"result": "blocked", "cdr": self.cdr, "e164": self.vars.get("tw_e"),
                        "events": self.events}  # fmt: skip
            elif app == "Return":
                return {"result": "pass", "cdr": self.cdr, "e164": self.vars.get("tw_e")}
            else:
                raise AssertionError(f"application {app} not interpreted")
        raise AssertionError("dialplan loops")

    def sub(self, text: str) -> str:
        while (m := _INNER.search(text)) is not None:
            text = text[: m.start()] + self.value(m.group(1)) + text[m.end() :]
        while (m := _EXPR.search(text)) is not None:
            text = text[: m.start()] + self.expr(m.group(1)) + text[m.end() :]
        return text

    def value(self, inner: str) -> str:
        fn = re.match(r"^(\w+)\((.*)\)$", inner)
        if fn:
            name, arg = fn.groups()
            if name == "LEN":
                return str(len(arg))
            if name == "FILTER":
                allowed, _, text = arg.partition(",")
                keep = set(allowed.replace("0-9", "0123456789"))
                return "".join(c for c in text if c in keep)
            if name == "REPLACE":
                var, chars = arg.split(",", 1)
                return "".join(c for c in self.vars.get(var, "") if c not in chars)
            if name == "CUT":
                var, delim, field = arg.split(",")
                delim = delim.replace("\\;", ";")  # extensions.conf escapes ';' (a comment)
                parts = self.vars.get(var, "").split(delim)
                if field.endswith("-"):  # a range to the end: "2-"
                    return delim.join(parts[int(field[:-1]) - 1 :])
                n = int(field)
                return parts[n - 1] if n <= len(parts) else ""
            if name == "FIELDQTY":
                var, delim = arg.split(",")
                return str(len(self.vars.get(var, "").split(delim)))
            if name == "DB_EXISTS":
                found = arg in self.db
                self.vars["DB_RESULT"] = self.db.get(arg, "")
                return "1" if found else "0"
            if name == "CHANNEL" and arg == "name":
                return self.channel
            if name == "CALLERID" and arg == "num":
                return self.callerid
            raise AssertionError(f"function {name} not interpreted")
        if inner == "EPOCH":
            return str(NOW)
        var, *sl = inner.split(":")
        assert re.fullmatch(r"\w+", var), inner
        value = self.vars.get(var, "")
        if sl:
            off = int(sl[0])
            value = value[off : off + int(sl[1])] if len(sl) > 1 else value[off:]
        return value

    def expr(self, text: str) -> str:
        ok = True
        for part in text.split("&"):
            m = _CMP.match(part)
            assert m, f"expression {text!r}"
            a, op, b = (x.strip('"') for x in m.groups())
            x: Any = a
            y: Any = b
            if re.fullmatch(r"-?\d+", a) and re.fullmatch(r"-?\d+", b):
                x, y = int(a), int(b)
            ok = ok and {"=": x == y, "!=": x != y, ">=": x >= y, "<=": x <= y, ">": x > y,
                         "<": x < y}[op]  # fmt: skip
        return "1" if ok else "0"


CONFIGS = {
    "JP": settings("JP"),
    "JP+0": settings("JP", dialplan={"access_codes": ["0"]}),
    "US+9": settings("US", dialplan={"access_codes": ["9"]}),
    "GB": settings("GB"),
}
NUMBERS = {
    "JP": [
        "0102327654321", "0102327654399", "01014412345678", "0312345678", "0112465551234",
        "0105351234567", "010-232-765-4321", "09012345678", "0120123456", "+2327654321",
        "+81312345678", "110", "119", "112", "201", "12345678", "1234567", "010", "0", "",
        "*97", "abc", "01018765551234", "0101", "0102327654321#", "+2327654321#", "110#",
        "201#", "#", "+#", "*97#", "0102327654321##", "010 232 765 4321", "010(232)7654321",
        "0102327654321 ", "010abc2327654321", "0102327654321;x", "1 1 0", " 110",
        "0102327654321;phone-context=+81", "+2327654321;user=phone", "*97;x",
        "1840102327654321", "1860102327654321", "0010102327654321", "00330102327654321",
        "00410102327654321", "00610102327654321", "18400330102327654321", "184 010 232 765 4321",
        "1840312345678", "0184123456", "1840184123456", "184110", "186119", "0010232765430",
        "184", "1840", "184201", "1841234567", "1840102327654321#",
    ],
    "GB": [
        "00232765432", "14100232765432", "147000232765432", "14102079460000", "02079460000",
        "141", "1410", "141999", "999", "112", "1412079460000",
    ],
    "JP+0": [
        "00102327654321", "0102327654321", "00312345678", "0312345678", "0110", "0119",
        "110", "0201", "012345678", "0012345678", "00120123456", "+2327654321", "00",
        "00101876555123", "01840102327654321", "000330102327654321", "0001010102327654321",
        "00184123456", "0184110", "0184", "01840033010232765432",
    ],
    "US+9": [
        "9011442071234567", "011442071234567", "918765551234", "18765551234", "8765551234",
        "98765551234", "911", "9911", "411", "2125551234", "92125551234", "12125551234",
        "5551234", "95551234", "+18765551234", "1-876-555-1234", "9011-53-7-1234567", "988",
        "9011442071234567#", "911#",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_dialplan_computes_the_classifiers_e164(name: str) -> None:
    s = CONFIGS[name]
    classifier = Classifier(s)
    dp = Dialplan(render(s))
    table = plan(s)
    for number in NUMBERS[name]:
        dest = classifier.classify(number)
        # the dialplan reads the dial characters only (a space, a letter, a parenthesis could
        # otherwise carry a blocked number past it): the classifier's reading of those
        kept = "".join(c for c in number.split(";", 1)[0] if c in "0123456789+#*")
        read = classifier.classify(kept)
        want = read.e164.lstrip("+") if read.e164 else None
        if not kept.lstrip("+").removesuffix("#").isdigit():
            want = None  # not digits: the dialplan never reads an E.164 number out of it
        got = dp.call(number)
        assert got["e164"] == want, (name, number, read)
        assert table.e164(number) == want, (name, number, read)
        if read.dest_class in ("emergency", "service", "internal"):
            assert want is None, (name, number, read)
        if dest.e164 is not None and dest.dest_class == "international":
            assert got["e164"] == dest.e164.lstrip("+"), (name, number, dest)  # never less


def _block(prefix: str, expires: int = NOW + 3600) -> dict[str, str]:
    return {f"tollwatch/block/{prefix}": f"{expires}|incident x"}


def test_blocked_prefix_refuses_with_cause_and_userfield() -> None:
    dp = Dialplan(render(CONFIGS["JP"]))
    got = dp.call("0102327654321", _block("232"))
    assert got["result"] == "blocked"
    assert got["cdr"] == {"userfield": "tollwatch-blocked:232"}
    assert dp.call("01014412345678", _block("232"))["result"] == "pass"
    assert dp.call("+2327654321", _block("232"))["result"] == "blocked"
    # after a caller-ID code (184 withhold, 186 send) or a carrier's code (0033 ... 010), the
    # network still routes the number abroad: they passed the block before
    for dialed in ("1840102327654321", "00330102327654321", "18400610102327654321"):
        assert dp.call(dialed, _block("232"))["result"] == "blocked", dialed
    assert dp.call("1840312345678", _block("232"))["result"] == "pass"


def test_longest_prefix_named_and_expired_entries_ignored() -> None:
    dp = Dialplan(render(CONFIGS["JP"]))
    db = {**_block("232"), **_block("2327")}
    assert dp.call("0102327654321", db)["cdr"]["userfield"] == "tollwatch-blocked:2327"
    expired = {**_block("2327", NOW - 1), **_block("232")}
    assert dp.call("0102327654321", expired)["cdr"]["userfield"] == "tollwatch-blocked:232"
    assert dp.call("0102327654321", _block("232", NOW - 1))["result"] == "pass"
    # a hand-made entry without an expiry (as in ami-actions.txt) blocks until deleted
    assert dp.call("0102327654321", {"tollwatch/block/232": "test block"})["result"] == ("blocked")


def test_nanp_area_code_block_in_the_us() -> None:
    dp = Dialplan(render(CONFIGS["US+9"]))
    for number in ("918765551234", "18765551234", "8765551234", "+18765551234"):
        if Classifier(CONFIGS["US+9"]).classify(number).e164 is None:
            continue
        assert dp.call(number, _block("1876"))["result"] == "blocked", number
    assert dp.call("2125551234", _block("1876"))["result"] == "pass"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_emergency_numbers_always_pass(name: str) -> None:
    s = CONFIGS[name]
    dp = Dialplan(render(s))
    everything = {f"tollwatch/block/{d}": f"{NOW + 99}|all" for d in "0123456789"}
    everything |= {f"tollwatch/src/{x}": f"{NOW + 99}|src" for x in ("201", "209")}
    classifier = Classifier(s)
    numbers = set(classifier.emergency) | {ac + e for ac in s.dialplan.access_codes
                                           for e in classifier.emergency}  # fmt: skip
    assert numbers
    for number in sorted(numbers):
        got = dp.call(number, everything, channel="PJSIP/209-0000000a", callerid="209")
        assert got["result"] == "pass" and not got["cdr"], (name, number)


@pytest.mark.parametrize(("channel", "endpoint"), [
    ("PJSIP/209-0000000a", "209"), ("PJSIP/acme-209-0000000a", "acme-209"),
    ("SIP/ntt-hikari-trunk-000001ff", "ntt-hikari-trunk"), ("PJSIP/carrier", "carrier"),
    ("Local/209@from-internal-00000001;2", "209@from-internal"), ("IAX2/acme-209-1234", "acme-209"),
])  # fmt: skip
def test_a_source_block_finds_the_endpoint_as_tollwatch_names_it(channel: str,
                                                                  endpoint: str) -> None:
    """The snippet cut the channel name at its first '-': a source block on an endpoint named
    with a dash (acme-209, as multi-tenant PBXes name them) never matched, so calls from it
    went through."""
    assert _endpoint(channel) == endpoint  # tollwatch's own name for it
    dp = Dialplan(render(CONFIGS["JP"]))
    db = {f"tollwatch/src/{endpoint}": f"{NOW + 60}|incident y"}
    got = dp.call("0102327654321", db, channel=channel, callerid="+442071234567")
    assert got["cdr"] == {"userfield": f"tollwatch-blocked:src:{endpoint}"}, channel
    other = {"tollwatch/src/acme": f"{NOW + 60}|incident y"}  # the first part is another one
    assert dp.call("0102327654321", other, channel=channel, callerid="x")["result"] == "pass"


def test_blocked_source_by_endpoint_or_caller_id() -> None:
    dp = Dialplan(render(CONFIGS["JP"]))
    db = {"tollwatch/src/209": f"{NOW + 60}|incident y"}
    got = dp.call("0102327654321", db, channel="PJSIP/209-0000000a", callerid="Desk")
    assert got["result"] == "blocked" and got["cdr"]["userfield"] == "tollwatch-blocked:src:209"
    assert got["events"] == ["TollwatchRefused,Hit: src:209,Dialed: 0102327654321"]
    got = dp.call("01014412345678", db, channel="Local/0101@from-internal-00000001;2",
                  callerid="209")  # fmt: skip
    assert got["result"] == "blocked"
    assert dp.call("0102327654321", db, channel="PJSIP/201-0000000b", callerid="201")[
        "result"] == "pass"  # fmt: skip
    # a source block refuses international calls only: domestic, emergency, internal pass
    for dialed in ("0312345678", "+81312345678", "110", "201", "12345678"):
        assert dp.call(dialed, db, channel="PJSIP/209-0000000a")["result"] == "pass", dialed
    expired = {"tollwatch/src/209": f"{NOW}|old"}
    assert dp.call("0102327654321", expired, channel="PJSIP/209-1")["result"] == "pass"


def test_family_and_sound_options() -> None:
    s = settings("JP", remediation={"family": "acme"})
    text = render(s, sound="ss-noservice")
    assert "DB_EXISTS(acme/block/" in text and "DB_EXISTS(acme/src/" in text
    assert " same => n,Playback(ss-noservice)" in text
    assert Dialplan(text).call("0102327654321", {"acme/block/232": f"{NOW + 5}|x"})["result"] == (
        "blocked"
    )


def test_packaged_snippet_is_the_generated_one() -> None:
    packaged = (ROOT / "packaging" / "tollwatch-block.conf").read_text(encoding="utf-8")
    assert packaged == render(settings("JP"))


@pytest.mark.parametrize("sound", ["x;comment", "x)\n same => n,System(rm -rf /)", "${EVIL}",
                                   "a,b", ""])  # fmt: skip
def test_a_sound_that_would_leave_playback_is_refused(sound: str) -> None:
    """--sound went into extensions.conf as written: a line end or ')' let it add dialplan."""
    s = settings("JP", "Asia/Tokyo")
    if sound:
        with pytest.raises(ValueError, match="a sound name is letters"):
            render(s, sound=sound)
    assert "Playback" not in render(s, sound=None)
    assert "Playback(ss-noservice&tt-weasels)" in render(s, sound="ss-noservice&tt-weasels")
