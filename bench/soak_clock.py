"""The soak on a fast clock: libfaketime makes the bench and every process it starts (the
daemon) see one clock running N times as fast as the real one, so hours of the daemon's time
(its rule spans of 6 h, its timers, the traffic's times) pass in minutes of real time.

Checked on Debian 12, libfaketime 0.9.10 (`libfaketimeMT.so.1`, FAKETIME="+0 x8"): Python's
time.time/monotonic, time.sleep, asyncio sleeps and timeouts (epoll), a worker thread's sleep,
SQLite's `now` all run 8x; a child process started by the faked parent shares the parent's
start (its clock reads between the parent's before and after the start). Not faked: waits with
a timeout on a threading lock (sem_clockwait: `threading.Event().wait(2)` did not return);
nothing in the daemon or the bench waits that way (asyncio and plain blocking waits only).
Kernel times are real: file mtimes, /proc/uptime (used here for real seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

FAKETIME_LIBS = [
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1"),
    Path("/usr/local/lib/faketime/libfaketimeMT.so.1"),
]


def faketime_env(speed: float) -> dict[str, str]:
    """The environment that runs a process, and every process it starts, on one clock
    running `speed` times as fast as the real one (libfaketime; the children share the
    parent's start through libfaketime's shared memory, FAKETIME_DONT_RESET)."""
    lib = next((p for p in FAKETIME_LIBS if p.exists()), None)
    if lib is None:
        raise SystemExit(
            "--speed needs libfaketime: libfaketimeMT.so.1 not found in "
            + ", ".join(str(p.parent) for p in FAKETIME_LIBS)
            + " (Debian/Ubuntu: apt-get install faketime)"
        )
    return {
        "LD_PRELOAD": str(lib),
        "FAKETIME": f"+0 x{speed:g}",
        "FAKETIME_DONT_RESET": "1",
        "TOLLWATCH_SOAK_SPEED": f"{speed:g}",
    }


def real_seconds() -> float:
    """Seconds since boot by the kernel (/proc/uptime): real time, which libfaketime does not
    change."""
    return float(Path("/proc/uptime").read_text().split()[0])


def on_fast_clock(script: Path, speed: float, argv: list[str], out: Path | None) -> dict[str, Any]:
    """A bench (`script`) in a child process on the fast clock (its own children, the daemon
    among them, inherit it); its figures read back from its --out file."""
    env = {**os.environ, **faketime_env(speed)}
    with tempfile.TemporaryDirectory(prefix="tw-soak-out-") as where:
        path = out or Path(where) / "soak.json"
        if out is None:
            argv = [*argv, "--out", str(path)]
        code = subprocess.run([sys.executable, str(script), *argv], env=env, check=False).returncode
        if code:
            raise SystemExit(f"the soak on a fast clock failed (exit {code})")
        doc: dict[str, Any] = json.loads(path.read_text())
    return doc
