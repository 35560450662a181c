"""Board commands on their way down: the state rule, the command checks,
and the edge's desk (edge/downlink.py), table-driven and with no I/O."""

import pytest

from edge.downlink import Answer, CommandDesk, parse_answer
from edgewire import downlink


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("queued", "at_edge", True),
        ("queued", "acked", True),  # an answer may overtake the news before it
        ("at_edge", "delivered", True),
        ("delivered", "failed", True),
        ("queued", "expired", True),
        ("at_edge", "at_edge", False),  # a repeat after a reconnect
        ("delivered", "at_edge", False),  # old news
        ("acked", "failed", False),  # final is final
        ("expired", "acked", False),
        ("failed", "expired", False),
    ],
)
def test_states_only_move_forward(current: str, new: str, allowed: bool) -> None:
    assert downlink.may_follow(current, new) is allowed
    assert (current in downlink.states_before(new)) is allowed


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ({"set": {"interval_s": 5}}, None),
        ({"reboot": True}, None),
        ({"disable": "bme280"}, None),
        ([1, 2], "a command is a JSON object"),
        ({}, "exactly one command"),
        ({"set": {"interval_s": 5}, "reboot": True}, "exactly one command"),
        ({"launch": "rockets"}, "unknown command 'launch'"),
        ({"id": "mine", "reboot": True}, "leave `id` out"),
    ],
)
def test_commands_are_checked_for_shape(command: object, problem: str | None) -> None:
    if problem is None:
        assert downlink.check_command(command) == command
    else:
        with pytest.raises(ValueError, match=problem):
            downlink.check_command(command)


def test_the_board_gets_the_command_with_its_id_and_nothing_too_big() -> None:
    assert downlink.board_payload("c1", {"set": {"interval_s": 30}}) == (
        b'{"id":"c1","set":{"interval_s":30}}'
    )
    with pytest.raises(ValueError, match="a board takes at most"):
        downlink.board_payload("c1", {"disable": "x" * 600})


def test_ttl_is_bounded() -> None:
    assert downlink.check_ttl(60) == 60
    for bad in (0, -1, downlink.MAX_TTL_S + 1):
        with pytest.raises(ValueError, match="ttl"):
            downlink.check_ttl(bad)


def states(desk: CommandDesk) -> list[tuple[str, str, str]]:
    return [(u.id, u.state, u.error) for u in desk.to_send()]


def test_a_command_for_an_offline_board_waits_then_goes_out_when_it_comes_online() -> None:
    desk = CommandDesk()
    assert desk.take("c1", "b1", b"{}", expires_at=100, now=0) == []
    assert states(desk) == [("c1", "at_edge", "")]
    assert desk.status("b2", "online") == []  # another board
    handed = desk.status("b1", "online")
    assert [c.id for c in handed] == ["c1"]
    assert desk.status("b1", "online") == [], "handed over once, not at every status"
    desk.delivered("c1", now=1)
    assert states(desk) == [("c1", "delivered", "")]
    assert desk.answer("b1", Answer("c1", True), now=2)
    assert states(desk) == [("c1", "acked", "")]
    assert desk.held == {}


def test_a_command_for_an_online_board_goes_out_at_once() -> None:
    desk = CommandDesk()
    desk.status("b1", "online")
    assert [c.id for c in desk.take("c1", "b1", b"{}", expires_at=100, now=0)] == ["c1"]
    desk.status("b1", "offline")
    assert desk.take("c2", "b1", b"{}", expires_at=100, now=0) == []


def test_refusals_unknown_answers_and_answers_from_another_board() -> None:
    desk = CommandDesk()
    desk.take("c1", "b1", b"{}", expires_at=100, now=0)
    assert not desk.answer("b2", Answer("c1", True), now=1), "b2 cannot answer for b1"
    assert not desk.answer("b1", Answer("nope", True), now=1)
    assert not desk.answer("b1", Answer(None, False, "malformed"), now=1)
    assert desk.answer("b1", Answer("c1", False, "interval_s"), now=1)
    assert states(desk)[-1] == ("c1", "failed", "interval_s")


def test_deadlines_repeats_and_a_full_desk() -> None:
    desk = CommandDesk(max_held=1)
    desk.take("old", "b1", b"{}", expires_at=5, now=10)
    assert states(desk) == [("old", "expired", "deadline passed before the edge")]
    desk.take("c1", "b1", b"{}", expires_at=20, now=10)
    desk.take("c1", "b1", b"{}", expires_at=20, now=11)  # sent again after a reconnect
    desk.take("c2", "b1", b"{}", expires_at=20, now=11)
    assert states(desk) == [
        ("c1", "at_edge", ""),
        ("c2", "failed", "the edge holds too many commands"),
    ]
    assert desk.expire(now=19) == 0
    assert desk.expire(now=20) == 1
    assert states(desk) == [("c1", "expired", "no answer by the deadline")]


def test_a_new_stream_hears_every_update_again_and_a_final_one_is_repeated() -> None:
    desk = CommandDesk()
    desk.take("c1", "b1", b"{}", expires_at=100, now=0)
    desk.answer("b1", Answer("c1", True), now=1)
    assert states(desk) == [("c1", "acked", "")]
    assert states(desk) == []
    desk.stream_lost()
    assert states(desk) == [("c1", "acked", "")]
    # The cloud, not having heard, sends the command again: the desk says
    # how it ended instead of handing it to the board twice.
    assert desk.take("c1", "b1", b"{}", expires_at=100, now=2) == []
    assert states(desk) == [("c1", "acked", "")]


@pytest.mark.parametrize(
    ("payload", "parsed"),
    [
        (b'{"id": "c1", "ok": true}', Answer("c1", True)),
        (b'{"id": "c1", "ok": false, "error": "interval_s"}', Answer("c1", False, "interval_s")),
        (b'{"id": null, "ok": false, "error": "malformed"}', Answer(None, False, "malformed")),
        (b"ok", "not a command answer"),
        (b'{"id": "c1"}', "not a command answer"),
        (b'{"id": 5, "ok": true}', "not a command answer"),
        (b"{" + b" " * 2000 + b"}", "bytes (at most"),
    ],
)
def test_board_answers_are_parsed_or_refused(payload: bytes, parsed: Answer | str) -> None:
    result = parse_answer(payload)
    if isinstance(parsed, str):
        assert isinstance(result, str)
        assert parsed in result
    else:
        assert result == parsed
