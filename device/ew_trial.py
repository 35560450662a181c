# An update's trial, at a start and once online (issue 7): the part of the
# over-the-air update that runs outside update mode, from boot.py, before
# main.py starts the program (at_boot).
#
# ew_ota's swap writes ota.json, {"v", "files", "added", "state": "trial",
# "tries": 0}, then renames each `name` to `name.old` and `name.new` to
# `name`. At every start, boot() reads it (after_boot() decides): a trial
# gets two starts ("try"; a swap a power cut stopped is finished first);
# a third start rolls back (every `name.old` back over `name`, the files
# the update added removed, state "rolled_back"). Once online, the new
# version says "done" and writes ota.ok; the next start or update then
# keeps it for good (confirmed(): the `.old` files and ota.json go). The old
# version, back after a rollback, says "rolled_back" once online.
#
# The running program never loads this module: nothing of it stays in the
# heap, and a board that has run for hours has no room to load it.

import json
import os
import sys

from micropython import const

_TRIES = const(2)  # starts a new version gets to come online
_TRIAL_S = const(120)  # how long it gets, unless the update says (offer's "trial_s")
STATE = "ota.json"
_STATE_TMP = "ota.tmp"
KEPT = "ota.ok"  # the new version came online (ew_app writes it)
SAY = "ota.say"  # for ew_start: what the program is to say, and by when
MODE = "ota.mode"  # the next start is in update mode (ew_app writes it)
_TRIAL_WATCHDOG_MS = const(30000)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass  # already gone: what the caller wanted


def rename(old, new):
    # FAT refuses to rename onto an existing file; littlefs and POSIX replace it.
    remove(new)
    os.rename(old, new)


def answer(kind, **fields):
    fields["ota"] = kind
    return json.dumps(fields).encode()


def load(board):
    """ota.json as a dict, or None (no update, or a damaged file)."""
    try:
        return json.loads(board.read(STATE))
    except (TypeError, ValueError):
        return None


def save(board, state):
    # Written beside, then renamed: a power cut leaves the old or the new one.
    board.write(_STATE_TMP, json.dumps(state).encode())
    rename(board.root + _STATE_TMP, board.root + STATE)


def finish(root, names):
    """Move each received file in, the old one aside; resumes a swap that
    a power cut stopped halfway. True if it moved any."""
    moved = False
    for name in names:
        path = root + name
        if exists(path + ".new"):
            if exists(path):
                rename(path, path + ".old")
            rename(path + ".new", path)
            moved = True
    return moved


def after_boot(state):
    """What a start does about an update: "try" the new version (again),
    "rollback" to the old one, or None."""
    if not state or state.get("state") != "trial":
        return None
    return "try" if state.get("tries", 0) < _TRIES else "rollback"


def boot(board):
    """Run at every start, before the program runs; returns after_boot's
    action, or "finished": a swap cut short was finished now, and the board
    should reset (uncounted) so that only the new files are loaded; after
    "rollback" too, so that no module of the failed version stays loaded."""
    state = load(board)
    action = after_boot(state)
    root = board.root
    if action and exists(root + KEPT):
        confirmed(board)  # it came online since: kept
        return None
    if action == "try":
        if finish(root, state["files"]):
            return "finished"
        state["tries"] = state.get("tries", 0) + 1
        save(board, state)
    elif action == "rollback":
        added = state.get("added", [])
        for name in state["files"]:
            path = root + name
            remove(path + ".new")
            if name in added:
                remove(path)
            elif exists(path + ".old"):
                rename(path + ".old", path)
        state["state"] = "rolled_back"
        save(board, state)
        # The crashes were the new version's: the old one starts with a
        # clear boot-loop counter, not in safe mode.
        board.write("crash.dat", b"0")
    return action


def confirmed(board):
    """A version on trial came online: it is kept (its `.old` files go);
    ota.json and ota.ok go too, so that later starts skip this module. What
    the board said about it ("done", or "rolled_back"), or None."""
    state = load(board)
    if not state:
        return None
    out = None
    if state.get("state") == "trial":
        for name in state["files"]:
            remove(board.root + name + ".old")
        out = answer("done", v=state["v"])
    elif state.get("state") == "rolled_back":
        out = answer("rolled_back", v=state["v"])
    remove(board.root + STATE)
    remove(board.root + KEPT)
    return out


def this_board():
    """The board layer for this machine (as main.py picks it)."""
    if sys.platform in ("esp32", "esp8266", "rp2"):
        from ew_mcu import McuBoard

        return McuBoard()
    from ew_board import Board

    return Board()


def at_boot():
    """boot.py runs this when an update is under way (ota.mode, ota.json or
    ota.say is there), before main.py: update mode (ew_update), which ends
    in a reset; or boot(), then ota.say for the program (ew_start reads it):
    "<seconds>\n<answer>", a new version on trial that has so long to come
    online and then says `answer` ("done"); or "\n<answer>", the old version
    back after a rollback, to say so once."""
    board = this_board()
    root = board.root
    remove(root + SAY)  # said at the start before, or never will be
    if board.read(MODE) is not None:
        import ew_update

        ew_update.main(board)  # ends in a reset
    action = boot(board)
    if action == "rollback" or action == "finished":
        board.reset()  # no module of the version left behind may stay loaded
    state = load(board) or {}
    if action == "try":
        # The watchdog, now: a new program that stops at its REPL (it does
        # not even load) is reset too, and that counts one of its tries.
        board.watchdog(_TRIAL_WATCHDOG_MS)
        trial_s = int(state.get("trial_s", _TRIAL_S))
        board.write(SAY, b"%d\n" % trial_s + answer("done", v=state["v"]))
    elif state.get("state") == "rolled_back":
        board.write(SAY, b"\n" + answer("rolled_back", v=state["v"]))
        remove(root + STATE)
