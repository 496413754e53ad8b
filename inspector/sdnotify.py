"""systemd readiness and watchdog notifications (``sd_notify``) with no library: one datagram per message.

Units run with ``Type=notify`` and ``WatchdogSec=``: systemd waits for ``READY=1`` before it calls the
service started, and restarts it when ``WATCHDOG=1`` stops coming, which catches a process that is alive
but stuck (a hung camera read, a dead loop), not only one that crashed. Outside systemd
(``$NOTIFY_SOCKET`` unset) every call is a no-op, so the same code runs on a laptop.

Call :meth:`Notifier.ready` once the service works, :meth:`Notifier.watchdog` from the main loop (it
rate-limits itself to half the watchdog interval), and :meth:`Notifier.stopping` on shutdown.

Example:
    >>> notifier = Notifier(env={})
    >>> notifier.enabled, notifier.ready()
    (False, False)
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping, Optional

log = logging.getLogger(__name__)


class Notifier:
    """Sends ``KEY=value`` lines to the socket systemd names in ``$NOTIFY_SOCKET``."""

    def __init__(self, env: Optional[Mapping[str, str]] = None):
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the Linux abstract namespace, written with a NUL byte.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s = self._watchdog_interval(env)
        self._last_watchdog = float("-inf")

    @staticmethod
    def _watchdog_interval(env: Mapping[str, str]) -> Optional[float]:
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None  # no watchdog, or it is meant for another process (e.g. our parent)
        try:
            return int(usec) / 1e6
        except ValueError:
            return None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        """Send one message; True when it was delivered. Failures are logged, never raised."""
        if not self.enabled:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode("utf-8"), self.address)
            return True
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False

    def ready(self, status: Optional[str] = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """One line shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def watchdog(self, now: Optional[float] = None) -> bool:
        """Ping the watchdog if one is configured and half its interval has passed since the last ping."""
        if self.watchdog_interval_s is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_watchdog < self.watchdog_interval_s / 2:
            return False
        self._last_watchdog = now
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
