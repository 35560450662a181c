# Our layer over micropython-lib's umqtt.simple: one connection attempt at a
# time, a socket timeout so a dead link raises instead of hanging, and the
# status topic with its Last Will. Any OSError means "disconnected": the app
# closes and reconnects with backoff.

import select

from umqtt.simple import MQTTClient

SOCKET_TIMEOUT_S = 10


class Link:
    def __init__(self, device_id, host, port, user, password, keepalive_s, on_message):
        self.device_id = device_id
        self.status_topic = ("edgewire/%s/status" % device_id).encode()
        self.telemetry_topic = ("edgewire/%s/telemetry" % device_id).encode()
        self.client = MQTTClient(
            device_id, host, port, user=user, password=password, keepalive=keepalive_s
        )
        self.client.set_callback(on_message)
        self.client.set_last_will(self.status_topic, b"offline", retain=True, qos=1)
        self.connected = False
        self.close_error = None

    def connect(self):
        c = self.client
        # A persistent session: `stored` and commands sent while the board
        # was away are waiting when it comes back.
        c.connect(clean_session=False)
        self._timeouts()
        self._poller = select.poll()
        self._poller.register(c.sock, select.POLLIN)
        c.subscribe(("edgewire/%s/stored" % self.device_id).encode(), 1)
        c.subscribe(("edgewire/%s/cmd" % self.device_id).encode(), 1)
        c.publish(self.status_topic, b"online", retain=True, qos=1)
        self.connected = True

    def _timeouts(self):
        # umqtt's wait_msg() switches the socket back to blocking with no
        # timeout; put the timeout back before every blocking operation.
        self.client.sock.settimeout(SOCKET_TIMEOUT_S)

    def publish(self, payload):
        self._timeouts()
        self.client.publish(self.telemetry_topic, payload, qos=1)

    def publish_to(self, topic, payload, retain=False):
        self._timeouts()
        self.client.publish(topic, payload, retain=retain, qos=1)

    def poll(self):
        """Handle whatever the broker sent, without waiting for more."""
        while True:
            ready = self._poller.poll(0)
            if not ready:
                return
            if ready[0][1] & (select.POLLHUP | select.POLLERR):
                raise OSError("connection lost")
            self._timeouts()
            self.client.wait_msg()

    def ping(self):
        self._timeouts()
        self.client.ping()

    def goodbye(self):
        """A planned disconnect: say `offline` ourselves, the Will won't."""
        try:
            self.publish_to(self.status_topic, b"offline", retain=True)
            self.client.disconnect()
        except OSError:
            # The link is already gone: the broker publishes our Will
            # (`offline`) when it notices, so the status ends up right.
            self.close()
        self.connected = False

    def close(self):
        self.connected = False
        sock = self.client.sock
        if sock is not None:
            # Closing a socket whose peer is gone can raise; it is closed
            # either way, and the next connect makes a new one.
            try:
                sock.close()
            except OSError as e:
                self.close_error = e
