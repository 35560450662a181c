"""The board's command handler (device/ew_app.App.command), table-driven,
and fuzzed: whatever arrives on edgewire/<id>/cmd gets a JSON answer with
its id, and never an exception (contract §2)."""

import json
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewire.paths import DEVICE_DIR, SHIMS_DIR

sys.path[:0] = [str(DEVICE_DIR), str(SHIMS_DIR)]
import ew_app  # type: ignore[import-not-found]  # noqa: E402


class Sensor:
    def __init__(self, name: str) -> None:
        self.name = name


class Board:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"crash.dat": b"3"}

    def write(self, name: str, data: bytes) -> None:
        self.files[name] = data


def make_app() -> Any:
    app = ew_app.App.__new__(ew_app.App)  # the state ew_start would set, no I/O
    app.board = Board()
    app.sensors = [Sensor("bme280"), Sensor("synthetic")]
    app.disabled = set()
    app.interval_ms = 10_000
    app.sleep_cfg = None
    app.awake_until = None
    app.reboot_requested = False
    return app


def answer(app: Any, command: object) -> dict[str, Any]:
    raw = command if isinstance(command, bytes) else json.dumps(command).encode()
    result: dict[str, Any] = json.loads(app.command(raw))
    return result


@pytest.mark.parametrize(
    ("command", "changed"),
    [
        ({"id": "a", "set": {"interval_s": 30}}, {"interval_ms": 30_000}),
        ({"id": "b", "set": {"interval_s": 0.5}}, {"interval_ms": 500}),
        ({"id": "c", "disable": "bme280"}, {"disabled": {"bme280"}}),
        ({"id": "d", "sleep": {"awake_s": 20, "sleep_s": 600}},
         {"sleep_cfg": {"awake_s": 20, "sleep_s": 600}}),
        ({"id": "e", "sleep": None}, {"sleep_cfg": None}),
        ({"id": "f", "reboot": True}, {"reboot_requested": True}),
    ],
)  # fmt: skip
def test_commands_change_what_they_name(command: dict[str, Any], changed: dict[str, Any]) -> None:
    app = make_app()
    assert answer(app, command) == {"id": command["id"], "ok": True}
    for name, value in changed.items():
        assert getattr(app, name) == value


def test_enable_undoes_disable_and_leaving_safe_mode_clears_the_crash_count() -> None:
    app = make_app()
    answer(app, {"id": "1", "disable": "synthetic"})
    assert answer(app, {"id": "2", "enable": "synthetic"})["ok"]
    assert app.disabled == set()
    assert answer(app, {"id": "3", "safe_mode": False})["ok"]
    assert app.board.files["crash.dat"] == b"0"
    assert app.reboot_requested


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ({"id": "x", "fly": True}, "unknown command"),
        ({"id": "x"}, "unknown command"),
        ({"id": "x", "set": {"interval_s": 0}}, "interval_s"),
        ({"id": "x", "set": {"interval_s": True}}, "interval_s"),
        ({"id": "x", "set": {"interval_s": "fast"}}, "interval_s"),
        ({"id": "x", "set": {"interval_s": 5, "colour": "red"}}, "interval_s"),
        ({"id": "x", "set": {}}, "interval_s"),
        ({"id": "x", "set": 5}, "malformed"),
        ({"id": "x", "disable": "thermocouple"}, "no sensor thermocouple"),
        ({"id": "x", "sleep": {"awake_s": 20}}, "missing 'sleep_s'"),
        ({"id": "x", "sleep": {"awake_s": -1, "sleep_s": 5}}, "sleep"),
        ({"id": "x", "sleep": {"awake_s": "a", "sleep_s": 5}}, "sleep"),
        ({"id": "x", "reboot": "yes"}, "unknown command"),
    ],
)
def test_bad_commands_are_refused_with_a_reason(command: dict[str, Any], error: str) -> None:
    app = make_app()
    before = dict(vars(app))
    reply = answer(app, command)
    assert reply["id"] == "x"
    assert reply["ok"] is False
    assert error in reply["error"]
    assert reply["error"], "a refusal always says why"
    assert {k: v for k, v in vars(app).items() if k != "board"} == {
        k: v for k, v in before.items() if k != "board"
    }, "a refused command changes nothing"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"text"', b"null", b"\xff\xfe"])
def test_what_is_not_a_command_object_is_refused_without_an_id(raw: bytes) -> None:
    reply = answer(make_app(), raw)
    assert reply["ok"] is False
    assert reply["id"] is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
VERBS = st.sampled_from(["id", "set", "enable", "disable", "sleep", "reboot", "safe_mode"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(VERBS | st.text(max_size=6), JSON, max_size=4) | JSON)
def test_any_json_gets_an_answer_never_an_exception(command: object) -> None:
    reply = answer(make_app(), command)
    assert isinstance(reply["ok"], bool)
    assert reply["ok"] or reply["error"]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_get_an_answer(raw: bytes) -> None:
    assert isinstance(answer(make_app(), raw)["ok"], bool)
