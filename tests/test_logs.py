"""Log lines are one JSON object each, with the event's fields."""

import json
import logging

import pytest

from edgewire.logs import LogThrottle, get_logger, setup_logging


def test_json_lines_carry_event_fields_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("unit", "info", json_lines=True)
    log = get_logger("edge.test")
    log.info("cloud stream up", cloud="127.0.0.1:1")
    log.debug("not shown")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed", batch=7)
    logging.getLogger("paho").warning("library says %s", "hi")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [entry["event"] for entry in lines] == ["cloud stream up", "failed", "library says hi"]
    assert lines[0]["cloud"] == "127.0.0.1:1"
    assert lines[0]["service"] == "unit"
    assert lines[0]["level"] == "info"
    assert lines[1]["batch"] == 7
    assert "ValueError: bad" in lines[1]["exception"]
    assert lines[2]["logger"] == "paho"


def test_a_log_throttle_lets_one_line_a_key_through_per_interval() -> None:
    throttle = LogThrottle(every_s=60.0, most=2)
    assert throttle.due("a")
    assert not throttle.due("a"), "the same key again within the minute"
    assert throttle.due("b"), "another key has its own"
    assert throttle.due("c"), "past `most` keys it starts afresh"
    assert throttle.due("a")
    assert LogThrottle(every_s=0.0).due("a")
