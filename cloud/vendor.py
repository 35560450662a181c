"""Fetch the dashboard's charting library, uPlot, into cloud/static/vendor
(never committed), so the page works on a Pi with no internet.

uPlot (MIT) is taken from the npm registry with `npm pack` at a pinned
version, and the tarball is checked against the SHA-256 recorded here
before its two files and its licence are unpacked.

    python -m cloud.vendor          # idempotent
"""

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from edgewire.errors import SetupError

VERSION = "1.6.32"
TARBALL_SHA256 = "4b8a8191e425658e3ea8c8c1314b0fc679c861ee3a1af2b20c7b16ba50b5133d"
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
FILES = {
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "uPlot-LICENSE",
}


def fetch(dest: Path = VENDOR_DIR) -> Path:
    if all((dest / name).is_file() for name in FILES.values()):
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise SetupError("npm is needed once to fetch the dashboard's charts (apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="uplot-") as tmp:
        result = subprocess.run(
            [npm, "pack", f"uplot@{VERSION}", "--silent"],
            cwd=tmp, capture_output=True, text=True, check=False,
        )  # fmt: skip
        tarball = Path(tmp) / f"uplot-{VERSION}.tgz"
        if result.returncode != 0 or not tarball.is_file():
            raise SetupError(f"could not fetch uplot@{VERSION}: {result.stderr.strip()[:300]}")
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        if digest != TARBALL_SHA256:
            raise SetupError(f"uplot@{VERSION} does not match its recorded SHA-256 ({digest})")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            for member, name in FILES.items():
                source = archive.extractfile(member)
                if source is None:
                    raise SetupError(f"uplot@{VERSION} lacks {member}")
                (dest / name).write_bytes(source.read())
    return dest


if __name__ == "__main__":
    print(fetch())
