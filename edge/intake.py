"""The edge's MQTT client of the local broker (paho), and nothing else.

A persistent session (fixed client id, clean start off, a session expiry) lets
the broker queue QoS 1 samples while the edge is down, and manual
acknowledgement lets the pipeline PUBACK a message only after its samples are
committed. paho runs its network loop on its own thread; the handlers given
here are called on that thread.
"""

import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge import metrics
from edgewire import contract
from edgewire.logs import get_logger
from edgewire.urls import Endpoint

log = get_logger("edge.intake")

SESSION_EXPIRY_S = 7 * 24 * 3600
# Unacknowledged QoS 1 messages the broker may send us at once: this bounds
# the memory of messages waiting for a group commit.
RECEIVE_MAXIMUM = 2000
KEEPALIVE_S = 30

# (device_id, kind, payload, mid, qos)
MessageHandler = Callable[[str, str, bytes, int, int], None]


class MqttIntake:
    def __init__(self, endpoint: Endpoint, client_id: str, on_message: MessageHandler) -> None:
        self._endpoint = endpoint
        self._on_message = on_message
        self._connected = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(
            self._endpoint.host,
            self._endpoint.port,
            keepalive=KEEPALIVE_S,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        log.info("connecting to broker", broker=self._endpoint.redacted())

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self._client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish failed", topic=topic, rc=int(info.rc))

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused connection", reason=str(reason))
            return
        client.subscribe(
            [
                (contract.subscription(contract.TELEMETRY), 1),
                (contract.subscription(contract.STATUS), 1),
            ]
        )
        self._connected.set()
        metrics.MQTT_CONNECTED.set(1)
        log.info("connected to broker", session_present=flags.session_present)

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        log.warning("disconnected from broker", reason=str(reason))

    def _handle_message(
        self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        parts = contract.split_topic(message.topic)
        if parts is None:
            # Not ours (we only subscribe under the root): nothing to store.
            self.ack(message.mid, message.qos)
            return
        device_id, kind = parts
        self._on_message(device_id, kind, bytes(message.payload), message.mid, message.qos)
