"""`edgewire edge dead-letters`: what the edge refused, and why."""

import base64
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from edge.buffer import BUFFER_FILE, Caps, SqliteBuffer
from edgewire.errors import EdgewireError

PREVIEW_BYTES = 60


def print_dead_letters(data_dir: Path, limit: int, as_json: bool) -> None:
    path = data_dir / BUFFER_FILE
    if not path.exists():
        raise EdgewireError(f"no edge buffer in {data_dir} (is this the edge's --data-dir?)")
    # The caps only matter for writing; this connection only reads.
    buffer = SqliteBuffer(path, Caps(1 << 62, 1 << 62, 1 << 62))
    try:
        letters = buffer.dead_letters(limit)
    finally:
        buffer.close()
    out = sys.stdout
    for stored in letters:
        letter = stored.letter
        if as_json:
            record = {
                "id": stored.id,
                "at": letter.at,
                "topic": letter.topic,
                "reason": letter.reason,
                "detail": letter.detail,
                "size": letter.size,
                "payload_b64": base64.b64encode(letter.payload).decode(),
            }
            out.write(msgspec.json.encode(record).decode() + "\n")
        else:
            when = datetime.fromtimestamp(letter.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            preview = letter.payload[:PREVIEW_BYTES].decode("utf-8", "replace")
            out.write(
                f"{stored.id}\t{when}\t{letter.topic}\t{letter.reason}\t{letter.detail}"
                f"\t{letter.size} B\t{preview!r}\n"
            )
