from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from watcher import policy

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TEN_MIN = timedelta(minutes=10)


class NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a  # the low end: no jitter, and a retry factor of 0.8


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        (0, TEN_MIN),
        (1, TEN_MIN),
        (2, 2 * TEN_MIN),
        (3, 4 * TEN_MIN),
        (5, 16 * TEN_MIN),
        (6, timedelta(hours=4)),  # capped
        (60, timedelta(hours=4)),  # and keeps probing at the cap, never gives up
    ],
)
def test_next_poll_backs_off_to_a_cap(failures: int, delay: timedelta) -> None:
    assert policy.next_poll(NOW, TEN_MIN, failures, NoJitter()) == NOW + delay


def test_backoff_never_polls_faster_than_the_interval() -> None:
    daily = timedelta(days=1)
    assert policy.next_poll(NOW, daily, 3, NoJitter()) == NOW + daily


def test_jitter_is_bounded() -> None:
    rng = random.Random(7)
    for interval in (timedelta(seconds=5), TEN_MIN, timedelta(hours=6)):
        for _ in range(200):
            extra = policy.next_poll(NOW, interval, 0, rng) - NOW - interval
            assert timedelta(0) <= extra <= min(interval * 0.1, timedelta(seconds=60))


def test_first_poll_keeps_a_stored_schedule_but_never_beyond_one_interval() -> None:
    rng = NoJitter()
    assert policy.first_poll(NOW, NOW + timedelta(minutes=3), TEN_MIN, rng) == NOW + timedelta(
        minutes=3
    )
    assert policy.first_poll(NOW, NOW + timedelta(days=3), TEN_MIN, rng) == NOW + TEN_MIN
    assert policy.first_poll(NOW, None, TEN_MIN, rng) == NOW
    assert policy.first_poll(NOW, NOW - TEN_MIN, TEN_MIN, rng) == NOW


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [
        (1, timedelta(seconds=30)),
        (2, timedelta(seconds=60)),
        (4, timedelta(seconds=240)),
        (9, timedelta(hours=1)),
    ],
)
def test_delivery_retries_back_off(attempts: int, delay: timedelta) -> None:
    assert policy.delivery_retry(NOW, attempts, NoJitter()) == NOW + delay * 0.8


def test_delivery_gives_up_after_the_limit() -> None:
    assert policy.delivery_retry(NOW, policy.DELIVERY_MAX_ATTEMPTS, NoJitter()) is None


def test_delivery_gives_up_at_the_configured_attempts_or_age() -> None:
    give_up = policy.GiveUp(attempts=3, age=timedelta(minutes=5))
    rng = NoJitter()
    assert policy.delivery_retry(NOW, 2, rng, give_up=give_up) is not None
    assert policy.delivery_retry(NOW, 3, rng, give_up=give_up) is None
    fresh = NOW - timedelta(minutes=1)
    assert policy.delivery_retry(NOW, 1, rng, queued_at=fresh, give_up=give_up) is not None
    # The next try would fall past the age limit: dead now, not after one more wait.
    old = NOW - timedelta(minutes=4, seconds=50)
    assert policy.delivery_retry(NOW, 1, rng, queued_at=old, give_up=give_up) is None
