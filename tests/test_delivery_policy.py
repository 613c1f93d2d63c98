"""Digests, quiet hours, rate limits and feed health alerts, end to end through the pipeline:
a real feed server, a real SQLite file, Apprise's json:// to a real receiver, and an injected
clock that the tests move (nothing sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clock import Clock
from tests.servers import FeedServer, Receiver, rss
from watcher.config import load_config
from watcher.fetch import make_client
from watcher.notify import Channels
from watcher.pipeline import Pipeline, fetch_limits
from watcher.store import Store

pytestmark = pytest.mark.anyio

START = datetime(2026, 11, 28, 12, 10, tzinfo=UTC)


@pytest.fixture
async def make_pipeline(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[tuple[Store, Any]] = []
    pipelines: list[Pipeline] = []

    async def make(text: str, clock: Clock) -> Pipeline:
        path = tmp_path / "watcher.toml"
        path.write_text(text)
        config = load_config(path, {})
        store = Store.open(config.settings.database)
        store.sync_feeds((f.id, f.url) for f in config.feeds)
        client = make_client(fetch_limits(config))
        opened.append((store, client))
        channels = Channels({n: c.urls for n, c in config.channels.items()})
        pipeline = Pipeline(config, store, channels, client, clock=clock)
        pipelines.append(pipeline)
        return pipeline

    yield make
    for pipeline in pipelines:
        pipeline.close()
    for store, client in opened:
        await client.aclose()
        store.close()


def config(feed_url: str, hook: str, *, rules: str, channel: str = "", watcher: str = "") -> str:
    return f"""
[watcher]
per_host_spacing = "0s"
{watcher}

[[feeds]]
id = "world"
url = "{feed_url}"
alert_backlog = true

{rules}

[channels.hook]
urls = ["{hook}"]
{channel}
"""


NATO_RULE = """
[[rules]]
name = "nato"
match = "NATO"
channels = ["hook"]
"""


def story(n: int, title: str = "NATO story") -> dict[str, str]:
    return {"guid": f"s{n}", "title": f"{title} {n}", "link": f"https://example.org/{n}"}


async def poll_and_send(pipeline: Pipeline) -> None:
    await pipeline.poll(pipeline.config.feeds[0])
    await pipeline.settle()
    await pipeline.deliver_due()


async def test_a_digest_gathers_the_matches_since_the_last_one(
    feed_server: FeedServer, receiver: Receiver, make_pipeline: Any
) -> None:
    rules = NATO_RULE + 'delivery = "hourly"\n'
    feed_server.put("/f.xml", rss([story(2), story(1)]))
    clock = Clock(START)
    pipeline = await make_pipeline(
        config(feed_server.url("/f.xml"), receiver.url("/hook"), rules=rules), clock
    )
    await poll_and_send(pipeline)
    assert receiver.messages() == []  # held for the digest at 13:00
    clock.now = datetime(2026, 11, 28, 12, 59, 59, tzinfo=UTC)
    await pipeline.deliver_due()
    assert receiver.messages() == []

    clock.now = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
    await pipeline.deliver_due()
    [digest] = receiver.messages()
    assert "digest" in digest["title"].lower() and "2" in digest["title"]
    body = digest["message"]
    assert body.index("NATO story 1") < body.index("NATO story 2")  # oldest first
    assert "https://example.org/1" in body and "https://example.org/2" in body
    assert "nato" in body and "hourly" in body
    assert pipeline.store.delivery_counts() == {"sent": 2}

    # the next hour brings one new story: the next digest has that one only
    feed_server.put("/f.xml", rss([story(3), story(2), story(1)]))
    await poll_and_send(pipeline)
    clock.now = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)
    await pipeline.deliver_due()
    latest = receiver.messages()[-1]["message"]
    assert "NATO story 3" in latest and "NATO story 1" not in latest

    # an hour with no matches sends no empty digest
    clock.now = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    await pipeline.deliver_due()
    assert len(receiver.messages()) == 2


async def test_quiet_hours_hold_alerts_for_one_summary_except_high_priority(
    feed_server: FeedServer, receiver: Receiver, make_pipeline: Any
) -> None:
    rules = (
        NATO_RULE
        + """
[[rules]]
name = "kyiv-urgent"
match = "Kyiv"
channels = ["hook"]
priority = "high"
"""
    )
    channel = 'quiet = "22:00-07:00"\ntimezone = "Europe/Berlin"'
    feed_server.put("/f.xml", rss([story(3, "Kyiv blackout"), story(2), story(1)]))
    clock = Clock(datetime(2026, 11, 28, 22, 30, tzinfo=UTC))  # 23:30 in Berlin
    text = config(feed_server.url("/f.xml"), receiver.url("/hook"), rules=rules, channel=channel)
    pipeline = await make_pipeline(text, clock)
    await poll_and_send(pipeline)
    [urgent] = receiver.messages()
    assert "Kyiv blackout 3" in urgent["title"]  # high priority goes through quiet hours

    clock.now = datetime(2026, 11, 29, 5, 59, tzinfo=UTC)  # 06:59 in Berlin
    await pipeline.deliver_due()
    assert len(receiver.messages()) == 1
    clock.now = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)  # 07:00 in Berlin: quiet hours end
    await pipeline.deliver_due()
    [_, summary] = receiver.messages()
    assert "quiet" in summary["title"].lower() and "2" in summary["title"]
    assert "NATO story 1" in summary["message"] and "NATO story 2" in summary["message"]
    assert "22:00-07:00" in summary["message"]
    assert pipeline.store.delivery_counts() == {"sent": 3}


async def test_a_rate_limit_folds_the_excess_into_one_summary(
    feed_server: FeedServer, receiver: Receiver, make_pipeline: Any
) -> None:
    feed_server.put("/f.xml", rss([story(n) for n in range(6, 0, -1)]))
    clock = Clock(START)
    text = config(
        feed_server.url("/f.xml"),
        receiver.url("/hook"),
        rules=NATO_RULE,
        channel='rate_limit = "2/minute"',
    )
    pipeline = await make_pipeline(text, clock)
    await poll_and_send(pipeline)
    sent = receiver.messages()
    assert [m["title"] for m in sent] == ["[nato] NATO story 1", "[nato] NATO story 2"]

    clock.now += timedelta(seconds=59)
    await pipeline.deliver_due()
    assert len(receiver.messages()) == 2  # nothing dropped, nothing sent over the limit
    clock.now += timedelta(seconds=1)
    await pipeline.deliver_due()
    [*_, summary] = receiver.messages()
    assert len(receiver.messages()) == 3
    assert "4" in summary["title"]
    for n in (3, 4, 5, 6):
        assert f"NATO story {n}" in summary["message"]
    assert "2 per minute" in summary["message"]
    assert pipeline.store.delivery_counts() == {"sent": 6}


async def test_a_failed_digest_is_retried_as_one_message(
    feed_server: FeedServer, receiver: Receiver, make_pipeline: Any
) -> None:
    rules = NATO_RULE + 'delivery = "daily 08:00"\n'
    feed_server.put("/f.xml", rss([story(2), story(1)]))
    clock = Clock(START)
    pipeline = await make_pipeline(
        config(feed_server.url("/f.xml"), receiver.url("/hook"), rules=rules), clock
    )
    await poll_and_send(pipeline)
    receiver.status = 500
    clock.now = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    await pipeline.deliver_due()
    assert pipeline.store.delivery_counts() == {"retrying": 2}
    receiver.status = 200
    clock.now += timedelta(minutes=5)
    await pipeline.deliver_due()
    [digest] = receiver.messages()
    assert "NATO story 1" in digest["message"] and "NATO story 2" in digest["message"]
    assert pipeline.store.delivery_counts() == {"sent": 2}


async def test_one_health_alert_when_a_feed_fails_and_one_when_it_recovers(
    feed_server: FeedServer, receiver: Receiver, make_pipeline: Any
) -> None:
    feed_server.put("/f.xml", b"busy", status=503)
    clock = Clock(START)
    text = config(
        feed_server.url("/f.xml"),
        receiver.url("/hook"),
        rules=NATO_RULE,
        watcher='health_channels = ["hook"]\nhealth_failures = 2',
    )
    pipeline = await make_pipeline(text, clock)
    for _ in range(5):
        await poll_and_send(pipeline)
        clock.now += timedelta(minutes=10)
    [failing] = receiver.messages()
    assert "world" in failing["title"] and "fail" in failing["title"].lower()
    assert "503" in failing["message"]

    feed_server.put("/f.xml", rss([story(1)]))
    await poll_and_send(pipeline)
    await poll_and_send(pipeline)
    titles = [m["title"] for m in receiver.messages()]
    assert len(titles) == 3  # failing, recovered, and the story itself
    assert any("recovered" in t.lower() and "world" in t for t in titles)
    assert "[nato] NATO story 1" in titles
