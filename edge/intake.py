"""The edge's MQTT client of the local broker (paho), and nothing else.

A persistent session (fixed client id, clean session off) lets the broker
queue QoS 1 samples while the edge is down, and manual acknowledgement lets
the pipeline PUBACK a message only after its samples are committed. paho runs
its network loop on its own thread; the handlers given here are called on it.

MQTT 3.1.1, not 5: measured here, paho spends about 25 us more per received
message on v5 properties (88 against 64 us of CPU), which is most of the
difference between keeping up with the boards and not. What v5 would add is
covered otherwise: the broker keeps a 3.1.1 persistent session until its
`persistent_client_expiration`, and the number of unacknowledged messages in
flight (which bounds the pipeline's memory) is the broker's
`max_inflight_messages` (`edgewire edge broker-config` sets it).
"""

import struct
import threading
from collections.abc import Callable, Sequence
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

KEEPALIVE_S = 30
# Bytes taken from the socket at once (see _FastClient._sock_recv).
RECV_CHUNK = 64 * 1024
# How long a read waits for the pipeline to make room before the network loop
# takes a turn (pings, acks) and comes back.
PAUSE_S = 0.2
_PUBACK = struct.Struct("!BBH")
PUBACK = PacketTypes.PUBACK << 4

# (device_id, kind, payload, mid, qos)
MessageHandler = Callable[[str, str, bytes, int, int], None]


# (topic, payload, mid, qos) of a received PUBLISH; called on paho's thread.
PublishHandler = Callable[[bytes, bytes, int, int], None]


class _FastClient(mqtt.Client):
    """paho, with four costs of receiving at high rates taken out.

    Measured here with mosquitto_pub feeding 100,000 QoS 1 messages, paho's
    CPU per message fell from 64 to 15 us. paho 1) reads one packet per
    select() when no QoS 2 is in flight, 2) makes a recv() call for every
    header byte, 3) wakes its network thread and makes a send() call for
    every PUBACK, and 4) wraps every PUBLISH in an MQTTMessage, formats a
    debug line and matches per-topic callbacks we do not use. This reads
    every packet already waiting, from a 64 KiB buffer, hands QoS 0/1
    PUBLISH packets straight to `publish_handler`, and acknowledges a group
    commit's messages in one write. It leans on paho's private `_in_packet`,
    `_packet_read`, `_sock_recv`, `_loop_rc_handle` and `_packet_queue`
    (paho is pinned to 2.x); tests/test_intake.py and every end-to-end test
    exercise it.
    """

    _rbuf = b""
    _rpos = 0
    _rsock: object = None
    # Why the last connection attempt failed (paho's retry loop keeps it to
    # itself): a refused port, or a certificate that did not verify.
    last_connect_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:  # ssl.SSLError is one
            self.last_connect_error = exc
            raise

    # Set by the owner while it can take more messages (see MqttIntake).
    room: threading.Event | None = None
    publish_handler: PublishHandler | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        command: int = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        handler = self.publish_handler
        if qos == 2 or handler is None or self._protocol != MQTTProtocolVersion.MQTTv311:
            return super()._handle_publish()
        # MQTT 3.1.1 PUBLISH: topic length, topic, packet id (QoS > 0), payload.
        packet = bytes(self._in_packet["packet"])
        end = 2 + ((packet[0] << 8) | packet[1])
        mid = 0
        if qos:
            mid = (packet[end] << 8) | packet[end + 1]
            handler(packet[2:end], packet[end + 2 :], mid, qos)
        else:
            handler(packet[2:end], packet[end:], mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # Until the socket is drained, or the pipeline has no room: then stop
        # reading, so TCP makes the broker hold the rest; the loop goes on
        # with pings and acks meanwhile.
        while True:
            room = self.room
            if room is not None and not room.wait(PAUSE_S):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._sock is not self._rsock:  # a new connection: old bytes are void
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(RECV_CHUNK)
            if not data:
                return data
            self._rbuf, self._rpos = data, 0
        out = self._rbuf[self._rpos : self._rpos + bufsize]
        self._rpos += len(out)
        return out

    def ack_many(self, mids: Sequence[int]) -> None:
        """PUBACK QoS 1 messages with one queued write."""
        if mids:
            packet = b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in mids)
            self._packet_queue(PUBACK, packet, 0, 0)


class MqttIntake:
    def __init__(
        self,
        endpoint: Endpoint,
        client_id: str,
        on_message: MessageHandler,
        room: threading.Event | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._on_message = on_message
        # Told (on paho's thread) the message id of each of our QoS 1
        # publications the broker acknowledged.
        self.on_published: Callable[[int], None] | None = None
        self._connected = threading.Event()
        client = _FastClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if endpoint.username is not None:
            client.username_pw_set(endpoint.username, endpoint.password)
        if endpoint.tls:
            # mqtts://: the broker's certificate checked against ca_file (the
            # project CA) or the system's CAs, host name included.
            client.tls_set(ca_certs=ca_file)
        client.on_connect = self._handle_connect
        client.on_connect_fail = self._handle_connect_fail
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_published
        client.publish_handler = self._handle_publish
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.room = room
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self._client.connect_async(self._endpoint.host, self._endpoint.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        log.info("connecting to broker", broker=self._endpoint.redacted())

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (QoS 0 ones need nothing)."""
        self._client.ack_many(mids)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int | None:
        """Queue a message for the broker; its id (paho sends a QoS 1 one
        when connected, again after a reconnect), or None if paho refused it."""
        info = self._client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish failed", topic=topic, rc=int(info.rc))
            return None
        return info.mid

    def _handle_published(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self.on_published is not None:
            self.on_published(mid)

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
                (contract.subscription(contract.CMD_ACK), 1),
            ]
        )
        self._connected.set()
        metrics.MQTT_CONNECTED.set(1)
        log.info("connected to broker", session_present=flags.session_present)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        error = getattr(client, "last_connect_error", None)
        log.warning("cannot connect to broker", broker=self._endpoint.redacted(), error=str(error))

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

    def _handle_publish(self, topic: bytes, payload: bytes, mid: int, qos: int) -> None:
        parts = contract.split_topic(topic.decode("utf-8", "replace"))
        if parts is None:
            # Not ours (we only subscribe under the root): nothing to store.
            if qos:
                self.ack_many([mid])
            return
        device_id, kind = parts
        self._on_message(device_id, kind, payload, mid, qos)
