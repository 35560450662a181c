# The board's program: read config.json, then sample and publish forever.

# Code first, buffers after: the MQTT layer (the biggest module) goes into a
# fresh heap before the app allocates its ring and outbox, which keeps a
# small heap from fragmenting.
import ew_board
import ew_mqtt  # noqa: F401

board = ew_board.make()
import ew_app  # noqa: E402

ew_app.main(board)
