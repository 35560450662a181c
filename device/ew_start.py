# What a board does once per start: its boot number, boot-loop protection and
# its sensors. The app imports this, calls begin() and drops the module, so
# none of this code stays in the heap while the board runs.

import ew_sensors

SAFE_MODE_AFTER = 3  # this many quick crashes in a row: start in safe mode


def begin(app):
    board = app.board
    config = app.config
    app.woke = board.woke_from_deepsleep()
    if app.woke:
        import ew_sleep

        ew_sleep.restore(app)
    else:
        app.boot = board.read_int("boot.dat", -1) + 1
        board.write_int("boot.dat", app.boot)
    # Boot-loop protection: counted up at every start, cleared once the board
    # has run for a while; several in a row mean something in the sampling
    # path crashes it, so start without it and wait for orders.
    crashes = board.read_int("crash.dat", 0) + (0 if app.woke else 1)
    board.write_int("crash.dat", crashes)
    app.safe_mode = crashes >= SAFE_MODE_AFTER
    app.sensors = []
    app.disabled = set(config.get("disabled", []))
    if not app.safe_mode:
        for i, spec in enumerate(config.get("sensors", [{"type": "synthetic"}])):
            try:
                app.sensors.append(ew_sensors.make(board, spec, i))
            except (OSError, ValueError, ImportError) as e:
                app.sensor_errors += 1
                print("edgewire: sensor %s unavailable: %s" % (spec.get("type"), e))
