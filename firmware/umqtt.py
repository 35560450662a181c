"""Fetch micropython-lib's umqtt.simple into device/lib (never committed).

On a board, `mip install umqtt.simple` does this. On the host the source is
taken from PyPI's micropython-umqtt.simple sdist: its releases after 1.1 carry
no build metadata, so `pip download` unpacks the archive and then fails at the
metadata step; the unpacked `umqtt/simple.py` is what we keep.

    python -m firmware.umqtt        # idempotent
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from edgewire.errors import SetupError
from edgewire.paths import DEVICE_LIB_DIR

VERSION = "1.3.4"
PACKAGE = f"micropython-umqtt.simple=={VERSION}"


def fetch(dest: Path = DEVICE_LIB_DIR) -> Path:
    target = dest / "umqtt" / "simple.py"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="umqtt-") as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-clean",
                "--no-build-isolation",
                PACKAGE,
                "-d",
                str(Path(tmp) / "out"),
            ],
            env={**os.environ, "TMPDIR": tmp},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,  # expected to fail after unpacking; we look for the file
        )
        found = sorted(Path(tmp).glob("pip-download-*/*/umqtt/simple.py"))
        if not found:
            raise SetupError(f"could not fetch {PACKAGE} from the package index")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], target)
    return target


if __name__ == "__main__":
    print(fetch())
