# The board's program: read config.json, then sample and publish forever.

import ew_board

board = ew_board.make()
import ew_app  # noqa: E402  # after the board: its imports go first into a fresh heap

ew_app.main(board)
