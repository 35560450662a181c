"""OTA updates (issue 7, first step): the host's sender (firmware/ota.py) and
the board's core (device/ew_ota.py) wired to each other with plain bytes,
over a tmp folder as the board's filesystem; then the same board core,
compiled, on the real MicroPython unix port under a 32 KB heap."""

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgewire.paths import DEVICE_DIR, SHIMS_DIR
from edgewire.sim.micropython import micropython_binary
from firmware.build import mpy_cross
from firmware.ota import CHUNK_BYTES, OtaSender

sys.path[:0] = [str(DEVICE_DIR), str(SHIMS_DIR)]
import ew_board  # type: ignore[import-not-found]  # noqa: E402
import ew_ota  # type: ignore[import-not-found]  # noqa: E402
import ew_trial  # type: ignore[import-not-found]  # noqa: E402

PREFIX = b"edgewire/board-1/"


def blob(seed: str, size: int) -> bytes:
    """`size` deterministic bytes that differ per seed."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


OLD = {"ew_app.mpy": blob("app-1", 1500), "ew_ring.mpy": blob("ring-1", 700)}
NEW = {
    "ew_app.mpy": blob("app-2", 1800),  # 4 chunks, the last one short
    "ew_ring.mpy": blob("ring-2", 2 * CHUNK_BYTES),  # exactly 2 chunks
    "ew_ota.mpy": blob("ota-2", 300),  # new to the board
    "empty.py": b"",
}


def make_board(folder: Path, files: dict[str, bytes]) -> Any:
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return ew_board.Board(str(folder) + "/")


def on_board(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def program(files: dict[str, bytes]) -> dict[str, bytes]:
    """The program's files of a board, without its state files."""
    return {n: d for n, d in files.items() if n.endswith((".py", ".mpy"))}


# What the link does to one message: deliver it, lose it, or deliver it twice.
Fate = Callable[[str, int, bytes], int]  # (direction, index, message) -> copies


def deliver(direction: str, index: int, msg: bytes) -> int:
    return 1


def exchange(sender: OtaSender, ota: Any, fate: Fate = deliver, limit: int = 500) -> list[bytes]:
    """Host and board talk until the host has nothing more to send; a lost
    message makes the host's adapter time out and call on_timeout(). The
    host's messages, in order."""
    sent: list[bytes] = []
    to_board: list[bytes] = [sender.start()]
    counts = {"host": 0, "board": 0}
    while to_board and len(sent) < limit:
        msg = to_board.pop(0)
        sent.append(msg)
        counts["host"] += 1
        answers: list[bytes] = []
        for _ in range(fate("host", counts["host"], msg)):
            answer = ota.handle(msg)
            if answer is not None:
                counts["board"] += 1
                answers.extend([answer] * fate("board", counts["board"], answer))
        for answer in answers:
            following = sender.on_answer(answer)
            if following is not None:
                assert following[0] == "ota"
                to_board.append(following[1])
        if not to_board:
            following = sender.on_timeout()
            if following is not None:
                assert following[0] == "ota"
                to_board.append(following[1])
    assert len(sent) < limit, "the exchange never ended"
    return sent


def ota_bytes(send: tuple[str, bytes] | None) -> bytes:
    assert send is not None
    assert send[0] == "ota"
    return send[1]


def kinds(messages: list[bytes]) -> list[tuple[str, str | None]]:
    parsed = [json.loads(m) for m in messages]
    return [(p["ota"], p.get("f")) for p in parsed]


# -- whole updates -------------------------------------------------------------


def test_a_full_update_swaps_every_file_and_keeps_the_old_ones(tmp_path: Path) -> None:
    board = make_board(tmp_path / "fs", OLD)
    ota = ew_ota.Ota(board, PREFIX)
    assert ota.ack_topic == b"edgewire/board-1/ota/ack"
    sender = OtaSender(list(NEW.items()), "2.0")
    sent = exchange(sender, ota)

    assert sender.state == "swapped", sender.error
    assert sender.needed == list(NEW)
    assert sender.resends == 0
    assert ota.reboot_wanted
    chunks = [f for kind, f in kinds(sent) if kind == "chunk"]
    assert chunks == ["ew_app.mpy"] * 4 + ["ew_ring.mpy"] * 2 + ["ew_ota.mpy", "empty.py"]
    assert kinds(sent)[-1] == ("swap", None)
    files = on_board(tmp_path / "fs")
    for name, data in NEW.items():
        assert files[name] == data, name
    assert files["ew_app.mpy.old"] == OLD["ew_app.mpy"]
    assert files["ew_ring.mpy.old"] == OLD["ew_ring.mpy"]
    assert "ew_ota.mpy.old" not in files, "a file new to the board has no old version"
    assert not [n for n in files if n.endswith(".new")]
    state = json.loads(files["ota.json"])
    assert state == {
        "v": "2.0",
        "files": list(NEW),
        "added": ["ew_ota.mpy", "empty.py"],
        "state": "trial",
        "tries": 0,
    }


def test_only_the_changed_file_is_sent(tmp_path: Path) -> None:
    current = {**NEW, "ew_app.mpy": OLD["ew_app.mpy"]}
    board = make_board(tmp_path / "fs", current)
    sender = OtaSender(list(NEW.items()), "2.1")
    sent = exchange(sender, ew_ota.Ota(board, PREFIX))
    assert sender.state == "swapped"
    assert sender.needed == ["ew_app.mpy"]
    assert {f for kind, f in kinds(sent) if kind == "chunk"} == {"ew_app.mpy"}
    files = on_board(tmp_path / "fs")
    assert files["ew_app.mpy"] == NEW["ew_app.mpy"]
    assert sorted(n for n in files if n.endswith(".old")) == ["ew_app.mpy.old"]
    assert json.loads(files["ota.json"])["files"] == ["ew_app.mpy"]


def test_a_board_already_up_to_date_needs_nothing(tmp_path: Path) -> None:
    board = make_board(tmp_path / "fs", NEW)
    ota = ew_ota.Ota(board, PREFIX)
    sender = OtaSender(list(NEW.items()), "2.0")
    assert kinds(exchange(sender, ota)) == [("offer", None)]
    assert sender.state == "done"
    assert sender.needed == []
    assert ota.reboot_wanted, "nothing to do: update mode goes back to the program"
    assert on_board(tmp_path / "fs") == NEW


# -- getting the board into update mode, and back after it went quiet ---------


def test_the_sender_starts_with_the_command_and_offers_once_the_board_is_ready() -> None:
    sender = OtaSender(list(NEW.items()), "2.0", trial_s=45)
    topic, command = sender.begin()
    assert (topic, json.loads(command)) == ("cmd", {"id": "ota-2.0", "update": True})
    # Update mode not up yet: probes, and now and then the command again.
    probes = [sender.on_timeout() for _ in range(6)]
    assert probes[:5] == [("ota", b'{"ota":"start"}')] * 5
    assert probes[5] == ("cmd", command)
    assert sender.on_answer(b'{"ota": "busy"}') is None
    _, offer = ota_send(sender.on_answer(b'{"ota": "ready"}'))
    assert json.loads(offer)["ota"] == "offer"
    assert json.loads(offer)["trial_s"] == 45


def ota_send(send: tuple[str, bytes] | None) -> tuple[str, bytes]:
    assert send is not None
    return send


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            b'{"id": "ota-2.0", "ok": false, "error": "unknown command"}',
            "the board refused the update command: unknown command (its program predates"
            " updates: flash it once over serial)",
        ),
        (
            b'{"id": "ota-2.0", "ok": false, "error": "malformed"}',
            "the board refused the update command: malformed",
        ),
    ],
)
def test_a_program_that_refuses_the_command_ends_it(answer: bytes, error: str) -> None:
    sender = OtaSender(list(NEW.items()), "2.0")
    sender.begin()
    sender.on_command_answer(b'{"id": "someone-else", "ok": false, "error": "x"}')
    sender.on_command_answer(b"not json")
    sender.on_command_answer(b'{"id": "ota-2.0", "ok": true}')
    assert sender.state == "starting"
    sender.on_command_answer(answer)
    assert (sender.state, sender.error) == ("failed", error)


def test_a_board_that_restarts_mid_transfer_resumes_where_it_stopped(tmp_path: Path) -> None:
    board = make_board(tmp_path / "fs", OLD)
    sender = OtaSender(list(NEW.items()), "2.0")
    first = ew_ota.Ota(board, PREFIX)
    message = sender.start()
    for _ in range(3):  # the offer, then two chunks of ew_app.mpy
        message = ota_send(sender.on_answer(first.handle(message) or b""))[1]
    assert (tmp_path / "fs" / "ew_app.mpy.new").stat().st_size == 2 * CHUNK_BYTES
    # The board restarts (a watchdog, a power cut): silence, until the
    # sender sends it to update mode again.
    assert sender.on_timeout() == ("ota", message)
    assert sender.on_timeout() == ("ota", message)
    assert sender.on_timeout() == sender.begin()
    assert sender.restarts == 1
    again = ew_ota.Ota(board, PREFIX)  # update mode, started afresh
    offer = ota_send(sender.on_answer(b'{"ota": "ready"}'))[1]
    got = json.loads(again.handle(ota_send(sender.on_answer(again.handle(offer) or b""))[1]) or b"")
    assert got == {"ota": "got", "f": "ew_app.mpy", "o": 2 * CHUNK_BYTES}, "resumed, not restarted"
    sent = exchange_from(sender, again, json.dumps(got).encode())
    assert sender.state == "swapped", sender.error
    assert [json.loads(m)["o"] for m in sent if b'"ew_app.mpy"' in m][:1] == [2 * CHUNK_BYTES]
    assert program(on_board(tmp_path / "fs")) == NEW


def exchange_from(sender: OtaSender, ota: Any, answer: bytes) -> list[bytes]:
    sent = []
    following = sender.on_answer(answer)
    while following is not None:
        sent.append(following[1])
        following = sender.on_answer(ota.handle(following[1]) or b"")
    return sent


def test_parts_of_another_version_are_not_resumed(tmp_path: Path) -> None:
    stale = {**OLD, "ew_app.mpy.new": b"x" * 700, "ota.part": b"1.9"}
    board = make_board(tmp_path / "fs", stale)
    sender = OtaSender(list(NEW.items()), "2.0")
    exchange(sender, ew_ota.Ota(board, PREFIX))
    assert sender.state == "swapped", sender.error
    assert sender.resends == 0
    assert program(on_board(tmp_path / "fs")) == NEW


def test_a_new_version_that_came_online_is_kept_at_the_next_start(tmp_path: Path) -> None:
    board, _ = updated_board(tmp_path)
    folder = tmp_path / "fs"
    assert ew_trial.boot(board) == "try"
    (folder / "ota.ok").write_bytes(b"1")  # what the program writes once online
    assert ew_trial.boot(board) is None, "kept: not one more try"
    assert on_board(folder) == NEW, "the old files and the update's own state are gone"


def test_a_new_update_tidies_up_after_one_that_came_online(tmp_path: Path) -> None:
    board, _ = updated_board(tmp_path)
    folder = tmp_path / "fs"
    assert ew_trial.boot(board) == "try"
    (folder / "ota.ok").write_bytes(b"1")
    third = {"ew_app.mpy": b"three"}
    sender = OtaSender(list(third.items()), "3.0")
    exchange(sender, ew_ota.Ota(board, PREFIX))
    assert sender.state == "swapped", sender.error
    files = on_board(folder)
    assert files["ew_app.mpy.old"] == NEW["ew_app.mpy"], "the version before is the fallback"
    assert not [n for n in files if n.endswith(".old") and n != "ew_app.mpy.old"]


# -- a lossy link: the offset rule ---------------------------------------------


def lose(direction: str, nth: int) -> Fate:
    return lambda d, i, m: 0 if (d, i) == (direction, nth) else 1


def double(direction: str, nth: int) -> Fate:
    return lambda d, i, m: 2 if (d, i) == (direction, nth) else 1


@pytest.mark.parametrize(
    ("fate", "resends"),
    [
        (lose("host", 3), 1),  # the second chunk of ew_app.mpy: sent again after the timeout
        (lose("board", 3), 1),  # its answer: the resend is answered with the next offset
        (double("host", 3), 0),  # a chunk delivered twice: the board names the offset it wants
        (double("board", 3), 0),  # an answer delivered twice: the second is ignored
        (lose("host", 1), 0),  # the offer
        (lose("host", 10), 0),  # the swap
        (lose("board", 10), 0),  # "swapped": the resent swap is answered "swapped" again
        (double("host", 1), 0),  # the offer twice
    ],
)
def test_lost_and_doubled_messages_are_recovered(tmp_path: Path, fate: Fate, resends: int) -> None:
    board = make_board(tmp_path / "fs", OLD)
    sender = OtaSender(list(NEW.items()), "2.0")
    exchange(sender, ew_ota.Ota(board, PREFIX), fate)
    assert sender.state == "swapped", sender.error
    assert sender.resends == resends
    files = on_board(tmp_path / "fs")
    for name, data in NEW.items():
        assert files[name] == data, name


def test_a_chunk_at_the_wrong_offset_is_answered_with_the_right_one(tmp_path: Path) -> None:
    ota = ew_ota.Ota(make_board(tmp_path / "fs", OLD), PREFIX)
    sender = OtaSender(list(NEW.items()), "2.0")
    first = json.loads(ota_bytes(sender.on_answer(ota.handle(sender.start()))))
    assert (first["f"], first["o"]) == ("ew_app.mpy", 0)
    ahead = {**first, "o": 1024}
    assert json.loads(ota.handle(json.dumps(ahead).encode())) == {
        "ota": "got",
        "f": "ew_app.mpy",
        "o": 0,
    }
    # The host, told to go back to 0, sends from there.
    again = sender.on_answer(b'{"ota": "got", "f": "ew_app.mpy", "o": 0}')
    assert again is None, "0 is the offset in flight: nothing to resend yet"
    answer = ota.handle(json.dumps(first).encode())
    following = json.loads(ota_bytes(sender.on_answer(answer)))
    assert (following["f"], following["o"]) == ("ew_app.mpy", CHUNK_BYTES)


# -- refusals ------------------------------------------------------------------


def test_a_corrupted_chunk_fails_the_sha256_and_replaces_nothing(tmp_path: Path) -> None:
    board = make_board(tmp_path / "fs", OLD)
    ota = ew_ota.Ota(board, PREFIX)

    class Corrupting:
        """The board core behind a link that flips a bit in one chunk."""

        def handle(self, msg: bytes) -> bytes | None:
            parsed = json.loads(msg)
            if parsed["ota"] == "chunk" and (parsed["f"], parsed["o"]) == ("ew_ring.mpy", 512):
                data = bytearray(base64.b64decode(parsed["d"]))
                data[100] ^= 0x01
                parsed["d"] = base64.b64encode(bytes(data)).decode()
                msg = json.dumps(parsed).encode()
            answer: bytes | None = ota.handle(msg)
            return answer

    sender = OtaSender(list(NEW.items()), "2.0")
    exchange(sender, Corrupting())
    assert sender.state == "failed"
    assert sender.error == "the board refused the update: sha256 of ew_ring.mpy"
    assert not ota.reboot_wanted
    assert on_board(tmp_path / "fs") == OLD, "nothing replaced, no .new file left"


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ([["../evil.mpy", 1, "0" * 64]], "bad name '../evil.mpy'"),
        ([["lib/x.mpy", 1, "0" * 64]], "bad name 'lib/x.mpy'"),
        ([["..", 1, "0" * 64]], "bad name '..'"),
        ([["ota.json", 1, "0" * 64]], "bad name 'ota.json'"),
        ([["config.json", 1, "0" * 64]], "bad name 'config.json'"),
        ([["crash.dat", 1, "0" * 64]], "bad name 'crash.dat'"),
        # MicroPython's open() cuts a path at a NUL: this would be config.json.
        ([["config.json\x00.py", 1, "0" * 64]], "bad name 'config.json\\x00.py'"),
        ([["a.mpy.new", 1, "0" * 64]], "bad name 'a.mpy.new'"),
        ([["a.mpy", 1, "0" * 64], ["a.mpy", 1, "0" * 64]], "bad name 'a.mpy'"),
        ([[f"f{i}.mpy", 1, "0" * 64] for i in range(33)], "too many files"),
        ([["a.mpy", -1, "0" * 64]], "bad entry a.mpy"),
        ([["a.mpy", 10**15, "0" * 64]], "not enough space"),
    ],
)
def test_bad_offers_are_refused(tmp_path: Path, files: list[Any], error: str) -> None:
    board = make_board(tmp_path / "fs", OLD)
    answer = json.loads(
        ew_ota.Ota(board, PREFIX).handle(json.dumps({"ota": "offer", "v": "3", "files": files}))
    )
    assert answer["ota"] == "refused"
    assert answer["error"].startswith(error)
    assert on_board(tmp_path / "fs") == OLD


def test_the_sender_reports_a_refused_name_and_nothing_leaves_the_folder(tmp_path: Path) -> None:
    board = make_board(tmp_path / "fs", OLD)
    sender = OtaSender([("../evil.mpy", b"print(1)"), *NEW.items()], "2.0")
    sent = exchange(sender, ew_ota.Ota(board, PREFIX))
    assert kinds(sent) == [("offer", None)]
    assert sender.state == "failed"
    assert sender.error == "the board refused the update: bad name '../evil.mpy'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fs"]
    assert on_board(tmp_path / "fs") == OLD


@pytest.mark.parametrize(
    "msg",
    [
        b"",
        b"not json",
        b"[]",
        b'"ota"',
        b"{}",
        b'{"ota": "fly"}',
        b'{"ota": "chunk", "f": "ew_app.mpy", "o": 0, "d": "AAAA"}',  # no offer
        b'{"ota": "swap", "v": "9"}',  # no offer
        b'{"ota": "offer", "v": 1, "files": []}',
        b'{"ota": "offer", "v": "1", "files": [["a.mpy"]]}',
        b'{"ota": "offer", "v": "1", "files": [[1, 2, 3]]}',
        b'{"ota": "offer", "v": "1", "files": "a.mpy"}',
        b'{"ota": "offer", "v": "1"}',
        b"[" * 2000 + b"]" * 2000,  # nested too deep to parse (found by the fuzzer)
    ],
)
def test_malformed_messages_are_refused_never_raised(tmp_path: Path, msg: bytes) -> None:
    board = make_board(tmp_path / "fs", OLD)
    answer = json.loads(ew_ota.Ota(board, PREFIX).handle(msg))
    assert answer["ota"] == "refused"
    assert answer["error"]
    assert on_board(tmp_path / "fs") == OLD


def test_a_chunk_beyond_the_offered_size_is_refused(tmp_path: Path) -> None:
    ota = ew_ota.Ota(make_board(tmp_path / "fs", {}), PREFIX)
    offer = {"ota": "offer", "v": "1", "files": [["a.mpy", 3, hashlib.sha256(b"abc").hexdigest()]]}
    assert json.loads(ota.handle(json.dumps(offer)))["files"] == ["a.mpy"]
    chunk = {"ota": "chunk", "f": "a.mpy", "o": 0, "d": base64.b64encode(b"abcd").decode()}
    assert json.loads(ota.handle(json.dumps(chunk)))["error"] == "chunk too long for a.mpy"


def test_no_new_offer_while_an_update_is_on_trial(tmp_path: Path) -> None:
    folder = tmp_path / "fs"
    board = make_board(folder, OLD)
    exchange(OtaSender(list(NEW.items()), "2.0"), ew_ota.Ota(board, PREFIX))
    sender = OtaSender([("ew_app.mpy", b"three")], "3.0")
    exchange(sender, ew_ota.Ota(board, PREFIX))
    assert sender.error == "the board refused the update: update 2.0 still on trial"
    ew_trial.confirmed(board)
    sender = OtaSender([("ew_app.mpy", b"three")], "3.0")
    exchange(sender, ew_ota.Ota(board, PREFIX))
    assert sender.state == "swapped"


# -- at boot: trial, rollback, confirmation --------------------------------------


@pytest.mark.parametrize(
    ("state", "action"),
    [
        (None, None),
        ({}, None),
        ({"v": "2", "files": [], "state": "trial", "tries": 0}, "try"),
        ({"v": "2", "files": [], "state": "trial", "tries": 1}, "try"),
        ({"v": "2", "files": [], "state": "trial", "tries": 2}, "rollback"),
        ({"v": "2", "files": [], "state": "trial", "tries": 5}, "rollback"),
        ({"v": "2", "files": [], "state": "ok", "tries": 1}, None),
        ({"v": "2", "files": [], "state": "rolled_back", "tries": 2}, None),
        ({"v": "2", "files": [], "state": "failed", "tries": 2}, None),
    ],
)
def test_after_boot(state: dict[str, Any] | None, action: str | None) -> None:
    assert ew_trial.after_boot(state) == action


def updated_board(tmp_path: Path) -> tuple[Any, OtaSender]:
    board = make_board(tmp_path / "fs", OLD)
    sender = OtaSender(list(NEW.items()), "2.0")
    exchange(sender, ew_ota.Ota(board, PREFIX))
    assert sender.state == "swapped"
    return board, sender


def test_a_version_that_never_comes_online_is_rolled_back(tmp_path: Path) -> None:
    board, sender = updated_board(tmp_path)
    folder = tmp_path / "fs"
    assert ew_trial.boot(board) == "try"
    assert json.loads((folder / "ota.json").read_bytes())["tries"] == 1
    assert ew_trial.boot(board) == "try"
    assert on_board(folder)["ew_app.mpy"] == NEW["ew_app.mpy"]
    (folder / "crash.dat").write_bytes(b"3")  # the new version's crashes
    assert ew_trial.boot(board) == "rollback"
    files = on_board(folder)
    assert program(files) == OLD, "old files back, added gone"
    assert json.loads(files["ota.json"])["state"] == "rolled_back"
    assert files["crash.dat"] == b"0", "the old version does not start in safe mode"
    assert ew_trial.boot(board) is None
    # Once online (the old version), the board says so, once.
    answer = ew_trial.confirmed(board)
    assert json.loads(answer) == {"ota": "rolled_back", "v": "2.0"}
    assert "ota.json" not in on_board(folder)
    assert ew_trial.confirmed(board) is None
    assert sender.on_answer(answer) is None
    assert sender.state == "failed"
    assert sender.error == "version 2.0 did not come online: rolled back"


def test_a_version_that_comes_online_is_kept(tmp_path: Path) -> None:
    board, sender = updated_board(tmp_path)
    folder = tmp_path / "fs"
    assert ew_trial.boot(board) == "try"
    answer = ew_trial.confirmed(board)
    assert json.loads(answer) == {"ota": "done", "v": "2.0"}
    files = on_board(folder)
    assert not [n for n in files if n.endswith((".old", ".new"))]
    assert files == NEW, "the new files, and nothing of the update left"
    assert ew_trial.boot(board) is None
    assert ew_trial.confirmed(board) is None
    assert sender.on_answer(answer) is None
    assert sender.state == "done"


def test_a_swap_cut_short_is_finished_at_boot_or_undone(tmp_path: Path) -> None:
    # Power lost after ota.json and the first rename of ew_app.mpy: the
    # old file is aside, the new one not yet in; ew_ring.mpy not started.
    halfway = {
        "ew_app.mpy.old": OLD["ew_app.mpy"],
        "ew_app.mpy.new": NEW["ew_app.mpy"],
        "ew_ring.mpy": OLD["ew_ring.mpy"],
        "ew_ring.mpy.new": NEW["ew_ring.mpy"],
        "ew_ota.mpy.new": NEW["ew_ota.mpy"],
    }
    state = {
        "v": "2.0",
        "files": ["ew_app.mpy", "ew_ring.mpy", "ew_ota.mpy"],
        "added": ["ew_ota.mpy"],
        "state": "trial",
        "tries": 0,
    }
    forward = make_board(tmp_path / "forward", {**halfway, "ota.json": json.dumps(state).encode()})
    assert ew_trial.boot(forward) == "finished", "then a reset, so only new files load"
    assert json.loads((tmp_path / "forward" / "ota.json").read_bytes())["tries"] == 0
    assert ew_trial.boot(forward) == "try"
    files = on_board(tmp_path / "forward")
    assert sorted(files) == [
        "ew_app.mpy", "ew_app.mpy.old", "ew_ota.mpy", "ew_ring.mpy", "ew_ring.mpy.old", "ota.json",
    ]  # fmt: skip
    assert [files[n] for n in ("ew_app.mpy", "ew_ring.mpy", "ew_ota.mpy")] == [
        NEW["ew_app.mpy"],
        NEW["ew_ring.mpy"],
        NEW["ew_ota.mpy"],
    ]
    state["tries"] = 2
    back = make_board(tmp_path / "back", {**halfway, "ota.json": json.dumps(state).encode()})
    assert ew_trial.boot(back) == "rollback"
    assert program(on_board(tmp_path / "back")) == OLD


# -- the board core on MicroPython ---------------------------------------------

DRIVER = """
import gc, sys
import ew_board, ew_ota, ew_trial

board = ew_board.Board("fs/")
ota = ew_ota.Ota(board, b"edgewire/mp-1/")
gc.collect()
peak = live = gc.mem_alloc()
while True:
    line = sys.stdin.readline()
    if not line:
        break
    line = line.strip()
    if line == "!boot":
        out = ew_trial.boot(board)
    elif line == "!confirmed":
        out = ew_trial.confirmed(board)
    else:
        out = ota.handle(line)
    peak = max(peak, gc.mem_alloc())
    gc.collect()
    live = max(live, gc.mem_alloc())
    if isinstance(out, bytes):
        out = out.decode()
    print(out if out is not None else "-")
print("heap", peak, live, ota.reboot_wanted)
"""


class MicroPythonBoardCore:
    """ew_ota on the unix port: one message a line in, one answer a line out."""

    def __init__(self, folder: Path, heap: str) -> None:
        self.process = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={heap}", "driver.py"],
            cwd=folder,
            env={**os.environ, "MICROPYPATH": "."},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def handle(self, msg: bytes | str) -> bytes | None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        line = msg.encode() if isinstance(msg, str) else msg
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if not answer or answer.startswith(b"Traceback"):
            raise AssertionError((answer + self.finish()).decode())
        return None if answer == b"-" else answer

    def finish(self) -> bytes:
        out, _ = self.process.communicate(timeout=10)
        return out


@pytest.fixture
def mp_folder(tmp_path: Path) -> Path:
    """A folder for the unix port: the compiled board modules, a driver, and
    the board's files under fs/."""
    for module in ("ew_ota", "ew_trial", "ew_board"):  # as firmware/build.py compiles them
        target = str(tmp_path / f"{module}.mpy")
        subprocess.run(
            [mpy_cross(), "-O2", "-X", "no-source-lines", "-o", target, f"{module}.py"],
            cwd=DEVICE_DIR,
            check=True,
            capture_output=True,
        )
    (tmp_path / "driver.py").write_text(DRIVER)
    return tmp_path


def test_an_update_on_micropython_within_a_32k_heap(mp_folder: Path) -> None:
    # A file larger than the whole heap: the board can only ever hold chunks of it.
    new = {**NEW, "big.mpy": blob("big-2", 48 * 1024)}
    old = {**OLD, "big.mpy": blob("big-1", 40 * 1024)}
    make_board(mp_folder / "fs", old)
    board = MicroPythonBoardCore(mp_folder, "32K")
    sender = OtaSender(list(new.items()), "2.0")
    # One chunk lost on the way: recovered on MicroPython too.
    exchange(sender, board, lose("host", 5))
    assert sender.state == "swapped", sender.error
    assert sender.resends == 1
    files = on_board(mp_folder / "fs")
    for name, data in new.items():
        assert files[name] == data, name
    assert files["big.mpy.old"] == old["big.mpy"]
    # The first start tries the new version; once online it is kept.
    assert board.handle("!boot") == b"try"
    assert json.loads(board.handle("!confirmed") or b"") == {"ota": "done", "v": "2.0"}
    out = board.finish().decode()
    assert "MemoryError" not in out
    heap, peak, live, reboot = out.split()
    assert (heap, reboot) == ("heap", "True")
    assert int(peak) <= 32 * 1024
    print(f"MicroPython heap during the update: peak {peak} B, live {live} B")
    files = on_board(mp_folder / "fs")
    assert not [n for n in files if n.endswith((".old", ".new"))]
    assert "ota.json" not in files


def test_a_rollback_on_micropython(mp_folder: Path) -> None:
    make_board(mp_folder / "fs", OLD)
    board = MicroPythonBoardCore(mp_folder, "32K")
    sender = OtaSender(list(NEW.items()), "2.0")
    exchange(sender, board)
    assert sender.state == "swapped"
    assert [board.handle("!boot") for _ in range(4)] == [b"try", b"try", b"rollback", None]
    assert json.loads(board.handle("!confirmed") or b"")["ota"] == "rolled_back"
    assert "MemoryError" not in board.finish().decode()
    assert program(on_board(mp_folder / "fs")) == OLD
