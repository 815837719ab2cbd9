"""systemd's notify protocol for `Type=notify` + `WatchdogSec=`: READY=1 once the daemon runs,
WATCHDOG=1 while its event loop turns, STOPPING=1 on the way out. A no-op outside systemd
(no $NOTIFY_SOCKET). A datagram to a Unix socket; no library needed."""

from __future__ import annotations

import asyncio
import os
import socket


def notify(message: str) -> bool:
    """Send one notification; False when not under systemd or the socket is gone."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # never wait on systemd: a full queue drops one ping
            sock.connect(address)
            sock.send(message.encode())
    except OSError:  # includes BlockingIOError
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec (systemd's advice), or None when no watchdog is asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog() -> None:
    """Ping the watchdog while the event loop runs (a hung loop stops the pings)."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
