# The board's program: read config.json, then sample and publish forever.
# ew_app does it all; this only picks the board layer. (boot.py, before
# this, may have run update mode instead: ew_update.)

import sys

import ew_board

if sys.platform in ("esp32", "esp8266", "rp2"):
    from ew_mcu import McuBoard

    board = McuBoard()
else:
    board = ew_board.Board()
import ew_app  # noqa: E402

ew_app.main(board)
