# Update mode (issue 7): what a board runs instead of the program while an
# over-the-air update is received. The program (ew_app) restarts into it on
# an `update` command, keeping what it holds unstored for when it is back,
# and boot.py starts it (ew_trial.at_boot): none of the program's code is
# loaded, so ew_ota and the update's messages have the heap to themselves.
#
# It speaks plain umqtt.simple (over TLS to an mqtts:// broker, as the
# program does: ew_tls) on a clean session of its own (client id
# `<id>/ota`): the program's persistent session keeps collecting `stored`
# marks and commands for when the program is back. Any failure, and a
# minute without a message, ends it with a reset into the program, so a
# board can never be stuck here; after a successful swap the reset starts
# the new version on trial (ew_trial).

import gc
import json

from ew_board import sleep_ms, ticks_diff, ticks_ms
from ew_ota import Ota
from ew_trial import MODE, remove
from micropython import const
from umqtt.simple import MQTTClient

_IDLE_MS = const(60000)  # this long without a message: back to the program
_PING_MS = const(15000)  # keepalive 30 s: a ping at half of it
_TURN_MS = const(20)
_INBOX_MAX = const(4)
_mem_alloc = getattr(gc, "mem_alloc", None)  # MicroPython only


def main(board):
    remove(board.root + MODE)  # one start in update mode, whatever happens
    config = json.loads(board.read("config.json"))
    board.watchdog(config.get("watchdog_ms", 30000))
    device = config["device_id"]
    broker = config["broker"]
    wifi = config.get("wifi", {})
    wifi = (wifi.get("ssid"), wifi.get("password"))
    inbox = []

    def on_message(topic, msg):
        if len(inbox) < _INBOX_MAX:  # the host resends what goes unanswered
            inbox.append(msg)

    ota = Ota(board, ("edgewire/%s/" % device).encode())
    client = MQTTClient(
        device + "/ota", broker["host"], broker.get("port", 1883),
        broker.get("user"), broker.get("password"), keepalive=_PING_MS * 2 // 1000,
    )  # fmt: skip
    client.set_callback(on_message)
    tls = broker.get("tls")
    ntp = config.get("ntp")
    del config, broker
    gc.collect()
    heard = ticks_ms()  # the last message, or the start
    peak = 0  # most heap in use, garbage included (for the figures)
    try:
        if tls:  # an mqtts:// broker, as the program's link (ew_tls)
            import ew_tls

            ew_tls.use(client, ew_tls.context(board, ntp))
        while not board.wifi_up(*wifi):
            board.watchdog()
            if ticks_diff(ticks_ms(), heard) > _IDLE_MS:
                raise OSError("no Wi-Fi")
            sleep_ms(500)
        client.connect()
        client.subscribe(ota.topic, 1)
        client.publish(ota.ack_topic, b'{"ota": "ready"}')
        print("edgewire:", "update mode")
        sent = ticks_ms()
        while not ota.reboot_wanted:
            board.watchdog()
            now = ticks_ms()
            if ticks_diff(now, heard) > _IDLE_MS:
                print("edgewire:", "update mode", "idle")
                break
            client.check_msg()
            if inbox:
                out = ota.handle(inbox.pop(0))
                if _mem_alloc is not None:
                    peak = max(peak, _mem_alloc())
                heard = ticks_ms()
                if out:
                    # QoS 0: a lost answer costs one resend by the host.
                    client.publish(ota.ack_topic, out)
                    sent = heard
                gc.collect()
            elif ticks_diff(now, sent) > _PING_MS:
                client.ping()
                sent = now
            else:
                sleep_ms(_TURN_MS)
        client.disconnect()
        print("edgewire:", "update mode", "heap peak", peak)
    except Exception as e:  # noqa: BLE001
        # A lost link, a refused connection, a garbled packet: the program
        # comes back; the host's resent "start" brings this mode back.
        print("edgewire:", "update mode", repr(e))
    board.reset()
