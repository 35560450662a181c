"""How exposed the edge's systemd unit is, as systemd itself scores it.

    .venv/bin/python -m bench.systemd_security

`systemd-analyze security --offline=true` rates the unit from 0 (locked
down) to 10 (no sandbox) from its settings alone, so nothing is started; the
figure is for the unit as `edgewire edge install-service` writes it, without
and with --gpio. Results go to bench/results/systemd_security.json.
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import write_result
from edge.service_unit import UNIT_NAME, console_script, unit_text

_OVERALL = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)")
_FINDING = re.compile(r"^✗ (\S+)\s+.*?\s(\d+\.\d+)$")


def score(gpio: bool) -> dict[str, object]:
    """The overall exposure, its verdict and what still counts against it."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise SystemExit("systemd-analyze is missing: apt-get install systemd")
    with tempfile.TemporaryDirectory() as directory:
        unit = Path(directory) / UNIT_NAME
        unit.write_text(unit_text(console_script(), gpio=gpio))
        result = subprocess.run(
            [tool, "--no-pager", "security", "--offline=true", str(unit)],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.stderr:
        raise SystemExit(f"systemd-analyze warned: {result.stderr.strip()}")
    overall = _OVERALL.search(result.stdout)
    if overall is None:
        raise SystemExit(f"no overall exposure in:\n{result.stdout}")
    findings = {
        found.group(1): float(found.group(2))
        for line in result.stdout.splitlines()
        if (found := _FINDING.match(line.strip()))
    }
    return {
        "exposure": float(overall.group(1)),
        "verdict": overall.group(2),
        "counted_against": findings,
    }


def main() -> None:
    version = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    write_result(
        "systemd_security",
        {
            "systemd": version,
            "scale": "0 (locked down) to 10 (no sandbox)",
            "plain": score(gpio=False),
            "gpio": score(gpio=True),
        },
    )


if __name__ == "__main__":
    main()
