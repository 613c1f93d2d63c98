"""The pipeline with real parts and an injected clock: delivery per channel, retries, backoff."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.clock import Clock
from tests.servers import FeedServer, LocalServer, Receiver, Request, Response, rss, running
from watcher import policy
from watcher.config import load_config
from watcher.fetch import make_client
from watcher.notify import Channels
from watcher.pipeline import DeliveryReport, Pipeline, fetch_limits
from watcher.store import Store

pytestmark = pytest.mark.anyio

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Hanging(LocalServer):
    """A webhook that takes requests and answers none until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        super().__init__(self._hang)

    def _hang(self, request: Request) -> Response:
        self.release.wait(timeout=60)
        return Response(200, b"{}")


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    server = Hanging()
    with running(server):
        yield server
        server.release.set()


def config_text(feed_url: str, channels: dict[str, str]) -> str:
    blocks = "".join(f'[channels.{name}]\nurls = ["{url}"]\n' for name, url in channels.items())
    return f"""
[[feeds]]
id = "world"
url = "{feed_url}"
alert_backlog = true

[[rules]]
name = "nato"
match = "NATO"
channels = {list(channels)!r}

{blocks}
""".replace("'", '"')


@pytest.fixture
async def make_pipeline(tmp_path: Path) -> AsyncIterator:  # type: ignore[type-arg]
    opened: list[Store] = []
    clients = []
    pipelines: list[Pipeline] = []

    async def make(feed_url: str, channels: dict[str, str], clock: Clock) -> Pipeline:
        path = tmp_path / "watcher.toml"
        path.write_text(config_text(feed_url, channels))
        config = load_config(path, {})
        store = Store.open(config.settings.database)
        store.sync_feeds((f.id, f.url) for f in config.feeds)
        opened.append(store)
        client = make_client(fetch_limits(config))
        clients.append(client)
        pipeline = Pipeline(
            config,
            store,
            Channels({n: c.urls for n, c in config.channels.items()}),
            client,
            clock=clock,
        )
        pipelines.append(pipeline)
        return pipeline

    yield make
    for pipeline in pipelines:
        pipeline.close()
    for client in clients:
        await client.aclose()
    for store in opened:
        store.close()


def story(n: int) -> dict[str, str]:
    return {"guid": f"s{n}", "title": f"NATO story {n}", "link": f"https://example.org/{n}"}


async def test_a_hanging_channel_never_delays_another(
    feed_server: FeedServer, receiver: Receiver, hanging: Hanging, make_pipeline
) -> None:
    feed_server.put("/f.xml", rss([story(1), story(2)]))
    clock = Clock(START)
    stuck_url = "json://" + hanging.base_url.removeprefix("http://") + "/?rto=30"
    pipeline = await make_pipeline(
        feed_server.url("/f.xml"), {"email": receiver.url("/ok"), "slack": stuck_url}, clock
    )
    await pipeline.poll(pipeline.config.feeds[0])  # kicks the senders off in the background
    # Both alerts reach the working channel while the other one still hangs on its first.
    await asyncio.to_thread(hanging.wait_for, lambda reqs: len(reqs) == 1)
    await asyncio.to_thread(receiver.wait_for, lambda reqs: len(reqs) == 2)
    assert len(hanging.requests) == 1 and not hanging.release.is_set()
    hanging.release.set()
    await pipeline.settle()
    assert len(hanging.requests) == 2
    assert pipeline.store.delivery_counts() == {"sent": 4}


async def test_alerts_found_while_a_channel_still_sends_reach_every_channel(
    feed_server: FeedServer, receiver: Receiver, hanging: Hanging, make_pipeline
) -> None:
    feed_server.put("/f.xml", rss([story(1)]))
    clock = Clock(START)
    stuck_url = "json://" + hanging.base_url.removeprefix("http://") + "/?rto=30"
    pipeline = await make_pipeline(
        feed_server.url("/f.xml"), {"email": receiver.url("/ok"), "slack": stuck_url}, clock
    )
    feed = pipeline.config.feeds[0]
    await pipeline.poll(feed)
    await asyncio.to_thread(hanging.wait_for, lambda reqs: len(reqs) == 1)
    await asyncio.to_thread(receiver.wait_for, lambda reqs: len(reqs) == 1)
    feed_server.put("/f.xml", rss([story(2), story(1)]))
    # The next poll's alert goes out on the idle channel at once; the busy channel's sender,
    # still waiting on story 1, takes story 2 on next.
    await pipeline.poll(feed)
    await asyncio.to_thread(receiver.wait_for, lambda reqs: len(reqs) == 2)
    assert len(hanging.requests) == 1
    hanging.release.set()
    await pipeline.settle()
    assert len(hanging.requests) == 2
    assert ["NATO story 2" in m["title"] for m in receiver.messages()] == [False, True]
    assert pipeline.store.delivery_counts() == {"sent": 4}


async def test_failures_back_off_per_channel_then_succeed(
    feed_server: FeedServer, make_pipeline
) -> None:
    failures = {"left": 2}

    def flaky(request: Request) -> Response:
        if failures["left"]:
            failures["left"] -= 1
            return Response(503, b"busy")
        return Response(200, b"{}")

    feed_server.put("/f.xml", rss([story(1), story(2), story(3)]))
    clock = Clock(START)
    with running(LocalServer(flaky)) as hook:
        url = "json://" + hook.base_url.removeprefix("http://") + "/"
        pipeline = await make_pipeline(feed_server.url("/f.xml"), {"hook": url}, clock)
        await pipeline.poll(pipeline.config.feeds[0])
        await pipeline.settle()
        # The first alert failed; the channel's other alerts wait behind it, in order,
        # instead of hammering a service that is down.
        assert len(hook.requests) == 1
        assert pipeline.store.delivery_counts() == {"retrying": 1, "pending": 2}
        assert await pipeline.deliver_due() == DeliveryReport(
            0, 0
        )  # nothing goes before the backoff ends
        assert len(hook.requests) == 1

        clock.now += policy.DELIVERY_RETRY_BASE * 1.2
        assert (await pipeline.deliver_due()).failed == 1  # second failure: backs off again
        clock.now += policy.DELIVERY_RETRY_BASE * 2 * 1.2
        report = await pipeline.deliver_due()
    assert report.sent == 3
    assert pipeline.store.delivery_counts() == {"sent": 3}
    assert [r.status for r in hook.requests] == [503, 503, 200, 200, 200]


async def test_a_delivery_is_dead_after_the_last_attempt(
    feed_server: FeedServer, make_pipeline
) -> None:
    feed_server.put("/f.xml", rss([story(1)]))
    clock = Clock(START)
    with running(LocalServer(lambda r: Response(500, b"down"))) as hook:
        url = "json://" + hook.base_url.removeprefix("http://") + "/"
        pipeline = await make_pipeline(feed_server.url("/f.xml"), {"hook": url}, clock)
        await pipeline.poll(pipeline.config.feeds[0])
        await pipeline.settle()
        for _ in range(policy.DELIVERY_MAX_ATTEMPTS - 1):
            clock.now += timedelta(hours=2)
            await pipeline.deliver_due()
    assert len(hook.requests) == policy.DELIVERY_MAX_ATTEMPTS
    assert pipeline.store.delivery_counts() == {"dead": 1}
