"""`edgewire boards`: the serial ports a board may be on, what is probably
behind each (from its USB vendor and product id), and whether MicroPython
answers there.

Only USB ports are listed unless asked (`--all`): the built-in UARTs of a PC
(/dev/ttyS*) are always there and nothing answers on them. A probe interrupts
the program running on the board, asks MicroPython who it is in the raw REPL,
then soft-reboots the board so its program runs again.
"""

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from firmware.rawrepl import FlashError, RawRepl

# USB vendor:product → what is usually behind it. USB-serial bridges say
# little about the board; the Pico and Espressif's native USB say more.
KNOWN_USB = {
    (0x10C4, 0xEA60): "CP210x USB-serial: an ESP32 or ESP8266 board",
    (0x1A86, 0x7523): "CH340 USB-serial: an ESP8266 or ESP32 board",
    (0x1A86, 0x55D4): "CH9102 USB-serial: an ESP32 board",
    (0x0403, 0x6001): "FTDI FT232R USB-serial",
    (0x0403, 0x6015): "FTDI FT231X USB-serial",
    (0x2E8A, 0x0005): "Raspberry Pi Pico running MicroPython",
    (0x2E8A, 0x000A): "Raspberry Pi Pico (Pico SDK USB serial)",
}
ESPRESSIF_VID = 0x303A  # the ESP32-S2/S3/C3's own USB

PROBE_CODE = "import sys;print(sys.implementation.name,sys.platform)"
PROBE_TIMEOUT_S = 2.0


def guess_board(vid: int | None, pid: int | None) -> str:
    if vid is None or pid is None:
        return "not USB"
    if (vid, pid) in KNOWN_USB:
        return KNOWN_USB[vid, pid]
    if vid == ESPRESSIF_VID:
        return "Espressif native USB: an ESP32-S2, S3 or C3 board"
    return "unknown USB device"


@dataclass(frozen=True)
class Port:
    device: str
    usb: str | None  # "10C4:EA60"
    guess: str
    description: str
    micropython: str | None = None  # what it answered, e.g. "micropython esp32"
    problem: str | None = None  # why it did not


def list_ports(extra: Iterable[str] = (), include_all: bool = False) -> list[Port]:
    """The USB serial ports (every port with `include_all`), then `extra`."""
    from serial.tools import list_ports as pyserial_ports

    found = []
    for info in sorted(pyserial_ports.comports(), key=lambda i: i.device):
        if info.vid is None and not include_all:
            continue
        usb = f"{info.vid:04X}:{info.pid:04X}" if info.vid is not None else None
        description = info.description if info.description not in (None, "n/a") else ""
        found.append(Port(info.device, usb, guess_board(info.vid, info.pid), description))
    listed = {port.device for port in found}
    for device in extra:
        if device not in listed:
            found.append(Port(device, None, "given with --port", ""))
    return found


def probe(port: Port, timeout_s: float = PROBE_TIMEOUT_S) -> Port:
    """`port` with what MicroPython answered there, or why nothing did."""
    try:
        with RawRepl(port.device, exec_timeout_s=timeout_s) as repl:
            repl.enter(timeout_s)
            answer = repl.exec(PROBE_CODE).decode(errors="replace").strip()
            repl.run_main()  # let the board's program run again
    except FlashError as exc:
        return Port(**{**asdict(port), "problem": str(exc)})
    return Port(**{**asdict(port), "micropython": answer})


def probe_all(ports: list[Port]) -> list[Port]:
    """Probe the ports side by side: each may wait its whole timeout."""
    if not ports:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(ports))) as pool:
        return list(pool.map(probe, ports))


def holders(device: str, exclude_pid: int | None = None) -> list[str]:
    """The processes holding `device` open, as "pid 123 (screen)", found by
    reading every /proc/<pid>/fd link (only those we may read)."""
    target = os.path.realpath(device)
    held = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(exclude_pid):
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
            if target in links:
                name = (proc / "comm").read_text().strip()
                held.append(f"pid {proc.name} ({name})")
        except OSError:
            continue  # gone, or not ours to look at
    return sorted(held, key=lambda h: int(h.split()[1]))


def render(ports: list[Port], as_json: bool) -> str:
    if as_json:
        return "\n".join(json.dumps(asdict(port)) for port in ports)
    if not ports:
        return (
            "no USB serial ports found: plug a board in (a charge-only USB cable "
            "shows none), or name a port with --port"
        )
    rows = [("PORT", "USB", "BOARD (a guess)", "MICROPYTHON")]
    for port in ports:
        answer = port.micropython or (_short(port.problem) if port.problem else "not probed")
        guess = port.guess + (f" [{port.description}]" if port.description else "")
        rows.append((port.device, port.usb or "-", guess, answer))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )


def _short(problem: str) -> str:
    """A probe's problem in one line of a table; the hint is for `flash`."""
    if problem.startswith("no MicroPython answering"):
        return "no MicroPython answering (flash it with: edgewire flash --micropython IMAGE)"
    return problem.splitlines()[0]
