"""MicroPython itself: esptool for ESP32/ESP8266 boards, a .uf2 copied to a
Pico in BOOTSEL mode."""

import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgewire.errors import ConfigError
from firmware.rawrepl_core import FlashError

# Where MicroPython's image goes in flash, per chip (its download pages say
# the same); the id is the one an ESP32-family image header carries.
ESP_CHIPS = {
    "esp32": (0, 0x1000),
    "esp32s2": (2, 0x1000),
    "esp32c3": (5, 0x0),
    "esp32s3": (9, 0x0),
    "esp32c6": (13, 0x0),
    "esp8266": (None, 0x0),
}
Chip = Literal["auto", "esp32", "esp32s2", "esp32c3", "esp32s3", "esp32c6", "esp8266"]
UF2_MARKER = "INFO_UF2.TXT"


def image_chip(header: bytes) -> str | None:
    """The chip an ESP firmware image is for, from its first 16 bytes.

    Every ESP image starts with 0xE9. ESP32-family images carry an extended
    header (byte 8 is the WP pin, 0xEE when unused; bytes 12-13 the chip
    id); the ESP8266's has none, and its entry point is in IRAM at
    0x4010xxxx."""
    if len(header) < 16 or header[0] != 0xE9:
        return None
    chip_id = int.from_bytes(header[12:14], "little")
    if header[8] == 0xEE:
        for name, (known, _) in ESP_CHIPS.items():
            if known == chip_id:
                return name
        return None
    entry = int.from_bytes(header[4:8], "little")
    return "esp8266" if entry >> 16 == 0x4010 else None


@dataclass(frozen=True)
class EsptoolStep:
    argv: list[str]

    def describe(self) -> str:
        return "run: " + " ".join(self.argv)


@dataclass(frozen=True)
class Uf2Step:
    image: Path
    drive: Path | None

    def describe(self) -> str:
        where = self.drive or "the RPI-RP2 drive (none mounted yet)"
        return f"copy {self.image} to {where}"


def micropython_step(
    image: Path,
    port: str,
    chip: Chip = "auto",
    baud: int = 460800,
    erase: bool = False,
    drives: Sequence[Path] | None = None,
) -> EsptoolStep | Uf2Step:
    """How MicroPython `image` gets onto the board at `port` (pure but for
    reading the image's header and looking for a UF2 drive)."""
    if image.suffix.lower() == ".uf2":
        return Uf2Step(image, find_uf2_drive(drives))
    try:
        with image.open("rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise ConfigError(f"--micropython {image}: {exc.strerror}") from None
    target = image_chip(header) if chip == "auto" else chip
    if target is None:
        raise ConfigError(
            f"--micropython {image}: cannot tell which chip this image is for; "
            "give --chip (esp32, esp8266, ...), or a .uf2 for a Pico"
        )
    offset = ESP_CHIPS[target][1]
    major = int(importlib.metadata.version("esptool").split(".")[0])
    write = "write-flash" if major >= 5 else "write_flash"  # 5 renamed its commands
    argv = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud)]
    argv += [write, *(["--erase-all"] if erase else []), f"0x{offset:x}", str(image)]
    return EsptoolStep(argv)


def find_uf2_drive(candidates: Sequence[Path] | None = None) -> Path | None:
    """A mounted UF2 bootloader drive (a Pico held in BOOTSEL: RPI-RP2)."""
    if candidates is None:
        candidates = _mount_points()
    for place in candidates:
        if (place / UF2_MARKER).is_file():
            return place
    return None


def _mount_points() -> list[Path]:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    return [Path(line.split()[1].replace("\\040", " ")) for line in mounts if line.strip()]


def install_micropython(step: EsptoolStep | Uf2Step, echo: Callable[[str], None]) -> None:
    echo(step.describe())
    if isinstance(step, EsptoolStep):
        if subprocess.run(step.argv, check=False).returncode != 0:
            raise FlashError("esptool could not write MicroPython (its output is above)")
        return
    if step.drive is None:
        raise FlashError(
            "no UF2 drive (RPI-RP2) is mounted: hold BOOTSEL while plugging the Pico in"
        )
    try:
        shutil.copyfile(step.image, step.drive / step.image.name)
    except OSError as exc:
        raise FlashError(f"could not copy {step.image} to {step.drive}: {exc}") from None
