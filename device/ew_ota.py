# Over-the-air update of the board's files, the board's side (issue 7): a
# sans-IO core that takes one message at a time and returns the answer.
#
# Rule: a file under its real name is only ever replaced by a rename, and
# only after every new file of the update has been received in full and
# matched its SHA-256; the previous files stay beside the new ones as
# `<name>.old` until the new version has come online (it gets two starts),
# for a rollback.
#
# Topics: the host publishes on edgewire/<id>/ota (QoS 1), the board answers
# on edgewire/<id>/ota/ack. The messages, JSON objects:
#
#   host  {"ota": "offer", "v": "1.4", "files": [["ew_app.mpy", 9120, "<sha256 hex>"], ...]}
#         the complete new file set (flat names: no "/", no "..")
#   board {"ota": "need", "v": "1.4", "files": ["ew_app.mpy", ...]}
#         the names whose SHA-256 differs from the board's copy (or that it
#         lacks); or {"ota": "refused", "error": "..."}: a bad name, too many
#         files, not enough space, an update still on trial
#   host  {"ota": "chunk", "f": "ew_app.mpy", "o": 0, "d": "<base64 of up to 512 bytes>"}
#         for each needed file, in order, one at a time (a window of one:
#         the board's MQTT buffer is small)
#   board {"ota": "got", "f": "ew_app.mpy", "o": 512}
#         the offset the board wants next: the chunk was appended to
#         `<name>.new`, or it was at the wrong offset and the host resends
#         from the one named here
#   host  {"ota": "swap", "v": "1.4"}
#   board {"ota": "swapped", "v": "1.4"}  and Ota.reboot_wanted is set; or
#         {"ota": "refused", "error": "sha256 of ew_app.mpy"} and every
#         `.new` file is gone, nothing replaced
#   board {"ota": "done", "v": "1.4"}  from confirmed(), once the new version
#         is online; {"ota": "rolled_back", "v": "1.4"} if it never got there
#
# The swap writes ota.json first, {"v", "files", "added", "state": "trial",
# "tries": 0}, then renames each `name` to `name.old` and `name.new` to
# `name`. At every start, boot() reads it (after_boot() decides): a trial
# gets two starts ("try": an interrupted swap is finished, tries counted);
# a third start rolls back (every `name.old` back over `name`, the files
# the update added removed, state "rolled_back"). confirmed(), once the
# board is online, removes the `.old` files (state "ok").
#
# Heap: nothing here holds a whole file. Files are hashed 256 bytes at a
# time into one buffer, and a chunk is appended through a file opened for
# that chunk only, so no file stays open between messages.
#
# ew_board has read/write for whole small files only; appending, streaming,
# rename, remove and stat use `open` and `os` directly, on board.root + name.

import binascii
import hashlib
import json
import os

from micropython import const

_CHUNK_MAX = const(512)  # bytes of file data in one chunk, at most
_FILES_MAX = const(16)  # files in one offer, at most
_NAME_MAX = const(40)
_SPARE_BYTES = const(8192)  # free space an update must leave on the filesystem
_TRIES = const(2)  # starts a new version gets to come online
STATE = "ota.json"
_STATE_TMP = "ota.tmp"

_buf = bytearray(256)  # the hashing buffer, shared


def _answer(kind, **fields):
    fields["ota"] = kind
    return json.dumps(fields).encode()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _rename(old, new):
    # FAT refuses to rename onto an existing file; littlefs and POSIX replace it.
    _remove(new)
    os.rename(old, new)


def sha256_hex(path):
    """A file's SHA-256 as hex, read 256 bytes at a time; None without the file."""
    try:
        f = open(path, "rb")
    except OSError:
        return None
    h = hashlib.sha256()
    view = memoryview(_buf)
    try:
        while True:
            n = f.readinto(_buf)
            if not n:
                break
            h.update(view[:n])
    finally:
        f.close()
    return binascii.hexlify(h.digest()).decode()


def _bad_name(name):
    if not isinstance(name, str) or not 0 < len(name) <= _NAME_MAX:
        return True
    if "/" in name or "\\" in name or ".." in name or name[0] == ".":
        return True
    return name in (STATE, _STATE_TMP) or name.endswith(".new") or name.endswith(".old")


def _free_bytes(root):
    try:
        st = os.statvfs(root or "/")
        return st[1] * st[4]  # fragment size × blocks free to us
    except (AttributeError, OSError):
        return None  # no statvfs here: the writes themselves will tell


class Ota:
    """One update at a time. `handle(msg)` takes what arrived on the ota
    topic and returns the bytes to publish on `ack_topic`, or None.
    `reboot_wanted` is set once the new files are in place."""

    def __init__(self, board, device_topic_prefix):
        # device_topic_prefix: b"edgewire/<id>/"
        self.board = board
        self.root = board.root
        self.topic = device_topic_prefix + b"ota"
        self.ack_topic = self.topic + b"/ack"
        self.reboot_wanted = False
        self.v = None  # the version offered
        self.files = None  # [[name, size, sha256 hex], ...] of the needed files

    def handle(self, msg):
        try:
            m = json.loads(msg)
            kind = m["ota"]
            if kind == "offer":
                return self.offer(m["v"], m["files"])
            if kind == "chunk":
                return self.chunk(m["f"], m["o"], m["d"])
            if kind == "swap":
                return self.swap(m["v"])
            raise ValueError("unknown message")
        except KeyError as e:
            return _answer("refused", error="missing " + str(e))
        except ValueError as e:  # bad JSON or a bad value
            return _answer("refused", error=str(e) or "malformed")
        except (TypeError, AttributeError, IndexError):
            return _answer("refused", error="malformed")
        except OSError as e:  # the filesystem: full, or worn out
            self.clean()
            return _answer("refused", error="filesystem " + str(e))

    def offer(self, v, files):
        self.clean()
        if not isinstance(v, str) or not isinstance(files, list):
            raise ValueError("malformed offer")
        if len(files) > _FILES_MAX:
            raise ValueError("too many files")
        state = load(self.board)
        if state is not None and state.get("state") == "trial":
            raise ValueError("update %s still on trial" % state.get("v"))
        need = []
        names = []
        total = 0
        for entry in files:
            name, size, sha = entry
            if _bad_name(name) or name in names:
                raise ValueError("bad name " + repr(name))
            if not isinstance(size, int) or size < 0 or not isinstance(sha, str):
                raise ValueError("bad entry " + name)
            names.append(name)
            if sha256_hex(self.root + name) != sha.lower():
                need.append([name, size, sha.lower()])
                total += size
        free = _free_bytes(self.root)
        if free is not None and total + _SPARE_BYTES > free:
            raise ValueError("not enough space: %d bytes, %d free" % (total, free))
        self.v = v
        self.files = need
        return _answer("need", v=v, files=[e[0] for e in need])

    def _entry(self, name):
        for entry in self.files or ():
            if entry[0] == name:
                return entry
        raise ValueError("not offered " + repr(name))

    def chunk(self, name, offset, data):
        size = self._entry(name)[1]
        path = self.root + name + ".new"
        at = max(0, _size(path))
        if offset != at:
            return _answer("got", f=name, o=at)  # resend from here
        data = binascii.a2b_base64(data)
        if len(data) > _CHUNK_MAX or at + len(data) > size:
            raise ValueError("chunk too long for " + name)
        with open(path, "ab") as f:
            f.write(data)
        return _answer("got", f=name, o=at + len(data))

    def swap(self, v):
        if self.files is None or v != self.v:
            # A resent swap whose answer was lost: the files are in already.
            state = load(self.board)
            if state is not None and state.get("v") == v and state.get("state") in ("trial", "ok"):
                return _answer("swapped", v=v)
            raise ValueError("no offer of " + str(v))
        root = self.root
        for name, size, sha in self.files:
            path = root + name + ".new"
            if _size(path) != size or sha256_hex(path) != sha:
                self.clean()
                raise ValueError("sha256 of " + name)
        names = []
        added = []
        for entry in self.files:
            name = entry[0]
            names.append(name)
            _remove(root + name + ".old")  # left by an update never confirmed
            if not _exists(root + name):
                added.append(name)
        save(self.board, {"v": v, "files": names, "added": added, "state": "trial", "tries": 0})
        _finish(root, names)
        self.files = None
        self.reboot_wanted = True
        return _answer("swapped", v=v)

    def clean(self):
        """Forget the offer, and remove what was received of it."""
        for entry in self.files or ():
            _remove(self.root + entry[0] + ".new")
        self.files = None
        self.v = None


def _finish(root, names):
    """Move each received file in, the old one aside; resumes a swap that
    a power cut stopped halfway."""
    for name in names:
        path = root + name
        if _exists(path + ".new"):
            if _exists(path):
                _rename(path, path + ".old")
            _rename(path + ".new", path)


# -- at every start, and once online ------------------------------------------


def load(board):
    """ota.json as a dict, or None (no update, or a damaged file)."""
    try:
        return json.loads(board.read(STATE))
    except (TypeError, ValueError):
        return None


def save(board, state):
    # Written beside, then renamed: a power cut leaves the old or the new one.
    board.write(_STATE_TMP, json.dumps(state).encode())
    _rename(board.root + _STATE_TMP, board.root + STATE)


def after_boot(state):
    """What a start does about an update: "try" the new version (again),
    "rollback" to the old one, or None."""
    if not state or state.get("state") != "trial":
        return None
    return "try" if state.get("tries", 0) < _TRIES else "rollback"


def boot(board):
    """Run at every start, before the program's modules load; returns
    after_boot's action. After "rollback" the board should reset, so that
    no module of the failed version stays loaded."""
    state = load(board)
    action = after_boot(state)
    root = board.root
    if action == "try":
        state["tries"] = state.get("tries", 0) + 1
        save(board, state)
        _finish(root, state["files"])
    elif action == "rollback":
        added = state.get("added", [])
        for name in state["files"]:
            path = root + name
            _remove(path + ".new")
            if name in added:
                _remove(path)
            elif _exists(path + ".old"):
                _rename(path + ".old", path)
        state["state"] = "rolled_back"
        save(board, state)
    return action


def confirmed(board):
    """The board is online: a version on trial is kept (its `.old` files go)
    and a rollback is reported, once. The answer to publish, or None."""
    state = load(board)
    if not state:
        return None
    if state.get("state") == "trial":
        for name in state["files"]:
            _remove(board.root + name + ".old")
        state["state"] = "ok"
        save(board, state)
        return _answer("done", v=state["v"])
    if state.get("state") == "rolled_back":
        state["state"] = "failed"
        save(board, state)
        return _answer("rolled_back", v=state["v"])
    return None
