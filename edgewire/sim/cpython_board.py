"""One simulated board as a CPython process: `python -m edgewire.sim.cpython_board DIR`.

The same device/ program as on a board, over the CPython shims; DIR is its
filesystem (config.json and what the board writes). It exits like the unix
port would: 75 to be rebooted, 76 after entering deep sleep, 0 when done.
"""

import sys
from pathlib import Path

from edgewire.paths import SHIMS_DIR, device_dir


def main() -> None:
    folder = Path(sys.argv[1]).resolve()
    code = device_dir()
    sys.path[:0] = [str(code), str(code / "lib"), str(SHIMS_DIR)]
    import ew_app  # type: ignore[import-not-found]
    import ew_board  # type: ignore[import-not-found]

    ew_app.main(ew_board.make(f"{folder}/"))


if __name__ == "__main__":
    main()
