"""Where the checkout's non-Python parts are: the board code and its libraries."""

from pathlib import Path

from edgewire.errors import SetupError

CHECKOUT = Path(__file__).resolve().parent.parent
DEVICE_DIR = CHECKOUT / "device"
# micropython-lib packages the board code needs, fetched at set-up (never
# committed); `mip` puts them in /lib on a real board.
DEVICE_LIB_DIR = DEVICE_DIR / "lib"
SHIMS_DIR = Path(__file__).resolve().parent / "sim" / "shims"


def device_dir() -> Path:
    if not (DEVICE_DIR / "ew_app.py").is_file():
        raise SetupError(
            f"the board code is not at {DEVICE_DIR}; edgewire runs from a checkout "
            "installed with ./scripts/setup"
        )
    if not (DEVICE_LIB_DIR / "umqtt" / "simple.py").is_file():
        raise SetupError(
            "micropython-lib's umqtt.simple is missing; fetch it with "
            "`python -m firmware.umqtt` (./scripts/setup does this)"
        )
    return DEVICE_DIR
