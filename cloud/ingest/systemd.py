"""systemd's notify protocol (sd_notify(3)) without libsystemd: one datagram per state to
the socket in $NOTIFY_SOCKET. A no-op when not run by systemd with Type=notify."""

from __future__ import annotations

import contextlib
import os
import socket
import time


class Notifier:
    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address  # "@" is the abstract namespace
        watchdog_us = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self.watchdog_every_s = watchdog_us / 2e6 if watchdog_us else 0.0  # ping at half the timeout
        self._last_ping = 0.0

    def notify(self, state: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            sock.sendto(state.encode(), self.address)  # systemd gone or not listening: nothing to tell

    def ready(self) -> None:
        self.notify("READY=1\nSTATUS=ingesting")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Call from the main loop: pings systemd's watchdog (no more often than needed)."""
        now = time.monotonic()
        if self.watchdog_every_s and now - self._last_ping >= self.watchdog_every_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")
