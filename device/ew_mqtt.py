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
# backoff, and its ring still holds everything unstored.

import select
import struct

import umqtt.simple
from ew_board import ticks_diff, ticks_ms
from umqtt.simple import MQTTClient

SOCKET_TIMEOUT_S = 5
WINDOW = 8  # QoS 1 publishes sent and not yet acknowledged, at most
ANSWER_S = 10  # a PINGRESP or PUBACK later than this: the link is dead


class _TimedSockets:
    """Stands in for the `socket` module inside umqtt.simple, so the sockets
    it creates have a timeout from the start (connect included)."""

    def __init__(self, real):
        self._real = real
        self.getaddrinfo = real.getaddrinfo

    def socket(self, *args):
        sock = self._real.socket(*args)
        sock.settimeout(SOCKET_TIMEOUT_S)
        return sock


if not isinstance(umqtt.simple.socket, _TimedSockets):
    umqtt.simple.socket = _TimedSockets(umqtt.simple.socket)


class LinkDead(OSError):
    pass


class Link:
    def __init__(self, device_id, host, port, user, password, keepalive_s, answer_s, on_message):
        self.device_id = device_id
        prefix = "edgewire/%s/" % device_id
        self.status_topic = (prefix + "status").encode()
        self.telemetry_topic = (prefix + "telemetry").encode()
        self.client = MQTTClient(
            device_id, host, port, user=user, password=password, keepalive=keepalive_s
        )
        self.client.set_callback(on_message)
        self.client.set_last_will(self.status_topic, b"offline", retain=True, qos=1)
        self.keepalive_ms = keepalive_s * 1000
        self.answer_ms = int(answer_s * 1000)
        self.connected = False
        self.unacked = 0
        self._header = bytearray(7)
        self._poller = None
        self._last_tx = 0
        self._waiting_since = None  # when we started waiting for the broker

    def connect(self):
        c = self.client
        # A persistent session: `stored` and commands sent while the board
        # was away are waiting when it comes back.
        c.connect(clean_session=False)
        self._poller = select.poll()
        self._poller.register(c.sock, select.POLLIN)
        c.subscribe(("edgewire/%s/stored" % self.device_id).encode(), 1)
        c.subscribe(("edgewire/%s/cmd" % self.device_id).encode(), 1)
        self.unacked = 0
        self._waiting_since = None
        self.publish(self.status_topic, b"online", retain=True)
        self.connected = True

    def publish(self, topic, payload, retain=False):
        """Send a QoS 1 PUBLISH without waiting for its PUBACK."""
        c = self.client
        c.pid = c.pid + 1 if c.pid < 65535 else 1
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
        sock = c.sock
        sock.settimeout(SOCKET_TIMEOUT_S)
        sock.write(header, i + 3)
        sock.write(topic)
        struct.pack_into("!H", header, 0, c.pid)
        sock.write(header, 2)
        sock.write(payload)
        self.unacked += 1
        self._sent()

    def can_publish(self):
        return self.unacked < WINDOW

    def _sent(self):
        now = ticks_ms()
        self._last_tx = now
        if self._waiting_since is None:
            self._waiting_since = now

    def poll(self):
        """Handle whatever the broker sent, without waiting for more."""
        c = self.client
        while True:
            ready = self._poller.poll(0)
            if not ready:
                break
            if ready[0][1] & (select.POLLHUP | select.POLLERR):
                raise LinkDead("connection lost")
            c.sock.settimeout(SOCKET_TIMEOUT_S)
            op = c.wait_msg()  # PUBLISH and PINGRESP are handled inside
            if op == 0x40:  # PUBACK: length byte, packet id
                c.sock.read(3)
                if self.unacked:
                    self.unacked -= 1
            elif op == 0x90:  # a late SUBACK: length, packet id, code
                c.sock.read(4)
            elif op is not None:
                raise LinkDead("unexpected packet 0x%02x" % op)
            self._waiting_since = None if not self.unacked else ticks_ms()
        self._keepalive()

    def _keepalive(self):
        now = ticks_ms()
        if (
            self._waiting_since is not None
            and ticks_diff(now, self._waiting_since) > self.answer_ms
        ):
            raise LinkDead("the broker stopped answering")
        if ticks_diff(now, self._last_tx) > self.keepalive_ms // 2:
            sock = self.client.sock
            sock.settimeout(SOCKET_TIMEOUT_S)
            sock.write(b"\xc0\x00")  # PINGREQ
            self._sent()

    def goodbye(self, status=b"offline"):
        """A planned disconnect: say `offline` (or `sleeping`) ourselves,
        since the Will is only published for unplanned ones."""
        try:
            self.publish(self.status_topic, status, retain=True)
            self.client.sock.write(b"\xe0\x00")  # DISCONNECT
        except OSError as e:
            # The link is already gone: the broker publishes our Will
            # (`offline`) when it notices, so the status ends up close enough.
            print("edgewire: goodbye failed:", e)
        self.close()

    def close(self):
        self.connected = False
        sock = self.client.sock
        if sock is not None:
            # Closing a socket whose peer is gone can raise; it is closed
            # either way, and the next connect makes a new one.
            try:
                sock.close()
            except OSError as e:
                print("edgewire: close:", e)
