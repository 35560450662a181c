r"""The raw REPL, sans-IO: how a host runs code on a MicroPython board.

Rule: everything about the bytes on the wire (markers, raw-paste flow control,
splitting a command's output, what counts as junk) lives in `RawReplCore`,
which never touches a port or a clock; `RawRepl` only moves bytes between it
and pyserial, and keeps the time.

The exchange (host → board, ← board → host):

    enter        \r\x03\x03 (interrupt a running program), \r\x01
                 ← "raw REPL; CTRL-B to exit\r\n>"
    raw-paste    \x05A\x01  ← R\x01 + window size (u16 LE); each \x01 the
                 board sends (the first comes at once) lets the host send one
                 more window of code; then \x04  ← \x04 (end acknowledged;
                 the board sends it early to stop the host, e.g. at a
                 syntax error)
    plain raw    R\x00, or no answer in kind: code in chunks, \x04  ← OK
    output       ← stdout \x04 stderr \x04 >
    soft reset   \x04 at the raw prompt  ← ... soft reboot ... banner again
    leave        \r\x02 back to the friendly REPL

Errors, under edgewire.errors.EdgewireError:

    FlashError
    ├── PortError          the port is missing, busy, or went away
    ├── ReplError          the board does not speak the raw REPL as it should
    │   └── NoMicroPython  nothing answering like MicroPython at all
    ├── BoardError         code raised on the board: carries its traceback
    └── OutOfSpaceError    the board's filesystem cannot take the files
"""

import enum
import struct
from collections import deque
from dataclasses import dataclass

from edgewire.errors import EdgewireError

BANNER = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"soft reboot"
INTERRUPT = b"\r\x03\x03"
ENTER_RAW = b"\r\x01"
LEAVE_RAW = b"\r\x02"
RAW_PASTE_REQUEST = b"\x05A\x01"
END = b"\x04"
GRANT = b"\x01"
PROMPT = b">"

# What a board may print before it answers (a running program's chatter, a
# boot log): kept only as far as needed to find a marker in it.
MAX_OUTPUT_BYTES = 1 << 20  # one command's stdout + stderr, at most
PLAIN_CHUNK_BYTES = 256  # plain raw mode has no flow control: send in small pieces


class FlashError(EdgewireError):
    """Base of what installing code on a board can run into."""


class PortError(FlashError):
    """The serial port is missing, busy, or went away."""


class ReplError(FlashError):
    """The board answered, but not as the raw REPL should."""


class NoMicroPython(ReplError):
    """Nothing answering like MicroPython on the port."""


class OutOfSpaceError(FlashError):
    """The board's filesystem cannot take the files."""


class BoardError(FlashError):
    """Code run on the board raised; `traceback` is what the board printed."""

    def __init__(self, traceback: str) -> None:
        self.traceback = traceback.strip()
        lines = self.traceback.splitlines()
        last = lines[-1] if lines else "an error with no traceback"
        super().__init__(f"the board raised {last}\n{self.traceback}")

    @property
    def errno(self) -> int | None:
        """The errno of a board-side OSError, e.g. 28 for ENOSPC."""
        for line in reversed(self.traceback.splitlines()):
            if line.startswith("OSError: [Errno "):
                number = line[len("OSError: [Errno ") :].split("]", 1)[0]
                return int(number) if number.isdigit() else None
            if line.startswith("OSError: ") and line[9:].strip().isdigit():
                return int(line[9:].strip())
        return None


# -- the sans-IO core ---------------------------------------------------------


class State(enum.Enum):
    UNKNOWN = "unknown"  # not entered yet, or left
    ENTERING = "entering"  # waiting for the banner
    READY = "ready"  # at the raw prompt
    NEGOTIATING = "negotiating"  # asked for raw-paste, waiting for its answer
    RESYNCING = "resyncing"  # raw-paste answer not understood: waiting for the banner
    PASTING = "pasting"  # raw-paste: code under flow control
    ENDING = "ending"  # raw-paste: \x04 sent, waiting for the board's \x04
    SENDING = "sending"  # plain raw: code in chunks
    AWAITING_OK = "awaiting ok"  # plain raw: \x04 sent, waiting for OK
    STDOUT = "stdout"
    STDERR = "stderr"
    AWAITING_PROMPT = "awaiting prompt"  # both \x04 seen, waiting for >
    RESETTING = "resetting"  # \x04 at the prompt: waiting for reboot and banner


@dataclass(frozen=True)
class Entered:
    """The board is at the raw prompt."""


@dataclass(frozen=True)
class Finished:
    """A command has run; a non-empty stderr is the board's traceback."""

    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Rebooted:
    """A soft reset finished: the board is at the raw prompt again, with a
    fresh heap."""


Event = Entered | Finished | Rebooted


class RawReplCore:
    """The host side of the raw REPL as a state machine over bytes.

    Feed what the board sent to `receive_data()`, send what `data_to_send()`
    returns, and take results from `next_event()`. Commands: `enter()`,
    `execute(code)`, `soft_reset()`, `leave()`."""

    def __init__(
        self,
        raw_paste: bool | None = None,
        max_output: int = MAX_OUTPUT_BYTES,
        chunk_size: int = PLAIN_CHUNK_BYTES,
    ) -> None:
        self.state = State.UNKNOWN
        # None: not known yet; asked once, then remembered for this board.
        self.raw_paste = raw_paste
        self.max_output = max_output
        self.chunk_size = chunk_size
        self.junk_bytes = 0  # bytes from the board that were no part of an answer
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._events: deque[Event] = deque()
        self._code = b""
        self._sent = 0  # of _code
        self._window = 0
        self._credit = 0
        self._stdout = b""
        self._stderr = b""
        self._reboot_seen = False

    # -- commands -----------------------------------------------------------

    def enter(self) -> None:
        """Interrupt whatever runs (a command that never finished included)
        and ask for the raw prompt. Calling it again while waiting asks again:
        the first request may have been lost in a board's boot."""
        self._drop_inbox()
        self._outbox += INTERRUPT + ENTER_RAW
        self.state = State.ENTERING

    def execute(self, code: bytes) -> None:
        """Run `code` on the board; a Finished event carries its output."""
        self._require_ready("run code")
        self._drop_inbox()  # anything that came unasked belongs to no answer
        self._code, self._sent, self._stdout, self._stderr = code, 0, b"", b""
        if self.raw_paste is False:
            self.state = State.SENDING
        else:
            self._outbox += RAW_PASTE_REQUEST
            self.state = State.NEGOTIATING

    def soft_reset(self) -> None:
        """Soft-reset the board (a fresh heap, boot.py run again); a Rebooted
        event follows once it is back at the raw prompt."""
        self._require_ready("soft-reset")
        self._drop_inbox()
        self._reboot_seen = False
        self._outbox += END
        self.state = State.RESETTING

    def leave(self) -> None:
        """Back to the friendly REPL (>>>)."""
        self._outbox += LEAVE_RAW
        self.state = State.UNKNOWN

    # -- bytes in and out ---------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes the host may send now (flow control permitting)."""
        if self.state is State.PASTING:
            take = min(self._credit, len(self._code) - self._sent)
            self._outbox += self._code[self._sent : self._sent + take]
            self._sent += take
            self._credit -= take
            if self._sent == len(self._code):
                self._outbox += END
                self.state = State.ENDING
        elif self.state is State.SENDING:
            # One chunk per call: the caller's wait for input between calls
            # is what paces a board without flow control.
            take = min(self.chunk_size, len(self._code) - self._sent)
            self._outbox += self._code[self._sent : self._sent + take]
            self._sent += take
            if self._sent == len(self._code):
                self._outbox += END
                self.state = State.AWAITING_OK
        data = bytes(self._outbox)
        self._outbox.clear()
        return data

    def receive_data(self, data: bytes) -> None:
        """Bytes from the board. Raises ReplError only when a command's
        output would exceed `max_output`."""
        self._inbox += data
        while self._step():
            pass

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    @property
    def code_bytes_sent(self) -> int:
        """How much of the current command's code has gone out."""
        return self._sent

    # -- the machine --------------------------------------------------------

    def _step(self) -> bool:
        """Move on as far as the buffered input allows; False when it needs more."""
        state = self.state
        if state is State.ENTERING:
            if not self._skip_past(BANNER):
                return False
            self.state = State.READY
            self._events.append(Entered())
            return True
        if state is State.NEGOTIATING:
            return self._negotiate()
        if state is State.RESYNCING:
            if not self._skip_past(BANNER):
                return False
            self.state = State.SENDING
            return True
        if state in (State.PASTING, State.ENDING):
            return self._flow_control()
        if state is State.AWAITING_OK:
            if not self._skip_past(b"OK"):
                return False
            self.state = State.STDOUT
            return True
        if state in (State.STDOUT, State.STDERR):
            return self._output()
        if state is State.AWAITING_PROMPT:
            if not self._skip_past(PROMPT):
                return False
            self.state = State.READY
            self._events.append(Finished(self._stdout, self._stderr))
            return True
        if state is State.RESETTING:
            if not self._reboot_seen:
                self._reboot_seen = self._skip_past(SOFT_REBOOT)
                return self._reboot_seen
            if not self._skip_past(BANNER):
                return False
            self.state = State.READY
            self._events.append(Rebooted())
            return True
        # UNKNOWN or READY: nothing is expected; what comes is kept until the
        # next command drops it (a marker may straddle two reads).
        return False

    def _negotiate(self) -> bool:
        inbox = self._inbox
        if len(inbox) < 2:
            return False
        if inbox[:2] == b"R\x00":
            del inbox[:2]
            self.raw_paste = False
            self.state = State.SENDING
            return True
        if inbox[:2] == b"R\x01":
            if len(inbox) < 4:
                return False
            (self._window,) = struct.unpack_from("<H", inbox, 2)
            del inbox[:4]
            if self._window == 0:
                raise ReplError("the board offered raw-paste with a window of 0 bytes")
            self.raw_paste = True
            self._credit = self._window
            self.state = State.PASTING
            return True
        # A board without raw-paste took \x05A as code and \x01 as "enter raw
        # mode" again: it prints the banner, then plain raw mode goes on.
        self.raw_paste = False
        self.state = State.RESYNCING
        return True

    def _flow_control(self) -> bool:
        inbox = self._inbox
        if not inbox:
            return False
        byte = inbox[:1]
        del inbox[:1]
        if byte == GRANT:
            if self.state is State.PASTING:
                self._credit += self._window
            return True  # grants that come after the end are moot
        if byte == END:
            if self.state is State.PASTING:
                # The board wants no more (it stopped reading, e.g. at a
                # syntax error): end here. Its \x04 was the acknowledgement.
                self._sent = len(self._code)
                self._outbox += END
            self.state = State.STDOUT
            return True
        self.junk_bytes += 1
        return True

    def _output(self) -> bool:
        inbox = self._inbox
        end = inbox.find(END)
        if end < 0:
            if len(self._stdout) + len(inbox) > self.max_output:
                raise ReplError(f"the board's answer exceeds {self.max_output} bytes")
            return False
        part = bytes(inbox[:end])
        del inbox[: end + 1]
        if len(self._stdout) + len(part) > self.max_output:
            raise ReplError(f"the board's answer exceeds {self.max_output} bytes")
        if self.state is State.STDOUT:
            self._stdout = part
            self.state = State.STDERR
        else:
            self._stderr = part
            self.state = State.AWAITING_PROMPT
        return True

    def _skip_past(self, marker: bytes) -> bool:
        """Drop input up to and including `marker`; True if it was there.
        Without it, keep only a tail that could be its start."""
        inbox = self._inbox
        at = inbox.find(marker)
        if at >= 0:
            self.junk_bytes += at
            del inbox[: at + len(marker)]
            return True
        keep = len(marker) - 1
        if len(inbox) > keep:
            self.junk_bytes += len(inbox) - keep
            del inbox[: len(inbox) - keep]
        return False

    def _drop_inbox(self) -> None:
        self.junk_bytes += len(self._inbox)
        self._inbox.clear()

    def _require_ready(self, what: str) -> None:
        if self.state is not State.READY:
            raise ReplError(f"cannot {what} while {self.state.value}")
