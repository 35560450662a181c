"""Constants and pure helpers of the interface contract (docs/contract.md §2).

Every limit a board, the edge and the cloud must agree on lives here, so the
validator, the simulator and the tests cannot drift apart.
"""

import re

TOPIC_ROOT = "edgewire"

DEVICE_ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
METRIC_NAME_PATTERN = r"[a-z][a-z0-9_]{0,31}"
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN + r"\Z")
METRIC_NAME_RE = re.compile(METRIC_NAME_PATTERN + r"\Z")

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_METRICS = 64
# boot and seq must fit a signed 64-bit column in every store.
MAX_COUNTER = 2**63 - 1

# A board clock before this is unset (2020-01-01T00:00:00Z).
EARLIEST_PLAUSIBLE_TS = 1_577_836_800.0
# A board clock this far ahead of the edge is wrong.
MAX_CLOCK_AHEAD_S = 300.0

STATUSES = ("online", "offline", "sleeping")

# Topic kinds a board publishes and the edge subscribes to.
TELEMETRY = "telemetry"
STATUS = "status"
CMD = "cmd"
CMD_ACK = "cmd/ack"
STORED = "stored"


def topic(device_id: str, kind: str) -> str:
    return f"{TOPIC_ROOT}/{device_id}/{kind}"


def subscription(kind: str) -> str:
    """The wildcard filter that matches `kind` for every device."""
    return f"{TOPIC_ROOT}/+/{kind}"


def split_topic(name: str) -> tuple[str, str] | None:
    """`edgewire/<id>/<kind>` -> (id, kind), without checking the id.

    None when the topic is not under the edgewire root at all.
    """
    root, sep, rest = name.partition("/")
    if root != TOPIC_ROOT or not sep:
        return None
    device_id, sep, kind = rest.partition("/")
    if not sep:
        return None
    return device_id, kind


# Ids and names already checked: every message repeats them, and a set
# lookup is a fraction of a regex match. Bounded against a flood of new ones.
_KNOWN_MAX = 10_000
_known_ids: set[str] = set()
_known_names: set[str] = set()


def is_device_id(value: str) -> bool:
    if value in _known_ids:
        return True
    if DEVICE_ID_RE.match(value) is None:
        return False
    if len(_known_ids) < _KNOWN_MAX:
        _known_ids.add(value)
    return True


def is_metric_name(value: str) -> bool:
    if value in _known_names:
        return True
    if METRIC_NAME_RE.match(value) is None:
        return False
    if len(_known_names) < _KNOWN_MAX:
        _known_names.add(value)
    return True


def is_plausible_ts(ts: float, now: float) -> bool:
    return EARLIEST_PLAUSIBLE_TS <= ts <= now + MAX_CLOCK_AHEAD_S
