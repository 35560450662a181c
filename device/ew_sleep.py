# Deep-sleep duty cycling: what must survive the sleep. The RAM is gone when
# the board wakes (it starts from boot.py again), so the same boot's state
# and every unstored sample go to a small file first. Imported only by a board
# that sleeps.

import json

SLEEP_FILE = "sleep.dat"


def save(app):
    ring = app.ring
    state = {
        "boot": app.boot,
        "lo": ring.lo(),
        "next": ring.next_seq,
        "interval_ms": app.interval_ms,
        "sleep": app.sleep_cfg,
        "disabled": list(app.disabled),
    }
    parts = [json.dumps(state).encode()]
    for i in range(len(ring)):
        parts.append(bytes(ring.entry(i)))
    app.board.write_bytes(SLEEP_FILE, b"\n".join(parts))


def restore(app):
    """The same boot goes on after a deep sleep: seqs continue."""
    board = app.board
    data = board.read_bytes(SLEEP_FILE)
    _remove(board.root + SLEEP_FILE)
    lines = data.split(b"\n") if data else []
    state = json.loads(lines[0]) if lines else {}
    app.boot = state.get("boot", board.read_int("boot.dat", 0))
    app.ring.next_seq = state.get("lo", 0)
    for line in lines[1:]:
        app.ring.add(line)
    app.ring.next_seq = max(app.ring.next_seq, state.get("next", 0))
    app.interval_ms = state.get("interval_ms", app.interval_ms)
    app.sleep_cfg = state.get("sleep", app.sleep_cfg)
    app.config["disabled"] = state.get("disabled", [])


def _remove(path):
    import os

    try:
        os.remove(path)
    except OSError as e:
        print("edgewire: cannot remove %s: %s" % (path, e))
