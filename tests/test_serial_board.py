"""SerialBoard: the real MicroPython unix port behind a pty, driven by real
clients (mpremote as a subprocess, and pyserial byte by byte) as a USB-serial
board would be. Board-side code uses relative paths only: unconfined (not
root), the unix port can reach the host's filesystem."""

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from edgewire.errors import SetupError
from edgewire.sim.board_console import RAW_BANNER, SOFT_REBOOT, BoardConsole, Phase
from edgewire.sim.serial_board import SerialBoard

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
RAW_PROMPT = RAW_BANNER + b">"


@pytest.fixture
def board(tmp_path: Path) -> Iterator[SerialBoard]:
    with SerialBoard(tmp_path / "board") as started:
        yield started


def open_port(port: str) -> serial.Serial:
    return serial.serial_for_url(port, 115200, timeout=0.05)


def read_until(link: serial.Serial, marker: bytes, timeout_s: float = 5.0) -> bytes:
    """Everything up to and including `marker`; fails with what came instead."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while not seen.endswith(marker):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} within {timeout_s} s; got {seen!r}")
        seen += link.read(1)
    return seen


def read_exactly(link: serial.Serial, size: int, timeout_s: float = 5.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while len(seen) < size and time.monotonic() < deadline:
        seen += link.read(size - len(seen))
    return seen


def drain(link: serial.Serial, quiet_s: float = 0.15) -> bytes:
    """What arrives until the line has been quiet for `quiet_s`."""
    seen = b""
    last = time.monotonic()
    while time.monotonic() - last < quiet_s:
        chunk = link.read(4096)
        if chunk:
            seen += chunk
            last = time.monotonic()
    return seen


def enter_raw(link: serial.Serial) -> bytes:
    link.write(b"\r\x03")
    before = drain(link)
    link.write(b"\r\x01")
    return before + read_until(link, RAW_PROMPT)


def at_friendly_prompt(link: serial.Serial) -> None:
    """Past whatever the power-on printed (if the client was in time for it)."""
    link.write(b"print('at' + 'prompt')\r")
    read_until(link, b"atprompt\r\n>>> ")


def raw_exec(link: serial.Serial, code: bytes) -> tuple[bytes, bytes]:
    """Plain raw REPL: code, Ctrl-D; the board answers OK, stdout, EOT, stderr, EOT, '>'."""
    link.write(code + b"\x04")
    assert read_exactly(link, 2) == b"OK"
    out = read_until(link, b"\x04")[:-1]
    err = read_until(link, b"\x04")[:-1]
    assert read_exactly(link, 1) == b">"
    return out, err


def upload(link: serial.Serial, chunk: bytes, sent: list[int]) -> None:
    """Write `chunk` for ever (each write waits for room), counting in `sent`."""
    while True:
        link.write(chunk)
        sent.append(len(chunk))


def mpremote(port: str, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [MPREMOTE, "connect", port, *args],
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout.decode()


def test_mpremote_lists_copies_hashes_and_execs(board: SerialBoard, tmp_path: Path) -> None:
    port = board.start()
    payload = bytes(range(256)) * 40 + b"\r\n\n\r\x03\x04\x05" * 100  # every byte value
    (tmp_path / "blob.bin").write_bytes(payload)

    assert mpremote(port, "fs", "ls", cwd=tmp_path).strip() == "ls :"
    mpremote(port, "fs", "cp", "blob.bin", ":blob.bin", cwd=tmp_path)
    assert (board.folder / "blob.bin").read_bytes() == payload
    listed = mpremote(port, "fs", "ls", cwd=tmp_path)
    assert "blob.bin" in listed
    digest = hashlib.sha256(payload).hexdigest()
    assert digest in mpremote(port, "fs", "sha256sum", ":blob.bin", cwd=tmp_path)
    code = "import hashlib, binascii\nh = hashlib.sha256(open('blob.bin', 'rb').read())\n"
    code += "print(binascii.hexlify(h.digest()).decode())"
    assert mpremote(port, "exec", code, cwd=tmp_path) == digest + "\r\n"
    assert mpremote(port, "exec", "print(1+1)", cwd=tmp_path) == "2\r\n"
    assert board.soft_resets >= 5, "mpremote soft-resets the board at each connect"


def test_mpremote_gets_past_a_main_py_that_never_ends(board: SerialBoard, tmp_path: Path) -> None:
    (board.folder / "main.py").write_text("import time\nwhile True:\n    time.sleep(0.01)\n")
    port = board.replug()  # a power-on runs it
    # mpremote interrupts it, soft-resets in raw mode (which skips main.py) and runs
    assert mpremote(port, "exec", "print('in')", cwd=tmp_path) == "in\r\n"


def test_raw_repl_raw_paste_and_soft_reset_by_hand(board: SerialBoard) -> None:
    with open_port(board.start()) as link:
        enter_raw(link)
        assert raw_exec(link, b"x = 6 * 7\nprint(x)") == (b"42\r\n", b"")
        out, err = raw_exec(link, b"1/0")
        assert out == b""
        assert err.endswith(b"ZeroDivisionError: divide by zero\r\n")

        # raw-paste: the board grants a window and one more per \x01 it sends
        link.write(b"\x05A\x01")
        assert read_exactly(link, 2) == b"R\x01"
        window = int.from_bytes(read_exactly(link, 2), "little")
        assert read_exactly(link, 1) == b"\x01"
        code = b"total = 0\n" + b"total += 1\n" * 200 + b"print('total', total)\n"
        credit = window
        for byte in code:
            while credit == 0:
                grant = link.read(1)
                assert grant in (b"", b"\x01"), grant
                credit += window if grant else 0
            link.write(bytes([byte]))
            credit -= 1
        link.write(b"\x04")
        answer = read_until(link, b"\x04>")
        assert answer.lstrip(b"\x01") == b"\x04total 200\r\n\x04\x04>"

        # Ctrl-D at the raw prompt: a soft reset, and back at the raw prompt
        started = time.monotonic()
        link.write(b"\x04")
        assert read_until(link, RAW_PROMPT) == b"OK\r\n" + SOFT_REBOOT + RAW_PROMPT
        assert time.monotonic() - started < 2.0
        out, err = raw_exec(link, b"print(x)")
        assert err.endswith(b"NameError: name 'x' isn't defined\r\n"), "a fresh interpreter"

        # Ctrl-C stops running code; Ctrl-B goes back to the friendly REPL
        link.write(b"import time\nwhile True:\n    time.sleep(0.01)\n\x04")
        assert read_exactly(link, 2) == b"OK"
        time.sleep(0.2)
        link.write(b"\x03")
        assert b"KeyboardInterrupt" in read_until(link, b"\x04>")
        link.write(b"\r\x02")
        assert read_until(link, b">>> ").endswith(b'Type "help()" for more information.\r\n>>> ')
    assert board.soft_resets == 1
    assert board.last_reset_s is not None
    assert board.last_reset_s < 1.0


def test_soft_reset_runs_main_py_only_in_friendly_mode(board: SerialBoard) -> None:
    (board.folder / "boot.py").write_text("print('boot.py ran')\n")
    (board.folder / "main.py").write_text("print('main.py ran')\nvalue = 5\n")
    with open_port(board.replug()) as link:
        at_friendly_prompt(link)
        link.write(b"\x04")  # Ctrl-D at the friendly prompt
        friendly = read_until(link, b">>> ")
        assert friendly.startswith(b"\r\n" + SOFT_REBOOT + b"boot.py ran\r\nmain.py ran\r\n")
        assert b"\r\nMicroPython " in friendly
        link.write(b"print(value)\r")
        assert read_until(link, b">>> ") == b"print(value)\r\n5\r\n>>> ", "main.py's globals"

        link.write(b"\x01")
        read_until(link, RAW_PROMPT)
        link.write(b"\x04")
        assert (
            read_until(link, RAW_PROMPT)
            == b"OK\r\n" + SOFT_REBOOT + b"boot.py ran\r\n" + RAW_PROMPT
        )


def test_a_failing_main_py_shows_its_traceback(board: SerialBoard) -> None:
    (board.folder / "main.py").write_text("print('start')\nraise ValueError('bad config')\n")
    with open_port(board.replug()) as link:
        at_friendly_prompt(link)
        link.write(b"\x04")
        seen = read_until(link, b">>> ")
    assert b'Traceback (most recent call last):\r\n  File "main.py", line 2' in seen
    assert b"ValueError: bad config\r\n" in seen
    assert b"<stdin>" not in seen


def test_input_sent_during_a_soft_reset_is_not_lost(board: SerialBoard) -> None:
    with open_port(board.start()) as link:
        enter_raw(link)
        link.write(b"\x04" + b"print('after')\x04")  # no wait for the reset
        assert read_until(link, b"\x04>").endswith(RAW_PROMPT + b"OKafter\r\n\x04\x04>")


def test_the_port_survives_clients_coming_and_going(board: SerialBoard) -> None:
    port = board.start()
    for n in range(5):
        with open_port(port) as link:
            enter_raw(link)
            assert raw_exec(link, f"print({n})".encode()) == (f"{n}\r\n".encode(), b"")
            link.write(b"print('never read')\x04")  # left unread at close
            time.sleep(0.05)
    with open_port(port) as link:
        link.write(b"\r\x01")
        # still raw (Ctrl-A there reprints the banner), and nothing from before
        assert read_until(link, RAW_PROMPT) == RAW_PROMPT, "a closed port forgets"


def test_unplug_mid_write_fails_the_client_promptly(board: SerialBoard) -> None:
    link = open_port(board.start())
    enter_raw(link)
    assert raw_exec(link, b"open('keep.txt', 'w').write('kept')") == (b"", b"")
    # an upload the board takes from stdin more slowly than the client sends it
    receiver = b"import sys, time\nf = open('upload.bin', 'wb')\nwhile True:\n"
    receiver += b"    f.write(sys.stdin.buffer.read(256))\n    f.flush()\n    time.sleep(0.002)\n"
    link.write(receiver + b"\x04")
    assert read_exactly(link, 2) == b"OK"
    pulled_at: list[float] = []

    def pull_the_cable() -> None:
        time.sleep(0.5)
        pulled_at.append(time.monotonic())
        board.unplug()

    puller = threading.Thread(target=pull_the_cable)
    puller.start()
    sent: list[int] = []
    with pytest.raises(serial.SerialException):  # an OSError
        upload(link, b"0123456789abcdef" * 64, sent)
    failed_at = time.monotonic()
    puller.join()
    assert failed_at - pulled_at[0] < 2.0
    with pytest.raises(serial.SerialException):  # and so do reads
        link.read(1)
    link.close()

    with open_port(board.replug()) as link:
        enter_raw(link)
        assert raw_exec(link, b"print(open('keep.txt').read())") == (b"kept\r\n", b"")
    received = (board.folder / "upload.bin").stat().st_size
    assert 0 < received < sum(sent), "the cable went mid-transfer"


def test_unplug_fails_a_waiting_reader(board: SerialBoard) -> None:
    old = board.start()
    with open_port(old) as link:
        at_friendly_prompt(link)
        link.timeout = None
        puller = threading.Timer(0.2, board.unplug)
        puller.start()
        started = time.monotonic()
        with pytest.raises(serial.SerialException):
            link.read(1)
        assert time.monotonic() - started < 2.0
        puller.join()
    assert not Path(old).exists(), "the device node vanishes with the board"
    assert board.port is None


def test_babble_comes_before_the_prompt(board: SerialBoard) -> None:
    junk = b"\xff\x00ets Jul 29 2019 12:21:46\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13\r\n\xfe"
    board.babble(junk)  # nobody has the port open: it waits for the next client
    with open_port(board.start()) as link:
        link.write(b"\r\x01")
        # (the power-on banner may come first: the client opened the port mid-boot)
        assert junk in read_until(link, RAW_PROMPT), "whole, before the prompt"
        board.babble(b"\x00garbage\xff")
        assert read_until(link, b"\xff") == b"\x00garbage\xff", "at the next read"
        assert raw_exec(link, b"print('still fine')") == (b"still fine\r\n", b"")
    board.unplug()
    log = b"\x1b[0;32mI (29) boot: ESP-IDF v5.2\x1b[0m\r\n"
    board.babble(log)  # at the next plug-in
    with open_port(board.replug()) as link:
        assert log in enter_raw(link)


def test_a_board_that_cannot_start_says_why(tmp_path: Path) -> None:
    board = SerialBoard(tmp_path / "board", heap="lots")
    with pytest.raises(SetupError, match="Invalid command line arguments"):
        board.start()
    assert board.port is None


def test_the_board_filesystem_is_the_folder(board: SerialBoard) -> None:
    if not board.confined:
        pytest.skip("not root: the unix port sees the host's filesystem, so no absolute paths")
    with open_port(board.start()) as link:
        enter_raw(link)
        code = b"import os\nprint(os.getcwd())\nopen('/at_root.txt', 'w').write('x')"
        assert raw_exec(link, code) == (b"/\r\n", b"")
    assert (board.folder / "at_root.txt").read_text() == "x"


# BoardConsole, the sans-IO core, fed a recorded boot whole and a byte at a time.

BOOT = (
    b"MicroPython 9458e3a23f on 2026-07-05; linux [GCC 14.2.1] version\r\n"
    b'Type "help()" for more information.\r\n>>> '
)


def feed(console: BoardConsole, data: bytes, step: int) -> tuple[bytes, bytes]:
    out, into = b"", b""
    for at in range(0, len(data), step):
        chunk_out, chunk_into = console.from_interpreter(data[at : at + step])
        out, into = out + chunk_out, into + chunk_into
    return out, into


@pytest.mark.parametrize("step", [1, 3, 10_000])
def test_console_boots_an_interpreter_into_a_board(step: int) -> None:
    console = BoardConsole()
    assert console.boot({"boot.py", "main.py", "other.py"}, soft=True) == SOFT_REBOOT
    assert console.from_client(b"\r\x01") == b"", "held while booting"
    assert feed(console, BOOT, step) == (b"", b"\x01")
    out, into = feed(console, b"\r\n" + RAW_PROMPT, step)
    assert (out, into) == (b"", b"execfile('boot.py')\x04")
    out, into = feed(console, b"OKboot\n\x04\x04>", step)
    assert (out, into) == (b"boot\r\n", b"execfile('main.py')\x04")
    assert console.from_client(b"ab\x03cd") == b"\x03", "Ctrl-C interrupts main.py"
    out, into = feed(console, b"OK\x04Traceback:\n" + b'  File "<stdin>"', step)
    out2, into2 = feed(console, b", line 1, in <module>\nKeyboardInterrupt: \n\x04>", step)
    assert out + out2 == b"Traceback:\r\nKeyboardInterrupt: \r\n"
    assert into + into2 == b"\x02"
    out, into = feed(console, b"\r\n" + BOOT + b"extra\n", step)
    assert out == BOOT + b"extra\r\n"
    assert into == b"\r\x01abcd", "held input goes to the ready REPL, in order"
    assert console.phase is Phase.READY
    assert console.mode == "friendly"
    feed(console, b"\r\n" + RAW_PROMPT, step)
    assert console.mode == "raw", "followed from the banner"


def test_console_brings_a_raw_board_back_raw_without_main_py() -> None:
    console = BoardConsole()
    console.mode = "raw"
    console.boot({"main.py"}, soft=True)
    assert console.from_interpreter(BOOT) == (b"", b"\x01")
    assert console.from_interpreter(b"\r\n" + RAW_PROMPT) == (RAW_PROMPT, b"")
    assert console.phase is Phase.READY
