"""Polling as a good citizen: HTTP semantics (redirects, 410, Retry-After, Cache-Control),
the feed's own schedule (ttl, skipHours, skipDays), unchanged bodies, per-host politeness.
Real HTTP servers on 127.0.0.1, a real SQLite file, an injected clock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.clock import Clock
from tests.servers import LocalServer, Receiver, Request, Response, rss, running
from watcher.config import load_config
from watcher.fetch import make_client
from watcher.notify import Channels
from watcher.pipeline import Pipeline, fetch_limits
from watcher.store import Store

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday
RSS = {"Content-Type": "application/rss+xml"}
FEED = rss([{"guid": "1", "title": "NATO story", "link": "https://example.org/1"}])


def serve(routes: dict[str, Callable[[Request], Response] | Response]) -> LocalServer:
    def handle(request: Request) -> Response:
        route = routes.get(request.path)
        if route is None:
            return Response(404, b"not found")
        return route(request) if callable(route) else route

    return LocalServer(handle)


@pytest.fixture
async def make_pipeline(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[tuple[Store, Any]] = []
    pipelines: list[Pipeline] = []

    async def make(urls: list[str], *, watcher: str = "", feed: str = "") -> Pipeline:
        feeds = "".join(
            f'[[feeds]]\nid = "f{i}"\nurl = "{url}"\n{feed}\n' for i, url in enumerate(urls)
        )
        path = tmp_path / f"pipeline-{len(opened)}" / "watcher.toml"  # each its own database
        path.parent.mkdir()
        path.write_text(f"""
[watcher]
default_interval = "10m"
{"" if "per_host_spacing" in watcher else 'per_host_spacing = "0s"  # all on 127.0.0.1'}
{watcher}

{feeds}

[[rules]]
name = "nato"
match = "NATO"
channels = ["hook"]

[channels.hook]
urls = ["json://127.0.0.1:9/"]
""")
        config = load_config(path, {})
        store = Store.open(config.settings.database)
        store.sync_feeds((f.id, f.url) for f in config.feeds)
        client = make_client(fetch_limits(config))
        opened.append((store, client))
        channels = Channels({n: c.urls for n, c in config.channels.items()})
        pipeline = Pipeline(config, store, channels, client, clock=Clock(NOW))
        pipelines.append(pipeline)
        return pipeline

    yield make
    for pipeline in pipelines:
        pipeline.close()
    for store, client in opened:
        await client.aclose()
        store.close()


def next_poll_in(pipeline: Pipeline, feed_id: str = "f0") -> timedelta:
    state = pipeline.store.feed_state(feed_id)
    assert state.next_poll_at is not None
    return state.next_poll_at - pipeline.clock()


async def test_a_permanent_redirect_is_remembered_a_temporary_one_is_not(
    make_pipeline: Any,
) -> None:
    routes: dict[str, Any] = {}
    with running(serve(routes)) as server:
        routes["/old.xml"] = Response(301, headers={"Location": f"{server.base_url}/hop.xml"})
        routes["/hop.xml"] = Response(302, headers={"Location": f"{server.base_url}/new.xml"})
        routes["/new.xml"] = Response(200, FEED, RSS)
        pipeline = await make_pipeline([f"{server.base_url}/old.xml"])
        feed = pipeline.config.feeds[0]
        assert (await pipeline.poll(feed)).outcome == "ok"
        # 301 then 302: the feed moved for good to /hop.xml, which only sends us on for now
        assert pipeline.store.feed_state("f0").moved_to == f"{server.base_url}/hop.xml"
        await pipeline.poll(feed)
        paths = [r.path for r in server.requests]
        assert paths == ["/old.xml", "/hop.xml", "/new.xml", "/hop.xml", "/new.xml"]
        [summary] = pipeline.store.feed_summaries()
        assert summary.moved_to == f"{server.base_url}/hop.xml"
        assert summary.url == f"{server.base_url}/old.xml"  # the configured URL is kept

        # the user edits the URL: it is taken as given, and the remembered move is forgotten
        pipeline.store.sync_feeds([("f0", f"{server.base_url}/new.xml")])
        assert pipeline.store.feed_state("f0").moved_to is None


async def test_410_gone_stops_polling_and_tells_the_health_channels(
    make_pipeline: Any,
) -> None:
    routes: dict[str, Any] = {"/gone.xml": Response(410, b"removed")}
    with running(serve(routes)) as server, running(Receiver()) as receiver:
        assert isinstance(receiver, Receiver)
        pipeline = await make_pipeline(
            [f"{server.base_url}/gone.xml"],
            watcher='health_channels = ["ops"]\n[channels.ops]\n'
            f'urls = ["{receiver.url("/ops")}"]\n',
        )
        feed = pipeline.config.feeds[0]
        report = await pipeline.poll(feed)
        assert report.outcome == "gone"
        await pipeline.settle()
        [alert] = receiver.messages()
        assert "f0" in alert["title"] and "410" in alert["message"]
        assert "stopped polling" in alert["message"]
        state = pipeline.store.feed_state("f0")
        assert state.gone and state.next_poll_at is None

        again = await pipeline.poll(feed)
        assert again.outcome == "gone"
        assert len(server.requests) == 1  # not asked again
        [summary] = pipeline.store.feed_summaries()
        assert summary.gone_at == NOW


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(make_pipeline: Any, status: int) -> None:
    later = format_datetime(NOW + timedelta(hours=2), usegmt=True)
    routes = {
        "/seconds.xml": Response(status, b"slow down", {"Retry-After": "3600"}),
        "/date.xml": Response(status, b"slow down", {"Retry-After": later}),
        "/plain.xml": Response(status, b"slow down"),
    }
    with running(serve(routes)) as server:
        urls = [f"{server.base_url}{path}" for path in routes]
        pipeline = await make_pipeline(urls)
        for feed in pipeline.config.feeds:
            await pipeline.poll(feed)
    assert next_poll_in(pipeline, "f0") >= timedelta(hours=1)
    # An HTTP date is read against the real clock, not the test's: it asks for about
    # two hours from when the test runs; capped at a day.
    assert timedelta(minutes=1) < next_poll_in(pipeline, "f1") <= timedelta(days=1)
    assert next_poll_in(pipeline, "f2") < timedelta(minutes=12)  # the first backoff step


async def test_the_feeds_own_schedule_lengthens_the_interval_never_shortens_it(
    make_pipeline: Any,
) -> None:
    def with_ttl(minutes: int) -> bytes:
        return FEED.replace(b"<description>", f"<ttl>{minutes}</ttl><description>".encode())

    routes = {
        "/ttl.xml": Response(200, with_ttl(60), RSS),
        "/short-ttl.xml": Response(200, with_ttl(1), RSS),
        "/max-age.xml": Response(200, FEED, RSS | {"Cache-Control": "public, max-age=7200"}),
        "/huge.xml": Response(200, FEED, RSS | {"Cache-Control": "max-age=604800"}),
    }
    with running(serve(routes)) as server:
        urls = [f"{server.base_url}{path}" for path in routes]
        pipeline = await make_pipeline(urls)
        for feed in pipeline.config.feeds:
            assert (await pipeline.poll(feed)).outcome == "ok"
        ignoring = await make_pipeline([urls[0]], feed="feed_hints = false")
        await ignoring.poll(ignoring.config.feeds[0])

    def about(delay: timedelta, expected: timedelta) -> bool:
        return expected <= delay <= expected * 1.1 + timedelta(seconds=1)

    assert about(next_poll_in(pipeline, "f0"), timedelta(hours=1))
    assert about(next_poll_in(pipeline, "f1"), timedelta(minutes=10))  # not 1 minute
    assert about(next_poll_in(pipeline, "f2"), timedelta(hours=2))
    assert about(next_poll_in(pipeline, "f3"), timedelta(hours=6))  # max_hinted_interval
    assert about(next_poll_in(ignoring, "f0"), timedelta(minutes=10))


async def test_skip_hours_and_days_push_the_poll_to_an_allowed_hour(make_pipeline: Any) -> None:
    skip = "".join(f"<hour>{h}</hour>" for h in range(12, 18))
    body = FEED.replace(
        b"<description>",
        f"<skipHours>{skip}</skipHours><skipDays><day>Sunday</day></skipDays>"
        "<description>".encode(),
    )
    with running(serve({"/f.xml": Response(200, body, RSS)})) as server:
        pipeline = await make_pipeline([f"{server.base_url}/f.xml"])
        await pipeline.poll(pipeline.config.feeds[0])
        assert pipeline.store.feed_state("f0").next_poll_at == datetime(
            2026, 11, 28, 18, 0, tzinfo=UTC
        )
        # late on Saturday the next allowed hour is Monday 00:00 (Sunday is skipped)
        pipeline.clock.now = datetime(2026, 11, 28, 23, 55, tzinfo=UTC)  # type: ignore[attr-defined]
        await pipeline.poll(pipeline.config.feeds[0])  # unchanged body: the hints still hold
        assert pipeline.store.feed_state("f0").next_poll_at == datetime(
            2026, 11, 30, 0, 0, tzinfo=UTC
        )


async def test_an_unchanged_body_is_treated_like_a_304(make_pipeline: Any) -> None:
    # A server that sends neither ETag nor Last-Modified, and the same bytes every time.
    with running(serve({"/f.xml": Response(200, FEED, RSS)})) as server:
        pipeline = await make_pipeline([f"{server.base_url}/f.xml"])
        feed = pipeline.config.feeds[0]
        assert (await pipeline.poll(feed)).outcome == "ok"
        assert (await pipeline.poll(feed)).outcome == "not_modified"
        [summary] = pipeline.store.feed_summaries()
        assert (summary.last_outcome, summary.articles) == ("not_modified", 1)


async def test_feeds_on_one_host_share_a_connection_across_304s(make_pipeline: Any) -> None:
    def conditional(request: Request) -> Response:
        if request.headers.get("if-none-match") == '"v1"':
            return Response(304)
        return Response(200, FEED, RSS | {"ETag": '"v1"'})

    with running(serve({"/a.xml": conditional, "/b.xml": conditional})) as server:
        pipeline = await make_pipeline([f"{server.base_url}/a.xml", f"{server.base_url}/b.xml"])
        for _ in range(3):
            for feed in pipeline.config.feeds:
                await pipeline.poll(feed)
        answers = [(request.status, request.peer) for request in server.requests]
    assert [status for status, _ in answers] == [200, 200, 304, 304, 304, 304]
    # one TCP connection for all of them: no handshake per poll
    assert len({peer for _, peer in answers}) == 1


async def test_per_host_concurrency_and_spacing(make_pipeline: Any) -> None:
    in_flight = 0
    most = 0
    starts: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def slow(request: Request) -> Response:
        nonlocal in_flight, most
        with lock:
            starts.append(time.monotonic())
            in_flight += 1
            most = max(most, in_flight)
        done.wait(0.05)  # each answer takes a moment, so that requests would overlap
        with lock:
            in_flight -= 1
        return Response(200, FEED, RSS)

    with running(serve({f"/{n}.xml": slow for n in range(6)})) as server:
        urls = [f"{server.base_url}/{n}.xml" for n in range(6)]
        pipeline = await make_pipeline(
            urls, watcher='per_host_concurrency = 2\nper_host_spacing = "0s"'
        )
        await asyncio.gather(*(pipeline.poll(feed) for feed in pipeline.config.feeds))
        assert len(server.requests) == 6
        assert most <= 2

        starts.clear()
        spaced = await make_pipeline(urls[:3], watcher='per_host_spacing = "0.2s"')
        await asyncio.gather(*(spaced.poll(feed) for feed in spaced.config.feeds))
    gaps = [b - a for a, b in pairwise(starts)]
    assert len(gaps) == 2 and min(gaps) >= 0.19


async def test_polls_waiting_for_a_slot_do_not_start_once_stopping(make_pipeline: Any) -> None:
    answer = threading.Event()

    def held(request: Request) -> Response:
        answer.wait(10)
        return Response(200, FEED, RSS)

    with running(serve({"/0.xml": held, "/1.xml": held})) as server:
        pipeline = await make_pipeline(
            [f"{server.base_url}/0.xml", f"{server.base_url}/1.xml"], watcher="concurrency = 1"
        )
        first, second = (asyncio.create_task(pipeline.poll(f)) for f in pipeline.config.feeds)
        await asyncio.to_thread(server.wait_for, lambda requests: len(requests) == 1)
        pipeline.closing = True  # the daemon stops while the second waits for the slot
        answer.set()
        reports = await asyncio.gather(first, second)
        assert sorted(r.outcome for r in reports) == ["ok", "skipped"]
        assert len(server.requests) == 1  # the waiting one never asked
        polled = next(r.feed_id for r in reports if r.outcome == "ok")
        assert [s.last_outcome for s in pipeline.store.feed_summaries() if s.id != polled] == [None]
