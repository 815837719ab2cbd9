"""Record the forwarded-call fixture (tests/fixtures/forwarded) on the real Asterisk 22.

The carrier (sipp from 127.0.0.1:5072) delivers inbound calls with rotating caller ids: twelve on
DID 0312345678 (desk 201, whose call forward in AstDB `CF/201` sends them abroad through a Local
channel) and four on DID 0312345679 (forwarded abroad straight from the inbound context). The
AMI byte stream (after login) and Master.csv are written to OUT_DIR as ami-forwarded.txt and
Master-forwarded.csv.

    python3 -m tests.forwarded_record tests/fixtures/forwarded [--rate-ms 5000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.asterisk_pbx import AMI_PORT, AMI_SECRET, AMI_USER, Pbx, asterisk_pbx, manager_conf

HERE = Path(__file__).resolve().parent / "fixtures" / "forwarded"
FORWARD_TO = "0102327654321"  # desk 201's call forward: Sierra Leone


class AmiRecorder:
    """Log in to AMI and keep every byte received, from the banner on."""

    def __init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", AMI_PORT), timeout=10)
        self.data = bytearray()
        self._stop = threading.Event()
        login = (
            f"Action: Login\r\nActionID: l1\r\nUsername: {AMI_USER}\r\n"
            f"Secret: {AMI_SECRET}\r\nEvents: on\r\n\r\n"
        )
        self.sock.sendall(login.encode())
        self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            self.data.extend(chunk)

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        return bytes(self.data)


READ = "system,call,log,verbose,command,agent,user,config,dtmf,reporting,cdr,dialplan,security"


@contextmanager
def forwarding_pbx(tmp: Path) -> Iterator[Pbx]:
    """The shared test Asterisk (tests/asterisk_pbx.py) with this fixture's configuration."""
    etc = tmp / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for f in (HERE / "etc").glob("*.conf"):
        shutil.copy(f, etc / f.name)
    manager = manager_conf(READ, "system,call,command,originate,reporting,config")
    manager = manager.replace("port = 5038\n", "port = 5038\ntimestampevents = yes\n")
    (etc / "manager.conf").write_text(manager, encoding="utf-8")
    with asterisk_pbx(tmp, etc) as pbx:
        yield pbx


def _wait_idle(pbx: Pbx, timeout: float = 30.0) -> None:
    """Until no channel is up (every call hung up, its CDR written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "0 active channels" in pbx.cli("core show channels count"):
            time.sleep(0.5)  # cdr_csv writes at hangup, from a task thread
            return
        time.sleep(0.2)
    raise TimeoutError("calls still up on the test Asterisk")


def record(pbx: Pbx, calls: Path, rate_ms: int) -> tuple[bytes, bytes]:
    """Place the inbound calls listed in `calls` (sipp -inf) and return (Master.csv, AMI)."""
    pbx.cli(f"database put CF 201 {FORWARD_TO}")
    ami = AmiRecorder()
    time.sleep(0.5)
    n = sum(1 for line in calls.read_text().splitlines()[1:] if line.strip())
    cmd = [
        "sipp", "127.0.0.1:5060", "-i", "127.0.0.1", "-nostdin",
        "-sf", str(HERE / "sipp" / "uac_carrier.xml"), "-inf", str(calls),
        "-p", "5072", "-r", "1", "-rp", str(rate_ms), "-m", str(n), "-l", "20",
    ]
    result = subprocess.run(cmd, capture_output=True, timeout=60 + n * rate_ms / 1000,
                            cwd=pbx.dir)  # fmt: skip
    _wait_idle(pbx)
    stream = ami.stop()
    if result.returncode != 0:
        raise RuntimeError(f"sipp exit {result.returncode}: {result.stderr.decode()[-500:]}")
    return pbx.cdr.read_bytes(), stream


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--rate-ms", type=int, default=5000, help="one call every N ms")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tollwatch-fwd-") as tmp, forwarding_pbx(
        Path(tmp)
    ) as pbx:
        master, stream = record(pbx, HERE / "sipp" / "inbound.csv", args.rate_ms)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "Master-forwarded.csv").write_bytes(master)
    (args.out_dir / "ami-forwarded.txt").write_bytes(stream)
    print(f"{len(master.splitlines())} CDR rows, {len(stream)} bytes of AMI")


if __name__ == "__main__":
    main()
