"""The edge's paho client against a real Mosquitto: every message read once,
whatever its size and however packets fall across reads, and a message
acknowledged with ack_many is not delivered again, while one left
unacknowledged is (the persistent session keeps it)."""

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.intake import RECV_CHUNK, MqttIntake
from edgewire.mosquitto import PrivateMosquitto
from edgewire.urls import parse_endpoint
from tests.helpers import eventually


class Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int]] = []
        self.lock = threading.Lock()

    def __call__(self, device_id: str, kind: str, payload: bytes, mid: int, qos: int) -> None:
        with self.lock:
            self.messages.append((device_id, payload, mid))


def publish_all(broker: PrivateMosquitto, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="publisher")
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    infos = [
        client.publish(f"edgewire/d-{i % 3}/telemetry", p, qos=1) for i, p in enumerate(payloads)
    ]
    for info in infos:
        info.wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_messages_of_every_size_arrive_once_and_acks_stick(tmp_path: Path) -> None:
    broker = PrivateMosquitto(tmp_path / "mq")
    broker.start()
    endpoint = parse_endpoint(broker.url, ("mqtt",))
    sizes = [1, 3, 100, 127, 128, 16_383, 16_384, RECV_CHUNK - 1, RECV_CHUNK + 1, 100_000]
    payloads = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes * 3)]
    payloads += [b"%d" % i for i in range(3000)]  # more than the broker's in-flight limit
    try:
        seen = Collector()
        intake = MqttIntake(endpoint, "intake-test", seen)
        intake.start()
        eventually(lambda: intake.connected)
        acker_stop = threading.Event()

        def acker() -> None:  # like the pipeline: ack in groups, from another thread
            acked = 0
            while not acker_stop.is_set():
                with seen.lock:
                    mids = [mid for _, _, mid in seen.messages[acked:]]
                acked += len(mids)
                intake.ack_many(mids)
                time.sleep(0.002)

        thread = threading.Thread(target=acker, daemon=True)
        thread.start()
        publish_all(broker, payloads)
        eventually(lambda: len(seen.messages) >= len(payloads))
        time.sleep(0.3)
        acker_stop.set()
        thread.join()
        intake.stop()
        assert sorted(p for _, p, _ in seen.messages) == sorted(payloads)

        # Reconnect with the same session: nothing was left unacknowledged.
        again = Collector()
        second = MqttIntake(endpoint, "intake-test", again)
        second.start()
        eventually(lambda: second.connected)
        publish_all(broker, [b"fresh"])
        eventually(lambda: len(again.messages) >= 1)
        time.sleep(0.3)
        assert [p for _, p, _ in again.messages] == [b"fresh"]
        # Leave this one unacknowledged: the broker must deliver it again.
        second.stop()
        third_seen = Collector()
        third = MqttIntake(endpoint, "intake-test", third_seen)
        third.start()
        eventually(lambda: [p for _, p, _ in third_seen.messages] == [b"fresh"])
        third.ack_many([mid for _, _, mid in third_seen.messages])
        third.stop()
    finally:
        broker.stop()
