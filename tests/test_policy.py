from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

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


# --- digests, quiet hours, rate limits, health -------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("spec", "zone", "now", "expected"),
    [
        ("hourly", "UTC", NOW, datetime(2026, 11, 28, 13, 0, tzinfo=UTC)),  # strictly after
        ("hourly", "UTC", NOW + timedelta(minutes=59), datetime(2026, 11, 28, 13, 0, tzinfo=UTC)),
        # 08:00 in Berlin is 07:00 UTC in winter...
        ("daily 08:00", "Europe/Berlin", NOW, datetime(2026, 11, 29, 7, 0, tzinfo=UTC)),
        # ...and 06:00 UTC in summer
        (
            "daily 08:00",
            "Europe/Berlin",
            datetime(2026, 7, 1, 5, 0, tzinfo=UTC),
            datetime(2026, 7, 1, 6, 0, tzinfo=UTC),
        ),
        # a Saturday: the next weekday 07:30 is Monday
        ("30 7 * * mon-fri", "UTC", NOW, datetime(2026, 11, 30, 7, 30, tzinfo=UTC)),
        ("daily   18:15", "UTC", NOW, datetime(2026, 11, 28, 18, 15, tzinfo=UTC)),
    ],
)
def test_digest_schedule(spec: str, zone: str, now: datetime, expected: datetime) -> None:
    assert policy.Schedule(spec, ZoneInfo(zone)).next_after(now) == expected


@pytest.mark.parametrize("spec", ["weekly", "daily 25:00", "daily 8", "0 8 * *", "61 * * * *"])
def test_bad_digest_schedule(spec: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        policy.Schedule(spec, UTC_ZONE)


@pytest.mark.parametrize(
    ("spec", "local", "end"),
    [
        ("22:00-07:00", "2026-11-28 23:30", "2026-11-29 07:00"),  # evening part
        ("22:00-07:00", "2026-11-29 03:00", "2026-11-29 07:00"),  # morning part
        ("22:00-07:00", "2026-11-28 22:00", "2026-11-29 07:00"),  # the start is quiet
        ("22:00-07:00", "2026-11-29 07:00", None),  # the end is not
        ("22:00-07:00", "2026-11-28 12:00", None),
        ("12:00-14:00", "2026-11-28 13:59", "2026-11-28 14:00"),
        ("12:00-14:00", "2026-11-28 11:59", None),
    ],
)
def test_quiet_hours_in_their_timezone(spec: str, local: str, end: str | None) -> None:
    quiet = policy.QuietHours.parse(spec, BERLIN)
    now = datetime.fromisoformat(local).replace(tzinfo=BERLIN)
    expected = datetime.fromisoformat(end).replace(tzinfo=BERLIN) if end else None
    assert quiet.end_of(now.astimezone(UTC)) == expected


@pytest.mark.parametrize("spec", ["22:00", "22-07", "22:00-22:00", "25:00-07:00"])
def test_bad_quiet_hours(spec: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        policy.QuietHours.parse(spec, UTC_ZONE)


@pytest.mark.parametrize(
    ("spec", "count", "seconds"),
    [("5/minute", 5, 60), ("5/min", 5, 60), ("20 per hour", 20, 3600), ("100/d", 100, 86400)],
)
def test_rate_limit_spelling(spec: str, count: int, seconds: int) -> None:
    assert policy.RateLimit.parse(spec) == policy.RateLimit(count, timedelta(seconds=seconds))


@pytest.mark.parametrize("spec", ["5", "0/minute", "5/fortnight", "five/minute"])
def test_bad_rate_limit(spec: str) -> None:
    with pytest.raises(ValueError, match="expected a limit"):
        policy.RateLimit.parse(spec)


def test_send_window_slides() -> None:
    window = policy.SendWindow(policy.RateLimit(2, timedelta(minutes=1)))
    assert window.room(NOW) == 2
    window.record(NOW)
    window.record(NOW + timedelta(seconds=10))
    assert window.room(NOW + timedelta(seconds=20)) == 0
    assert window.next_room(NOW + timedelta(seconds=20)) == NOW + timedelta(minutes=1)
    assert window.room(NOW + timedelta(minutes=1)) == 1  # the first send left the window
    assert window.room(NOW + timedelta(minutes=1, seconds=10)) == 2


def test_health_alarm_after_failures_or_time() -> None:
    health = policy.HealthPolicy(3, timedelta(hours=1), ("ops",))
    assert not health.alarming(2, NOW, NOW + timedelta(minutes=59))
    assert health.alarming(3, NOW, NOW)
    assert health.alarming(1, NOW, NOW + timedelta(hours=1))
    assert not policy.HealthPolicy(1, timedelta(0), ()).alarming(9, NOW, NOW)  # nobody to tell
