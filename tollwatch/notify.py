"""The systemd notify protocol (sd_notify), without a dependency: datagrams on $NOTIFY_SOCKET.

`READY=1` once the daemon runs, `STATUS=…` with what it is doing, `WATCHDOG=1` every half
`WATCHDOG_USEC` while the pipeline makes progress (never from a timer alone: a stuck daemon
stops feeding the watchdog and systemd restarts it), `STOPPING=1` at shutdown. Outside systemd
(no $NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("tollwatch.notify")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if path.startswith("@"):  # an abstract socket
            self.address = "\0" + path[1:]
        elif path.startswith("/"):
            self.address = path
        self.watchdog: float | None = None  # seconds between WATCHDOG=1
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog = int(usec) / 2e6
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; False (logged once) when it cannot."""
        if self.address is None:
            return False
        data = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # never stall the event loop on a full receiver
            self._sock.sendto(data, self.address)
        except BlockingIOError:
            return False  # the receiver is behind: this one is skipped, the next one goes
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notify: cannot send to $NOTIFY_SOCKET (%s)", exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def alive(self, status: str) -> None:
        self.send("WATCHDOG=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
