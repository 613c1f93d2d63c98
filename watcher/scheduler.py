"""Runs the pipeline on a clock: the only module that runs APScheduler (policy.py borrows its
cron arithmetic for digests). Orchestrates.

Each feed is one APScheduler job that re-arms itself at the poll time the pipeline stored on the
feed (interval + jitter after a success, exponential backoff after failures, so a restart
resumes the same schedule). Deliveries that wait for a retry are swept on their own timer.
SIGTERM / SIGINT stop taking new work, give in-flight polls a bounded time to finish, then exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from . import __version__, policy
from .config import Config, FeedConfig
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


@dataclass(frozen=True, slots=True)
class RunReport:
    polls: tuple[PollReport, ...]
    deliveries: DeliveryReport


def open_store(config: Config) -> Store:
    """Open (and migrate) the database and make sure every configured feed has a row."""
    store = Store.open(config.settings.database)
    store.sync_feeds((feed.id, feed.url) for feed in config.feeds)
    return store


@asynccontextmanager
async def running_pipeline(config: Config) -> AsyncIterator[Pipeline]:
    with single_instance(config.settings.database):
        async with _pipeline(config) as pipeline:
            yield pipeline


@asynccontextmanager
async def _pipeline(config: Config) -> AsyncIterator[Pipeline]:
    channels = Channels({name: c.urls for name, c in config.channels.items()}, config.templates)
    store = await asyncio.to_thread(open_store, config)
    settings = config.settings
    parser = ParsePool(
        settings.parse_workers,
        memory_bytes=settings.parse_memory_bytes,
        timeout=settings.parse_timeout.total_seconds(),
    )
    try:
        async with make_client(fetch_limits(config)) as client:
            yield Pipeline(config, store, channels, client, parser=parser)
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
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.inflight: set[asyncio.Task[object]] = set()
        self.stopping = False

    async def start(self) -> None:
        now = self.pipeline.clock()
        config = self.pipeline.config
        for feed in config.feeds:
            state = await asyncio.to_thread(self.pipeline.store.feed_state, feed.id)
            if state.gone:
                log.warning("feed %s: not polled: the server said 410 Gone", feed.id)
                continue
            when = policy.first_poll(
                now, state.next_poll_at, config.interval(feed), self.pipeline.rng
            )
            self._arm(feed, when)
        self.scheduler.add_job(
            self._prune,
            "interval",
            seconds=PRUNE_EVERY.total_seconds(),
            id="prune",
            next_run_time=now + timedelta(minutes=1),
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.add_job(
            self._sweep_deliveries,
            "interval",
            seconds=DELIVERY_SWEEP.total_seconds(),
            id="deliveries",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.start()

    def running(self) -> bool:
        """Whether the schedule is running (not before start, nor once stopping)."""
        return bool(self.scheduler.running) and not self.stopping

    async def stop(self) -> None:
        """Start nothing new, let in-flight work finish within the grace time, then stop.
        (Shutting APScheduler down first would cancel its running jobs mid-send.)"""
        self.stopping = True
        self.scheduler.pause()
        busy = self.inflight | self.pipeline.background
        if busy:
            _done, late = await asyncio.wait(busy, timeout=STOP_GRACE.total_seconds())
            for task in late:
                log.warning("stop: cancelling work still running after %ds", STOP_GRACE.seconds)
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self.scheduler.shutdown(wait=False)

    def _arm(self, feed: FeedConfig, when: datetime) -> None:
        self.scheduler.add_job(
            self._poll,
            "date",
            run_date=when,
            args=[feed],
            id=f"feed:{feed.id}",
            replace_existing=True,
            misfire_grace_time=None,
        )

    async def _poll(self, feed: FeedConfig) -> None:
        await self._guarded(self.pipeline.poll(feed), f"feed {feed.id}")
        if not self.stopping and (when := await self._next_poll(feed)):
            self._arm(feed, when)

    async def _next_poll(self, feed: FeedConfig) -> datetime | None:
        """When the poll just made says to poll next; None for a feed that is gone."""
        fallback = self.pipeline.clock() + self.pipeline.config.interval(feed)
        try:
            state = await asyncio.to_thread(self.pipeline.store.feed_state, feed.id)
        except WatcherError:
            return fallback
        return None if state.gone else state.next_poll_at or fallback

    async def _prune(self) -> None:
        await self._guarded(
            prune(self.pipeline.store, self.pipeline.config, self.pipeline.clock()), "prune"
        )

    async def _sweep_deliveries(self) -> None:
        await self._guarded(self.pipeline.deliver_due(), "deliveries")

    async def _guarded(self, work: Awaitable[object], what: str) -> None:
        """Whatever goes wrong in one job is logged; the daemon and the schedule carry on."""
        task = asyncio.current_task()
        assert task is not None
        self.inflight.add(task)
        try:
            await work
        except WatcherError as exc:
            log.error("%s: %s", what, exc)
        except Exception:
            log.exception("%s: unexpected error (a bug in watcher; please report it)", what)
        finally:
            self.inflight.discard(task)
