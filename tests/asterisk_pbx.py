"""The real Asterisk 22 (../shared/asterisk-22) for tests marked `asterisk`, one user at a time.

`asterisk_pbx()` holds an exclusive flock on /tmp/asterisk.lock for as long as Asterisk runs
(its SIP/AMI ports are fixed), boots it from a scratch directory with a fixture config (the
shared one by default), sets the AMI secret, starts the carrier (a sipp UAS on 5070), and stops
everything on the way out, also on failure. Tests use the `pbx` fixture or the context manager:

    with asterisk_pbx(etc=Path("tests/fixtures/forwarded/etc")) as pbx:
        pbx.cli("database put CF 201 0102327654321")
        pbx.sipp("-sf", "scenario.xml", "-inf", "calls.csv", "-m", "3", "-p", "5072")

Where Asterisk cannot run (missing runtime libraries, no sipp, not x86-64 Linux) the test is
skipped with the reason; CI installs what is needed (.ci/apt-packages.txt) so it always runs there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

ASTERISK = ROOT.parent / "shared" / "asterisk-22"
SHARED_ETC = ROOT.parent / "shared" / "fixtures" / "asterisk-22" / "etc"
LOCK = Path("/tmp/asterisk.lock")
AMI_PORT = 5038
AMI_USER = "monitor"
CARRIER_PORT = 5070


@dataclass
class Pbx:
    dir: Path
    secret: str
    ami_host: str = "127.0.0.1"
    ami_port: int = AMI_PORT
    ami_user: str = AMI_USER
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def master_csv(self) -> Path:
        return self.dir / "var" / "log" / "cdr-csv" / "Master.csv"

    def cli(self, command: str) -> str:
        out = subprocess.run(
            [str(ASTERISK / "ctl"), "cli", str(self.dir), command],
            capture_output=True, text=True, timeout=30, check=True,
        )
        return out.stdout

    def sipp(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
        """Run sipp in the foreground against the PBX's SIP port (127.0.0.1:5060)."""
        cmd = ["sipp", "127.0.0.1:5060", "-i", "127.0.0.1", "-nostdin", *args]
        return subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=self.dir)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no channel is up (every call hung up, CDRs written)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "0 active channels" in self.cli("core show channels count"):
                time.sleep(0.5)  # cdr_csv writes at hangup, from a task thread
                return
            time.sleep(0.2)
        raise TimeoutError("calls still up on the test Asterisk")


def unavailable() -> str | None:
    """Why the real Asterisk cannot run here, or None."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return "the prebuilt Asterisk runs on x86-64 Linux only"
    if not (ASTERISK / "ctl").exists():
        return f"no Asterisk at {ASTERISK}"
    deps = subprocess.run([str(ASTERISK / "ctl"), "deps"], capture_output=True, text=True)
    if deps.returncode != 0:
        return "Asterisk runtime libraries missing: " + deps.stderr.strip().splitlines()[-1]
    if shutil.which("sipp") is None:
        return "sipp not installed (apt-get install -y sip-tester)"
    return None


@contextlib.contextmanager
def asterisk_pbx(etc: Path | None = None) -> Iterator[Pbx]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with LOCK.open("a") as lock, tempfile.TemporaryDirectory(prefix="tollwatch-ast-") as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield from _run(Path(tmp), etc or SHARED_ETC)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(tmp: Path, etc: Path) -> Iterator[Pbx]:
    secret = os.urandom(12).hex()
    conf = tmp / "etc-src"
    conf.mkdir()
    for f in etc.glob("*.conf"):
        text = f.read_text()
        if f.name == "manager.conf":
            text = text.replace("secret = CHANGE-ME", f"secret = {secret}")
        (conf / f.name).write_text(text)
    pbx = Pbx(tmp / "ast", secret)
    ctl = str(ASTERISK / "ctl")
    try:
        subprocess.run([ctl, "start", str(pbx.dir), str(conf)], check=True, timeout=60,
                       capture_output=True)
        carrier = subprocess.Popen(
            ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(CARRIER_PORT), "-nostdin"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        pbx.procs.append(carrier)
        yield pbx
    finally:
        subprocess.run([ctl, "stop", str(pbx.dir)], timeout=60, capture_output=True)
        for proc in pbx.procs:  # ours, by pid
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def pbx() -> Iterator[Pbx]:
    with asterisk_pbx() as p:
        yield p
