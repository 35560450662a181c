# Runs before main.py on every start. A fault here would stop the board
# before it could be reached to fix it, so it holds one thing, guarded: an
# over-the-air update under way is dealt with (ew_trial.at_boot: update
# mode, or a new version's trial) before any of the program's code loads.

import os

try:
    if [n for n in os.listdir() if n in ("ota.mode", "ota.json", "ota.say")]:
        import ew_trial

        ew_trial.at_boot()
except Exception as e:  # noqa: BLE001
    # main.py starts the program as it is; update mode is not retried.
    print("edgewire: boot:", repr(e))
    if "ota.mode" in os.listdir():
        os.remove("ota.mode")
