"""Telling systemd how a service is doing (sd_notify), over the sdnotify package.

Rule: a notification never takes the service down. Without NOTIFY_SOCKET (not
under systemd, or not `Type=notify`) every call is a no-op; a send that fails
is logged once at warning and dropped, and the next send connects afresh.

    notifier = Notifier()
    notifier.ready()                    # after start-up
    notifier.status("42 buffered")      # any time; shown by systemctl status
    every = notifier.watchdog_interval_s()
    ...                                 # main loop: notifier.watchdog() each `every` s
    notifier.reloading()                # on SIGHUP, then ready() when reloaded
    notifier.stopping()                 # on SIGTERM, before the graceful phase
    notifier.close()
"""

import os
import socket
import threading
import time
import warnings
from types import TracebackType

import sdnotify

from edgewire.logs import get_logger

log = get_logger("edgewire.notify")

# systemd reads its socket at once; a full queue must not stall the event loop.
SEND_TIMEOUT_S = 0.5


class Notifier:
    """One process's notifications to systemd; the environment is read once."""

    def __init__(self) -> None:
        self.address: str | None = os.environ.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = _watchdog_usec() if self.address is not None else None
        self._client: sdnotify.SystemdNotifier | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether systemd is listening (NOTIFY_SOCKET is set)."""
        return self.address is not None

    def ready(self) -> bool:
        """Start-up (or a reload) is complete."""
        return self._send("READY=1")

    def status(self, text: str) -> bool:
        """A one-line summary for `systemctl status`."""
        return self._send("STATUS=" + " ".join(text.replace("\0", " ").split()))

    def watchdog(self) -> bool:
        """Still alive: call every `watchdog_interval_s()` seconds."""
        return self._send("WATCHDOG=1")

    def reloading(self) -> bool:
        """Reloading the configuration; follow with `ready()` when done.

        Carries the CLOCK_MONOTONIC time, which `Type=notify-reload` requires
        (systemd 253 and later) and older versions ignore.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutting down."""
        return self._send("STOPPING=1")

    def watchdog_interval_s(self) -> float | None:
        """How often to call `watchdog()`: half of systemd's `WatchdogSec=`,
        or None when no watchdog watches this process."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2_000_000

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, message: str) -> bool:
        """Send one datagram; True when it went out."""
        if self.address is None:
            return False
        with self._lock:
            try:
                if self._client is None:
                    self._client = _connect()
                # sdnotify encodes as Latin-1; this makes the bytes UTF-8.
                self._client.notify(message.encode("utf-8", "replace").decode("latin-1"))
            # sdnotify reads NOTIFY_SOCKET again on connecting: a variable
            # removed since then fails as TypeError.
            except (OSError, ValueError, TypeError) as exc:
                self._disconnect()
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "cannot notify systemd; notifications are dropped",
                        socket=self.address,
                        error=str(exc) or type(exc).__name__,
                    )
                return False
            return True

    def _disconnect(self) -> None:
        if self._client is not None:
            sock = getattr(self._client, "socket", None)
            if isinstance(sock, socket.socket):
                sock.close()
            self._client = None


def _connect() -> sdnotify.SystemdNotifier:
    """A client connected to NOTIFY_SOCKET (an `@name` is in the abstract
    namespace); raises what connecting raised."""
    with warnings.catch_warnings():
        # On a failed connect sdnotify drops its socket without closing it.
        warnings.simplefilter("ignore", ResourceWarning)
        client = sdnotify.SystemdNotifier(debug=True)  # debug: raise, not swallow
    sock = getattr(client, "socket", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(SEND_TIMEOUT_S)
    return client


def _watchdog_usec() -> int | None:
    """WATCHDOG_USEC when it is meant for this process (as sd_watchdog_enabled)."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
        pid = int(os.environ.get("WATCHDOG_PID") or os.getpid())
    except ValueError:
        return None
    return usec if usec > 0 and pid == os.getpid() else None
