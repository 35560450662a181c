# Over-the-air update of the board's files, the board's side (issue 7): a
# sans-IO core that takes one message at a time and returns the answer. It
# runs in update mode only (ew_update), so its code is never in the heap
# beside the running program's.
#
# Rule: a file under its real name is only ever replaced by a rename, and
# only after every new file of the update has been received in full and
# matched its SHA-256; the previous files stay beside the new ones as
# `<name>.old` until the new version has come online (ew_trial), for a
# rollback.
#
# Topics: the host publishes on edgewire/<id>/ota (QoS 1), the board answers
# on edgewire/<id>/ota/ack. The messages, JSON objects:
#
#   host  on edgewire/<id>/cmd, the command {"id": "ota-1.4", "update": true}:
#         the program (ew_app) answers it on cmd/ack and restarts into update
#         mode (ew_update), keeping what it holds unstored
#   board {"ota": "ready"}  update mode is listening (sent once at its start,
#         and as the answer to {"ota": "start"})
#   host  {"ota": "offer", "v": "1.4", "files": [["ew_app.mpy", 9120, "<sha256 hex>"], ...],
#          "trial_s": 120}
#         the complete new file set (flat names ending .py or .mpy), and
#         how long the new version gets to come online (optional)
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
#         from the one named here. A transfer cut short (a restart, a lost
#         link) resumes where it stopped when the same version is offered
#         again: ota.part names the version the `.new` files belong to.
#   host  {"ota": "swap", "v": "1.4"}
#   board {"ota": "swapped", "v": "1.4"}  and Ota.reboot_wanted is set; or
#         {"ota": "refused", "error": "sha256 of ew_app.mpy"} and every
#         `.new` file is gone, nothing replaced
#   board {"ota": "done", "v": "1.4"}  from ew_trial.confirmed(), once the new
#         version runs and is online; {"ota": "rolled_back", "v": "1.4"} if
#         it never got there
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

from ew_trial import KEPT, answer, confirmed, exists, finish, load, remove, save
from micropython import const

_CHUNK_MAX = const(512)  # bytes of file data in one chunk, at most
_FILES_MAX = const(32)  # files in one offer, at most
_NAME_MAX = const(40)
_SPARE_BYTES = const(8192)  # free space an update must leave on the filesystem
_PART = "ota.part"  # the version the `.new` files on the board belong to

_buf = bytearray(256)  # the hashing buffer, shared


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


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
    # Code only: a flat name ending in .py or .mpy, so no update can reach
    # config.json, the board's counters or this module's own state files.
    if not isinstance(name, str) or not 0 < len(name) <= _NAME_MAX:
        return True
    if "/" in name or "\\" in name or ".." in name or name[0] == ".":
        return True
    for c in name:  # no NUL: MicroPython's open() cuts a path there
        if c < " " or c > "~":
            return True
    return not (name.endswith(".py") or name.endswith(".mpy"))


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
        self.trial_s = None  # how long it gets to come online; None: ew_trial's default

    def handle(self, msg):
        try:
            m = json.loads(msg)
            kind = m["ota"]
            if kind == "offer":
                self.trial_s = m.get("trial_s")
                return self.offer(m["v"], m["files"])
            if kind == "chunk":
                return self.chunk(m["f"], m["o"], m["d"])
            if kind == "swap":
                return self.swap(m["v"])
            if kind == "start":
                return answer("ready")  # here already
            raise ValueError("unknown message")
        except KeyError as e:
            return answer("refused", error="missing " + str(e))
        except ValueError as e:  # bad JSON or a bad value
            return answer("refused", error=str(e) or "malformed")
        except (TypeError, AttributeError, IndexError, RuntimeError, MemoryError):
            # RuntimeError: JSON nested too deep (MicroPython's recursion
            # error; CPython's RecursionError is one too); MemoryError: on a
            # board, the same or a message too big to parse.
            return answer("refused", error="malformed")
        except OSError as e:  # the filesystem: full, or worn out
            self.clean()
            return answer("refused", error="filesystem " + str(e))

    def offer(self, v, files):
        if not isinstance(v, str) or not isinstance(files, list):
            raise ValueError("malformed offer")
        if len(files) > _FILES_MAX:
            raise ValueError("too many files")
        state = load(self.board)
        if state is not None and state.get("state") == "trial":
            if not exists(self.root + KEPT):
                raise ValueError("update %s still on trial" % state.get("v"))
            confirmed(self.board)  # it came online: kept for good
        root = self.root
        # What was received of this same version (before a restart or a
        # lost link) is kept, and resumed; parts of another version go.
        resume = self.board.read(_PART) == v.encode()
        self.files = None
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
            if not resume:
                remove(root + name + ".new")
            if sha256_hex(root + name) != sha.lower():
                need.append([name, size, sha.lower()])
                total += size - max(0, _size(root + name + ".new"))
        free = _free_bytes(root)
        if free is not None and total + _SPARE_BYTES > free:
            raise ValueError("not enough space: %d bytes, %d free" % (total, free))
        if not need:
            remove(root + _PART)
        elif not resume:
            self.board.write(_PART, v.encode())
        self.v = v
        self.files = need
        self.reboot_wanted = not need  # nothing to do: back to the program
        return answer("need", v=v, files=[e[0] for e in need])

    def _entry(self, name):
        for entry in self.files or ():
            if entry[0] == name:
                return entry
        raise ValueError("not offered " + repr(name))

    def chunk(self, name, offset, data):
        size = self._entry(name)[1]
        path = self.root + name + ".new"
        at = max(0, _size(path))
        if at > size:  # left by an earlier transfer that went wrong
            remove(path)
            at = 0
        if offset != at:
            return answer("got", f=name, o=at)  # resend from here
        data = binascii.a2b_base64(data)
        if len(data) > _CHUNK_MAX or at + len(data) > size:
            raise ValueError("chunk too long for " + name)
        with open(path, "ab") as f:
            f.write(data)
        return answer("got", f=name, o=at + len(data))

    def swap(self, v):
        if self.files is None or v != self.v:
            # A resent swap whose answer was lost: the files are in already.
            state = load(self.board)
            if state is not None and state.get("v") == v and state.get("state") in ("trial", "ok"):
                return answer("swapped", v=v)
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
            remove(root + name + ".old")  # left by an update never confirmed
            if not exists(root + name):
                added.append(name)
        state = {"v": v, "files": names, "added": added, "state": "trial", "tries": 0}
        if isinstance(self.trial_s, (int, float)) and self.trial_s > 0:
            state["trial_s"] = self.trial_s
        save(self.board, state)
        finish(root, names)
        remove(root + _PART)
        self.files = None
        self.reboot_wanted = True
        return answer("swapped", v=v)

    def clean(self):
        """Forget the offer, and remove what was received of it."""
        for entry in self.files or ():
            remove(self.root + entry[0] + ".new")
        remove(self.root + _PART)
        self.files = None
        self.v = None
