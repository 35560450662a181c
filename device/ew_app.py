# The board program's core: sample on time, keep every sample in the ring
# until the edge has stored it, and talk to the broker when it can.
#
# Rule: sampling never waits on the network. The loop takes a sample when one
# is due, then gives the network a short turn: (re)connect with backoff, send
# what the ring has not sent on this connection (oldest first, as JSON-array
# batches), handle `stored` and commands, keep the link alive. The watchdog
# is fed only here, so a wedged loop reboots the board.
#
# An ESP8266 has about 36 KB of heap for everything, and every function,
# attribute and global name costs some of it: hence few, longer methods here,
# constants the compiler folds (`const`, underscore names), and start-up code
# in a module (ew_start) that leaves the heap once the board runs. Code that
# runs later stays resident: loading a module into a heap that hours of
# running have cut into small pieces can fail when it is needed.

import gc
import json
import sys

from ew_board import sleep_ms, ticks_add, ticks_diff, ticks_ms
from ew_ring import encode, message_into
from micropython import const

_BACKOFF_MAX_S = const(30)
_BATCH_MAX_SAMPLES = const(20)
_BATCHES_PER_TURN = const(4)
_INBOX_MAX = const(4)  # commands waiting to be handled, at most
_IDLE_MS = const(50)
_WIFI_POLL_MS = const(500)
_GC_EVERY = const(16)  # loop turns between collections: keeps a small heap unfragmented
_CLOCK_RESYNC_MS = const(6 * 3600 * 1000)
_mem_alloc = getattr(gc, "mem_alloc", None)  # MicroPython only


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class App:
    """The board's state, set up by ew_start.begin:

    ring, outbox      the backlog ring (ew_ring) and the buffer a message is built in
    link              the MQTT link (ew_mqtt), made once start-up has left the heap
    boot, safe_mode   this start's boot number; sampling off after quick crashes
    sensors, disabled the sensor drivers, and the names of those switched off
    interval_ms, sleep_cfg, awake_until   sampling period; deep-sleep duty cycle
    inbox, acks       commands received and not yet handled; their answers to send
    ota               an over-the-air update (ew_start reads ew_trial's ota.say):
                      None, or (deadline of a new version on trial, or None;
                      what to say on the ota/ack topic once online)
    """

    def __init__(self, board):
        self.board = board
        # Reading the config, the buffers, boot number, safe mode, sensors:
        # all once, in a module that leaves the heap afterwards (boards
        # sharing one CPython share sys.modules, and that is harmless).
        import ew_start

        link = ew_start.begin(self)
        del ew_start
        sys.modules.pop("ew_start", None)
        gc.collect()
        # The MQTT layer is the biggest code: it comes into the heap after
        # start-up has left it.
        import ew_mqtt

        self.link = ew_mqtt.Link(*link, on_message=self.on_message)

    # -- the loop ----------------------------------------------------------

    def run(self):
        b = self.board
        ring = self.ring
        next_sample = ticks_ms()
        turn = 0
        while self.running:
            b.watchdog()
            turn += 1
            if _mem_alloc is not None:
                self.heap_peak = max(self.heap_peak, _mem_alloc())
                if turn % _GC_EVERY == 0:
                    gc.collect()
                    self.heap_live_peak = max(self.heap_live_peak, _mem_alloc())
            now = ticks_ms()
            done = ring.next_seq >= self.max_samples
            sampling = not (self.safe_mode or done)
            if sampling and ticks_diff(now, next_sample) >= 0:
                self.take_sample()
                next_sample = ticks_add(next_sample, self.interval_ms)
                if ticks_diff(now, next_sample) > 0:
                    next_sample = ticks_add(now, self.interval_ms)  # fell behind: skip ahead
            if self.inbox and not self.acks:
                # One command a turn, outside umqtt's read (whose callback
                # only queues it), so handling it never breaks a connect.
                topic, msg = self.inbox.pop(0)
                self.acks.append((topic + b"/ack", self.command(msg)))
            busy = self.network_turn()
            if self.healthy_at is not None and ticks_diff(now, self.healthy_at) > 0:
                self.healthy()
            if self.reboot_requested and not self.acks:
                # Keeping what is unstored, as over a deep sleep: the
                # restart picks it up and this boot goes on.
                self.rest(b"offline")
                b.reset()
            if self.sleep_cfg is not None and (
                # Deep-sleep duty cycle: the wake is over, or all is stored.
                ticks_diff(now, self.awake_until) >= 0
                or (self.taken and not ring.count and not self.acks and self.link.connected)
            ):
                self.rest(b"sleeping")
                b.deepsleep(int(self.sleep_cfg["sleep_s"] * 1000))
            if done and ring.count == 0:
                break
            # Not sampling (safe mode, or done): no deadline to keep.
            wait = ticks_diff(next_sample, ticks_ms()) if sampling else _IDLE_MS
            wait = 1 if busy else wait
            sleep_ms(max(1, min(wait, _IDLE_MS)))
        self.link.close(b"offline")
        print("edgewire:", "summary", json.dumps(self.summary()))

    def summary(self):
        return {
            "boot": self.boot,
            "samples": self.ring.next_seq,
            "unstored": self.ring.count,
            "dropped": self.ring.dropped,
            "resends": self.resends,
            "sensor_errors": self.sensor_errors,
            "heap_peak": self.heap_peak,
            "heap_live_peak": self.heap_live_peak,
        }

    def healthy(self):
        """This start went well: clear the boot-loop counter, once (a wake
        from deep sleep starts with it clear: healthy_at None)."""
        if self.healthy_at is not None:
            self.healthy_at = None
            self.board.write("crash.dat", b"0")

    def take_sample(self):
        metrics = {}
        for sensor in self.sensors:
            if sensor.name in self.disabled:
                continue
            try:
                metrics.update(sensor.read())
            except OSError as e:
                self.sensor_errors += 1
                print("edgewire:", sensor.name, e)
        if metrics:
            ts = self.board.unix_ms() if self.clock_synced_at is not None else None
            self.ring.add(encode(self.ring.next_seq, self.boot, ts, metrics))
            self.taken += 1

    # -- the network -------------------------------------------------------

    def network_turn(self):
        """One short turn of network work; True if a backlog is still waiting."""
        link = self.link
        if not link.connected:
            if ticks_diff(ticks_ms(), self.next_try) >= 0:
                self.connect()
            return False
        try:
            link.poll()
            now = ticks_ms()
            ring = self.ring
            if not ring.sent:
                self.waiting_since = now
            elif ticks_diff(now, self.waiting_since) > self.resend_ms:
                ring.sent = 0  # `stored` is overdue: send everything held again
                self.waiting_since = now
                self.resends += 1
            busy = self.send()
            synced = self.clock_synced_at
            if synced is None or ticks_diff(now, synced) > _CLOCK_RESYNC_MS:
                try:
                    if self.board.sync_clock(self.ntp):
                        self.clock_synced_at = now
                except (OSError, OverflowError) as e:
                    self.clock_synced_at = now - _CLOCK_RESYNC_MS + 60000  # retry in a minute
                    print("edgewire:", "ntp", e)
            return busy
        except MemoryError:
            raise  # not the link's fault: main() reboots the board
        except Exception as e:  # noqa: BLE001
            # umqtt signals a dead or garbled link with OSError, IndexError
            # (a read that returned nothing) or AssertionError; all mean
            # "reconnect", and the ring still holds everything unstored.
            self.lost(e)
            return False

    def send(self):
        """Acknowledgements first, then up to _BATCHES_PER_TURN messages of
        the backlog, within the link's window; True if more are waiting."""
        link = self.link
        ring = self.ring
        while self.acks and link.unacked < link.window:
            topic, payload = self.acks[0]
            link.publish(topic, payload)
            self.acks.pop(0)
        for _ in range(_BATCHES_PER_TURN):
            if ring.count == ring.sent or link.unacked >= link.window:
                break
            size, count = message_into(self.outbox, ring, ring.sent, _BATCH_MAX_SAMPLES)
            link.publish(link.telemetry_topic, memoryview(self.outbox)[:size])
            ring.sent += count
        return ring.count > ring.sent

    def connect(self):
        ota = self.ota
        if ota is not None and ota[0] is not None and ticks_diff(ticks_ms(), ota[0]) > 0:
            # A new version on trial, not online in time: one more try, or
            # the rollback (ew_trial).
            print("edgewire:", "update", "not online in time")
            self.board.reset()
        if not self.board.wifi_up(*self.wifi):
            # Joining takes a few seconds: look again soon, no backoff.
            self.next_try = ticks_add(ticks_ms(), _WIFI_POLL_MS)
            return
        try:
            self.link.connect()
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001
            # OSError (no route, refused, timeout), MQTTException (bad
            # credentials) or a garbled CONNACK: all mean "try again later".
            self.lost(e)
            return
        self.ring.sent = 0  # a new connection: everything held goes out again
        self.waiting_since = ticks_ms()
        self.attempt = 0
        if ota is not None:
            # Online: a new version on trial stays (ew_trial keeps it at the
            # next start or update), or the rollback is told.
            if ota[0] is not None:
                self.board.write("ota.ok", b"1")
            self.acks.append((self.link.status_topic[:-6] + b"ota/ack", ota[1]))
            self.ota = None

    def lost(self, error):
        """The link is down: retry after 2^n seconds, capped, with jitter
        so a fleet does not reconnect in step."""
        self.link.close()
        print("edgewire:", "link lost", error)
        ceiling_ms = min(_BACKOFF_MAX_S, 1 << min(self.attempt, 5)) * 1000
        jitter = ticks_ms() % (ceiling_ms // 2 + 1)
        self.next_try = ticks_add(ticks_ms(), ceiling_ms // 2 + jitter)
        self.attempt += 1

    # -- what the broker sends ---------------------------------------------

    def on_message(self, topic, msg):
        # Called inside umqtt while it reads (a connect included): only
        # record, never publish or load code here.
        if topic.endswith(b"/stored"):
            try:
                mark = json.loads(msg)
                if mark["boot"] == self.boot:
                    held = self.ring.count
                    self.ring.cover(mark["seq"])
                    if self.ring.count < held:
                        self.waiting_since = ticks_ms()
            except (ValueError, KeyError, TypeError) as e:
                print("edgewire:", "bad mark", e)
        elif topic.endswith(b"/cmd"):
            if len(self.inbox) < _INBOX_MAX:
                self.inbox.append((topic, msg))
            else:
                print("edgewire:", "command", "dropped")  # the sender sees no answer

    def command(self, msg):
        """Carry out one command (contract §2); the bytes of its answer.
        A malformed or unknown command is refused, never a crash:

          {"id": "c1", "set": {"interval_s": 30}}    sampling interval
          {"id": "c2", "disable": "bme280"}          stop reading a sensor ("enable" again)
          {"id": "c3", "sleep": {"awake_s": 20, "sleep_s": 600}}   deep-sleep duty cycle (null: off)
          {"id": "c4", "reboot": true}
          {"id": "c5", "safe_mode": false}           leave safe mode (and reboot)
          {"id": "c6", "update": true}               reboot into update mode (ew_update)

        A requested reboot keeps what is unstored and the settings above.
        """
        cid = None
        try:
            cmd = json.loads(msg)
            cid = cmd.get("id")  # AttributeError: not a JSON object
            if "set" in cmd:
                interval = cmd["set"].get("interval_s")
                if len(cmd["set"]) != 1 or not _number(interval) or not 0.01 <= interval <= 86400:
                    raise ValueError("interval_s")
                self.interval_ms = int(interval * 1000)
            elif "enable" in cmd or "disable" in cmd:
                name = cmd.get("enable") or cmd.get("disable")
                if name not in [s.name for s in self.sensors]:
                    raise ValueError("no sensor " + str(name))
                if "enable" in cmd:
                    self.disabled.discard(name)
                else:
                    self.disabled.add(name)
            elif "sleep" in cmd:
                cycle = cmd["sleep"]
                if cycle is not None:
                    awake, asleep = cycle["awake_s"], cycle["sleep_s"]
                    if not (_number(awake) and _number(asleep) and awake > 0 and asleep > 0):
                        raise ValueError("sleep")
                    self.awake_until = ticks_add(ticks_ms(), int(awake * 1000))
                self.sleep_cfg = cycle
            elif cmd.get("reboot") is True:
                self.reboot_requested = True
            elif cmd.get("safe_mode") is False:
                self.board.write("crash.dat", b"0")
                self.reboot_requested = True
            elif cmd.get("update") is True:
                self.board.write("ota.mode", b"1")  # restart into update mode
                self.reboot_requested = True
            else:
                raise ValueError("unknown command")
            answer = {"id": cid, "ok": True}
        except KeyError as e:
            answer = {"id": cid, "ok": False, "error": "missing " + str(e)}
        except ValueError as e:
            answer = {"id": cid, "ok": False, "error": str(e) or "malformed"}
        except (TypeError, AttributeError):  # a value of the wrong kind
            answer = {"id": cid, "ok": False, "error": "malformed"}
        return json.dumps(answer).encode()

    def rest(self, status):
        """Before a deep sleep or a requested restart: keep this
        boot's state and every unstored sample (the RAM is lost; ew_start
        reads them back), and close the link saying `status`. The board
        layer keeps them in RTC memory when it has some and they fit, in a
        file otherwise."""
        ring = self.ring
        state = {
            "boot": self.boot,
            "lo": ring.next_seq - ring.count,
            "next": ring.next_seq,
            "interval_ms": self.interval_ms,
            "sleep": self.sleep_cfg,
            "disabled": list(self.disabled),
        }
        self.board.keep(
            json.dumps(state).encode(),
            (ring.entry(i) for i in range(ring.count)) if ring.count else None,
        )
        self.healthy()  # a wake that ends in sleep went well
        self.link.close(status)


def main(board):
    """Run the program on `board`; a crash is printed and the board reboots."""
    app = None
    try:
        app = App(board)
        app.run()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        # Anything unexpected (MemoryError included): show it, then start
        # over (the crash counter decides whether the next start is in safe
        # mode). A start that fails outright stays at the REPL to be seen,
        # unless a new version is on trial: the reset counts one of its tries.
        if hasattr(sys, "print_exception"):
            sys.print_exception(e)
        else:
            print("edgewire:", "crash", repr(e))
        if app is None and board.read("ota.say") is None:
            raise
        board.reset()
