"""The uplink's in-flight bookkeeping and backoff, without a stream."""

from edge.window import InFlight, backoff_delay


def test_ack_returns_the_ids_of_its_batch_once() -> None:
    window = InFlight(max_batches=2)
    first = window.sent([1, 2, 3])
    second = window.sent([4, 5])
    assert window.full
    assert window.resume_after == 5
    assert window.acked(second) == [4, 5]
    assert window.acked(second) == [], "a repeated ack deletes nothing"
    assert window.acked(999) == []
    assert not window.full
    assert window.acked(first) == [1, 2, 3]


def test_reset_resends_everything_unacknowledged() -> None:
    window = InFlight(max_batches=8)
    batch = window.sent([7, 8])
    window.reset()
    assert window.resume_after == 0
    assert window.batches == 0
    assert window.acked(batch) == [], "an ack from the old stream deletes nothing"


def test_backoff_grows_exponentially_to_the_cap_with_full_jitter() -> None:
    assert backoff_delay(0, 0.5, 30, 0.999) < 0.5
    assert backoff_delay(3, 0.5, 30, 0.5) == 2.0
    assert backoff_delay(50, 0.5, 30, 0.5) == 15.0
    assert backoff_delay(4, 0.5, 30, 0.0) == 0.0
