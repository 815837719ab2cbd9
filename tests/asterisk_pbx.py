"""The real Asterisk 22 (../shared/asterisk-22) and sipp for integration tests (marker `asterisk`).

    with asterisk_pbx(tmp_path, extensions=..., manager=...) as pbx:
        pbx.call("209", "0102327654300")        # one sipp call (digest auth), outcome back
        pbx.calls("209", numbers, rate=2)        # an attack: N calls at `rate` per second
        pbx.restart(wipe_astdb=True)
        pbx.cli("database show tollwatch")

The context manager holds an exclusive `fcntl.flock` on /tmp/asterisk.lock for as long as
Asterisk runs (the ports 5060/5070/5038 are fixed: one user at a time on a machine), starts
Asterisk from a scratch directory with the fixture PBX (or the config files given), runs a
sipp UAS as the carrier on 5070, and stops everything on the way out, failures included.
`skip_reason()` says why it cannot run here (no binary, missing runtime libraries, no sipp);
CI installs what is missing (.ci/apt-packages.txt).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

AST_DIR = ROOT.parent / "shared" / "asterisk-22"
CTL = AST_DIR / "ctl"
ETC = ROOT.parent / "shared" / "fixtures" / "asterisk-22" / "etc"
UAC = AST_DIR / "sipp" / "uac_auth.xml"
LOCK = Path("/tmp/asterisk.lock")
AMI_PORT = 5038
AMI_USER = "tollwatch"
AMI_SECRET = "tollwatch-test-secret"
PHONE_PORT = 5061  # the fixture's phones; sipp UACs use PHONE_PORTS (never the carrier's 5070)
PHONE_PORTS = range(5100, 5200)


def skip_reason() -> str | None:
    """Why the real Asterisk cannot run here, or None."""
    if not CTL.is_file():
        return f"no Asterisk build at {AST_DIR}"
    if os.uname().machine != "x86_64":
        return "the shared Asterisk build is x86-64 Linux only"
    deps = subprocess.run([str(CTL), "deps"], capture_output=True, text=True, timeout=60)
    if deps.returncode != 0:
        return "Asterisk runtime libraries missing: " + " ".join(deps.stderr.split())[:300]
    if shutil.which("sipp") is None:
        return "sipp not installed (apt-get install -y sip-tester)"
    return None


@dataclass(frozen=True)
class CallResult:
    source: str
    dialed: str
    ok: bool  # answered by the carrier (sipp saw 200 OK)
    detail: str


class Pbx:
    def __init__(self, scratch: Path, etc: Path) -> None:
        self.dir = scratch
        self.etc = etc
        self.carrier: subprocess.Popen[bytes] | None = None
        self._count = itertools.count(1)  # thread-safe: calls may be placed from threads

    @property
    def cdr(self) -> Path:
        return self.dir / "var" / "log" / "cdr-csv" / "Master.csv"

    @property
    def astdb(self) -> Path:
        return self.dir / "var" / "lib" / "astdb.sqlite3"

    def start(self) -> None:
        res = subprocess.run([str(CTL), "start", str(self.dir), str(self.etc)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"Asterisk did not start: {res.stdout}{res.stderr}")

    def stop(self) -> None:
        subprocess.run([str(CTL), "stop", str(self.dir)], capture_output=True, timeout=60)

    def restart(self, wipe_astdb: bool = False) -> None:
        self.stop()
        if wipe_astdb:
            for f in self.astdb.parent.glob("astdb.sqlite3*"):
                f.unlink()
        self.start()

    def cli(self, command: str) -> str:
        res = subprocess.run([str(CTL), "cli", str(self.dir), command],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        return res.stdout

    def start_carrier(self) -> None:
        log = (self.dir / "carrier.log").open("wb")
        self.carrier = subprocess.Popen(
            ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", "5070", "-nostdin",
             "-max_socket", "200"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True,
        )  # fmt: skip

    def stop_carrier(self) -> None:
        proc, self.carrier = self.carrier, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    # ---- phones ----------------------------------------------------------------------
    def calls(
        self, source: str, numbers: Sequence[str], rate: float = 2.0, timeout: float = 120.0,
        wait: bool = True,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        """Place calls from phone `source` to `numbers`, `rate` per second, each ~3 s long."""
        n = next(self._count)
        inf = self.dir / f"calls-{n}.csv"
        lines = ["SEQUENTIAL"] + [
            f"{source};{n};[authentication username={source} password=secret{source}]"
            for n in numbers
        ]
        inf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        port = PHONE_PORTS[n % len(PHONE_PORTS)]
        cmd = ["sipp", "127.0.0.1:5060", "-sf", str(UAC), "-inf", str(inf), "-i", "127.0.0.1",
               "-p", str(port), "-r", str(rate), "-m", str(len(numbers)),
               "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error",
               "-recv_timeout", "20000", "-trace_stat", "-trace_err", "-max_socket", "200"]
        log = (self.dir / f"calls-{n}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                start_new_session=True)  # fmt: skip
        if wait:
            proc.wait(timeout + 10)
        return proc

    def call(self, source: str, dialed: str) -> bool:
        """One call; True when the carrier answered it (sipp's exit status 0)."""
        proc = self.calls(source, [dialed], rate=1, timeout=30)
        return proc.returncode == 0


@contextlib.contextmanager
def locked() -> Iterator[None]:
    with LOCK.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def config_dir(
    target: Path, *, extensions: str | None = None, manager: str | None = None,
    extra: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """The fixture PBX's config files, with these replaced or added."""
    target.mkdir(parents=True, exist_ok=True)
    for f in ETC.glob("*.conf"):
        shutil.copy(f, target / f.name)
        (target / f.name).chmod(0o644)
    if extensions is not None:
        (target / "extensions.conf").write_text(extensions, encoding="utf-8")
    if manager is not None:
        (target / "manager.conf").write_text(manager, encoding="utf-8")
    for name, text in (extra or {}).items():
        (target / name).write_text(text, encoding="utf-8")
    return target


def manager_conf(read: str, write: str, user: str = AMI_USER, secret: str = AMI_SECRET) -> str:
    return (
        "[general]\nenabled = yes\nport = 5038\nbindaddr = 127.0.0.1\n\n"
        f"[{user}]\nsecret = {secret}\ndeny = 0.0.0.0/0.0.0.0\n"
        f"permit = 127.0.0.1/255.255.255.255\nread = {read}\nwrite = {write}\n"
    )


@contextlib.contextmanager
def asterisk_pbx(tmp: Path, etc: Path | None = None) -> Iterator[Pbx]:
    """Asterisk + the carrier, under the machine-wide lock; stopped on the way out."""
    scratch = tmp / "asterisk"
    with locked():
        pbx = Pbx(scratch, etc or config_dir(tmp / "etc"))
        try:
            pbx.start()
            pbx.start_carrier()
            time.sleep(0.2)
            yield pbx
        finally:
            pbx.stop_carrier()
            pbx.stop()
