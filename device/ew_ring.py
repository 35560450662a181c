# The backlog ring: every sample stays here until the edge says it is stored.
#
# Rule: a sample leaves the ring only when a `stored` message covers it, or
# when the ring is full and it is the oldest (then it is counted in
# `dropped`). Everything held is sent again after a reconnect, oldest first;
# the edge's dedupe on (device, boot, seq) makes the resend harmless.
#
# The ring is preallocated: one bytearray holds the encoded samples end to
# end (wrapping around), two arrays hold where each starts and how long it
# is. The samples held always have consecutive seqs, from
# `next_seq - count` to `next_seq - 1`, so seqs need no storage. Adding a
# sample allocates nothing in the ring.
#
# Heap is the scarce thing on a board (every method and attribute name costs
# it), so the ring's state is plain attributes the app reads and sets:
#   count  samples held
#   sent   of those, how many at the front went out on this connection
#          (0 again after a reconnect or an overdue `stored`: resend all)

import json
from array import array


class Ring:
    def __init__(self, max_samples, max_bytes):
        self.max_samples = max_samples
        self._buf = bytearray(max_bytes)
        self._view = memoryview(self._buf)
        self._start = array("H" if max_bytes <= 0xFFFF else "I", range(max_samples))
        self._size = array("H", range(max_samples))
        self._head = 0  # slot of the oldest sample
        self._write = 0  # where the next sample's bytes go
        self.count = 0
        self.sent = 0
        self.dropped = 0
        self.next_seq = 0  # the seq the next sample will get

    def add(self, data):
        """Keep an encoded sample; returns its seq."""
        n = len(data)
        size = len(self._buf)
        if n > size or n > 0xFFFF:
            raise ValueError("too big")
        if self.count == self.max_samples:
            self._forget(1, True)
        # Where the n bytes go: drop the oldest samples until they fit.
        at = 0
        while self.count:
            oldest = self._start[self._head]
            if self._write > oldest:
                # Live bytes run from oldest to write: room after, or from 0.
                if self._write + n <= size:
                    at = self._write
                    break
                if n <= oldest:
                    break
            elif self._write + n <= oldest:
                # Live bytes wrap: from oldest to the end, then 0 to write
                # (write == oldest: the buffer is full).
                at = self._write
                break
            self._forget(1, True)
        self._view[at : at + n] = data
        slot = (self._head + self.count) % self.max_samples
        self._start[slot] = at
        self._size[slot] = n
        self.count += 1
        self._write = at + n
        self.next_seq += 1
        return self.next_seq - 1

    def cover(self, seq):
        """The edge holds every sample up to `seq`: forget them."""
        self._forget(min(self.count, seq + 1 - (self.next_seq - self.count)), False)

    def _forget(self, n, dropped):
        if n <= 0:
            return
        self._head = (self._head + n) % self.max_samples
        self.count -= n
        self.sent = max(0, self.sent - n)
        if dropped:
            self.dropped += n

    def entry(self, index):
        """The bytes of the index-th oldest sample held."""
        slot = (self._head + index) % self.max_samples
        at = self._start[slot]
        return self._view[at : at + self._size[slot]]


# -- How a sample becomes bytes: the JSON object of contract §2, built without
# floats for the time (ESP ports have single-precision floats: a Unix time as
# a float would round to 128-second steps).


def encode(seq, boot, ts_ms, metrics):
    """Bytes of one sample object; `ts_ms` is None until the clock is set."""
    if ts_ms is None:
        head = '{"seq":%d,"boot":%d,"m":' % (seq, boot)
    else:
        head = '{"seq":%d,"boot":%d,"ts":%d.%03d,"m":' % (seq, boot, ts_ms // 1000, ts_ms % 1000)
    return (head + json.dumps(metrics, separators=(",", ":")) + "}").encode()


def message_into(out, ring, first, max_count):
    """Write one MQTT payload into the bytearray `out`: the ring's samples
    from index `first`, as one object or a JSON array (a backlog), at most
    `max_count` and what fits. Returns (bytes written, samples written).

    The first sample carries `lo`, the lowest seq this board still holds,
    so the edge can tell a sample the board dropped from one still coming."""
    available = min(max_count, ring.count - first)
    if available <= 0:
        return 0, 0
    lo = b'{"lo":%d,' % (ring.next_seq - ring.count)
    size = len(out)
    pos = 1 if available > 1 else 0  # room for "[" when it is a batch
    count = 0
    while count < available:
        entry = ring.entry(first + count)
        extra = len(lo) - 1 if count == 0 else 1  # "lo" prefix, or ","
        if pos + extra + len(entry) + 1 > size:  # + 1 for "]"
            break
        if count == 0:
            out[pos : pos + len(lo)] = lo
            pos += len(lo)
            out[pos : pos + len(entry) - 1] = entry[1:]
            pos += len(entry) - 1
        else:
            out[pos] = 44  # ","
            out[pos + 1 : pos + 1 + len(entry)] = entry
            pos += 1 + len(entry)
        count += 1
    if count == 0:
        return 0, 0
    if available > 1:
        if count == 1:  # only one fitted: send it bare
            out[0 : pos - 1] = out[1:pos]
            return pos - 1, 1
        out[0] = 91  # "["
        out[pos] = 93  # "]"
        pos += 1
    return pos, count
