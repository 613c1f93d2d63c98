"""What the daemon counts, for Prometheus: one prometheus-client registry per pipeline (never the
global one), its counters, and gauges read from the database at scrape time. Reads the database
(through Store) when scraped; serves nothing itself (service.py does).

Labels are feed ids, rule names, channel names and fixed words, never URLs: a feed or channel
URL may carry a token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

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
    """The daemon's counters, each series created at zero for every configured feed, rule and
    channel (so that rates and ratios exist from the first scrape), plus the outbox and feed
    health gauges, computed from ``store`` at each scrape."""

    def __init__(self, config: Config, store: Store, clock: Callable[[], datetime]) -> None:
        self.registry = registry = CollectorRegistry()
        self.polls = Counter(
            "watcher_polls", "Feed polls, by outcome", ("feed", "outcome"), registry=registry
        )
        self.poll_duration = Histogram(
            "watcher_poll_duration_seconds",
            "Time a poll took, waiting for a free slot included",
            buckets=POLL_BUCKETS,
            registry=registry,
        )
        self.articles = Counter(
            "watcher_articles_stored", "New articles stored", ("feed",), registry=registry
        )
        self.matches = Counter(
            "watcher_matches", "New articles a rule matched", ("rule",), registry=registry
        )
        self.deliveries = Counter(
            "watcher_deliveries",
            "Delivery attempts: sent, failed (to be retried) or dead (given up)",
            ("channel", "status"),
            registry=registry,
        )
        self.config_reloads = Counter(
            "watcher_config_reloads",
            "Config reloads (none yet: needs a restart)",
            registry=registry,
        )
        Info("watcher", "The running watcher", registry=registry).info({"version": __version__})
        registry.register(_StoreGauges(store, config, clock))
        self._zero(config)

    def _zero(self, config: Config) -> None:
        for feed in config.feeds:
            self.articles.labels(feed.id)
            for outcome in POLL_OUTCOMES:
                self.polls.labels(feed.id, outcome)
        for rule in config.rules:
            self.matches.labels(rule.name)
        for channel in config.channels:
            for status in DELIVERY_OUTCOMES:
                self.deliveries.labels(channel, status)

    def polled(self, feed_id: str, outcome: str, seconds: float) -> None:
        self.polls.labels(feed_id, outcome).inc()
        self.poll_duration.observe(seconds)

    def stored(self, feed_id: str, new: int, matches: Iterable[Match]) -> None:
        self.articles.labels(feed_id).inc(new)
        for match in matches:
            self.matches.labels(match.rule).inc()

    def delivered(self, channel: str, status: str, count: int) -> None:
        if count:
            self.deliveries.labels(channel, status).inc(count)

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format. Queries the database: call it off the loop."""
        return generate_latest(self.registry)


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
