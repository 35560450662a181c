"""The chain of custody as a model: the real sans-IO parts, any interleaving.

A board (device/ew_ring.py), a broker that can crash and
forget, the edge's validator, buffer, `stored` tracker and send plan, and the
cloud's storage are wired together by plain function calls. Hypothesis picks
the order of events (samples taken, deliveries, duplicates, acks lost, edge
and broker crashes, broken streams); afterwards everything is allowed to
settle, and every sample the board took must be stored in the cloud exactly
once, unless a ring or buffer cap dropped it and counted the drop.
"""

import json
import sys
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.storage import MemoryStorage
from edge.buffer import Caps, MemoryBuffer
from edge.stored import StoredTracker
from edge.validate import validate_telemetry
from edge.window import Lane, Limits, Outgoing, SendPlan
from edgewire.paths import DEVICE_DIR
from edgewire.wire import decode_sample, encode_sample

sys.path.insert(0, str(DEVICE_DIR))
import ew_ring  # type: ignore[import-not-found]

DEVICE = "board-1"
BOOT = 1
NOW = 1_800_000_000.0


@dataclass
class Broker:
    """Messages from the board waiting for the edge; a crash forgets them."""

    to_edge: list[bytes] = field(default_factory=list)
    # How many of the front messages the edge took but did not ack yet.
    delivered: int = 0
    to_board: list[bytes] = field(default_factory=list)


@dataclass
class World:
    ring: ew_ring.Ring
    buffer: MemoryBuffer
    broker: Broker = field(default_factory=Broker)
    tracker: StoredTracker = field(default_factory=lambda: StoredTracker(min_interval_s=0.0))
    plan: SendPlan = field(default_factory=lambda: SendPlan(Limits(max_batches=3, max_samples=4)))
    cloud: MemoryStorage = field(default_factory=MemoryStorage)
    cloud_acks: list[int] = field(default_factory=list)  # acks on their way back
    in_transit: list[tuple[int, list[bytes]]] = field(default_factory=list)  # batches sent
    taken: int = 0
    outbox: bytearray = field(default_factory=lambda: bytearray(1024))
    buffer_dropped: int = 0
    connected: bool = True

    # -- the board -----------------------------------------------------------

    def take_sample(self) -> None:
        seq = self.ring.next_seq
        self.ring.add(ew_ring.encode(seq, BOOT, 1_800_000_000_000 + seq, {"t": seq}))
        self.taken += 1

    def board_send(self) -> None:
        if not self.connected:
            return
        size, count = ew_ring.message_into(self.outbox, self.ring, self.ring.sent, 2)
        if count:
            self.broker.to_edge.append(bytes(self.outbox[:size]))
            self.ring.sent += count

    def board_reconnect(self) -> None:
        self.connected = True
        self.ring.sent = 0

    def board_resend_overdue(self) -> None:
        self.ring.sent = 0

    def board_receive_stored(self) -> None:
        if self.broker.to_board:
            mark = json.loads(self.broker.to_board.pop(0))
            if mark["boot"] == BOOT:
                self.ring.cover(mark["seq"])

    # -- the broker ------------------------------------------------------------

    def broker_crash(self) -> None:
        self.broker = Broker()
        self.connected = False

    def broker_loses_one(self) -> None:
        """A message vanishes while the board stays connected: no subscriber
        yet after a restart, or a full queue (Mosquitto logs one line)."""
        if len(self.broker.to_edge) > self.broker.delivered:
            self.broker.to_edge.pop()

    def broker_duplicate(self) -> None:
        if self.broker.to_edge:
            self.broker.to_edge.insert(1, self.broker.to_edge[0])

    # -- the edge --------------------------------------------------------------

    def edge_commit(self) -> None:
        """The edge takes the next message and commits it (not yet acked)."""
        if self.broker.delivered >= len(self.broker.to_edge):
            return
        payload = self.broker.to_edge[self.broker.delivered]
        self.broker.delivered += 1
        outcome = validate_telemetry(DEVICE, payload, NOW)
        assert not outcome.rejected
        records = [encode_sample(a.sample) for a in outcome.accepted]
        for a in outcome.accepted:
            self.tracker.durable(DEVICE, a.sample.boot, a.sample.seq, a.lo)
        appended = self.buffer.append(records, [], self.tracker.take_changed())
        self.buffer_dropped += appended.dropped
        self.plan.committed(appended.first_id, records, now=0.0)
        for _device_id, boot, seq in self.tracker.due(now=0.0):
            self.broker.to_board.append(b'{"boot": %d, "seq": %d}' % (boot, seq))

    def edge_ack(self) -> None:
        if self.broker.delivered:
            self.broker.to_edge.pop(0)
            self.broker.delivered -= 1

    def edge_crash(self) -> None:
        """Memory is gone; the buffer (with its marks) and the broker remain."""
        self.broker.delivered = 0  # unacked messages are delivered again
        self.tracker = StoredTracker(min_interval_s=0.0)
        self.tracker.restore(self.buffer.marks())
        self.stream_break()

    def edge_send_batch(self) -> None:
        lane = self.plan.next_lane(now=1.0)
        out: Outgoing | None
        if lane is Lane.LIVE:
            out = self.plan.take_live()
        elif lane is Lane.BACKLOG:
            out = self.plan.backlog_read(self.buffer.read(*self.plan.backlog_range()))
        else:
            return
        if out is not None:
            self.in_transit.append((out.batch_id, out.records))

    def stream_break(self) -> None:
        self.in_transit.clear()
        self.cloud_acks.clear()
        self.plan.restart(self.buffer.stats().newest_id)

    # -- the cloud ---------------------------------------------------------------

    def cloud_commit(self) -> None:
        if self.in_transit:
            batch_id, records = self.in_transit.pop(0)
            self.cloud.insert([decode_sample(r) for r in records], received_at=0.0)
            self.cloud_acks.append(batch_id)

    def ack_arrives(self) -> None:
        if self.cloud_acks:
            self.buffer.delete(self.plan.acked(self.cloud_acks.pop(0)))

    # -- settling ------------------------------------------------------------------

    def settle(self) -> None:
        """Everything works from now on: run until nothing is left to do."""
        self.board_reconnect()
        for _ in range(10_000):
            if not self.ring.count and not self.buffer.stats().records and not self.broker.to_edge:
                return
            self.board_send()
            while self.broker.delivered:
                self.edge_ack()
            while self.broker.delivered < len(self.broker.to_edge):
                self.edge_commit()
                self.edge_ack()
            while self.broker.to_board:
                self.board_receive_stored()
            for _ in range(5):
                self.edge_send_batch()
            while self.in_transit:
                self.cloud_commit()
            while self.cloud_acks:
                self.ack_arrives()
            if self.ring.count == self.ring.sent and self.ring.count:
                self.board_resend_overdue()
        raise AssertionError("the system did not settle")


# The common events more often than the faults.
ACTIONS = [
    *["take_sample"] * 4, *["board_send"] * 3, *["edge_commit"] * 3, *["edge_ack"] * 2,
    *["board_receive_stored"] * 2, *["edge_send_batch"] * 2, *["cloud_commit"] * 2,
    *["ack_arrives"] * 2, "board_reconnect", "board_resend_overdue", "broker_crash",
    "broker_duplicate", "broker_loses_one", "edge_crash", "stream_break",
]  # fmt: skip


def run(actions: list[str], ring_cap: int, buffer_cap: int) -> World:
    world = World(
        ring=ew_ring.Ring(max_samples=ring_cap, max_bytes=60_000),
        buffer=MemoryBuffer(Caps(buffer_cap, 1 << 30, 100)),
    )
    world.plan.restart(0)
    for action in actions:
        getattr(world, action)()
    world.settle()
    return world


def stored_seqs(world: World) -> list[int]:
    return [e.sample.seq for e in world.cloud.samples_after(0, None, 1 << 30)]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(ACTIONS), min_size=10, max_size=200))
def test_without_drops_every_sample_is_stored_exactly_once(actions: list[str]) -> None:
    world = run(actions, ring_cap=10_000, buffer_cap=10_000)
    seqs = stored_seqs(world)
    assert sorted(seqs) == list(range(world.taken))
    assert world.ring.dropped == 0
    assert world.buffer_dropped == 0


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(ACTIONS), min_size=10, max_size=200),
    st.integers(1, 8),
    st.integers(1, 8),
)
def test_what_is_missing_is_never_more_than_what_was_counted_as_dropped(
    actions: list[str], ring_cap: int, buffer_cap: int
) -> None:
    world = run(actions, ring_cap, buffer_cap)
    seqs = stored_seqs(world)
    assert len(seqs) == len(set(seqs)), "stored twice"
    missing = set(range(world.taken)) - set(seqs)
    assert len(missing) <= world.ring.dropped + world.buffer_dropped
