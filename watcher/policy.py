"""Pure decisions about time: when to poll a feed next, when to retry a delivery, when a held
alert goes out (digests, quiet hours, rate limits). No I/O.

Kept apart from the pipeline (which only orchestrates) so that each decision is a small
function of its inputs, tested with tables, with the clock and the randomness passed in.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

FEED_BACKOFF_CAP = timedelta(hours=4)
DELIVERY_RETRY_BASE = timedelta(seconds=30)
DELIVERY_RETRY_CAP = timedelta(hours=1)
DELIVERY_MAX_ATTEMPTS = 10


def jitter(interval: timedelta, rng: random.Random) -> timedelta:
    """Up to 10% of the interval (at most 60 s), so feeds added together drift apart."""
    spread = min(interval.total_seconds() * 0.1, 60.0)
    return timedelta(seconds=rng.uniform(0, spread))


@dataclass(frozen=True, slots=True)
class FeedHints:
    """What a feed says about its own schedule: how long its answer stays fresh (RSS ``<ttl>``
    or Cache-Control max-age, the longer), and the hours (UTC) and weekdays not to poll in."""

    ttl: timedelta | None = None
    skip_hours: frozenset[int] = frozenset()
    skip_days: frozenset[int] = frozenset()  # 0 = Monday


def next_poll(
    now: datetime,
    interval: timedelta,
    failures: int,
    rng: random.Random,
    hints: FeedHints = FeedHints(),
    max_hinted: timedelta = timedelta(hours=6),
) -> datetime:
    """After a success (``failures == 0``) poll again after one interval; after failures back
    off exponentially up to a cap, and keep probing at the cap forever: never give up.

    A feed's ttl may lengthen the interval (up to ``max_hinted``), never shorten it; its skip
    hours and days push the poll to the next hour it allows."""
    delay = interval
    if failures > 0:
        backoff = interval * (1 << min(failures - 1, 16))
        delay = max(interval, min(backoff, FEED_BACKOFF_CAP))
    elif hints.ttl is not None:
        delay = max(interval, min(hints.ttl, max_hinted))
    return _allowed(now + delay + jitter(delay, rng), hints)


def _allowed(at: datetime, hints: FeedHints) -> datetime:
    """``at``, or the start of the first hour after it that the feed does not skip."""
    if not (hints.skip_hours or hints.skip_days):
        return at
    candidate = at
    for _ in range(24 * 8):
        utc = candidate.astimezone(UTC)
        if utc.hour not in hints.skip_hours and utc.weekday() not in hints.skip_days:
            return candidate
        candidate = (utc + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return at  # a feed that skips every hour of the week is not taken at its word


@dataclass(frozen=True, slots=True)
class GiveUp:
    """When a failing delivery is declared dead: after this many attempts, or this long
    after the alert was queued, whichever comes first."""

    attempts: int = DELIVERY_MAX_ATTEMPTS
    age: timedelta = timedelta(days=1)

    def reached(self, attempts: int, queued_at: datetime | None, retry_at: datetime) -> bool:
        """Whether a delivery that failed ``attempts`` times is dead rather than retried."""
        too_old = queued_at is not None and retry_at - queued_at > self.age
        return attempts >= self.attempts or too_old


def delivery_retry(
    now: datetime,
    attempts: int,
    rng: random.Random,
    *,
    queued_at: datetime | None = None,
    give_up: GiveUp = GiveUp(),
) -> datetime | None:
    """When to try a failed delivery again (``attempts`` made so far), or None: give up."""
    retry_at = now + retry_delay(attempts, rng)
    return None if give_up.reached(attempts, queued_at, retry_at) else retry_at


def retry_delay(attempts: int, rng: random.Random) -> timedelta:
    """30 s doubling per attempt up to an hour, give or take a fifth."""
    delay = min(DELIVERY_RETRY_BASE * (1 << min(max(attempts - 1, 0), 16)), DELIVERY_RETRY_CAP)
    return delay * rng.uniform(0.8, 1.2)


# --- delivery policy: digests, quiet hours, rate limits -----------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a rule's digest goes out: ``"hourly"``, ``"daily 08:00"`` or a five-field cron
    expression (``"30 7 * * mon-fri"``), in a timezone. APScheduler's cron arithmetic does the
    calendar work (month lengths, daylight saving)."""

    spec: str
    zone: ZoneInfo

    def __post_init__(self) -> None:
        self._trigger()  # raises ValueError now, at config time, not at the first match

    def _trigger(self) -> CronTrigger:
        text = " ".join(self.spec.split())
        if text == "hourly":
            return CronTrigger(minute=0, timezone=self.zone)
        if text.startswith("daily"):
            at = _clock_time(text.removeprefix("daily").strip() or "00:00")
            return CronTrigger(hour=at.hour, minute=at.minute, timezone=self.zone)
        try:
            return CronTrigger.from_crontab(text, timezone=self.zone)
        except ValueError as exc:
            raise ValueError(
                "expected 'instant', 'hourly', 'daily HH:MM' or a cron expression such as "
                f"'0 8 * * mon-fri' ({exc})"
            ) from None

    def next_after(self, now: datetime) -> datetime:
        """The first digest time strictly after ``now``, in UTC."""
        after = now + timedelta(seconds=1)
        fire: datetime | None = self._trigger().get_next_fire_time(None, after)
        if fire is None:  # a cron expression that never fires again: hold for a year
            return now + timedelta(days=365)
        return fire.astimezone(UTC)

    def describe(self) -> str:
        return f"{self.spec} ({self.zone.key})"


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily span, such as ``"22:00-07:00"``, in which alerts are held for a summary."""

    start: time
    end: time
    zone: ZoneInfo

    @classmethod
    def parse(cls, spec: str, zone: ZoneInfo) -> QuietHours:
        start, _, end = spec.partition("-")
        try:
            quiet = cls(_clock_time(start.strip()), _clock_time(end.strip()), zone)
        except ValueError:
            raise ValueError("expected a span such as '22:00-07:00' (HH:MM-HH:MM)") from None
        if quiet.start == quiet.end:
            raise ValueError("expected a span such as '22:00-07:00' whose ends differ")
        return quiet

    def end_of(self, now: datetime) -> datetime | None:
        """When the quiet span that ``now`` falls in ends (UTC), or None: ``now`` is not quiet."""
        local = now.astimezone(self.zone)
        today = local.time().replace(tzinfo=None)
        if self.start < self.end:  # within one day, e.g. 12:00-14:00
            if not self.start <= today < self.end:
                return None
            end_day = local.date()
        elif today >= self.start:  # across midnight, evening part
            end_day = local.date() + timedelta(days=1)
        elif today < self.end:  # across midnight, morning part
            end_day = local.date()
        else:
            return None
        return datetime.combine(end_day, self.end, self.zone).astimezone(UTC)

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} ({self.zone.key})"


_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(second|sec|s|minute|min|m|hour|h|day|d)\s*$")
_RATE_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_RATE_PERIODS |= {"h": 3600, "hour": 3600, "d": 86400, "day": 86400}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` messages per ``period`` to one channel, e.g. ``"5/minute"``."""

    count: int
    period: timedelta

    @classmethod
    def parse(cls, spec: str) -> RateLimit:
        found = _RATE.match(spec.lower())
        if not found or int(found[1]) < 1:
            raise ValueError("expected a limit such as '5/minute', '20/hour' or '100/day'")
        return cls(int(found[1]), timedelta(seconds=_RATE_PERIODS[found[2]]))

    def describe(self) -> str:
        unit = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
        return f"{self.count} per {unit[int(self.period.total_seconds())]}"


class SendWindow:
    """The messages recently sent to one channel, to keep it under its :class:`RateLimit`.
    Kept in memory: after a restart a channel may get one period's worth more."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._sent: deque[datetime] = deque()

    def room(self, now: datetime) -> int:
        """How many messages may go now."""
        while self._sent and self._sent[0] <= now - self.limit.period:
            self._sent.popleft()
        return max(self.limit.count - len(self._sent), 0)

    def next_room(self, now: datetime) -> datetime:
        """When the window has room again once what may go now has gone."""
        return (self._sent[0] if self._sent else now) + self.limit.period

    def record(self, now: datetime) -> None:
        self._sent.append(now)


def _clock_time(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"expected a time of day such as '08:00', got {text!r}") from None


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """When a failing feed is worth telling someone: after ``failures`` failed polls in a row,
    or once it has been failing for ``after``, whichever comes first; once per streak."""

    failures: int = 3
    after: timedelta = timedelta(hours=1)
    channels: tuple[str, ...] = ()

    def alarming(self, failures: int, failing_since: datetime, now: datetime) -> bool:
        return bool(self.channels) and (
            failures >= self.failures or now - failing_since >= self.after
        )
