"""One feed through the stages, and the outbox through Apprise. Orchestrates; decides nothing.

    poll(feed):   fetch (conditional GET) -> parse (bytes -> articles, in a worker process)
                  -> store.ingest (new articles + their matches + deliveries, one transaction)
                  -> record the poll on the feed
    deliver_due(): per channel, concurrently: store.due_deliveries -> hold what policy says
                  must wait (digests, quiet hours, rate limit) -> channel.send one message per
                  story (every rule it matched) or per batch -> store.record_deliveries (sent,
                  retrying or dead)

A feed's failure is recorded on that feed and reported; it never escapes to stop the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import ParamSpec, TypeVar

import httpx

from . import policy
from .config import Config, FeedConfig, Rule
from .db import utcnow
from .errors import FeedError, FetchError, WatcherError
from .fetch import FetchResult, HostGate, Limits, fetch
from .messages import Batch, Content, Health
from .metrics import Metrics
from .models import Article, Delivery, Match
from .notify import Channels
from .rules import Document, RuleSet
from .store import FeedState, Matcher, Store
from .workers import ParsePool

log = logging.getLogger(__name__)

# Threads for the store's calls, by database (see Pipeline.db); asyncio's default for others.
DATABASE_THREADS = {"sqlite": 2}
P = ParamSpec("P")
T = TypeVar("T")

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class PollReport:
    feed_id: str
    outcome: str  # "ok", "not_modified", "error", "gone"; "skipped" when stopping
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


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """Rules compiled together: an article's text is normalised once, and only the rules whose
    words occur in it are evaluated."""

    ruleset: RuleSet
    channels: dict[str, tuple[str, ...]]  # rule name -> its channels

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> CompiledRules:
        return cls(
            RuleSet({rule.name: rule.query for rule in rules}),
            {rule.name: tuple(rule.channels) for rule in rules},
        )

    def matcher(self, feed: str) -> Matcher:
        """The store's matcher for articles of ``feed``: rule hits become matches with
        channels."""
        ruleset, channels = self.ruleset, self.channels

        def match(article: Article) -> list[Match]:
            return [
                Match(rule=name, terms=terms, channels=channels[name])
                for name, terms in ruleset.match(document_of(article, feed))
            ]

        return match


def _recording(matcher: Matcher, hits: list[Match]) -> Matcher:
    """``matcher``, keeping what it found in ``hits``: counted once the ingest has committed."""

    def match(article: Article) -> Sequence[Match]:
        found = matcher(article)
        hits.extend(found)
        return found

    return match


def fetch_limits(config: Config) -> Limits:
    settings = config.settings
    return Limits(
        timeout=settings.timeout.total_seconds(),
        max_bytes=settings.max_response_bytes,
        max_redirects=settings.max_redirects,
    )


def _about(feed: FeedConfig) -> dict[str, object]:
    return {"feed": feed.id}


class Pipeline:
    def __init__(
        self,
        config: Config,
        store: Store,
        channels: Channels,
        client: httpx.AsyncClient,
        *,
        parser: ParsePool | None = None,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        owner: str | None = None,
    ) -> None:
        self.config = config
        # This instance's name on the feeds and deliveries it claims (see Store.claim_feeds).
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = config.settings.lease
        self.store = store
        self.channels = channels
        self.client = client
        self.parser = parser or ParsePool(0)  # in a thread; the daemon passes its worker pool
        self.clock = clock
        self.rng = rng or random.Random()
        self.limits = fetch_limits(config)
        self.give_up = policy.GiveUp(
            config.settings.delivery_max_attempts, config.settings.delivery_max_age
        )
        self._poll_slots = asyncio.Semaphore(config.settings.concurrency)
        self.hosts = HostGate(
            config.settings.per_host_concurrency,
            config.settings.per_host_spacing.total_seconds(),
        )
        self._senders: dict[str, asyncio.Lock] = {}  # one sender per channel
        self._resend: set[str] = set()  # channels that got work while their sender was busy
        self._windows: dict[str, policy.SendWindow] = {}  # rate-limited channels' recent sends
        self.background: set[asyncio.Task[DeliveryReport]] = set()
        self.delivered = DeliveryReport()  # since start, for reports
        self._rulesets: dict[tuple[int, ...], CompiledRules] = {}
        self._matchers: dict[str, Matcher] = {}
        threads = DATABASE_THREADS.get(
            store.engine.dialect.name, min(32, (os.cpu_count() or 1) + 4)
        )
        self._database = ThreadPoolExecutor(threads, thread_name_prefix="database")
        # Set when the daemon stops: polls still waiting for a slot give their feed back
        # (the lease is released) instead of starting.
        self.closing = False
        self.metrics = Metrics(config, store, clock)  # a registry of its own, per pipeline

    async def db(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)``, a Store method, in one of the pipeline's database threads.
        On SQLite there are two, not asyncio's default of the CPUs plus four: its calls are
        mostly Python under the GIL, and with six threads taking turns with the event loop,
        each hand-over cost the loop its turn (a first pass took 30% more CPU, a mixed cycle a
        quarter); two, so that one slow call (a lock wait, a big outbox) does not stop all.
        On PostgreSQL a call mostly waits for the server, without the GIL, and more threads
        overlap those waits: asyncio's default (a mixed cycle took 6.9 s with six, 8.2 s
        with two)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._database, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        """Stop the database threads, once the calls in them have returned."""
        self._database.shutdown(wait=True)

    async def poll(self, feed: FeedConfig, state: FeedState | None = None) -> PollReport:
        """Poll ``feed`` once; every outcome, failures included, is recorded on the feed.
        ``state``: the feed's stored state, when the claim already read it."""
        started = time.monotonic()
        try:
            report = await self._poll(feed, state)
        except FeedError as exc:
            gone = isinstance(exc, FetchError) and exc.gone
            report = PollReport(feed.id, "gone" if gone else "error", error=exc.message)
            await self._record_failure(feed, exc)
            log.warning("feed %s: %s error: %s", feed.id, exc.kind, exc.message, extra=_about(feed))
        if report.outcome != "skipped":
            self.metrics.polled(feed.id, report.outcome, time.monotonic() - started)
        return report

    def _send_soon(self, channels: Iterable[str] | None = None) -> None:
        """Send new alerts now, without making the poll wait for slow channels. ``channels``:
        those the alerts are for, when known. A channel whose sender is running already takes
        them on (see _drain) without another look at the whole outbox: in a busy cycle that
        look, once per poll with matches, scanned every pending alert each time and kept the
        database threads' caches full."""
        if channels is not None and not [c for c in set(channels) if not self._handed_over(c)]:
            return
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

    def _handed_over(self, channel: str) -> bool:
        """Whether ``channel``'s sender is running and will look for new alerts before it stops."""
        sender = self._senders.get(channel)
        if sender is None or not sender.locked():
            return False
        self._resend.add(channel)
        return True

    async def settle(self) -> None:
        """Wait for the sends that polls started."""
        while self.background:
            await asyncio.gather(*self.background, return_exceptions=True)

    async def _poll(self, feed: FeedConfig, state: FeedState | None) -> PollReport:
        if state is None:
            state = await self.db(self.store.feed_state, feed.id)
        if state.gone:
            return PollReport(feed.id, "gone", error="the server said 410 Gone; not polled")
        url = state.moved_to or feed.url
        # Per host first, then a global slot: feeds waiting on a busy host hold no slot that
        # feeds on other hosts could use.
        async with self.hosts.slot(url), self._poll_slots:
            if self.closing:
                return PollReport(feed.id, "skipped")
            result = await fetch(
                self.client,
                url,
                limits=self.limits,
                etag=state.etag,
                last_modified=state.last_modified,
            )
        if result.moved_to and result.moved_to != state.moved_to:
            log.info(
                "feed %s: moved permanently to %s", feed.id, result.moved_to, extra=_about(feed)
            )
        body_hash = hashlib.sha256(result.body).hexdigest() if not result.not_modified else None
        if result.not_modified or body_hash == state.body_hash:
            # An unchanged body is as good as a 304: nothing to parse, nothing to store.
            await self._record_success(feed, result, "not_modified", state.hints)
            log.debug("feed %s: not modified", feed.id, extra=_about(feed))
            return PollReport(feed.id, "not_modified")
        parsed = await self.parser.parse(
            result.body,
            url=result.url,
            headers=result.headers,
            now=self.clock(),
            max_entries=self.config.settings.max_entries,
        )
        alert = state.baselined or self.config.alert_backlog(feed)
        hits: list[Match] = []
        matcher = _recording(self._matcher(feed), hits) if alert else None
        ingested = await self.db(
            self.store.ingest, feed.id, parsed.articles, now=self.clock(), matcher=matcher
        )
        self.metrics.stored(feed.id, ingested.new, hits)
        if ingested.matches:
            self._send_soon(channel for hit in hits for channel in hit.channels)
        hints = policy.FeedHints(parsed.ttl, parsed.skip_hours, parsed.skip_days)
        await self._record_success(
            feed, result, "ok", hints, title=parsed.title, body_hash=body_hash
        )
        if parsed.warning:
            log.warning(
                "feed %s: partly malformed, kept what parsed: %s",
                feed.id,
                parsed.warning,
                extra=_about(feed),
            )
        log.info(
            "feed %s: %d entries, %d new%s, %d matched",
            feed.id,
            len(parsed.articles),
            ingested.new,
            "" if alert else " (first poll: stored without alerting)",
            ingested.matches,
            extra=_about(feed),
        )
        return PollReport(
            feed.id,
            "ok",
            new=ingested.new,
            updated=ingested.updated,
            matches=ingested.matches,
            warning=parsed.warning,
        )

    def prepare(self) -> None:
        """Compile every feed's rules now (about a second for 10,000 rules), not in the first
        poll that alerts. Run it in a thread: it is all CPU."""
        for feed in self.config.feeds:
            self._matcher(feed)

    def _matcher(self, feed: FeedConfig) -> Matcher:
        """Feeds watched by the same rules share one compiled set; each feed's matcher is
        built once."""
        matcher = self._matchers.get(feed.id)
        if matcher is None:
            key = self.config.rules_key(feed.id)
            compiled = self._rulesets.get(key)
            if compiled is None:
                compiled = CompiledRules.of(self.config.rules_for(feed.id))
                self._rulesets[key] = compiled
            matcher = self._matchers[feed.id] = compiled.matcher(feed.id)
        return matcher

    async def _record_success(
        self,
        feed: FeedConfig,
        result: FetchResult,
        outcome: str,
        hints: policy.FeedHints,
        *,
        title: str | None = None,
        body_hash: str | None = None,
    ) -> None:
        now = self.clock()
        heeded = policy.FeedHints()
        if feed.feed_hints:  # the response's max-age counts as much as the feed's own ttl
            ttl = max(filter(None, (hints.ttl, result.max_age)), default=None)
            heeded = policy.FeedHints(ttl, hints.skip_hours, hints.skip_days)
        next_at = policy.next_poll(
            now,
            self.config.interval(feed),
            0,
            self.rng,
            heeded,
            self.config.settings.max_hinted_interval,
        )
        recovered = await self.db(
            self.store.record_success,
            feed.id,
            now=now,
            outcome=outcome,
            next_poll_at=next_at,
            etag=result.etag,
            last_modified=result.last_modified,
            title=title,
            health=self.config.health,
            moved_to=result.moved_to,
            body_hash=body_hash,
            hints=hints if outcome == "ok" else None,
        )
        if recovered:
            log.info("feed %s: recovered; health alert queued", feed.id, extra=_about(feed))
            self._send_soon()

    async def _record_failure(self, feed: FeedConfig, error: FeedError) -> None:
        """Back off; as long as the server asked (Retry-After) if longer. 410 Gone stops
        polling the feed (until its configured URL changes) and alerts at once."""
        now = self.clock()
        state = await self.db(self.store.feed_state, feed.id)
        hints = state.hints if feed.feed_hints else policy.FeedHints()
        next_at: datetime | None = policy.next_poll(
            now, self.config.interval(feed), state.consecutive_failures + 1, self.rng, hints
        )
        message = error.message
        if isinstance(error, FetchError) and error.retry_after and next_at:
            next_at = max(next_at, now + error.retry_after)
        if isinstance(error, FetchError) and error.gone:
            next_at = None
            message += " (the feed was removed; watcher stopped polling it)"
        alarmed = await self.db(
            self.store.record_failure,
            feed.id,
            now=now,
            error=message,
            next_poll_at=next_at,
            health=self.config.health,
        )
        if alarmed:
            log.warning("feed %s: failing; health alert queued", feed.id, extra=_about(feed))
            self._send_soon()

    async def deliver_due(self) -> DeliveryReport:
        """Send every delivery whose time has come. Each channel has its own sender, so a
        channel that is down or slow never holds up the others, and no alert goes twice."""
        channels = await self.db(self.store.due_channels, self.clock())
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
                due = await self.db(
                    self.store.due_deliveries,
                    self.clock(),
                    channel=channel,
                    limit=500,
                    owner=self.owner,
                    until=self.clock() + self.lease,
                )
                try:
                    for outgoing in await self._plan(channel, due):
                        if not await self._send(channel, outgoing):
                            failed += len(outgoing.deliveries)  # the rest wait for a retry
                            break
                        sent += len(outgoing.deliveries)
                finally:  # what was claimed but neither sent nor held is free again
                    if due:
                        ids = [d.id for d in due]
                        await self.db(self.store.release_deliveries, ids, self.owner)
                if not due and channel not in self._resend:
                    break
        self.delivered = DeliveryReport(self.delivered.sent + sent, self.delivered.failed + failed)
        return DeliveryReport(sent, failed)

    async def _plan(self, channel: str, due: Sequence[Delivery]) -> list[Outgoing]:
        """Turn a channel's due deliveries into messages, holding back what must wait:
        a digest rule's matches until its next digest time, everything but high-priority
        alerts during quiet hours, and what exceeds the rate limit. Deliveries held for the
        same reason come due together and go out as one message. Health alerts (one per
        failure streak, by design rare) are never held."""
        now = self.clock()
        rules = self.config.policy(channel)
        quiet_end = rules.quiet.end_of(now) if rules.quiet else None
        holds: dict[tuple[str, datetime], list[int]] = {}
        batches: dict[str, list[Delivery]] = {}
        singles: list[Delivery] = []
        for delivery in due:
            rule = self.config.rule(delivery.rule) if delivery.event is None else None
            if delivery.hold is None and rule is not None and rule.digest is not None:
                holds.setdefault(("digest", rule.digest.next_after(now)), []).append(delivery.id)
            elif (
                quiet_end is not None
                and delivery.event is None
                and delivery.hold in (None, "rate_limit")
                and (rule is None or rule.priority != "high")
            ):
                holds.setdefault(("quiet", quiet_end), []).append(delivery.id)
            elif delivery.hold is None:
                singles.append(delivery)
            else:
                batches.setdefault(delivery.hold, []).append(delivery)
        planned = [self._batch(channel, kind, items) for kind, items in batches.items()]
        stories: dict[object, list[Delivery]] = {}  # rules that matched one story, at once
        for d in singles:
            stories.setdefault(d.article_id if d.article_id is not None else -d.id, []).append(d)
        planned += [Outgoing(self._content(*ds), tuple(ds)) for ds in stories.values()]
        if rules.rate_limit is not None:
            planned = self._within_rate(channel, rules.rate_limit, planned, holds, now)
        for (reason, until), ids in holds.items():
            await self.db(self.store.hold, ids, reason=reason, until=until)
            log.info(
                "channel %s: holding %d alert(s) (%s) until %s",
                channel,
                len(ids),
                reason,
                until,
                extra={"channel": channel},
            )
        return planned

    def _within_rate(
        self,
        channel: str,
        limit: policy.RateLimit,
        planned: list[Outgoing],
        holds: dict[tuple[str, datetime], list[int]],
        now: datetime,
    ) -> list[Outgoing]:
        """The messages the rate limit lets through now; the others are held until the window
        has room, to be folded into one summary (a held digest stays a digest)."""
        window = self._windows.setdefault(channel, policy.SendWindow(limit))
        if window.limit != limit:
            window = self._windows[channel] = policy.SendWindow(limit)
        room = window.room(now)
        if len(planned) <= room:
            return planned
        free_at = window.next_room(now)
        for outgoing in planned[room:]:
            for d in outgoing.deliveries:
                reason = "digest" if d.hold == "digest" else "rate_limit"
                holds.setdefault((reason, free_at), []).append(d.id)
        return planned[:room]

    def _batch(self, channel: str, kind: str, items: list[Delivery]) -> Outgoing:
        held = tuple(items)
        if kind != "digest" and len(items) == 1:
            return Outgoing(items[0], held)  # a summary of one is just the alert
        rules = self.config.policy(channel)
        if kind == "digest":
            schedules = (rule.digest for d in items if (rule := self.config.rule(d.rule)))
            note = ", ".join(dict.fromkeys(s.describe() for s in schedules if s))
            return Outgoing(Batch("digest", held, note), held)
        if kind == "quiet":
            quiet = rules.quiet.describe() if rules.quiet else "(since removed)"
            return Outgoing(Batch("quiet", held, f"held during quiet hours {quiet}"), held)
        limit = rules.rate_limit.describe() if rules.rate_limit else "the rate limit"
        note = f"{len(items)} alerts above the limit of {limit}"
        return Outgoing(Batch("rate_limit", held, note), held)

    def _content(self, delivery: Delivery, *more: Delivery) -> Content:
        """What one message says: an alert (several rules that matched the same story for
        this channel make one alert naming them all), or a health alert."""
        if delivery.event is None and more:
            rules = (delivery.rule, *(d.rule for d in more))
            terms = (term for d in (delivery, *more) for term in d.terms)
            return dataclasses.replace(
                delivery, rule=", ".join(dict.fromkeys(rules)), terms=tuple(dict.fromkeys(terms))
            )
        if delivery.event is None:
            return delivery
        event = delivery.event
        feed = next((f for f in self.config.feeds if f.id == event.feed_id), None)
        return Health(
            state="failing" if event.state == "failing" else "recovered",
            feed_id=event.feed_id,
            feed_title=delivery.feed_title,
            url=self.config.shown_url(feed) if feed else "(no longer configured)",
            since=event.since,
            failures=event.failures,
            error=event.error,
            at=event.at,
        )

    async def _send(self, channel: str, outgoing: Outgoing) -> bool:
        """Send one message; record its outcome on every delivery it carried."""
        if channel in self.channels:
            error = await self.channels.send(channel, outgoing.content)
        else:
            error = f"channel {channel!r} is no longer configured"
        now = self.clock()
        deliveries = outgoing.deliveries
        if error is None:
            if channel in self._windows:
                self._windows[channel].record(now)
            log.info("channel %s: sent %s", channel, outgoing.describe(), extra=outgoing.about())
            self.metrics.delivered(channel, "sent", len(deliveries))
            await self.db(
                self.store.record_deliveries, [d.id for d in deliveries], now=now, error=None
            )
            return True
        # One retry time for the whole message, so that its deliveries stay together.
        retry_at = now + policy.retry_delay(max(d.attempts for d in deliveries) + 1, self.rng)
        give_up = self.give_up.reached
        dead = [d.id for d in deliveries if give_up(d.attempts + 1, d.queued_at, retry_at)]
        retried = [d.id for d in deliveries if d.id not in dead]
        self.metrics.delivered(channel, "failed", len(retried))
        self.metrics.delivered(channel, "dead", len(dead))
        log.warning(
            "channel %s: sending %s failed (%s): %s",
            channel,
            outgoing.describe(),
            "will retry" if retried else "giving up",
            error,
            extra=outgoing.about(),
        )
        if retried:
            await self.db(
                self.store.record_deliveries, retried, now=now, error=error, retry_at=retry_at
            )
        if dead:
            await self.db(self.store.record_deliveries, dead, now=now, error=error)
        return False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for a channel and the deliveries it carries (one, or a batch's many)."""

    content: Content
    deliveries: tuple[Delivery, ...]

    def about(self) -> dict[str, object]:
        """The ids a log line about this message carries (see watcher.logs)."""
        first = self.deliveries[0]
        ids: dict[str, object] = {"channel": first.channel}
        if len(self.deliveries) == 1:
            ids["delivery"] = first.id
            ids |= {"rule": first.rule} if first.rule else {}
            ids["feed"] = first.feed_id
        return ids

    def describe(self) -> str:
        if isinstance(self.content, Batch):
            rules = ", ".join(dict.fromkeys(d.rule for d in self.deliveries))
            return f"{self.content.kind} of {len(self.deliveries)} alerts (rules {rules})"
        if isinstance(self.content, Health):
            return f"health alert: feed {self.content.feed_id} {self.content.state}"
        return f"alert {self.content.id} for rule {self.content.rule}, feed {self.content.feed_id}"
