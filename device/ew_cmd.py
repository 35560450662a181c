# Commands from the cloud, on edgewire/<id>/cmd (contract §2). Imported at
# the first command: a board that never gets one never pays for this code.
#
#   {"id": "c1", "set": {"interval_s": 30}}    sampling interval
#   {"id": "c2", "disable": "bme280"}          stop reading a sensor ("enable" again)
#   {"id": "c3", "sleep": {"awake_s": 20, "sleep_s": 600}}   deep-sleep duty cycle (null: off)
#   {"id": "c4", "reboot": true}
#   {"id": "c5", "safe_mode": false}           leave safe mode (and reboot)
#
# Each is acknowledged on .../cmd/ack with {"id", "ok"} and, when it was
# refused, "error". A malformed or unknown command is refused, never a crash.

import json


def handle(app, msg):
    """Apply a command to `app`; the bytes of its acknowledgement."""
    cid = None
    try:
        cmd = json.loads(msg)
        if not isinstance(cmd, dict):
            raise ValueError("a command is a JSON object")
        cid = cmd.get("id")
        _apply(app, cmd)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        return json.dumps({"id": cid, "ok": False, "error": str(e)}).encode()
    return json.dumps({"id": cid, "ok": True}).encode()


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _apply(app, cmd):
    known = False
    settings = cmd.get("set")
    if settings is not None:
        known = True
        if not isinstance(settings, dict):
            raise ValueError("'set' takes an object")
        for key, value in settings.items():
            if key == "interval_s" and _number(value) and 0.01 <= value <= 86400:
                app.interval_ms = int(value * 1000)
            else:
                raise ValueError("cannot set %s to %s" % (key, value))
    for verb in ("enable", "disable"):
        name = cmd.get(verb)
        if name is not None:
            known = True
            if name not in [s.name for s in app.sensors]:
                raise ValueError("no sensor named %s" % name)
            if verb == "enable":
                app.disabled.discard(name)
            else:
                app.disabled.add(name)
    if "sleep" in cmd:
        known = True
        cycle = cmd["sleep"]
        if cycle is not None and not (
            isinstance(cycle, dict)
            and _number(cycle.get("awake_s"))
            and _number(cycle.get("sleep_s"))
        ):
            raise ValueError("'sleep' takes {awake_s, sleep_s} or null")
        app.set_duty_cycle(cycle)
    if cmd.get("reboot") is True:
        known = True
        app.reboot_requested = True
    if cmd.get("safe_mode") is False:
        known = True
        app.board.write_int("crash.dat", 0)
        app.reboot_requested = True
    if not known:
        raise ValueError("unknown command")
