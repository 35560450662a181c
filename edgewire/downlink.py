"""Board commands on their way down (cloud → edge → board) and their states.

A command's life, as the cloud shows it:

    queued     the cloud holds it; no edge has taken it yet
    at_edge    the board's edge holds it (the board is offline or asleep)
    delivered  the edge published it on `edgewire/<id>/cmd` and the broker took it
    acked      the board carried it out            (final)
    failed     the board refused it, with a reason (final)
    expired    its deadline passed before an answer (final)

Rule: a state only moves forward. News arrives out of order (an edge that
reconnects says `at_edge` again after the board already answered), so an
update that is not ahead of what is held is ignored, never applied.
"""

import json
import secrets
from typing import Any

STATES = ("queued", "at_edge", "delivered", "acked", "failed", "expired")
FINAL = frozenset({"acked", "failed", "expired"})
_RANK = {"queued": 0, "at_edge": 1, "delivered": 2, "acked": 3, "failed": 3, "expired": 3}

# What a board understands (device/ew_app.py App.command); one per command.
KINDS = ("set", "enable", "disable", "sleep", "reboot", "safe_mode")
# A board's MQTT buffer and heap are small: commands are short.
MAX_COMMAND_BYTES = 512
DEFAULT_TTL_S = 3600.0
MAX_TTL_S = 7 * 86400.0


def may_follow(current: str, new: str) -> bool:
    """Whether a command in `current` may move to `new`."""
    return current not in FINAL and _RANK[new] > _RANK[current]


def states_before(new: str) -> tuple[str, ...]:
    """The states a command may be in to move to `new` (for an atomic
    `UPDATE … WHERE state IN (…)`)."""
    return tuple(state for state in STATES if may_follow(state, new))


def new_command_id() -> str:
    return "c" + secrets.token_hex(6)


def check_command(body: Any) -> dict[str, Any]:
    """The command object a user sent, checked for shape (the board checks
    the values); ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError('a command is a JSON object, e.g. {"set": {"interval_s": 30}}')
    if "id" in body:
        raise ValueError("a command gets its id from the cloud; leave `id` out")
    unknown = [key for key in body if key not in KINDS]
    if unknown:
        raise ValueError(f"unknown command {str(unknown[0])[:40]!r}; one of: {', '.join(KINDS)}")
    if len(body) != 1:
        raise ValueError(f"exactly one command at a time, one of: {', '.join(KINDS)}")
    return body


def board_payload(command_id: str, command: dict[str, Any]) -> bytes:
    """The MQTT payload the board gets: the command with its id."""
    payload = json.dumps({"id": command_id, **command}, separators=(",", ":")).encode()
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(
            f"command is {len(payload)} bytes; a board takes at most {MAX_COMMAND_BYTES}"
        )
    return payload


def check_ttl(ttl_s: float) -> float:
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be more than 0 and at most {MAX_TTL_S / 86400:g} days")
    return ttl_s
