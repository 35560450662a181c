"""`edgewire edge dead-letters`: what the edge refused, and why; and, after
a fix to the rules, the schema or a board, `--replay` to try them again.

A replay publishes each dead letter again, as it arrived, on its own topic
to the edge's broker (QoS 1), and forgets it once the broker passed it on: the
running edge then judges it afresh, through the same path as any message,
and one that is still bad becomes a new dead letter with its reason.
"""

import base64
import os
import queue
import ssl
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.buffer import BUFFER_FILE, Caps, SqliteBuffer
from edge.buffer.base import StoredDeadLetter
from edgewire.errors import EdgewireError
from edgewire.urls import Endpoint

PREVIEW_BYTES = 60
PUBLISH_TIMEOUT_S = 10.0
# MQTT 5 PUBACK reason codes
NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87


def _open(data_dir: Path) -> SqliteBuffer:
    path = data_dir / BUFFER_FILE
    if not path.exists():
        raise EdgewireError(f"no edge buffer in {data_dir} (is this the edge's --data-dir?)")
    # The caps only matter for appending, which this connection never does.
    return SqliteBuffer(path, Caps(1 << 62, 1 << 62, 1 << 62))


def print_dead_letters(data_dir: Path, limit: int, as_json: bool) -> None:
    buffer = _open(data_dir)
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


def chosen(
    letters: list[StoredDeadLetter], ids: Sequence[int], reason: str | None
) -> tuple[list[StoredDeadLetter], list[str]]:
    """The letters to replay (by id and/or reason), and why others cannot be:
    only the first bytes of a large payload are kept."""
    picked, problems = [], []
    for stored in letters:
        if ids and stored.id not in ids:
            continue
        if reason is not None and stored.letter.reason != reason:
            continue
        letter = stored.letter
        if letter.size > len(letter.payload):
            problems.append(
                f"{stored.id}: only {len(letter.payload)} of its {letter.size} bytes were kept"
            )
            continue
        picked.append(stored)
    return picked, problems


def replay_dead_letters(
    data_dir: Path,
    broker: Endpoint,
    ids: Sequence[int],
    reason: str | None,
    limit: int,
    ca_file: str | None = None,
) -> int:
    """Publish the chosen dead letters again; how many went. Each is
    forgotten only once the broker said it passed it on: MQTT 5, as its
    PUBACK says when a publish was denied (the ACL) or reached no
    subscriber (no edge), where MQTT 3.1.1 acknowledges both as if sent."""
    buffer = _open(data_dir)
    answers: dict[int, ReasonCode] = {}
    answered = threading.Condition()

    def on_publish(
        _c: mqtt.Client, _u: object, mid: int, code: ReasonCode, _p: Properties | None
    ) -> None:
        with answered:
            answers[mid] = code
            answered.notify_all()

    def answer_to(mid: int) -> ReasonCode | None:
        with answered:
            answered.wait_for(lambda: mid in answers, PUBLISH_TIMEOUT_S)
            return answers.pop(mid, None)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edgewire-replay-{os.getpid()}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_publish = on_publish
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(ca_certs=ca_file)
    try:
        picked, problems = chosen(buffer.dead_letters(limit), ids, reason)
        for problem in problems:
            print(f"cannot replay {problem}", file=sys.stderr)
        if not picked:
            return 0
        _connect(client, broker)
        sent = 0
        for stored in picked:
            info = client.publish(stored.letter.topic, stored.letter.payload, qos=1)
            code = answer_to(info.mid)
            if code is None or code.value != 0:
                raise EdgewireError(
                    f"dead letter {stored.id} was not passed on: {_why(code, stored)};"
                    f" {sent} replayed, it and the rest kept"
                )
            buffer.delete_dead_letters([stored.id])
            sent += 1
        return sent
    finally:
        client.disconnect()
        client.loop_stop()
        buffer.close()


def _connect(client: mqtt.Client, broker: Endpoint) -> None:
    connected: queue.Queue[ReasonCode] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, code, _p: connected.put(code)
    try:
        client.connect(broker.host, broker.port)
    except (OSError, ssl.SSLError) as exc:
        raise EdgewireError(f"cannot reach the broker {broker.redacted()}: {exc}") from None
    client.loop_start()
    try:
        code = connected.get(timeout=PUBLISH_TIMEOUT_S)
    except queue.Empty:
        raise EdgewireError(f"the broker {broker.redacted()} did not answer") from None
    if code.is_failure:
        raise EdgewireError(f"the broker {broker.redacted()} refused the login: {code}")


def _why(code: ReasonCode | None, stored: StoredDeadLetter) -> str:
    topic = stored.letter.topic
    if code is None:
        return "the broker did not answer"
    if code.value == NOT_AUTHORIZED:
        return f"this login may not publish on {topic} (replay as the edge's user)"
    if code.value == NO_MATCHING_SUBSCRIBERS:
        return f"nothing subscribes to {topic} (is the edge running?)"
    return f"the broker answered {code}"
