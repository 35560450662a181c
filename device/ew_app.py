# The board program's core: sample on time, keep every sample in the ring
# until the edge has stored it, and talk to the broker when it can.
#
# Rule: sampling never waits on the network. The loop takes a sample when one
# is due, then gives the network a short turn: (re)connect with backoff, send
# what the ring has not sent on this connection (oldest first, as JSON-array
# batches), handle `stored` and commands, keep the link alive. The watchdog
# is fed only here, so a wedged loop reboots the board.

import gc
import json
import sys

from ew_board import sleep_ms, ticks_add, ticks_diff, ticks_ms
from ew_ring import Ring, encode, message_into

RESEND_AFTER_MS = 5000  # `stored` overdue: send the held samples again
BACKOFF_MAX_S = 30
BATCH_MAX_SAMPLES = 20
BATCH_MAX_BYTES = 640
BATCHES_PER_TURN = 4
IDLE_MS = 50
WATCHDOG_MS = 30000
HEALTHY_AFTER_MS = 60000  # running this long clears the crash counter
GC_EVERY = 16  # loop turns between collections: keeps a small heap unfragmented
_mem_alloc = getattr(gc, "mem_alloc", None)  # MicroPython only
CLOCK_RESYNC_MS = 6 * 3600 * 1000


class App:
    def __init__(self, board, config):
        gc.collect()  # the buffers below go into a heap free of start-up garbage
        self.board = board
        self.config = config
        self.device_id = config["device_id"]
        ring = config.get("ring", {})
        self.ring = Ring(ring.get("max_samples", 200), ring.get("max_bytes", 8192))
        self.outbox = bytearray(BATCH_MAX_BYTES)
        self.interval_ms = int(config.get("interval_s", 10) * 1000)
        self.max_samples = config.get("max_samples")  # simulations: stop after N
        self.sleep_cfg = config.get("sleep")  # {"awake_s": .., "sleep_s": ..} or None
        self.running = True
        self.link = None
        self.resends = 0
        self.sensor_errors = 0
        self.taken = 0  # samples taken since this start (or wake)
        self.heap_peak = 0  # MicroPython: most heap in use, garbage included
        self.heap_live_peak = 0  # ... right after a collection
        self._acks = []
        self.reboot_requested = False
        self._attempt = 0
        self._resend_ms = int(config.get("resend_s", RESEND_AFTER_MS / 1000) * 1000)
        now = ticks_ms()
        self._next_try = now
        self._waiting_since = now
        self._started = now
        self._clock_synced_at = None
        self._healthy = False
        # Start-up runs once: its code is dropped afterwards to free the heap.
        import ew_start

        ew_start.begin(self)
        sys.modules.pop("ew_start", None)  # boards sharing one CPython share this too
        gc.collect()
        self._awake_until = (
            ticks_add(now, int(self.sleep_cfg["awake_s"] * 1000)) if self.sleep_cfg else None
        )
        board.watchdog_start(config.get("watchdog_ms", WATCHDOG_MS))

    # -- the loop ----------------------------------------------------------

    def run(self):
        b = self.board
        next_sample = ticks_ms()
        turn = 0
        while self.running:
            b.watchdog_feed()
            turn += 1
            if _mem_alloc is not None:
                used = _mem_alloc()
                if used > self.heap_peak:
                    self.heap_peak = used
                if turn % GC_EVERY == 0:
                    gc.collect()
                    used = _mem_alloc()
                    if used > self.heap_live_peak:
                        self.heap_live_peak = used
            now = ticks_ms()
            if (
                not self.safe_mode
                and ticks_diff(now, next_sample) >= 0
                and not self.sampling_done()
            ):
                self.take_sample()
                next_sample = ticks_add(next_sample, self.interval_ms)
                if ticks_diff(now, next_sample) > 0:
                    next_sample = ticks_add(now, self.interval_ms)  # fell behind: skip ahead
            busy = self.network_turn()
            self._check_health(now)
            if self.reboot_requested and not self._acks:
                self.shutdown(b"offline")
                b.reset()
            if self.sleep_cfg is not None and self._time_to_sleep(now):
                self.go_to_sleep()
            if self.sampling_done() and len(self.ring) == 0:
                break
            wait = 1 if busy else ticks_diff(next_sample, ticks_ms())
            sleep_ms(max(1, min(wait, IDLE_MS)))
        self.shutdown(b"offline")
        print("edgewire: summary " + json.dumps(self.summary()))

    def summary(self):
        return {
            "boot": self.boot,
            "samples": self.ring.next_seq,
            "unstored": len(self.ring),
            "dropped": self.ring.dropped,
            "resends": self.resends,
            "sensor_errors": self.sensor_errors,
            "heap_peak": self.heap_peak,
            "heap_live_peak": self.heap_live_peak,
        }

    def shutdown(self, status):
        if self.link is not None and self.link.connected:
            self.link.goodbye(status)

    def sampling_done(self):
        return self.max_samples is not None and self.ring.next_seq >= self.max_samples

    def take_sample(self):
        metrics = {}
        for sensor in self.sensors:
            if sensor.name in self.disabled:
                continue
            try:
                metrics.update(sensor.read())
            except OSError as e:
                self.sensor_errors += 1
                print("edgewire: %s: %s" % (sensor.name, e))
        if metrics:
            ts = self.board.unix_ms() if self._clock_synced_at is not None else None
            self.ring.add(encode(self.ring.next_seq, self.boot, ts, metrics))
            self.taken += 1

    def _check_health(self, now):
        if not self._healthy and ticks_diff(now, self._started) > HEALTHY_AFTER_MS:
            self._healthy = True
            self.board.write_int("crash.dat", 0)

    # -- the network -------------------------------------------------------

    def network_turn(self):
        """One short turn of network work; True if a backlog is still waiting."""
        link = self.link
        if link is None or not link.connected:
            if ticks_diff(ticks_ms(), self._next_try) >= 0:
                self.connect()
            return False
        try:
            link.poll()
            self.send_acks()
            self.check_overdue()
            busy = self.send_backlog()
            self.keep_clock()
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
                self.device_id, broker["host"], broker.get("port", 1883),
                broker.get("user"), broker.get("password"),
                cfg.get("keepalive_s", 30), cfg.get("answer_s", ew_mqtt.ANSWER_S), self.on_message,
            )  # fmt: skip
        try:
            self.link.connect()
        except Exception as e:  # noqa: BLE001
            # OSError (no route, refused, timeout), MQTTException (bad
            # credentials) or a garbled CONNACK: all mean "try again later".
            self.lost(e)
            return
        self.ring.rewind()
        self._waiting_since = ticks_ms()
        self._attempt = 0

    def lost(self, error):
        if self.link is not None:
            self.link.close()
        print("edgewire: link lost:", error)
        self._schedule_retry()

    def _schedule_retry(self):
        # 2^n seconds, capped, with jitter so a fleet does not reconnect in step.
        ceiling_ms = min(BACKOFF_MAX_S, 1 << min(self._attempt, 5)) * 1000
        jitter = ticks_ms() % (ceiling_ms // 2 + 1)
        self._next_try = ticks_add(ticks_ms(), ceiling_ms // 2 + jitter)
        self._attempt += 1

    def keep_clock(self):
        now = ticks_ms()
        if (
            self._clock_synced_at is None
            or ticks_diff(now, self._clock_synced_at) > CLOCK_RESYNC_MS
        ):
            try:
                if self.board.sync_clock(self.config.get("ntp")):
                    self._clock_synced_at = now
            except (OSError, OverflowError) as e:
                self._clock_synced_at = now - CLOCK_RESYNC_MS + 60000  # retry in a minute
                print("edgewire: ntp:", e)

    def check_overdue(self):
        now = ticks_ms()
        if not self.ring.in_flight():
            self._waiting_since = now
        elif ticks_diff(now, self._waiting_since) > self._resend_ms:
            self.ring.rewind()
            self._waiting_since = now
            self.resends += 1

    def send_backlog(self):
        """Send up to BATCHES_PER_TURN messages; True if more are waiting."""
        ring = self.ring
        for _ in range(BATCHES_PER_TURN):
            if not ring.unsent_count():
                return False
            if not self.link.can_publish():
                return False  # the window is full: PUBACKs first
            size, count = message_into(self.outbox, ring, ring.in_flight(), BATCH_MAX_SAMPLES)
            self.link.publish(self.link.telemetry_topic, memoryview(self.outbox)[:size])
            ring.mark_sent(count)
        return ring.unsent_count() > 0

    def send_acks(self):
        while self._acks and self.link.can_publish():
            topic, payload = self._acks[0]
            self.link.publish(topic, payload)
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
                        self._waiting_since = ticks_ms()
            except (ValueError, KeyError, TypeError) as e:
                print("edgewire: bad stored message:", e)
        elif topic.endswith(b"/cmd"):
            self._acks.append((topic + b"/ack", self.command(msg)))

    def command(self, msg):
        import ew_cmd

        return ew_cmd.handle(self, msg)

    # -- deep-sleep duty cycling --------------------------------------------

    def _time_to_sleep(self, now):
        """Awake time is over, or everything is stored and published."""
        if ticks_diff(now, self._awake_until) >= 0:
            return True
        return (
            self.taken > 0
            and len(self.ring) == 0
            and not self._acks
            and self.link is not None
            and self.link.connected
        )

    def go_to_sleep(self):
        """Keep what is unstored, say `sleeping`, and sleep."""
        import ew_sleep

        ew_sleep.save(self)
        self.shutdown(b"sleeping")
        self.board.deepsleep(int(self.sleep_cfg["sleep_s"] * 1000))

    def set_duty_cycle(self, cycle):
        self.sleep_cfg = cycle
        if cycle is not None:
            self._awake_until = ticks_add(ticks_ms(), int(cycle["awake_s"] * 1000))


def main(board):
    """Run the program on `board`; a crash is printed and the board reboots."""
    app = App(board, board.load_config())
    try:
        app.run()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        # Anything unexpected: show it, then start over (the crash counter
        # decides whether the next start is in safe mode).
        if hasattr(sys, "print_exception"):
            sys.print_exception(e)
        else:
            print("edgewire: crash:", repr(e))
        board.reset()
