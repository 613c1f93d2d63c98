"""What the daemon counts, for Prometheus: one prometheus-client registry per pipeline (never the
global one), its counters, and gauges read from the database at scrape time. Reads the database
(through Store) when scraped; serves nothing itself (service.py does).

Labels are feed ids, rule names, channel names and fixed words, never URLs: a feed or channel
URL may carry a token.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import __version__
from .config import Config
from .errors import StorageError
from .models import Match
from .store import Store

log = logging.getLogger(__name__)

# One ``_created`` series beside every counter doubles what is stored for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]

POLL_OUTCOMES = ("ok", "not_modified", "error", "gone")
DELIVERY_OUTCOMES = ("sent", "failed", "dead")
FEED_HEALTH = ("ok", "failing", "gone", "never")
# A poll waits for a slot, fetches (timeout 30 s by default) and parses (30 s).
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The daemon's counters, each series at zero from the first scrape for every configured
    feed, rule and channel (so that rates and ratios exist at once), plus the outbox and feed
    health gauges, computed from ``store`` at each scrape."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], datetime]) -> None:
        self.registry = registry = CollectorRegistry()
        feeds = [feed.id for feed in config.feeds]
        self.polls = Tally(
            "watcher_polls", "Feed polls, by outcome", {"feed": feeds, "outcome": POLL_OUTCOMES}
        )
        self.poll_duration = Histogram(
            "watcher_poll_duration_seconds",
            "Time a poll took, waiting for a free slot included",
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        self.articles = Tally("watcher_articles_stored", "New articles stored", {"feed": feeds})
        self.matches = Tally(
            "watcher_matches",
            "New articles a rule matched",
            {"rule": [rule.name for rule in config.rules]},
        )
        self.deliveries = Tally(
            "watcher_deliveries",
            "Delivery attempts: sent, failed (to be retried) or dead (given up)",
            {"channel": list(config.channels), "status": DELIVERY_OUTCOMES},
        )
        self.config_reloads = Counter(
            "watcher_config_reloads",
            "Config reloads (none yet: needs a restart)",
            registry=registry,
        )
        for tally in (self.polls, self.articles, self.matches, self.deliveries):
            registry.register(tally)
        Info("watcher", "The running watcher", registry=registry).info({"version": __version__})
        registry.register(_StoreGauges(store, config, clock))

    def polled(self, feed_id: str, outcome: str, seconds: float) -> None:
        self.polls.inc((feed_id, outcome))
        self.poll_duration.observe(seconds)

    def stored(self, feed_id: str, new: int, matches: Iterable[Match]) -> None:
        self.articles.inc((feed_id,), new)
        for match in matches:
            self.matches.inc((match.rule,))

    def delivered(self, channel: str, status: str, count: int) -> None:
        if count:
            self.deliveries.inc((channel, status), count)

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format. Queries the database: call it off the loop."""
        return generate_latest(self.registry)


class Tally:
    """A counter whose series are plain numbers in a dict, turned into samples at scrape time.
    A prometheus-client labelled child costs about a kilobyte (a lock, a value object); 10,000
    feeds x 4 outcomes of them were 40 MB. Counted from the event loop only; a scrape in
    another thread reads a copy taken in one step."""

    def __init__(self, name: str, documentation: str, labels: Mapping[str, Sequence[str]]) -> None:
        """``labels``: each label's configured values; every combination is shown from the
        first scrape, at 0."""
        self.name, self.documentation = name, documentation
        self.labels = tuple(labels)
        self._configured = tuple(labels.values())
        self._counts: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        self._counts[labels] = self._counts.get(labels, 0) + amount

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterator[Metric]:
        counts = dict.copy(self._counts)
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels in itertools.product(*self._configured):
            family.add_metric(labels, counts.pop(labels, 0))
        for labels, value in sorted(counts.items()):  # labels not configured (a removed feed)
            family.add_metric(labels, value)
        yield family


class _StoreGauges:
    """Outbox depth, the age of the oldest waiting alert, and feed health, read from the
    database at each scrape. A database error leaves them out of that scrape (and is logged)
    rather than failing it or reporting a made-up zero."""

    def __init__(self, store: Store, config: Config, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.feed_ids = [feed.id for feed in config.feeds]
        self.channels = list(config.channels)
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        """The names, for the registry's duplicate check, without querying the database."""
        yield from (GaugeMetricFamily(name, "") for name, _ in _GAUGES)

    def collect(self) -> Iterator[Metric]:
        for name, read in _GAUGES:
            try:
                yield read(self)
            except StorageError as exc:
                log.warning("metrics: %s left out of this scrape: %s", name, exc)

    def outbox_pending(self) -> Metric:
        depth = self.store.outbox_depth()
        family = GaugeMetricFamily(
            "watcher_outbox_pending",
            "Alerts waiting to be sent (held for digests or quiet hours included)",
            labels=("channel",),
        )
        for channel in sorted({*self.channels, *depth}):
            family.add_metric((channel,), depth.get(channel, 0))
        return family

    def oldest_pending(self) -> Metric:
        now = self.clock()
        oldest = self.store.oldest_waiting(now)
        age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        return GaugeMetricFamily(
            "watcher_outbox_oldest_pending_seconds",
            "Age of the oldest alert that should have been sent (0: none waiting)",
            value=age,
        )

    def feeds(self) -> Metric:
        counts = self.store.feed_health(self.feed_ids)
        family = GaugeMetricFamily(
            "watcher_feeds", "Configured feeds by health", labels=("health",)
        )
        for health in FEED_HEALTH:
            family.add_metric((health,), counts.get(health, 0))
        return family


_GAUGES: Sequence[tuple[str, Callable[[_StoreGauges], Metric]]] = (
    ("watcher_outbox_pending", _StoreGauges.outbox_pending),
    ("watcher_outbox_oldest_pending_seconds", _StoreGauges.oldest_pending),
    ("watcher_feeds", _StoreGauges.feeds),
)
