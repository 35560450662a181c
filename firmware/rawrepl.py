"""The raw REPL over a serial port: `RawRepl` moves bytes between pyserial
and `RawReplCore` (firmware/rawrepl_core.py has the protocol), and keeps the
time; `open_port` turns a port's failures into errors a person can act on."""

import contextlib
import itertools
import os
import time
from types import TracebackType

import serial

from firmware.rawrepl_core import (
    END,
    SOFT_REBOOT,
    BoardError,
    Event,
    Finished,
    FlashError,
    NoMicroPython,
    OutOfSpaceError,
    PortError,
    RawReplCore,
    ReplError,
    State,
)

# The errors, for callers that only need the port and what can go wrong.
__all__ = [
    "BoardError", "FlashError", "NoMicroPython", "OutOfSpaceError", "PortError", "RawRepl",
    "ReplError", "open_port",
]  # fmt: skip

# -- the pyserial transport ---------------------------------------------------

ENTER_TIMEOUT_S = 5.0
# A board may miss the first interrupt (one that comes while it boots, or
# while a C call runs that cannot be interrupted): ask again this often.
ENTER_RETRY_S = 0.3
ENTER_SETTLE_S = 0.1  # after asking more than once: quiet this long before going on
EXEC_TIMEOUT_S = 20.0
RESET_TIMEOUT_S = 15.0
POLL_S = 0.01  # one read's wait: also the pause between plain-raw chunks


class RawRepl:
    """A board's raw REPL over a serial port (a device path, or any
    pyserial URL such as `loop://` or `socket://host:port`)."""

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        exec_timeout_s: float = EXEC_TIMEOUT_S,
        raw_paste: bool | None = None,
    ) -> None:
        self.port = port
        self.exec_timeout_s = exec_timeout_s
        self.core = RawReplCore(raw_paste=raw_paste)
        self.bytes_written = 0
        self.bytes_read = 0
        self._serial = open_port(port, baudrate)

    def __enter__(self) -> "RawRepl":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def enter(self, timeout_s: float = ENTER_TIMEOUT_S) -> None:
        """Stop the board's program and get to the raw prompt."""
        deadline = time.monotonic() + timeout_s
        for attempt in itertools.count():
            self.core.enter()
            retry_at = min(deadline, time.monotonic() + ENTER_RETRY_S)
            if self._pump(retry_at, "entering the raw REPL", quiet_timeout=True) is not None:
                if attempt:
                    # Each request asked for a banner: let the late ones
                    # arrive now, not in the middle of the first command.
                    self._drain(ENTER_SETTLE_S)
                return
            if time.monotonic() >= deadline:
                raise NoMicroPython(
                    f"no MicroPython answering at {self.port} (no raw REPL within "
                    f"{timeout_s:g} s). Flash MicroPython first: edgewire flash --port "
                    f"{self.port} --micropython image.bin (esptool, for ESP32/ESP8266) "
                    "or a .uf2 for a Pico"
                )

    def exec(self, code: str | bytes, timeout_s: float | None = None) -> bytes:
        """Run `code` on the board; its stdout. A board-side exception
        raises BoardError with the board's traceback."""
        stdout, stderr = self.exec_raw(code, timeout_s)
        if stderr:
            raise BoardError(stderr.decode(errors="replace"))
        return stdout

    def exec_raw(self, code: str | bytes, timeout_s: float | None = None) -> tuple[bytes, bytes]:
        if self.core.state is not State.READY:
            self.enter()
        self.core.execute(code.encode() if isinstance(code, str) else code)
        deadline = time.monotonic() + (timeout_s or self.exec_timeout_s)
        event = self._pump(deadline, "running code")
        if not isinstance(event, Finished):
            raise ReplError(f"the board at {self.port} answered out of turn: {event}")
        return event.stdout, event.stderr

    def soft_reset(self, timeout_s: float = RESET_TIMEOUT_S) -> None:
        """Soft-reset the board; it comes back to the raw prompt."""
        if self.core.state is not State.READY:
            self.enter()
        self.core.soft_reset()
        self._pump(time.monotonic() + timeout_s, "soft-resetting")

    def leave(self) -> None:
        """Back to the friendly REPL, where the board's own console is."""
        self.core.leave()
        self._write(self.core.data_to_send())

    def run_main(self, timeout_s: float = 1.0) -> bool:
        """Leave the raw REPL and soft-reboot from the friendly REPL: on a
        board that starts boot.py and then main.py (in raw mode it would not).
        True once the board said it rebooted: closing the port sooner could
        lose the request on its way (a USB board's buffer, a relay)."""
        self.leave()
        self._write(END)
        seen = b""
        deadline = time.monotonic() + timeout_s
        while SOFT_REBOOT not in seen and time.monotonic() < deadline:
            seen = seen[-len(SOFT_REBOOT) :] + self._read()
        return SOFT_REBOOT in seen

    def close(self) -> None:
        """Close the port (again, or after it went away: no error)."""
        with contextlib.suppress(OSError, serial.SerialException):
            self._serial.close()

    def _pump(self, deadline: float, doing: str, quiet_timeout: bool = False) -> Event | None:
        """Move bytes until the core has an event, or the deadline passes."""
        while True:
            self._write(self.core.data_to_send())
            event = self.core.next_event()
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                if quiet_timeout:
                    return None
                raise ReplError(
                    f"the board at {self.port} stopped answering while {doing} "
                    f"(state: {self.core.state.value})"
                )
            self.core.receive_data(self._read())

    def _drain(self, quiet_s: float, at_most_s: float = 1.0) -> None:
        """Read until the board has been quiet for quiet_s; the core keeps what
        came and drops it at the next command."""
        quiet_since = now = time.monotonic()
        give_up = now + at_most_s
        while now - quiet_since < quiet_s and now < give_up:
            data = self._read()
            now = time.monotonic()
            if data:
                quiet_since = now
                self.core.receive_data(data)

    def _read(self) -> bytes:
        try:
            waiting = self._serial.in_waiting
            data: bytes = self._serial.read(max(1, waiting))
        except (OSError, serial.SerialException) as exc:
            raise self._lost(exc) from None
        self.bytes_read += len(data)
        return data

    def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            self._serial.write(data)
            self._serial.flush()
        except (OSError, serial.SerialException) as exc:
            raise self._lost(exc) from None
        self.bytes_written += len(data)

    def _lost(self, exc: Exception) -> PortError:
        return PortError(f"lost the board at {self.port} ({exc}): was it unplugged?")


def open_port(port: str, baudrate: int = 115200) -> serial.Serial:
    """Open a port for the raw REPL, or say what stands in the way."""
    try:
        opened: serial.Serial = serial.serial_for_url(
            port, baudrate=baudrate, timeout=POLL_S, write_timeout=5, exclusive=True
        )
    except (OSError, ValueError, serial.SerialException) as exc:
        raise port_error(port, exc) from None
    if "://" not in port:
        # A program that opened the port without locking it (a serial
        # console, ModemManager probing a new device) would take half of
        # every answer: name it rather than fail in strange ways.
        from firmware.ports import holders

        others = holders(port, exclude_pid=os.getpid())
        if others:
            opened.close()
            raise PortError(busy(port, others))
    return opened


def busy(port: str, held_by: list[str]) -> str:
    by = f": held by {', '.join(held_by)}" if held_by else ""
    return f"port {port} is busy{by}; close that program and try again"


def port_error(port: str, exc: Exception) -> PortError:
    """Why a port did not open, in words a person can act on."""
    from firmware.ports import holders

    text = str(exc)
    errno = getattr(exc, "errno", None)
    if errno == 2 or "No such file" in text:
        return PortError(
            f"no port {port}: is the board plugged in? (`edgewire boards` lists the ports)"
        )
    if errno == 13 or "Permission denied" in text:
        return PortError(
            f"no permission to open {port}: add yourself to its group "
            f"(e.g. sudo usermod -aG dialout $USER, then log in again)"
        )
    if errno in (11, 16) or "busy" in text.lower() or "exclusively lock" in text:
        return PortError(busy(port, holders(port)))
    return PortError(f"cannot open {port}: {text}")
