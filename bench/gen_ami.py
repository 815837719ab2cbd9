"""Generate a busy PBX's AMI event stream from the real Asterisk 22 recordings.

Every call of `ami-calls.txt` and `ami-attack.txt` (29 answered outbound calls, ~85 messages
each: Newchannel, VarSet, Newexten, DialBegin, DialState, DialEnd, Bridge*, Hangup,
DeviceStateChange, ChallengeSent/SuccessfulAuth, ...) becomes a template; the generator clones
them with fresh Uniqueids, channel names, bridge ids, SIP session ids, extensions and dialed
numbers, and interleaves the clones on a synthetic timeline so that `--concurrent` calls are up
at once on average. The output uses the recordings' framing (CRLF lines, a blank line after each
message, no banner, no Timestamp header: timestampevents=no as recorded) and ends with a
`FullyBooted` event that the benchmark uses as an end marker. `--timestamps` adds the header a
PBX with `timestampevents=yes` sends (`Timestamp: <epoch>.<micro>` after `Privilege:`), from
the synthetic timeline: the daemon then sees event time (ring and talk durations, the calls'
spacing) instead of arrival time, and `bench_daemon.py` rebases it to its own clock.

Traffic mix (of `--calls`): 70% domestic (Japanese dial plan, as the recordings: 0 + national
number), 25% international (010 + one of 16 ordinary countries), 0.5% high-risk (Sierra Leone,
Cuba, Jamaica, Russia), the rest internal phone-to-phone calls (their DialBegin goes to a phone,
not the trunk: no call for the rules). 800 phones, extensions 200-999. Numbers are drawn
(Zipf, s = 1.05) from a pool per kind of `--distinct` x that kind's calls, so customers are called
again and again as in `gen_cdr.py`; `--distinct 0` dials a fresh number every call (the
classifier's cache never hits).

    python bench/gen_ami.py --calls 20000            # -> bench/data/ami-busy-20000.txt
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tollwatch.cdr_ingest.live.fake_ami import encode, parse_frames

FIXTURES = Path("/work/shared/fixtures/asterisk-22")
DATA = Path(__file__).resolve().parent / "data"
TRANSCRIPTS = ("ami-calls.txt", "ami-attack.txt")

DOMESTIC = ("03", "06", "045", "011", "052", "092", "090", "080", "070", "0120", "050")
# (country code, national digits, leading digits)
INTERNATIONAL = (
    ("1", 10, "212555"), ("44", 10, "20"), ("86", 11, "10"), ("82", 9, "2"), ("49", 10, "30"),
    ("33", 9, "1"), ("65", 8, "6"), ("61", 9, "2"), ("66", 8, "2"), ("84", 9, "24"),
    ("63", 9, "2"), ("91", 10, "11"), ("886", 9, "2"), ("852", 8, "2"), ("39", 10, "06"),
    ("31", 9, "20"),
)  # fmt: skip
HIGH_RISK = (("232", 8, "76"), ("53", 8, "7"), ("1", 10, "876"), ("7", 10, "495"))
END_MARKER = {"Event": "FullyBooted", "Privilege": "system,all", "Uptime": "0",
              "LastReload": "0", "Status": "Fully Booted"}  # fmt: skip


@dataclass
class Template:
    """One recorded call; `msgs` are str.format templates of encoded messages and `phase`
    says when each is sent: 0 at call start, 1 at answer, 2 at hang-up."""

    msgs: list[str]
    phase: list[int]


def _calls_of(msgs: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """Split a recorded stream into per-call message lists (by Linkedid; auth events go to the
    next call of their account; bridge and device-state events to their call)."""
    bridge_call: dict[str, str] = {}
    for m in msgs:
        if m.get("Event") == "BridgeEnter":
            bridge_call[m["BridgeUniqueid"]] = m["Linkedid"]
    calls: dict[str, list[dict[str, str]]] = {}
    pending: dict[str, list[dict[str, str]]] = {}  # AccountID -> auth events before its call
    last = ""
    for m in msgs:
        name = m.get("Event", "")
        if "Linkedid" in m:
            last = m["Linkedid"]
            if last not in calls:
                calls[last] = pending.pop(m.get("CallerIDNum", ""), [])
            calls[last].append(m)
        elif name in ("ChallengeSent", "SuccessfulAuth") and m.get("Service") == "PJSIP":
            pending.setdefault(m["AccountID"], []).append(m)
        elif "BridgeUniqueid" in m:
            calls[bridge_call[m["BridgeUniqueid"]]].append(m)
        elif name == "DeviceStateChange" and last:
            calls[last].append(m)
    return list(calls.values())


_PRIVILEGE = re.compile(r"(\r\nPrivilege: [^\r]*\r\n)")


def _template(call: list[dict[str, str]], timestamps: bool = False) -> Template | None:
    [begin] = [m for m in call if m.get("Event") == "DialBegin"] or [None]
    if begin is None or not call[0].get("Event", "").endswith("Sent"):
        return None
    ext = begin["CallerIDNum"]
    number = begin["DialString"].split("@")[0]
    subst = {
        begin["Channel"]: "{cchan}", begin["DestChannel"]: "{tchan}",
        begin["Uniqueid"]: "{cuid}", begin["DestUniqueid"]: "{tuid}",
        number: "{num}",
    }  # fmt: skip
    for m in call:
        if "BridgeUniqueid" in m:
            subst[m["BridgeUniqueid"]] = "{bridge}"
        if m.get("Event") in ("ChallengeSent", "SuccessfulAuth"):
            subst[m["SessionID"]] = "{sess}"
        if m.get("Variable") == "BRIDGEPVTCALLID" and m["Channel"] == begin["Channel"]:
            subst[m["Value"]] = "{pvt}"
    keys = sorted((k for k in subst if k), key=len, reverse=True)
    rx = re.compile("|".join(re.escape(k) for k in keys))
    ext_rx = re.compile(rf"\b{re.escape(ext)}\b")
    peer_rx = re.compile(r"\bcarrier\b")
    out, phase, now = [], [], 0
    for m in call:
        name = m.get("Event", "")
        if (
            name == "Newstate"
            and m["Channel"] == begin["DestChannel"]
            and now == 0
            and any(x.get("Event") == "DialState" for x in call[: call.index(m)])
        ):
            now = 1  # the trunk channel comes up: answer
        if name in ("HangupRequest", "SoftHangupRequest", "BridgeLeave") and now < 2:
            now = 2
        text = encode(m).decode().replace("{", "{{").replace("}", "}}")
        text = rx.sub(lambda x: subst[x.group(0)], text)
        text = ext_rx.sub("{ext}", peer_rx.sub("{peer}", text))
        for key in ("EventTV", "SessionTV"):
            text = re.sub(rf"{key}: [^\r]*", f"{key}: {{tv}}", text)
        if timestamps:  # as manager.c writes it: right after Privilege
            text = _PRIVILEGE.sub(lambda x: x.group(1) + "Timestamp: {ts}\r\n", text, count=1)
        out.append(text)
        phase.append(now)
    return Template(out, phase)


def load_templates(fixtures: Path = FIXTURES, timestamps: bool = False) -> list[Template]:
    templates = []
    for name in TRANSCRIPTS:
        msgs = parse_frames((fixtures / name).read_bytes())
        templates += [t for c in _calls_of(msgs) if (t := _template(c, timestamps)) is not None]
    return templates


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def dial(rng: random.Random, kind: str) -> str:
    if kind == "domestic":
        prefix = rng.choice(DOMESTIC)
        return prefix + _digits(rng, (11 if prefix in ("090", "080", "070", "050") else 10)
                                - len(prefix))  # fmt: skip
    cc, n, lead = rng.choice(HIGH_RISK if kind == "high_risk" else INTERNATIONAL)
    return f"010{cc}{lead}{_digits(rng, n - len(lead))}"


def generate(
    calls: int,
    concurrent: int = 400,
    seed: int = 1,
    start: float | None = None,
    distinct: float = 0.1,
    timestamps: bool = False,
) -> Iterator[bytes]:
    """The stream, message by message (encoded), end marker included; with `timestamps`,
    each message says when it happened (`Timestamp:`, timestampevents=yes)."""
    rng = random.Random(seed)
    templates = load_templates(timestamps=timestamps)
    share = {"domestic": 0.70, "international": 0.25, "high_risk": 0.005}
    pool_n = {k: max(1, int(calls * v * distinct)) for k, v in share.items()}
    zipf = {k: list(itertools.accumulate(1 / (j + 1) ** 1.05 for j in range(n)))
            for k, n in pool_n.items()}  # fmt: skip
    pools: dict[str, list[str]] = {}
    start = time.time() if start is None else start
    mean_hold = 150.0  # s: ring ~10 s + talk log-normal median ~100 s
    rate = concurrent / mean_hold  # calls/s
    heap: list[tuple[float, int, str]] = []
    t = start
    seq = 0
    chan_n = rng.randrange(1 << 20)
    uid_n = 1000
    for i in range(calls):
        t += rng.expovariate(rate)
        r = rng.random()
        kind = ("domestic" if r < 0.70 else "international" if r < 0.95
                else "high_risk" if r < 0.955 else "internal")  # fmt: skip
        ext = str(rng.randrange(200, 1000))
        if kind == "internal":
            other = str(rng.randrange(200, 1000))
            num, peer = other, other
        elif distinct > 0:  # customers are called again and again (Zipf over a pool)
            if kind not in pools:
                pools[kind] = [dial(rng, kind) for _ in range(pool_n[kind])]
            pool = pools[kind]
            num, peer = rng.choices(pool, cum_weights=zipf[kind])[0], "carrier"
        else:
            num, peer = dial(rng, kind), "carrier"
        tpl = templates[i % len(templates)]
        sec = int(t)
        vals = {
            "cchan": f"PJSIP/{ext}-{chan_n:08x}", "tchan": f"PJSIP/{peer}-{chan_n + 1:08x}",
            "cuid": f"{sec}.{uid_n}", "tuid": f"{sec}.{uid_n + 1}",
            "num": num, "ext": ext, "peer": peer, "sess": f"{i}-{seed}@10.0.0.1",
            "bridge": str(uuid.UUID(int=rng.getrandbits(128))),
            "pvt": str(uuid.UUID(int=rng.getrandbits(128))),
        }  # fmt: skip
        chan_n += 2
        uid_n += 2
        ring = rng.uniform(2, 20)
        talk = min(rng.lognormvariate(4.6, 1.0), 3600.0)
        when = (t, t + ring, t + ring + talk)
        for k, (text, ph) in enumerate(zip(tpl.msgs, tpl.phase, strict=True)):
            at = when[ph] + k * 1e-4
            vals["tv"] = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            vals["tv"] += "+0000"
            vals["ts"] = f"{at:.6f}"
            seq += 1
            heapq.heappush(heap, (at, seq, text.format(**vals)))
        while heap and heap[0][0] <= t:
            yield heapq.heappop(heap)[2].encode()
    while heap:
        yield heapq.heappop(heap)[2].encode()
    yield encode(END_MARKER)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--concurrent", type=int, default=400, help="calls up at once on average")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--distinct", type=float, default=0.1,
                    help="numbers dialed: a pool of DISTINCT x calls of each kind, Zipf-drawn;"
                         " 0: a fresh random number for every call")  # fmt: skip
    ap.add_argument(
        "--timestamps",
        action="store_true",
        help="a Timestamp header on every message (timestampevents=yes)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    stem = f"ami-busy-{args.calls}" + ("-ts" if args.timestamps else "")
    out = args.out or DATA / f"{stem}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n = 0
    with out.open("wb") as f:
        buf: list[bytes] = []
        for msg in generate(
            args.calls,
            args.concurrent,
            args.seed,
            distinct=args.distinct,
            timestamps=args.timestamps,
        ):
            buf.append(msg)
            n += 1
            if len(buf) >= 10000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    size = out.stat().st_size
    print(f"{out}: {args.calls} calls, {n} messages, {size / 1e6:.0f} MB "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
