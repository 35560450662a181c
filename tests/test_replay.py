"""`edgewire edge dead-letters --replay`: dead letters are published again
for the running edge to judge afresh; one that is good now is stored, one
still bad comes back as a new dead letter, and one whose payload was cut
short when kept is refused with the reason."""

import json
import time
from pathlib import Path

from edge.buffer import BUFFER_FILE, Caps, SqliteBuffer
from edge.buffer.base import DEAD_LETTER_KEEP_BYTES, dead_letter
from edgewire.mosquitto import PrivateMosquitto
from tests.helpers import Service, eventually, run_edgewire


def letters(data_dir: Path) -> list[dict[str, object]]:
    listed = run_edgewire("edge", "dead-letters", "--data-dir", str(data_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_replay_stores_what_is_good_now_and_dead_letters_the_rest_again(
    tmp_path: Path, mosquitto: PrivateMosquitto, cloud: Service, edge: Service
) -> None:
    data_dir = tmp_path / "edge"
    now = time.time()
    good = json.dumps({"seq": 0, "boot": 1, "ts": now, "m": {"t": 1.5}}).encode()
    huge = b"x" * (DEAD_LETTER_KEEP_BYTES + 10)
    # As if refused by an older edge, or by a rule since fixed: written into
    # the running edge's buffer by another process, as the replay itself is.
    side = SqliteBuffer(data_dir / BUFFER_FILE, Caps(1 << 40, 1 << 40, 1 << 40))
    side.append(
        [],
        [
            dead_letter(now, "edgewire/replayed-1/telemetry", "invalid", "old rule", good),
            dead_letter(now, "edgewire/replayed-2/telemetry", "not_json", "junk", b"{nope"),
            dead_letter(now, "edgewire/replayed-3/telemetry", "too_large", "big", huge),
        ],
    )
    side.close()
    before = letters(data_dir)
    assert [x["topic"] for x in before][-3:] == [
        "edgewire/replayed-1/telemetry",
        "edgewire/replayed-2/telemetry",
        "edgewire/replayed-3/telemetry",
    ]
    eventually(lambda: edge.get("/healthz")["dead_letters"] == 3)

    replay = run_edgewire(
        "edge", "dead-letters", "--replay", "--data-dir", str(data_dir), "--mqtt", mosquitto.url
    )
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.strip() == "replayed 2 dead letters"
    assert f"only {DEAD_LETTER_KEEP_BYTES} of its {len(huge)} bytes were kept" in replay.stderr

    stored = eventually(lambda: cloud.get("/api/readings", device="replayed-1"))
    assert [(r["seq"], r["value"]) for r in stored] == [(0, 1.5)]
    after = eventually(lambda: (x := letters(data_dir)) and len(x) == 2 and x)
    assert {x["topic"] for x in after} == {
        "edgewire/replayed-2/telemetry",  # still bad: a new dead letter
        "edgewire/replayed-3/telemetry",  # not replayable: kept
    }
    again = next(x for x in after if x["topic"] == "edgewire/replayed-2/telemetry")
    assert again["reason"] == "not_json"
    assert again["id"] not in {x["id"] for x in before}
    eventually(lambda: edge.get("/healthz")["dead_letters"] == 2)


def test_replay_choices_are_checked(tmp_path: Path, edge: Service) -> None:
    data_dir = str(tmp_path / "edge")
    wrong = run_edgewire("edge", "dead-letters", "--data-dir", data_dir, "--reason", "x")
    assert wrong.returncode == 2
    assert "choose what to --replay" in wrong.stderr
    bad_url = run_edgewire(
        "edge", "dead-letters", "--replay", "--data-dir", data_dir, "--mqtt", "http://x"
    )
    assert bad_url.returncode == 2
    assert "--mqtt" in bad_url.stderr
    nothing = run_edgewire("edge", "dead-letters", "--replay", "--data-dir", data_dir)
    assert (nothing.returncode, nothing.stdout.strip()) == (0, "replayed 0 dead letters")
