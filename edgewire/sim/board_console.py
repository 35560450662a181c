"""Sans-IO: a simulated board's console (edgewire/sim/serial_board.py runs
it): what a client sees of a board made of one MicroPython unix-port
interpreter after another, where each soft reset is a fresh interpreter."""

import enum
from collections.abc import Collection

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
_FRIENDLY_MARK = b'Type "help()" for more information.'
_PROMPT = b">>> "
_STDIN_FRAME = b'  File "<stdin>", line 1, in <module>\r\n'
_BUFFER_LIMIT = 64 * 1024  # bytes of a script's stderr held back at most


class Phase(enum.Enum):
    """Where a fresh interpreter is on its way to being a board's REPL."""

    WAIT_PROMPT = "waiting for the fresh interpreter's first >>> prompt"
    ENTER_RAW = "entering the raw REPL to run the boot scripts"
    RUN_SCRIPT = "running boot.py or main.py"
    LEAVE_RAW = "leaving the raw REPL for the friendly banner and prompt"
    READY = "the client talks to the REPL"


class BoardConsole:
    """Sans-IO: one board's console, made of one interpreter after another.

    Every byte the client sees comes out of `from_interpreter`/`boot` (cooked
    to `\\r\\n`), and every byte the interpreter reads comes out of
    `from_interpreter`/`from_client`. No I/O, no clock.
    """

    def __init__(self) -> None:
        self.mode = "friendly"  # or "raw": what a soft reset brings the board back to
        self.phase = Phase.WAIT_PROMPT
        self.swallowed = bytearray()  # what a booting interpreter said: for error messages
        self._held = bytearray()  # client input waiting for the REPL to be ready
        self._pending = bytearray()  # interpreter output not understood yet
        self._scripts: list[str] = []
        self._script_part = 0  # 0 before OK, 1 stdout, 2 stderr, 3 before the '>'
        self._stderr = bytearray()
        self._tail = b""
        self._last_cr = False

    @property
    def held(self) -> int:
        return len(self._held)

    def boot(self, files: Collection[str], *, soft: bool) -> bytes:
        """A fresh interpreter was started; what the client sees first."""
        self.phase = Phase.WAIT_PROMPT
        self.swallowed.clear()
        self._pending.clear()
        self._tail = b""
        if not soft:
            self.mode = "friendly"
        wanted = ["boot.py", "main.py"] if self.mode == "friendly" else ["boot.py"]
        self._scripts = [name for name in wanted if name in files]
        return SOFT_REBOOT if soft else b""

    def unread(self, data: bytes) -> None:
        """Input the interpreter that just exited never read: the next one gets it."""
        self._held[:0] = data

    def from_client(self, data: bytes) -> bytes:
        """Client input; returns what to write to the interpreter now."""
        if self.phase is Phase.READY:
            return data
        if self.phase is Phase.RUN_SCRIPT and b"\x03" in data:
            # a board's interrupt character stops boot.py/main.py and is consumed
            self._held += data.replace(b"\x03", b"")
            return b"\x03"
        self._held += data
        return b""

    def from_interpreter(self, data: bytes) -> tuple[bytes, bytes]:
        """Interpreter output; returns (for the client, for the interpreter)."""
        buf = bytes(self._pending) + data
        self._pending.clear()
        out = bytearray()
        into = bytearray()
        while buf:
            if self.phase is Phase.READY:
                self._watch(buf)
                out += self._cook(buf)
                break
            if self.phase is Phase.WAIT_PROMPT:
                rest = self._expect(buf, _PROMPT)
                if rest is None:
                    break
                buf = rest
                into += b"\x01"
                self.phase = Phase.ENTER_RAW
            elif self.phase is Phase.ENTER_RAW:
                rest = self._expect(buf, RAW_BANNER + b">")
                if rest is None:
                    break
                buf = rest
                self._next_script(out, into)
            elif self.phase is Phase.RUN_SCRIPT:
                buf = self._script_output(buf, out, into)
            else:  # LEAVE_RAW: forward the banner and the prompt, then the client has it
                end = buf.find(_PROMPT)
                if end < 0:
                    self._pending += buf
                    break
                banner = buf[: end + len(_PROMPT)].removeprefix(b"\r\n")
                buf = buf[end + len(_PROMPT) :]
                self.mode = "friendly"
                out += self._cook(banner)
                self._ready(into)
        return bytes(out), bytes(into)

    def _expect(self, buf: bytes, marker: bytes) -> bytes | None:
        """Swallow up to and past `marker`: what follows it, or None until it comes."""
        end = buf.find(marker)
        if end < 0:
            self._pending += buf
            self._keep_swallowed(buf)
            return None
        self._keep_swallowed(buf[: end + len(marker)])
        return buf[end + len(marker) :]

    def _keep_swallowed(self, data: bytes) -> None:
        self.swallowed += data
        del self.swallowed[:-4096]

    def _next_script(self, out: bytearray, into: bytearray) -> None:
        if self._scripts:
            name = self._scripts.pop(0)
            into += f"execfile({name!r})".encode() + b"\x04"
            self.phase = Phase.RUN_SCRIPT
            self._script_part = 0
            self._stderr.clear()
        elif self.mode == "raw":
            out += RAW_BANNER + b">"
            self._ready(into)
        else:
            into += b"\x02"
            self.phase = Phase.LEAVE_RAW

    def _script_output(self, buf: bytes, out: bytearray, into: bytearray) -> bytes:
        """The raw REPL's answer to execfile: OK, stdout, \\x04, stderr, \\x04, '>'."""
        if self._script_part == 0:
            if len(buf) < 2:
                self._pending += buf
                return b""
            self._script_part = 1
            return buf[2:] if buf.startswith(b"OK") else buf
        if self._script_part == 3:
            self._next_script(out, into)
            return buf[1:] if buf.startswith(b">") else buf
        end = buf.find(b"\x04")
        part = buf if end < 0 else buf[:end]
        if self._script_part == 1:
            out += self._cook(part)
        else:
            self._stderr += part
            if len(self._stderr) > _BUFFER_LIMIT:
                out += self._cook(bytes(self._stderr))
                self._stderr.clear()
        if end < 0:
            return b""
        if self._script_part == 2:
            # a board's traceback of main.py has no frame for the execfile line
            out += self._cook(bytes(self._stderr)).replace(_STDIN_FRAME, b"", 1)
        self._script_part += 1
        return buf[end + 1 :]

    def _ready(self, into: bytearray) -> None:
        self.phase = Phase.READY
        into += self._held
        self._held.clear()

    def _watch(self, data: bytes) -> None:
        """Follow the REPL mode from the banners the interpreter prints."""
        seen = self._tail + data
        raw, friendly = seen.rfind(RAW_BANNER), seen.rfind(_FRIENDLY_MARK)
        if raw > friendly:
            self.mode = "raw"
        elif friendly > raw:
            self.mode = "friendly"
        self._tail = seen[-64:]

    def _cook(self, data: bytes) -> bytes:
        """Lone `\\n` to `\\r\\n`, as a board's text output, across chunk edges."""
        if not data:
            return data
        head = b""
        if self._last_cr and data.startswith(b"\n"):
            head, data = b"\n", data[1:]
        cooked = head + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self._last_cr = cooked.endswith(b"\r")
        return cooked
