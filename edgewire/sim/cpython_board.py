"""One simulated board as a CPython process: `python -m edgewire.sim.cpython_board DIR`.

The same device/ program as on a board, over the CPython shims; DIR is its
filesystem (config.json and what the board writes). With a hardware.json
there (see edgewire.sim.hardware) it is a simulated ESP32, ESP8266 or Pico W
running the hardware board layer (device/ew_mcu.py); otherwise a host board.
It exits like the unix port would: 75 to be rebooted, 76 after entering deep
sleep, 0 when done.
"""

import json
import os
import sys
from pathlib import Path

from edgewire.paths import SHIMS_DIR, device_dir
from edgewire.sim.hardware import ENV, HARDWARE_FILE


def main() -> None:
    folder = Path(sys.argv[1]).resolve()
    code = device_dir()
    sys.path[:0] = [str(code), str(code / "lib"), str(SHIMS_DIR)]
    hardware = folder / HARDWARE_FILE
    if hardware.exists():
        os.environ[ENV] = str(folder)
        os.chdir(folder)  # a board's files are at the root of its filesystem
        platform = json.loads(hardware.read_text()).get("platform", "esp32")
        import ew_mcu  # type: ignore[import-not-found]

        board = ew_mcu.McuBoard("", platform)
    else:
        import ew_board  # type: ignore[import-not-found]

        board = ew_board.Board(f"{folder}/")
    import ew_app  # type: ignore[import-not-found]

    ew_app.main(board)


if __name__ == "__main__":
    main()
