"""Property-based fuzz of the CDR reader and the AMI framing (marker `fuzz`; a fixed example
budget, derandomized so CI runs the same examples every time): no exception escapes, and every
valid row / frame among hostile ones is still read, with its line / fields intact."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tollwatch.cdr_ingest import CdrOptions
from tollwatch.cdr_ingest._scan import scan_file
from tollwatch.cdr_ingest.live.ami_framing import Framer

pytestmark = pytest.mark.fuzz
BUDGET = settings(max_examples=120, derandomize=True, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])

# ---- CDR rows ----------------------------------------------------------------------------------
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=24)
_DIGITS = st.text("0123456789", min_size=1, max_size=15)


@st.composite
def valid_row(draw: st.DrawFn) -> list[str]:
    sec = draw(st.integers(0, 59))
    dur = draw(st.integers(0, 3000))
    return [
        draw(_TEXT), draw(_DIGITS), draw(_DIGITS), draw(_TEXT), draw(_TEXT),
        "PJSIP/" + draw(_DIGITS) + "-0000000a", "PJSIP/carrier-0000000b", "Dial",
        draw(_TEXT), f"2026-11-24 13:30:{sec:02d}", f"2026-11-24 13:30:{sec:02d}",
        f"2026-11-24 14:{sec:02d}:00", str(dur), str(dur), "ANSWERED", "DOCUMENTATION",
        f"1795527011.{draw(st.integers(0, 10**6))}", draw(_TEXT),
    ]


_JUNK = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))


def encode(row: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(row)
    return out.getvalue().encode()


@BUDGET
@given(st.lists(st.one_of(valid_row().map(encode), _JUNK.map(lambda b: b + b"\n")),
                min_size=1, max_size=40),
       st.lists(valid_row(), min_size=3, max_size=3))
def test_cdr_reader_reads_every_valid_row(lines: list[bytes], lead: list[list[str]]) -> None:
    body = [encode(r) for r in lead] + lines  # three good rows first: the layout is detected
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Master.csv"
        path.write_bytes(b"".join(body))
        frame = scan_file(path, "Master.csv", CdrOptions()).collect()
    good = {r["origin"] for r in frame.iter_rows(named=True) if r["problem"] is None}
    valid_lines = {f"Master.csv:{i + 1}" for i, line in enumerate(body)
                   if line in {encode(r) for r in lead} or _is_valid(line)}
    assert valid_lines <= good  # every valid row read, at its own line


def _is_valid(line: bytes) -> bool:
    try:
        row = next(csv.reader([line.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return False
    return len(row) == 18 and row[7] == "Dial" and row[14] == "ANSWERED" and encode(row) == line


# ---- AMI frames --------------------------------------------------------------------------------
_KEY = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
_VALUE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                 max_size=30).map(str.strip)


@st.composite
def message(draw: st.DrawFn) -> list[tuple[str, str]]:
    head = ("Event", draw(_KEY))
    fields = draw(st.lists(st.tuples(_KEY.filter(lambda k: k not in ("Event", "Response")),
                                     _VALUE), max_size=6))
    return [head, *fields]


def wire(msg: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in msg).encode() + b"\r\n"


_NOISE = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"") + b"\n"),
    message().map(lambda m: "".join(f"{k}: {v}\n" for k, v in m).encode() + b"\n"),  # bare LF
)


@BUDGET
@given(st.lists(st.one_of(message().map(lambda m: ("ok", m)), _NOISE.map(lambda n: ("noise", n))),
                max_size=30),
       st.lists(st.integers(1, 97), min_size=1, max_size=20))
def test_ami_framing_reads_every_valid_frame(items: list[tuple[str, object]],
                                             cuts: list[int]) -> None:
    stream = b"Asterisk Call Manager/22.0.0\r\n"
    wanted: list[str] = []
    for kind, item in items:
        if kind == "ok":
            assert isinstance(item, list)
            stream += wire(item)
            wanted.append("\r\n".join(f"{k}: {v}".rstrip() for k, v in item))
        else:
            assert isinstance(item, bytes)
            stream += item
    stream += wire([("Event", "End")])  # a last good frame ends any noise before it
    framer = Framer()
    frames: list[str] = []
    at, i = 0, 0
    while at < len(stream):  # arbitrary read sizes, as a socket gives them
        size = cuts[i % len(cuts)]
        frames += framer.feed(stream[at:at + size])
        at += size
        i += 1
    assert framer.version == "22.0.0"
    got = [f.replace("\r\n", "\n").split("\n") for f in frames]
    normal = ["\n".join(ln.rstrip() for ln in f) for f in got]
    for frame in wanted:  # every valid frame, whole, in order
        assert frame.replace("\r\n", "\n") in normal
    assert normal[-1] == "Event: End"
