# Our layer over micropython-lib's umqtt.simple. umqtt.simple gives us the
# connection handshake, subscriptions and incoming messages; on top of it:
#
# - every socket operation has a timeout (umqtt's own socket has none, and a
#   half-open Wi-Fi link would hang it forever);
# - QoS 1 publishes do not wait for their PUBACK (umqtt's do), so sampling
#   never waits on the network; a small window bounds what is unacknowledged;
# - our own keepalive: a PINGREQ when nothing was sent for half the
#   keepalive, and the link is declared dead when the broker stays silent
#   after a ping, or a PUBACK is overdue.
# Any error means "disconnected": the app closes the link and reconnects with
# backoff, and its ring still holds everything unstored. An mqtts:// broker
# adds TLS (ew_tls, loaded only then) between the TCP connect and MQTT.

import select
import struct
import sys

import umqtt.simple
from ew_board import ticks_diff, ticks_ms
from micropython import const
from umqtt.simple import MQTTClient

_SOCKET_TIMEOUT_S = const(5)
_WINDOW = const(8)  # QoS 1 publishes sent and not yet acknowledged, at most
ANSWER_S = const(10)  # a PINGRESP or PUBACK later than this: the link is dead

# umqtt.simple makes its socket through its module global `socket`. This
# module stands in for it (two functions, no class: heap is scarce), so that
# socket has a timeout from the start, connect included.
_real_socket = umqtt.simple.socket
if _real_socket is not sys.modules[__name__]:
    getaddrinfo = _real_socket.getaddrinfo

    def socket(*args):
        sock = _real_socket.socket(*args)
        sock.settimeout(_SOCKET_TIMEOUT_S)
        return sock

    umqtt.simple.socket = sys.modules[__name__]


class Link(MQTTClient):
    """umqtt.simple's client, with the additions above. A subclass rather
    than a wrapper: one object and one attribute table on the heap."""

    window = _WINDOW

    def __init__(
        self, device_id, host, port, user, password, keepalive_s, answer_s, tls, on_message
    ):
        # answer_s: None for the default; tls: ew_tls.context()'s, or None
        super().__init__(device_id, host, port, user=user, password=password, keepalive=keepalive_s)
        self.raw = None  # the TCP socket (under TLS, the one TLS runs over)
        if tls is not None:
            import ew_tls

            ew_tls.use(self, tls)
        prefix = "edgewire/%s/" % device_id
        self.status_topic = (prefix + "status").encode()
        self.telemetry_topic = (prefix + "telemetry").encode()
        self.set_callback(on_message)
        self.set_last_will(self.status_topic, b"offline", retain=True, qos=1)
        self.answer_ms = int((answer_s or ANSWER_S) * 1000)
        self.connected = False
        self.unacked = 0
        self._header = bytearray(7)
        self._poller = None
        self._last_tx = 0
        self._waiting_since = None  # when we started waiting for the broker

    def connect(self):
        # A persistent session: `stored` and commands sent while the board
        # was away are waiting when it comes back.
        super().connect(clean_session=False)
        if not self.ssl:
            self.raw = self.sock  # (ew_tls kept it under TLS)
        self._poller = select.poll()
        self._poller.register(self.sock, select.POLLIN)
        prefix = self.status_topic[:-6]  # edgewire/<id>/
        self.subscribe(prefix + b"stored", 1)
        self.subscribe(prefix + b"cmd", 1)
        self.unacked = 0
        self._waiting_since = None
        self.publish(self.status_topic, b"online", retain=True)
        self.connected = True

    def publish(self, topic, payload, retain=False):
        """Send a QoS 1 PUBLISH (or, with no topic, a PINGREQ) without
        waiting for the answer."""
        sock = self.sock
        self.raw.settimeout(_SOCKET_TIMEOUT_S)
        if topic is None:
            sock.write(b"\xc0\x00")  # PINGREQ
        else:
            self.pid = self.pid + 1 if self.pid < 65535 else 1
            size = 2 + len(topic) + 2 + len(payload)
            header = self._header
            header[0] = 0x32 | retain
            i = 1
            while size > 0x7F:
                header[i] = (size & 0x7F) | 0x80
                size >>= 7
                i += 1
            header[i] = size
            struct.pack_into("!H", header, i + 1, len(topic))
            sock.write(header, i + 3)
            sock.write(topic)
            struct.pack_into("!H", header, 0, self.pid)
            sock.write(header, 2)
            sock.write(payload)
            self.unacked += 1
        now = ticks_ms()
        self._last_tx = now
        if self._waiting_since is None:
            self._waiting_since = now

    def poll(self):
        """Handle whatever the broker sent, without waiting for more, and
        keep the link alive."""
        sock = self.sock
        while True:
            ready = self._poller.poll(0)
            if not ready:
                break
            if ready[0][1] & (select.POLLHUP | select.POLLERR):
                raise OSError("hangup")
            self.raw.settimeout(_SOCKET_TIMEOUT_S)
            op = self.wait_msg()  # PUBLISH and PINGRESP are handled inside
            if op == 0x40:  # PUBACK: length byte, packet id
                sock.read(3)
                if self.unacked:
                    self.unacked -= 1
            elif op == 0x90:  # a late SUBACK: length, packet id, code
                sock.read(4)
            elif op is not None:
                raise OSError("packet", op)  # none we asked for
            self._waiting_since = None if not self.unacked else ticks_ms()
        now = ticks_ms()
        waiting = self._waiting_since
        if waiting is not None and ticks_diff(now, waiting) > self.answer_ms:
            raise OSError("the broker stopped answering")
        if ticks_diff(now, self._last_tx) > self.keepalive * 500:  # half the keepalive
            self.publish(None, None)

    def close(self, status=None):
        """Close the link. With a status (`offline`, `sleeping`) it is a
        planned disconnect: say it ourselves first, since the Will is only
        published for unplanned ones."""
        sock = self.sock
        if sock is None:
            return
        try:
            if status and self.connected:
                self.publish(self.status_topic, status, retain=True)
                sock.write(b"\xe0\x00")  # DISCONNECT
            sock.close()
        except OSError as e:
            # The link is already gone: the broker publishes our Will
            # (`offline`) when it notices, so the status ends up close
            # enough; and the socket is closed either way.
            print("edgewire:", "close", e)
        self.sock = self.raw = None
        self.connected = False
