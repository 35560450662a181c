# The board program's core: sample on time, keep every sample in the ring
# until the edge has stored it, and talk to the broker when it can.
#
# Rule: sampling never waits on the network. The loop takes a sample when one
# is due, then gives the network a short turn: (re)connect with backoff, send
# what the ring has not sent on this connection (oldest first, batches for a
# backlog), and handle `stored` and commands.

import json

import ew_sample
import ew_sensors
from ew_ring import Ring

# Sent samples that `stored` has not covered after this long go out again: the
# broker may have lost them (a crash, or no subscriber yet after a restart).
RESEND_AFTER_MS = 5000
BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 30000
BATCH_MAX_SAMPLES = 20
BATCH_MAX_BYTES = 2048
# Batches sent per turn of the loop, so a long backlog after a reconnect is
# interleaved with sampling instead of delaying it.
BATCHES_PER_TURN = 4
IDLE_MS = 50


class App:
    def __init__(self, board, config):
        self.board = board
        self.device_id = config["device_id"]
        self.config = config
        self.boot = board.next_boot()
        self.interval_ms = int(config.get("interval_s", 10) * 1000)
        ring = config.get("ring", {})
        self.ring = Ring(ring.get("max_samples", 500), ring.get("max_bytes", 24000))
        self.sensors = [
            ew_sensors.make(board, spec, i)
            for i, spec in enumerate(config.get("sensors", [{"type": "synthetic"}]))
        ]
        self.max_samples = config.get("max_samples")  # for simulations: stop after N
        self.running = True
        self.link = None
        self._acks = []
        self._backoff_ms = BACKOFF_MIN_MS
        self._next_try = board.ticks_ms()
        self._keepalive_ms = config.get("keepalive_s", 30) * 1000
        self._last_io = board.ticks_ms()
        self._resend_ms = int(config.get("resend_s", RESEND_AFTER_MS / 1000) * 1000)
        self._waiting_since = board.ticks_ms()  # since when sent samples await `stored`
        self.resends = 0

    # -- the loop ----------------------------------------------------------

    def run(self):
        b = self.board
        next_sample = b.ticks_ms()
        while self.running:
            now = b.ticks_ms()
            if b.ticks_diff(now, next_sample) >= 0 and not self.sampling_done():
                self.take_sample()
                next_sample = b.ticks_add(next_sample, self.interval_ms)
                if b.ticks_diff(now, next_sample) > 0:
                    next_sample = b.ticks_add(now, self.interval_ms)  # fell behind: skip ahead
            busy = self.network_turn()
            if self.sampling_done() and len(self.ring) == 0:
                break
            wait = 1 if busy else b.ticks_diff(next_sample, b.ticks_ms())
            b.sleep_ms(max(1, min(wait, IDLE_MS)))
        if self.link is not None and self.link.connected:
            self.link.goodbye()

    def sampling_done(self):
        return self.max_samples is not None and self.ring.next_seq >= self.max_samples

    def take_sample(self):
        metrics = {}
        for sensor in self.sensors:
            metrics.update(sensor.read())
        if metrics:
            data = ew_sample.encode(self.ring.next_seq, self.boot, self.board.unix_ms(), metrics)
            self.ring.add(data)

    # -- the network -------------------------------------------------------

    def network_turn(self):
        """One short turn of network work; True if a backlog is still waiting."""
        link = self.link
        if link is None or not link.connected:
            if self.board.ticks_diff(self.board.ticks_ms(), self._next_try) >= 0:
                self.connect()
            return False
        try:
            link.poll()
            self.send_acks()
            self.check_overdue()
            busy = self.send_backlog()
            if (
                self.board.ticks_diff(self.board.ticks_ms(), self._last_io)
                > self._keepalive_ms // 2
            ):
                link.ping()
                self._last_io = self.board.ticks_ms()
            return busy
        except Exception as e:  # noqa: BLE001
            # umqtt signals a dead or garbled link with OSError, IndexError
            # (a read that returned nothing) or AssertionError; all mean
            # "reconnect", and the ring still holds everything unstored.
            self.lost(e)
            return False

    def connect(self):
        cfg = self.config
        wifi = cfg.get("wifi", {})
        if not self.board.wifi_up(wifi.get("ssid"), wifi.get("password")):
            self._schedule_retry()
            return
        if self.link is None:
            import ew_mqtt

            broker = cfg["broker"]
            self.link = ew_mqtt.Link(
                self.device_id,
                broker["host"],
                broker.get("port", 1883),
                broker.get("user"),
                broker.get("password"),
                cfg.get("keepalive_s", 30),
                self.on_message,
            )
        try:
            self.link.connect()
        except Exception as e:  # noqa: BLE001
            # OSError (no route, refused), MQTTException (bad credentials) or a
            # garbled CONNACK: all mean "try again later".
            self.lost(e)
            return
        self.ring.rewind()
        self._waiting_since = self.board.ticks_ms()
        self._backoff_ms = BACKOFF_MIN_MS
        self._last_io = self.board.ticks_ms()

    def lost(self, error):
        if self.link is not None:
            self.link.close()
        print("edgewire: link lost:", error)
        self._schedule_retry()

    def _schedule_retry(self):
        # Exponential backoff with jitter, so a fleet does not reconnect in step.
        jitter = self.board.ticks_ms() % (self._backoff_ms // 2 + 1)
        self._next_try = self.board.ticks_add(self.board.ticks_ms(), self._backoff_ms // 2 + jitter)
        self._backoff_ms = min(self._backoff_ms * 2, BACKOFF_MAX_MS)

    def check_overdue(self):
        now = self.board.ticks_ms()
        if not self.ring.in_flight():
            self._waiting_since = now
        elif self.board.ticks_diff(now, self._waiting_since) > self._resend_ms:
            self.ring.rewind()
            self._waiting_since = now
            self.resends += 1

    def send_backlog(self):
        """Send up to BATCHES_PER_TURN messages; True if more are waiting."""
        for _ in range(BATCHES_PER_TURN):
            samples = self.ring.unsent(BATCH_MAX_SAMPLES, BATCH_MAX_BYTES)
            if not samples:
                return False
            self.link.publish(ew_sample.message(samples, self.ring.lo()))
            self.ring.mark_sent(len(samples))
            self._last_io = self.board.ticks_ms()
        return True

    def send_acks(self):
        while self._acks:
            topic, payload = self._acks[0]
            self.link.publish_to(topic, payload)
            self._acks.pop(0)

    # -- what the broker sends ---------------------------------------------

    def on_message(self, topic, msg):
        # Called inside umqtt while it reads: only record, never publish here.
        if topic.endswith(b"/stored"):
            try:
                mark = json.loads(msg)
                if mark["boot"] == self.boot:
                    held = len(self.ring)
                    self.ring.cover(mark["seq"])
                    if len(self.ring) < held:
                        self._waiting_since = self.board.ticks_ms()
            except (ValueError, KeyError, TypeError) as e:
                print("edgewire: bad stored message:", e)
        elif topic.endswith(b"/cmd"):
            self._acks.append((topic + b"/ack", self.command(msg)))

    def command(self, msg):
        cid = None
        try:
            cmd = json.loads(msg)
            cid = cmd.get("id")
            settings = cmd.get("set")
            if not isinstance(settings, dict):
                raise ValueError("only 'set' commands are known")
            for key, value in settings.items():
                if (
                    key == "interval_s"
                    and isinstance(value, (int, float))
                    and 0.01 <= value <= 86400
                ):
                    self.interval_ms = int(value * 1000)
                else:
                    raise ValueError("cannot set %s" % key)
        except (ValueError, AttributeError, TypeError) as e:
            return json.dumps({"id": cid, "ok": False, "error": str(e)}).encode()
        return json.dumps({"id": cid, "ok": True}).encode()
