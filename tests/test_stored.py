"""The `stored` watermark: never claims a sample the board may still need."""

from hypothesis import given
from hypothesis import strategies as st

from edge.stored import Mark, StoredTracker


def test_contiguous_from_zero() -> None:
    tracker = StoredTracker()
    for seq in (0, 1, 2):
        tracker.durable("d", 5, seq)
    assert tracker.mark("d", 5) == 2
    assert tracker.due(now=10.0) == [("d", 5, 2)]


def test_a_gap_holds_the_mark_until_filled() -> None:
    tracker = StoredTracker()
    for seq in (0, 1, 3, 4):
        tracker.durable("d", 1, seq)
    assert tracker.mark("d", 1) == 1
    tracker.durable("d", 1, 2)
    assert tracker.mark("d", 1) == 4


def test_lo_skips_what_the_board_no_longer_holds() -> None:
    tracker = StoredTracker()
    # The board's ring dropped 0..9 while offline; it says its oldest is 10.
    tracker.durable("d", 1, 10, lo=10)
    assert tracker.mark("d", 1) == 10
    # A restarted edge learns where the board stands from the same hint.
    fresh = StoredTracker()
    fresh.durable("d", 1, 500, lo=480)
    assert fresh.mark("d", 1) == 479


def test_announcements_are_rate_limited_and_only_on_change() -> None:
    tracker = StoredTracker(min_interval_s=1.0)
    tracker.durable("d", 1, 0)
    assert tracker.due(now=100.0) == [("d", 1, 0)]
    tracker.durable("d", 1, 1)
    assert tracker.due(now=100.5) == []
    assert tracker.due(now=101.0) == [("d", 1, 1)]
    assert tracker.due(now=105.0) == []


def test_a_resend_of_covered_samples_triggers_a_new_announcement() -> None:
    tracker = StoredTracker(min_interval_s=0.0)
    tracker.durable("d", 1, 0)
    assert tracker.due(now=1.0) == [("d", 1, 0)]
    tracker.durable("d", 1, 0)  # the board missed the message and sent again
    assert tracker.due(now=2.0) == [("d", 1, 0)]


def test_reannounce_after_reconnect() -> None:
    tracker = StoredTracker(min_interval_s=0.0)
    tracker.durable("d", 1, 0)
    tracker.due(now=1.0)
    tracker.reannounce("d")
    assert tracker.due(now=2.0) == [("d", 1, 0)]


@given(
    st.lists(st.integers(0, 40), max_size=80),
    st.lists(st.integers(0, 40), max_size=5),
)
def test_the_mark_never_covers_a_held_undelivered_sample(
    arrivals: list[int], drops: list[int]
) -> None:
    """The board holds every seq below 41 except those it dropped (`drops`
    are the lowest ones, as a drop-oldest ring loses them). Whatever order
    samples arrive in, every seq at or below the mark was delivered or
    dropped by the board."""
    dropped = set(range(min(drops))) if drops else set()
    lo = min(drops) if drops else 0
    tracker = StoredTracker()
    delivered: set[int] = set()
    for seq in arrivals:
        if seq in dropped:
            continue
        delivered.add(seq)
        tracker.durable("d", 1, seq, lo=lo)
    mark = tracker.mark("d", 1)
    assert all(seq in delivered or seq in dropped for seq in range(mark + 1))
    # And it is as high as it can be.
    assert mark + 1 not in delivered


def test_changed_marks_are_reported_once_for_persisting() -> None:
    tracker = StoredTracker()
    tracker.durable("d", 1, 0)
    tracker.durable("d", 1, 2)
    assert tracker.take_changed() == [Mark("d", 1, 0, (2,))]
    assert tracker.take_changed() == []
    tracker.durable("d", 1, 0)  # a duplicate moves nothing
    assert tracker.take_changed() == []


def test_a_restored_tracker_continues_where_the_last_one_stopped() -> None:
    first = StoredTracker()
    for seq in (0, 1, 2, 5):
        first.durable("d", 7, seq)
    persisted = first.take_changed()
    again = StoredTracker(min_interval_s=0.0)
    again.restore(persisted)
    assert again.mark("d", 7) == 2
    again.durable("d", 7, 3)
    again.durable("d", 7, 4)
    assert again.mark("d", 7) == 5, "the pending seq survived the restart"
    assert again.due(now=1.0) == [("d", 7, 5)]


def test_old_boots_are_forgotten_and_that_is_persisted() -> None:
    tracker = StoredTracker()
    for boot in range(5):
        tracker.durable("d", boot, 0)
    changed = tracker.take_changed()
    assert Mark("d", 0, None) in changed
    assert tracker.mark("d", 0) == -1
