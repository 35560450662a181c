"""`edgewire flash` figures (issue 7), against the simulated serial board
(the MicroPython unix port behind a pty: edgewire.sim.serial_board).

    .venv/bin/python -m bench.flash

- flashing the board program and its config.json onto an empty board: time
  and bytes sent (file data, and everything on the wire);
- flashing again with nothing changed, at once (the board is still booting
  the program the first flash started) and after it has settled: the target
  is 3 s or less;
- a changed setting (config.json alone is copied);
- the whole `edgewire flash` command, process start and mpy-cross included.
The simulated port has no baud rate: a USB-serial board at 115200 baud moves
about 11.5 KB/s, so the wire bytes say what the same flash costs there.
Results go to bench/results/flash.json.
"""

import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import write_result
from edgewire.procs import edgewire_argv
from edgewire.sim.serial_board import SerialBoard
from firmware.build import build
from firmware.flash import BoardSettings, FlashOptions, Report, flash

TARGET_REFLASH_S = 3.0
UART_BYTES_PER_S = 115200 / 10  # 8N1: ten bits a byte


def settings(interval_s: float = 10.0) -> BoardSettings:
    return BoardSettings(
        device_id="bench-1",
        broker="mqtt://127.0.0.1:1",  # nothing there: the program just keeps trying
        wifi_ssid="bench",
        wifi_password="bench-password",
        sensor="synthetic",
        interval_s=interval_s,
    )


def timed_flash(
    port: str, built: tuple[Path, list[Path]], board_settings: BoardSettings
) -> dict[str, object]:
    started = time.monotonic()
    report: Report = flash(
        FlashOptions(port=port, progress=False), board_settings, lambda line: None, built=built
    )
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 3),
        "files_copied": len(report.copied),
        "files_skipped": len(report.skipped),
        "file_bytes": report.file_bytes,
        "wire_bytes_sent": report.wire_bytes,
        "at_115200_baud_s": round(report.wire_bytes / UART_BYTES_PER_S, 2),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-flash-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        files = build(root / "build")
        build_s = time.monotonic() - started
        built = (root / "build", files)
        with SerialBoard(root / "board") as board:
            port = board.start()
            empty = timed_flash(port, built, settings())
            again_at_once = timed_flash(port, built, settings())
            time.sleep(2)  # the program the flash started is now running
            again_settled = timed_flash(port, built, settings())
            changed = timed_flash(port, built, settings(interval_s=30))
            time.sleep(2)
            argv = edgewire_argv(
                "flash", "--port", port, "--device-id", "bench-1",
                "--broker", "mqtt://127.0.0.1:1", "--wifi-ssid", "bench",
                "--wifi-password", "bench-password", "--sensor", "synthetic",
                "--interval-s", "30",
            )  # fmt: skip
            started = time.monotonic()
            subprocess.run(argv, check=True, capture_output=True)
            cli_s = time.monotonic() - started
    write_result(
        "flash",
        {
            "board": "MicroPython unix port behind a pty (edgewire.sim.serial_board), 512K heap",
            "build_s": round(build_s, 3),
            "from_empty": empty,
            "reflash_unchanged_at_once": again_at_once,
            "reflash_unchanged_settled": again_settled,
            "reflash_config_changed": changed,
            "cli_reflash_unchanged_s": round(cli_s, 3),
            "target_reflash_s": TARGET_REFLASH_S,
            "target_met": max(again_at_once["seconds"], again_settled["seconds"], cli_s)  # type: ignore[call-overload]
            <= TARGET_REFLASH_S,
        },
    )


if __name__ == "__main__":
    main()
