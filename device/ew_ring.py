# The backlog ring: every sample stays here until the edge says it is stored.
#
# Rule: a sample leaves the ring only when a `stored` message covers it, or
# when the ring is full and it is the oldest (then it is counted in `dropped`).
# Everything held is sent again after a reconnect, oldest first; the edge's
# dedupe on (device, boot, seq) makes the resend harmless.


class Ring:
    def __init__(self, max_samples, max_bytes):
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self._seqs = []
        self._data = []
        self._bytes = 0
        self._sent = 0  # entries at the front already sent on this connection
        self.dropped = 0
        self.next_seq = 0  # the seq the next sample will get

    def __len__(self):
        return len(self._seqs)

    def add(self, data):
        """Keep an encoded sample; returns its seq."""
        seq = self.next_seq
        self.next_seq += 1
        self._seqs.append(seq)
        self._data.append(data)
        self._bytes += len(data)
        while len(self._seqs) > self.max_samples or self._bytes > self.max_bytes:
            self._pop()
            self.dropped += 1
        return seq

    def _pop(self):
        self._seqs.pop(0)
        self._bytes -= len(self._data.pop(0))
        if self._sent:
            self._sent -= 1

    def cover(self, seq):
        """The edge holds every sample up to `seq`: forget them."""
        while self._seqs and self._seqs[0] <= seq:
            self._pop()

    def lo(self):
        """The lowest seq still held (or the next one when empty)."""
        return self._seqs[0] if self._seqs else self.next_seq

    def unsent(self, max_count, max_bytes):
        """The oldest samples not yet sent on this connection, within limits."""
        out = []
        size = 0
        i = self._sent
        while i < len(self._data) and len(out) < max_count:
            size += len(self._data[i]) + 1
            if out and size > max_bytes:
                break
            out.append(self._data[i])
            i += 1
        return out

    def mark_sent(self, count):
        self._sent += count

    def rewind(self):
        """A new connection, or `stored` is overdue: everything held goes out again."""
        self._sent = 0

    def in_flight(self):
        """How many held samples were sent and are not yet covered."""
        return self._sent
