# The board's program: read config.json, then sample and publish forever.

import ew_app
import ew_board


def main():
    board = ew_board.Board()
    app = ew_app.App(board, board.load_config())
    app.run()


main()
