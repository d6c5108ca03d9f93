"""systemd notification (sd_notify) with the standard library: ready, watchdog, stopping.

Why: under systemd (deploy/vigil-edge.service, ``Type=notify``, ``WatchdogSec=``) the runtime
says when it is ready and then pings the watchdog from its own loop; a loop that hangs stops
pinging and systemd restarts the process. The protocol is one datagram per message on the unix
socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace); outside
systemd the variable is unset and every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

__all__ = ["Notifier"]

_log = logging.getLogger(__name__)

_USEC_PER_S: Final = 1_000_000


class Notifier:
    """Messages to systemd; ``watchdog_interval_s`` is half of ``$WATCHDOG_USEC`` (None: off)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + raw[1:] if raw.startswith("@") else raw
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval_s: float | None = (
            int(usec) / _USEC_PER_S / 2.0 if usec.isdigit() and int(usec) > 0 and mine else None
        )

    @property
    def enabled(self) -> bool:
        """A notify socket is configured (running under systemd with ``Type=notify``)."""
        return bool(self._address)

    def notify(self, message: str) -> bool:
        """Send ``message`` (e.g. ``READY=1``); False when off or when the send failed (logged)."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            _log.warning("sd_notify %r to %s failed: %s", message.split("\n", maxsplit=1)[0],
                         self._address.lstrip("\0"), exc)
            return False
        return True
