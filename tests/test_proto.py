"""The committed generated code in edgewire/v1 matches proto/ exactly."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["edgewire_pb2.py", "edgewire_pb2.pyi", "edgewire_pb2_grpc.py"]


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         str(ROOT / "proto" / "edgewire" / "v1" / "edgewire.proto")],
        check=True,
    )  # fmt: skip
    for name in GENERATED:
        fresh = (tmp_path / "edgewire" / "v1" / name).read_text()
        committed = (ROOT / "edgewire" / "v1" / name).read_text()
        assert committed == fresh, f"edgewire/v1/{name} is stale: run ./scripts/gen-proto"
