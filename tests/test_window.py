"""The uplink's plan of what to send, without a stream."""

import pytest

from edge.window import Lane, Limits, RateMeter, SendPlan, backoff_delay, drain_eta_s


def rec(n: int) -> bytes:
    return b"r%d" % n


def plan(**limits: float) -> SendPlan:
    return SendPlan(Limits(**{"max_batches": 4, "max_samples": 3, "linger_s": 0.0, **limits}))  # type: ignore[arg-type]


def test_backlog_then_live_alternate_and_both_progress() -> None:
    p = plan()
    p.restart(newest_id=10)  # ids 1..10 are on disk
    p.committed(11, [rec(11), rec(12)], now=0.0)
    assert p.backlog_range() == (0, 11, 3)
    lanes = []
    for _ in range(3):
        lane = p.next_lane(now=1.0)
        lanes.append(lane)
        if lane is Lane.LIVE:
            assert p.take_live().ids == [11, 12]
        else:
            out = p.backlog_read([(i, rec(i)) for i in range(p.backlog_range()[0] + 1, 11)][:3])
            assert out is not None
    assert Lane.LIVE in lanes
    assert Lane.BACKLOG in lanes
    assert p.backlog_range()[0] > 0, "the backlog cursor moved"


def test_an_ack_frees_the_ids_of_its_batch_once() -> None:
    p = plan()
    p.restart(newest_id=0)
    p.committed(1, [rec(1), rec(2)], now=0.0)
    batch = p.take_live()
    assert p.acked(batch.batch_id) == [1, 2]
    assert p.acked(batch.batch_id) == []
    assert p.acked(999) == []


def test_restart_turns_everything_unacked_into_backlog() -> None:
    p = plan()
    p.restart(newest_id=0)
    p.committed(1, [rec(1), rec(2)], now=0.0)
    batch = p.take_live()
    p.committed(3, [rec(3)], now=0.0)
    p.restart(newest_id=3)
    assert p.acked(batch.batch_id) == [], "an ack from the old stream frees nothing"
    assert p.live_records == 0
    assert p.backlog_range() == (0, 4, 3)
    p.committed(3, [rec(3)], now=0.0)  # a late notice of an old commit
    assert p.live_records == 0, "ids below the live floor are backlog"


def test_the_window_bounds_batches_in_flight() -> None:
    p = plan(max_batches=2, linger_s=0.0)
    p.restart(newest_id=0)
    p.committed(1, [rec(i) for i in range(1, 8)], now=0.0)
    p.take_live()
    p.take_live()
    assert p.next_lane(now=0.0) is None
    assert p.wait_s(now=0.0) is None


def test_batches_are_bounded_by_samples_and_bytes() -> None:
    p = plan(max_samples=100, max_bytes=10)
    p.restart(newest_id=0)
    p.committed(1, [b"12345", b"12345", b"12345"], now=0.0)
    assert p.take_live().ids == [1, 2]
    assert p.take_live().ids == [3]


def test_a_live_batch_goes_when_full_or_when_it_has_lingered() -> None:
    p = plan(max_samples=3, linger_s=0.5)
    p.restart(newest_id=0)
    assert p.backlog_read([]) is None  # nothing on disk
    p.committed(1, [rec(1)], now=1.0)
    assert p.next_lane(now=1.1) is None
    assert p.wait_s(now=1.1) == pytest.approx(0.4)
    assert p.next_lane(now=1.5) is Lane.LIVE
    assert p.take_live().ids == [1]
    p.committed(2, [rec(2), rec(3), rec(4)], now=2.0)
    assert p.next_lane(now=2.0) is Lane.LIVE, "a full batch goes at once"


def test_an_overflowing_live_lane_hands_its_oldest_to_the_backlog() -> None:
    p = SendPlan(Limits(max_samples=3, live_max_records=4))
    p.restart(newest_id=0)
    p.backlog_read([])
    p.committed(1, [rec(i) for i in range(1, 7)], now=0.0)
    assert p.live_records == 4
    assert p.live_floor == 3
    assert p.backlog_range() == (0, 3, 3)
    assert p.next_lane(now=0.0) is not None


def test_empty_backlog_read_ends_the_backlog() -> None:
    p = plan()
    p.restart(newest_id=5)
    assert p.backlog_read([(4, rec(4))]) is not None
    assert p.next_lane(now=0.0) is None


def test_rate_meter_and_eta() -> None:
    meter = RateMeter(half_life_s=1.0, min_interval_s=1.0)
    meter.add(0, now=0.0)
    meter.add(1000, now=1.0)
    assert 400 < meter.per_second < 600
    for t in range(2, 20):
        meter.add(1000, now=float(t))
    assert 990 < meter.per_second <= 1000
    assert drain_eta_s(5000, 1000.0) == 5.0
    assert drain_eta_s(0, 0.0) == 0.0
    assert drain_eta_s(10, 0.0) is None


def test_backoff_grows_exponentially_to_the_cap_with_full_jitter() -> None:
    assert backoff_delay(0, 0.5, 30, 0.999) < 0.5
    assert backoff_delay(3, 0.5, 30, 0.5) == 2.0
    assert backoff_delay(50, 0.5, 30, 0.5) == 15.0
    assert backoff_delay(4, 0.5, 30, 0.0) == 0.0


def test_skip_to_turns_the_live_lane_and_the_gap_into_backlog() -> None:
    p = plan()
    p.restart(newest_id=0)
    assert p.backlog_read([]) is None
    p.committed(1, [rec(1), rec(2)], now=0.0)
    p.skip_to(10)  # ids 3..9 never reached the plan
    assert p.live_records == 0
    assert p.backlog_range() == (0, 10, 3)
    p.committed(10, [rec(10)], now=0.0)
    assert p.live_records == 1
    p.skip_to(5)  # an older skip changes nothing
    assert p.live_floor == 10
