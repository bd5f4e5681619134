"""systemd notify protocol: one datagram to ``$NOTIFY_SOCKET``; a no-op when not run by systemd."""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._warned = False

    def notify(self, *lines: str) -> None:
        """Best effort: a notification that cannot be sent is logged once, never fatal.

        A send failure (systemd restarted, socket gone) used to raise in the scoring thread and stop the
        daemon; the watchdog, if configured, is what notices a daemon that can no longer notify.
        """
        if not self.address:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd", extra={"socket": self.address, "error": str(exc)})

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def reloading(self) -> None:
        """systemd 253+ (Type=notify-reload) wants the CLOCK_MONOTONIC time of the reload with it."""
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
