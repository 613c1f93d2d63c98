"""Pure decisions about time: when to poll a feed next, when to retry a delivery. No I/O.

Kept apart from the pipeline (which only orchestrates) so that each decision is a small
function of its inputs, tested with tables, with the clock and the randomness passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

FEED_BACKOFF_CAP = timedelta(hours=4)
DELIVERY_RETRY_BASE = timedelta(seconds=30)
DELIVERY_RETRY_CAP = timedelta(hours=1)
DELIVERY_MAX_ATTEMPTS = 10


def jitter(interval: timedelta, rng: random.Random) -> timedelta:
    """Up to 10% of the interval (at most 60 s), so feeds added together drift apart."""
    spread = min(interval.total_seconds() * 0.1, 60.0)
    return timedelta(seconds=rng.uniform(0, spread))


def next_poll(now: datetime, interval: timedelta, failures: int, rng: random.Random) -> datetime:
    """After a success (``failures == 0``) poll again after one interval; after failures back
    off exponentially up to a cap, and keep probing at the cap forever: never give up."""
    delay = interval
    if failures > 0:
        backoff = interval * (1 << min(failures - 1, 16))
        delay = max(interval, min(backoff, FEED_BACKOFF_CAP))
    return now + delay + jitter(delay, rng)


def first_poll(
    now: datetime, scheduled: datetime | None, interval: timedelta, rng: random.Random
) -> datetime:
    """On start, keep a poll time the database already has; otherwise start soon, spread over a
    few seconds so a restart does not hit every feed in the same instant."""
    if scheduled is not None and scheduled > now:
        return min(scheduled, now + interval + jitter(interval, rng))
    return now + timedelta(seconds=rng.uniform(0, min(5.0, interval.total_seconds())))


@dataclass(frozen=True, slots=True)
class GiveUp:
    """When a failing delivery is declared dead: after this many attempts, or this long
    after the alert was queued, whichever comes first."""

    attempts: int = DELIVERY_MAX_ATTEMPTS
    age: timedelta = timedelta(days=1)


def delivery_retry(
    now: datetime,
    attempts: int,
    rng: random.Random,
    *,
    queued_at: datetime | None = None,
    give_up: GiveUp = GiveUp(),
) -> datetime | None:
    """When to try a failed delivery again (``attempts`` made so far), or None: give up."""
    if attempts >= give_up.attempts:
        return None
    delay = min(DELIVERY_RETRY_BASE * (1 << min(max(attempts - 1, 0), 16)), DELIVERY_RETRY_CAP)
    retry_at = now + delay * rng.uniform(0.8, 1.2)
    if queued_at is not None and retry_at - queued_at > give_up.age:
        return None
    return retry_at
