"""Runs the pipeline on a clock: the only module that runs APScheduler (policy.py borrows its
cron arithmetic for digests). Orchestrates.

The schedule lives in the database: each feed's next poll time (interval + jitter after a
success, exponential backoff after failures), so a restart resumes it. A claim loop takes due
feeds, as many as there are free slots, under a lease; several daemons on one PostgreSQL
database therefore share the feeds, and the outbox the same way. APScheduler runs the periodic
jobs: the lease heartbeat, the delivery sweep, retention (once per period across instances).
SIGTERM / SIGINT stop taking new work, give in-flight work a bounded time to finish, hand back
the leases, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from . import __version__
from .config import Config
from .db import single_instance
from .errors import WatcherError
from .fetch import make_client
from .notify import Channels
from .pipeline import DeliveryReport, Pipeline, PollReport, fetch_limits
from .service import Readiness, sd_notify, serving
from .store import PruneResult, Store
from .workers import ParsePool

log = logging.getLogger(__name__)

DELIVERY_SWEEP = timedelta(seconds=15)
STOP_GRACE = timedelta(seconds=8)  # inside Docker's default 10 s before SIGKILL
PRUNE_EVERY = timedelta(hours=6)
PRUNE_CHECK = timedelta(minutes=10)  # how often an instance asks whether it is its turn
CLAIM_IDLE = timedelta(seconds=5)  # the longest the claim loop sleeps without looking


@dataclass(frozen=True, slots=True)
class RunReport:
    polls: tuple[PollReport, ...]
    deliveries: DeliveryReport


def open_store(config: Config, *, sole: bool = False) -> Store:
    """Open (and migrate) the database and make sure every configured feed has a row.
    ``sole``: this process holds the single-instance lock (SQLite), so any lease still in
    the database belongs to a predecessor that died; its work is taken over now."""
    store = Store.open(config.settings.database)
    store.sync_feeds((feed.id, feed.url) for feed in config.feeds)
    if sole:
        store.release_all(None)
    return store


@asynccontextmanager
async def running_pipeline(config: Config) -> AsyncIterator[Pipeline]:
    with single_instance(config.settings.database) as sole:
        async with _pipeline(config, sole=sole) as pipeline:
            yield pipeline


@asynccontextmanager
async def _pipeline(config: Config, *, sole: bool) -> AsyncIterator[Pipeline]:
    channels = Channels({name: c.urls for name, c in config.channels.items()}, config.templates)
    store = await asyncio.to_thread(functools.partial(open_store, config, sole=sole))
    settings = config.settings
    parser = ParsePool(
        settings.parse_workers,
        memory_bytes=settings.parse_memory_bytes,
        timeout=settings.parse_timeout.total_seconds(),
    )
    try:
        async with make_client(fetch_limits(config)) as client:
            pipeline = Pipeline(config, store, channels, client, parser=parser)
            try:
                await asyncio.to_thread(pipeline.prepare)
                yield pipeline
            finally:
                await asyncio.to_thread(pipeline.close)  # its database calls return first
    finally:
        parser.close()
        store.close()


async def prune(store: Store, config: Config, now: datetime) -> PruneResult:
    """Delete what is older than the configured retention (see ``Store.prune``)."""
    settings = config.settings
    result = await asyncio.to_thread(
        store.prune,
        articles_before=now - settings.article_retention,
        alerts_before=now - settings.alert_retention,
    )
    log.info(
        "pruned %d articles, %d deliveries and %d feed events past their retention",
        result.articles,
        result.deliveries,
        result.events,
    )
    return result


async def run_once(config: Config) -> RunReport:
    """Poll every feed once, send what matched, and return what happened."""
    async with running_pipeline(config) as pipeline:
        polls = await asyncio.gather(*(pipeline.poll(feed) for feed in config.feeds))
        await pipeline.settle()
        await pipeline.deliver_due()  # retries that came due, and anything a poll left
    return RunReport(tuple(polls), pipeline.delivered)


async def run_daemon(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGTERM / SIGINT arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_pipeline(config) as pipeline:
            daemon = _Daemon(pipeline)
            readiness = Readiness(pipeline.store, daemon.running, config)
            async with serving(config.settings.http, pipeline.metrics, readiness):
                await daemon.start()
                await asyncio.to_thread(sd_notify, "READY=1")
                log.info(
                    "watcher %s running: %d feeds, %d rules, %d channels, database %s",
                    __version__,
                    len(config.feeds),
                    len(config.rules),
                    len(config.channels),
                    make_url(config.settings.database).render_as_string(hide_password=True),
                )
                await stop.wait()
                await asyncio.to_thread(sd_notify, "STOPPING=1")
                log.info("stopping: waiting up to %ds for polls in progress", STOP_GRACE.seconds)
                await daemon.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")


class _Daemon:
    """Polls feeds as they come due, sweeps the outbox, prunes. Several daemons may share one
    PostgreSQL database: each due feed (and each delivery) is claimed by one of them with a
    lease (``Store.claim_feeds``), which a live daemon keeps renewing (a heartbeat) and a dead
    one lets run out, so the others take its work over."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.inflight: set[asyncio.Task[object]] = set()
        self.polling: set[asyncio.Task[object]] = set()
        self.stopping = False
        self._wake = asyncio.Event()  # a poll finished, or the daemon stops
        self._claimer: asyncio.Task[None] | None = None
        self._feeds = {feed.id: feed for feed in pipeline.config.feeds}

    async def start(self) -> None:
        pipeline = self.pipeline
        now = pipeline.clock()
        config = pipeline.config
        # A shortened interval applies now, not after the next poll at the old one.
        deadlines = {f.id: now + config.interval(f) for f in config.feeds}
        await pipeline.db(pipeline.store.poll_no_later, deadlines)
        lease = pipeline.lease.total_seconds()
        for job, every, first in (
            (self._heartbeat, lease / 3, now + timedelta(seconds=lease / 3)),
            (self._prune, PRUNE_CHECK.total_seconds(), now + timedelta(minutes=1)),
            (self._sweep_deliveries, DELIVERY_SWEEP.total_seconds(), now),
        ):
            self.scheduler.add_job(
                job,
                "interval",
                seconds=every,
                next_run_time=first,
                max_instances=1,
                coalesce=True,
            )
        self.scheduler.start()
        self._claimer = asyncio.create_task(self._claim_loop())

    def running(self) -> bool:
        """Whether the schedule is running (not before start, nor once stopping)."""
        return bool(self.scheduler.running) and not self.stopping

    async def stop(self) -> None:
        """Start nothing new, let in-flight work finish within the grace time, hand back what
        this instance still holds, then stop. (Shutting APScheduler down first would cancel
        its running jobs mid-send.)"""
        self.stopping = True
        self.pipeline.closing = True  # feeds claimed ahead, not yet polling, are handed back
        self._wake.set()
        self.scheduler.pause()
        if self._claimer is not None:
            await self._claimer
        busy = self.inflight | self.polling | self.pipeline.background
        if busy:
            _done, late = await asyncio.wait(busy, timeout=STOP_GRACE.total_seconds())
            for task in late:
                log.warning("stop: cancelling work still running after %ds", STOP_GRACE.seconds)
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self.scheduler.shutdown(wait=False)
        try:
            await self.pipeline.db(self.pipeline.store.release_all, self.pipeline.owner)
        except WatcherError as exc:
            log.warning("stop: could not hand back this instance's leases: %s", exc)

    async def _claim_loop(self) -> None:
        """Claim due feeds and poll them; then sleep until the next one is due, polls finish,
        or a few seconds have passed (another instance may have released work).

        Up to twice as many feeds as there are poll slots are claimed ahead (the extra ones
        wait for a slot), and only once half of them are done: one claim per ``concurrency``
        polls rather than one per poll."""
        pipeline = self.pipeline
        slots = pipeline.config.settings.concurrency
        while not self.stopping:
            self._wake.clear()
            due = None
            try:
                if len(self.polling) <= slots:
                    room = 2 * slots - len(self.polling)
                    if await self._claim(room) == room:
                        continue  # more may be due: claim again once these are under way
                    # fewer were due than there is room for: when is the next one due?
                    due = await pipeline.db(pipeline.store.next_due, pipeline.clock())
            except WatcherError as exc:  # the database is away: try again shortly
                log.error("claiming feeds: %s", exc)
            idle = CLAIM_IDLE.total_seconds()
            delay = idle if due is None else (due - pipeline.clock()).total_seconds()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(max(delay, 0.01), idle))

    async def _claim(self, limit: int) -> int:
        """Claim up to ``limit`` due feeds and start polling them; how many were claimed."""
        pipeline = self.pipeline
        now = pipeline.clock()
        claimed = await pipeline.db(
            pipeline.store.claim_feeds,
            pipeline.owner,
            now=now,
            until=now + pipeline.lease,
            limit=limit,
        )
        for feed_id, state in claimed.items():
            feed = self._feeds.get(feed_id)
            if feed is None:  # configured in another instance's config, not in this one's
                later = now + pipeline.config.settings.default_interval
                await pipeline.db(
                    pipeline.store.release_feed, feed_id, pipeline.owner, next_poll_at=later
                )
                continue
            polled = self._guarded(pipeline.poll(feed, state), f"feed {feed.id}", {"feed": feed.id})
            task = asyncio.create_task(polled)
            self.polling.add(task)
            task.add_done_callback(self._polled)
        return len(claimed)

    def _polled(self, task: asyncio.Task[object]) -> None:
        self.polling.discard(task)
        self._wake.set()

    async def _heartbeat(self) -> None:
        pipeline = self.pipeline
        until = pipeline.clock() + pipeline.lease
        await self._guarded(
            pipeline.db(pipeline.store.renew_leases, pipeline.owner, until), "leases"
        )

    async def _prune(self) -> None:
        pipeline = self.pipeline
        now = pipeline.clock()
        mine = await pipeline.db(
            pipeline.store.claim_job, "prune", pipeline.owner, now=now, every=PRUNE_EVERY
        )
        if mine:  # once per period across every instance sharing the database
            await self._guarded(prune(pipeline.store, pipeline.config, now), "prune")

    async def _sweep_deliveries(self) -> None:
        await self._guarded(self.pipeline.deliver_due(), "deliveries")

    async def _guarded(
        self, work: Awaitable[object], what: str, about: dict[str, object] | None = None
    ) -> None:
        """Whatever goes wrong in one job is logged; the daemon and the schedule carry on."""
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            await work
        except WatcherError as exc:
            log.error("%s: %s", what, exc, extra=about)
        except Exception:
            log.exception(
                "%s: unexpected error (a bug in watcher; please report it)", what, extra=about
            )
        finally:
            self.inflight.discard(task)
