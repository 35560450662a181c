"""The sans-IO cores import no I/O library: they take bytes, events and
`now`, and return decisions, so they can be tested and fuzzed alone."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORES = [
    "edge/validate.py",
    "edge/stored.py",
    "edge/window.py",
    "edge/downlink.py",
    "edge/gpio/led.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "edge" / "rules").glob("*.py")),
    "edgewire/downlink.py",
    "firmware/rawrepl_core.py",
    "firmware/ota.py",
    "edgewire/sim/board_console.py",
    "edgewire/contract.py",
    "edgewire/sample.py",
]
IO_MODULES = {
    "asyncio", "socket", "ssl", "select", "selectors", "sqlite3", "threading",
    "subprocess", "time", "os", "pathlib", "grpc", "paho", "starlette", "uvicorn",
    "httpx", "serial", "psycopg", "aio_pika", "random",
}  # fmt: skip


@pytest.mark.parametrize("path", CORES)
def test_core_module_has_no_io_imports(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & IO_MODULES, f"{path} imports {sorted(imported & IO_MODULES)}"
