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
from firmware.build import build

MICROPYTHON = Path(sys.executable).parent / "micropython"

SCENARIO = """
import json, sys
sys.path.insert(0, "")
import ew_ring

def sample(r, i):
    return ew_ring.encode(r.next_seq, 3, 1795876332308 + i, {"temp_c": 21.5 + i, "ok": i % 2 == 0})

out = {}
ring = ew_ring.Ring(max_samples=5, max_bytes=4000)
for i in range(8):
    ring.add(sample(ring, i))
out["count_cap"] = [ring.dropped, ring.next_seq - ring.count, ring.count]
box = bytearray(1000)
size, n = ew_ring.message_into(box, ring, 0, 2)
ring.sent += n
out["first"] = json.loads(bytes(box[:size]))
size, n = ew_ring.message_into(box, ring, ring.sent, 10)
out["rest"] = json.loads(bytes(box[:size]))
ring.cover(5)
out["after_cover"] = [ring.count, ring.next_seq - ring.count, ring.count - ring.sent, ring.sent]
ring.sent = 0
out["after_rewind"] = ring.count - ring.sent
out["no_clock"] = json.loads(ew_ring.encode(0, 1, None, {"t": 1}))

# Bytes: a 300-byte ring holds what fits and wraps around, oldest dropped.
small = ew_ring.Ring(max_samples=50, max_bytes=300)
for i in range(20):
    small.add(sample(small, i))
held = [json.loads(bytes(small.entry(i)))["seq"] for i in range(small.count)]
out["byte_cap"] = [small.dropped, held, small.next_seq - small.count]
# A tiny outbox: as many samples as fit, and a lone one is sent bare.
tiny = bytearray(120)
size, n = ew_ring.message_into(tiny, small, 0, 10)
out["tiny"] = [n, json.loads(bytes(tiny[:size]))["seq"]]
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
    assert cpython["count_cap"] == [3, 3, 5]
    first = cpython["first"]
    assert isinstance(first, list)
    assert [x["seq"] for x in first] == [3, 4]
    assert first[0]["lo"] == 3
    assert first[0]["ts"] == 1795876332.311
    rest = cpython["rest"]
    assert isinstance(rest, list)
    assert [x["seq"] for x in rest] == [5, 6, 7]
    assert cpython["after_cover"] == [2, 6, 2, 0], "cover keeps what was never sent unsent"
    assert cpython["after_rewind"] == 2
    assert "ts" not in cpython["no_clock"]  # type: ignore[operator]
    byte_cap = cpython["byte_cap"]
    assert isinstance(byte_cap, list)
    dropped, held, lo = byte_cap
    assert held == list(range(lo, 20)), "the newest samples, consecutive"
    assert dropped == lo
    assert 3 <= len(held) <= 5
    assert cpython["tiny"] == [1, lo]


def test_what_the_board_sends_passes_the_edge_validator() -> None:
    sys.path.insert(0, str(DEVICE_DIR))
    try:
        import ew_ring  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEVICE_DIR))
    now_ms = int(time.time() * 1000)
    ring = ew_ring.Ring(10, 4096)
    for _ in range(3):
        ring.add(
            ew_ring.encode(
                ring.next_seq, 4, now_ms + ring.next_seq, {"temp_c": 20.25, "door": True}
            )
        )
    box = bytearray(1024)
    size, count = ew_ring.message_into(box, ring, 0, 10)
    assert count == 3
    outcome = validate_telemetry("board-1", bytes(box[:size]), now_ms / 1000)
    assert outcome.rejected == []
    assert [a.sample.seq for a in outcome.accepted] == [0, 1, 2]
    assert outcome.accepted[0].lo == 0
    assert outcome.accepted[2].sample.ts == (now_ms + 2) / 1000
    assert not outcome.accepted[0].sample.ts_from_edge


def test_the_build_compiles_every_board_module(tmp_path: Path) -> None:
    files = build(tmp_path)
    names = sorted(str(f.relative_to(tmp_path)) for f in files)
    assert "main.py" in names, "MicroPython starts it as source"
    assert "boot.py" in names
    assert "ew_app.mpy" in names
    assert "lib/umqtt/simple.mpy" in names
    sources = {p.stem for p in DEVICE_DIR.glob("*.py")} - {"main", "boot"}
    assert sources == {Path(n).stem for n in names if n.endswith(".mpy") and "/" not in n}
    assert all(f.stat().st_size > 0 for f in files)


@pytest.mark.parametrize("module", ["ew_bme280", "ew_dht22", "ew_internal", "ew_mcu"])
def test_modules_a_host_never_imports_still_compile_and_parse(module: str) -> None:
    source = (DEVICE_DIR / f"{module}.py").read_text()
    compile(source, module, "exec")
