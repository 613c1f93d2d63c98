"""One feed through the stages, and the outbox through Apprise. Orchestrates; decides nothing.

    poll(feed):   fetch (conditional GET) -> parse (bytes -> articles)
                  -> store.ingest (new articles + their matches + deliveries, one transaction)
                  -> record the poll on the feed
    deliver_due(): per channel, concurrently: store.due_deliveries -> notify.render
                  -> channel.send -> store.record_delivery (sent, retrying or dead)

A feed's failure is recorded on that feed and reported; it never escapes to stop the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx

from . import policy
from .config import Config, FeedConfig, Rule
from .db import utcnow
from .errors import FeedError, WatcherError
from .fetch import FetchResult, Limits, fetch
from .models import Article, Delivery, Match, ParsedFeed
from .notify import Channels, render
from .parse import parse_feed
from .rules import Document, RuleSet
from .store import Matcher, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class PollReport:
    feed_id: str
    outcome: str  # "ok", "not_modified" or "error"
    new: int = 0
    updated: int = 0
    matches: int = 0
    error: str | None = None
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0


def document_of(article: Article, feed: str) -> Document:
    """What the rules see of an article: every field they can scope to."""
    return Document(
        title=article.title,
        summary=article.summary,
        content=article.content,
        tags=article.tags,
        authors=article.authors,
        link=article.link or "",
        feed=feed,
    )


def compile_rules(rules: Sequence[Rule]) -> RuleSet:
    """``rules`` compiled together: an article's text is normalised once, and only the rules
    whose words occur in it are evaluated."""
    return RuleSet({rule.name: rule.query for rule in rules})


def matcher_for(rules: Sequence[Rule], ruleset: RuleSet, feed: str) -> Matcher:
    """The store's matcher for articles of ``feed``: rule hits become matches with channels."""
    by_name = {rule.name: rule for rule in rules}

    def match(article: Article) -> list[Match]:
        return [
            Match(rule=name, terms=terms, channels=by_name[name].channels)
            for name, terms in ruleset.match(document_of(article, feed))
        ]

    return match


def fetch_limits(config: Config) -> Limits:
    settings = config.settings
    return Limits(
        timeout=settings.timeout.total_seconds(),
        max_bytes=settings.max_response_bytes,
        max_redirects=settings.max_redirects,
    )


class Pipeline:
    def __init__(
        self,
        config: Config,
        store: Store,
        channels: Channels,
        client: httpx.AsyncClient,
        *,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.channels = channels
        self.client = client
        self.clock = clock
        self.rng = rng or random.Random()
        self.limits = fetch_limits(config)
        self.give_up = policy.GiveUp(
            config.settings.delivery_max_attempts, config.settings.delivery_max_age
        )
        self._poll_slots = asyncio.Semaphore(config.settings.concurrency)
        self._senders: dict[str, asyncio.Lock] = {}  # one sender per channel
        self._resend: set[str] = set()  # channels that got work while their sender was busy
        self.background: set[asyncio.Task[DeliveryReport]] = set()
        self.delivered = DeliveryReport()  # since start, for reports
        self._rulesets: dict[tuple[str, ...], RuleSet] = {}

    async def poll(self, feed: FeedConfig) -> PollReport:
        """Poll ``feed`` once; every outcome, failures included, is recorded on the feed."""
        async with self._poll_slots:
            try:
                report = await self._poll(feed)
            except FeedError as exc:
                report = PollReport(feed.id, "error", error=exc.message)
                await self._record_failure(feed, exc.message)
                log.warning("feed %s: %s error: %s", feed.id, exc.kind, exc.message)
        if report.matches:
            self._send_soon()
        return report

    def _send_soon(self) -> None:
        """Send new alerts now, without making the poll wait for slow channels."""
        task = asyncio.create_task(self._deliver_logged())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _deliver_logged(self) -> DeliveryReport:
        try:
            return await self.deliver_due()
        except WatcherError as exc:  # e.g. the database went away; the sweep tries again
            log.error("deliveries: %s", exc)
        except Exception:
            log.exception("deliveries: unexpected error (a bug in watcher; please report it)")
        return DeliveryReport()

    async def settle(self) -> None:
        """Wait for the sends that polls started."""
        while self.background:
            await asyncio.gather(*self.background, return_exceptions=True)

    async def _poll(self, feed: FeedConfig) -> PollReport:
        state = await asyncio.to_thread(self.store.feed_state, feed.id)
        result = await fetch(
            self.client,
            feed.url,
            limits=self.limits,
            etag=state.etag,
            last_modified=state.last_modified,
        )
        if result.not_modified:
            await self._record_success(feed, result, "not_modified")
            log.debug("feed %s: not modified", feed.id)
            return PollReport(feed.id, "not_modified")
        parsed = await asyncio.to_thread(self._parse, feed, result)
        alert = state.baselined or self.config.alert_backlog(feed)
        matcher = self._matcher(feed) if alert else None
        ingested = await asyncio.to_thread(
            self.store.ingest, feed.id, parsed.articles, now=self.clock(), matcher=matcher
        )
        await self._record_success(feed, result, "ok", title=parsed.title)
        if parsed.warning:
            log.warning("feed %s: partly malformed, kept what parsed: %s", feed.id, parsed.warning)
        log.info(
            "feed %s: %d entries, %d new%s, %d matched",
            feed.id,
            len(parsed.articles),
            ingested.new,
            "" if alert else " (first poll: stored without alerting)",
            ingested.matches,
        )
        return PollReport(
            feed.id,
            "ok",
            new=ingested.new,
            updated=ingested.updated,
            matches=ingested.matches,
            warning=parsed.warning,
        )

    def _matcher(self, feed: FeedConfig) -> Matcher:
        """Feeds watched by the same rules share one compiled RuleSet."""
        rules = self.config.rules_for(feed.id)
        key = tuple(rule.name for rule in rules)
        if key not in self._rulesets:
            self._rulesets[key] = compile_rules(rules)
        return matcher_for(rules, self._rulesets[key], feed.id)

    def _parse(self, feed: FeedConfig, result: FetchResult) -> ParsedFeed:
        return parse_feed(
            result.body,
            url=result.url,
            headers=result.headers,
            now=self.clock(),
            max_entries=self.config.settings.max_entries,
        )

    async def _record_success(
        self, feed: FeedConfig, result: FetchResult, outcome: str, title: str | None = None
    ) -> None:
        now = self.clock()
        await asyncio.to_thread(
            self.store.record_success,
            feed.id,
            now=now,
            outcome=outcome,
            next_poll_at=policy.next_poll(now, self.config.interval(feed), 0, self.rng),
            etag=result.etag,
            last_modified=result.last_modified,
            title=title,
        )

    async def _record_failure(self, feed: FeedConfig, error: str) -> None:
        now = self.clock()
        state = await asyncio.to_thread(self.store.feed_state, feed.id)
        next_at = policy.next_poll(
            now, self.config.interval(feed), state.consecutive_failures + 1, self.rng
        )
        await asyncio.to_thread(
            self.store.record_failure, feed.id, now=now, error=error, next_poll_at=next_at
        )

    async def deliver_due(self) -> DeliveryReport:
        """Send every delivery whose time has come. Each channel has its own sender, so a
        channel that is down or slow never holds up the others, and no alert goes twice."""
        channels = await asyncio.to_thread(self.store.due_channels, self.clock())
        reports = await asyncio.gather(*(self._drain(channel) for channel in channels))
        return DeliveryReport(sum(r.sent for r in reports), sum(r.failed for r in reports))

    async def _drain(self, channel: str) -> DeliveryReport:
        sender = self._senders.setdefault(channel, asyncio.Lock())
        if sender.locked():
            self._resend.add(channel)  # the busy sender looks again before it stops
            return DeliveryReport()
        sent = failed = 0
        async with sender:
            while not failed:
                self._resend.discard(channel)
                batch = await asyncio.to_thread(
                    self.store.due_deliveries, self.clock(), channel=channel, limit=20
                )
                for delivery in batch:
                    if not await self._deliver(delivery):
                        failed += 1  # the channel is in trouble: the rest wait for a retry
                        break
                    sent += 1
                if not batch and channel not in self._resend:
                    break
        self.delivered = DeliveryReport(self.delivered.sent + sent, self.delivered.failed + failed)
        return DeliveryReport(sent, failed)

    async def _deliver(self, delivery: Delivery) -> bool:
        if delivery.channel in self.channels:
            error = await self.channels.send(delivery.channel, render(delivery))
        else:
            error = f"channel {delivery.channel!r} is no longer configured"
        now = self.clock()
        retry_at = None
        if error is not None:
            retry_at = policy.delivery_retry(
                now,
                delivery.attempts + 1,
                self.rng,
                queued_at=delivery.queued_at,
                give_up=self.give_up,
            )
            log.warning(
                "channel %s: delivery %d for rule %s failed (%s): %s",
                delivery.channel,
                delivery.id,
                delivery.rule,
                "will retry" if retry_at else "giving up",
                error,
            )
        else:
            log.info(
                "channel %s: sent alert for rule %s, feed %s",
                delivery.channel,
                delivery.rule,
                delivery.feed_id,
            )
        await asyncio.to_thread(
            self.store.record_delivery, delivery.id, now=now, error=error, retry_at=retry_at
        )
        return error is None
