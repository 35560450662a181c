# What a board does once per start: read its config, allocate its buffers,
# its boot number, boot-loop protection and its sensors. The app runs
# begin() and drops this module, so none of this code stays in the heap while
# the board runs; nor does the config (2 KB of heap as parsed JSON): the app
# keeps only the values it needs.
#
# Flash wears out, so a start writes it at most twice (boot number and crash
# counter), and a wake from deep sleep not at all: its state comes from what
# the board kept over the sleep (RTC memory on the ESP boards).

import gc
import json

from ew_board import ticks_add, ticks_ms
from ew_ring import Ring
from micropython import const

_SAFE_MODE_AFTER = const(3)  # this many quick crashes in a row: start in safe mode
_RESEND_AFTER_S = const(5)  # `stored` overdue: send the held samples again
_BATCH_MAX_BYTES = const(640)  # the largest MQTT payload the board sends
_WATCHDOG_MS = const(30000)
_HEALTHY_AFTER_MS = const(60000)  # running this long clears the crash counter


def begin(app):
    """Set up the app; returns the arguments of its ew_mqtt.Link (which is
    made after this module has left the heap)."""
    board = app.board
    gc.collect()  # what loading the code left: the buffers below go low in the heap
    config = json.loads(board.read("config.json"))
    # The watchdog first: a sensor that hangs its bus during start-up resets
    # the board too (and after a few such resets it starts in safe mode).
    board.watchdog(config.get("watchdog_ms", _WATCHDOG_MS))
    # The big buffers first, while the heap is still in one piece.
    ring = config.get("ring", {})
    app.ring = Ring(ring.get("max_samples", 200), ring.get("max_bytes", 8192))
    app.outbox = bytearray(_BATCH_MAX_BYTES)
    broker = config["broker"]
    tls = None
    if broker.get("tls"):
        # An mqtts:// broker: the TLS context (the CA in it) is the next
        # big block. No CA, or a board that cannot check one: no start.
        import ew_tls

        tls = ew_tls.context(board, config.get("ntp"))
    wifi = config.get("wifi", {})
    app.wifi = (wifi.get("ssid"), wifi.get("password"))
    app.ntp = config.get("ntp")  # NTP server; None: the board's default
    app.interval_ms = int(config.get("interval_s", 10) * 1000)
    app.max_samples = config.get("max_samples") or 1 << 30  # simulations: stop after N
    app.sleep_cfg = config.get("sleep")  # {"awake_s": .., "sleep_s": ..} or None
    app.running = True
    app.resends = 0
    app.sensor_errors = 0
    app.taken = 0  # samples taken since this start (or wake)
    app.heap_peak = 0  # MicroPython: most heap in use, garbage included
    app.heap_live_peak = 0  # ... right after a collection
    app.inbox = []  # commands received, waiting to be handled
    app.acks = []  # their answers, waiting for the link
    app.reboot_requested = False
    app.attempt = 0  # connection attempts that failed in a row
    app.resend_ms = int(config.get("resend_s", _RESEND_AFTER_S) * 1000)
    app.clock_synced_at = None
    app.disabled = set(config.get("disabled", []))
    app.safe_mode = False
    kept = board.kept()
    if kept:
        restore(app, kept)  # a wake from deep sleep: the same boot goes on
    else:
        app.boot = read_int(board, "boot.dat", -1) + 1
        board.write("boot.dat", b"%d" % app.boot)
        # Boot-loop protection: counted up at every start, cleared once the
        # board has run for a while; several in a row mean something in the
        # sampling path crashes it, so start without it and wait for orders.
        # crash.dat counts the starts that have not (yet) run long enough
        # to count as healthy, this one included.
        crashes = read_int(board, "crash.dat", 0) + 1
        board.write("crash.dat", b"%d" % crashes)
        app.safe_mode = crashes > _SAFE_MODE_AFTER
    app.sensors = []
    if not app.safe_mode:
        for i, spec in enumerate(config.get("sensors", [{"type": "synthetic"}])):
            try:
                app.sensors.append(make_sensor(board, spec, i))
            except (OSError, ValueError, ImportError) as e:
                app.sensor_errors += 1
                print("edgewire: sensor %s unavailable: %s" % (spec.get("type"), e))
    now = ticks_ms()
    # An over-the-air update under way (ew_trial wrote at boot what to do):
    # a new version on trial has this many seconds to come online, and
    # something to say on the ota/ack topic once it is.
    say = board.read("ota.say")
    app.ota = None
    if say:
        end = say.find(b"\n")
        trial_s = int(say[:end]) if end > 0 else 0
        app.ota = (ticks_add(now, trial_s * 1000) if trial_s else None, say[end + 1 :])
    app.next_try = now  # when to try connecting
    app.waiting_since = now  # since when `stored` has been awaited
    # When to clear the crash counter; a wake finds it clear (App.rest clears it).
    app.healthy_at = None if kept else ticks_add(now, _HEALTHY_AFTER_MS)
    app.awake_until = None  # deep-sleep duty cycling: when this wake ends
    if app.sleep_cfg:
        app.awake_until = ticks_add(now, int(app.sleep_cfg["awake_s"] * 1000))
    return (
        config["device_id"], broker["host"], broker.get("port", 1883),
        broker.get("user"), broker.get("password"),
        config.get("keepalive_s", 30), config.get("answer_s"), tls,
    )  # fmt: skip


def restore(app, kept):
    """The state and unstored samples App.rest kept: seqs continue. The
    samples go into the ring straight from `kept`, without a copy each: the
    heap is small, and garbage now would cut it into pieces."""
    end = kept.find(b"\n")
    state = json.loads(kept[: end if end >= 0 else len(kept)])
    ring = app.ring
    app.boot = state["boot"]
    ring.next_seq = state["lo"]
    view = memoryview(kept)
    while end >= 0:
        start = end + 1
        end = kept.find(b"\n", start)
        ring.add(view[start : end if end >= 0 else len(kept)])
    ring.next_seq = max(ring.next_seq, state["next"])
    app.interval_ms = state["interval_ms"]
    app.sleep_cfg = state["sleep"]
    app.disabled = set(state["disabled"])


def read_int(board, name, default):
    try:
        return int(board.read(name))
    except (TypeError, ValueError):  # no file (None), or a damaged one
        return default


def make_sensor(board, spec, index):
    """A sensor from its config entry, e.g. {"type": "bme280", "scl": 5, "sda": 4}.
    Each driver is imported only when the config names it: code costs heap."""
    kind = spec.get("type", "synthetic")
    name = spec.get("name", kind)
    if kind == "synthetic":
        from ew_sensors import Synthetic

        return Synthetic(name, spec.get("phase", index * 0.7))
    if kind == "bme280":
        from ew_bme280 import BME280

        return BME280(
            board.i2c(spec.get("scl", 5), spec.get("sda", 4)), name, spec.get("address", 0x76)
        )
    if kind == "dht22":
        from ew_dht22 import DHT22

        return DHT22(board.pin(spec["pin"]), name)
    if kind == "internal":
        from ew_internal import Internal

        return Internal(board, name)
    raise ValueError("unknown sensor type %s" % kind)
