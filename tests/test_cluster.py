"""Three real `watcher run` processes share one PostgreSQL database and a few hundred feeds;
one is killed with SIGKILL mid-run. Nothing may be lost, nothing polled twice at once, and no
alert sent twice except the one the dead instance had in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.servers import FeedServer, LocalServer, Request, Response, rss, running

FEEDS = 200
INTERVAL = 2.0  # seconds


class SlowReceiver(LocalServer):
    """A webhook that takes a moment per alert, so that sends are in flight when one
    instance dies."""

    def __init__(self) -> None:
        self._pause = threading.Event()  # never set: wait() is the service's own latency
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Response:
        self._pause.wait(0.01)
        return Response(200, b"{}")

    def titles(self) -> list[str]:
        return [r.json()["title"] for r in self.requests if r.method == "POST" and r.status == 200]


def story(feed: int, n: int) -> dict[str, str]:
    return {
        "guid": f"{feed}-{n}",
        "title": f"NATO story {n} of feed {feed}",
        "link": f"https://example.org/{feed}/{n}",
    }


def publish(server: FeedServer, stories: int) -> None:
    for feed in range(FEEDS):
        server.put(f"/{feed}.xml", rss([story(feed, n) for n in range(stories, 0, -1)]))


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_three_instances_share_the_work_and_survive_one_being_killed(
    tmp_path: Path, postgres_url: str, daemons: list[subprocess.Popen[bytes]]
) -> None:
    feeds = "".join(f'[[feeds]]\nid = "f{n}"\nurl = "{{base}}/{n}.xml"\n' for n in range(FEEDS))
    with running(FeedServer()) as feed_server, running(SlowReceiver()) as receiver:
        assert isinstance(feed_server, FeedServer) and isinstance(receiver, SlowReceiver)
        publish(feed_server, 2)
        config = tmp_path / "watcher.toml"
        config.write_text(
            f"""
[watcher]
database = "{postgres_url}"
default_interval = "{INTERVAL}s"
alert_backlog = true
lease = "3s"
concurrency = 20
per_host_concurrency = 50
per_host_spacing = "0s"
parse_workers = 1

{feeds.replace("{base}", feed_server.base_url)}

[[rules]]
name = "nato"
match = "NATO"
channels = ["hook"]

[channels.hook]
urls = ["json://{receiver.base_url.removeprefix("http://")}/hook"]
"""
        )
        logs = [tmp_path / f"daemon-{n}.log" for n in range(3)]
        for log in logs:
            with log.open("wb") as output:  # a file, not a pipe nobody reads while it runs
                daemons.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "watcher", "run", "-c", str(config)],
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    )
                )
        # Kill one instance while alerts are being sent.
        receiver.wait_for(lambda reqs: len(reqs) >= 100, timeout=60)
        daemons[0].send_signal(signal.SIGKILL)
        daemons[0].wait()
        # Then every feed publishes a third story, which must reach the webhook too.
        publish(feed_server, 3)
        expected = {story(f, n)["title"] for f in range(FEEDS) for n in (1, 2, 3)}
        receiver.wait_for(
            lambda reqs: {f"[nato] {t}" for t in expected} <= set(receiver.titles()),
            timeout=90,
        )
        for process in daemons[1:]:
            process.send_signal(signal.SIGTERM)
        for process, log in zip(daemons[1:], logs[1:], strict=True):
            assert process.wait(timeout=30) == 0, log.read_text()
            assert "Traceback" not in log.read_text()

    titles = Counter(receiver.titles())
    assert set(titles) == {f"[nato] {t}" for t in expected}
    repeated = sum(count - 1 for count in titles.values())
    assert repeated <= 1, titles.most_common(3)  # at most the send the dead one had in flight

    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        articles = conn.execute(text("SELECT count(*), count(DISTINCT link) FROM articles")).one()
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all()
        )
        never = conn.execute(
            text(
                "SELECT id, last_outcome, last_success_at, lease_owner, lease_until, next_poll_at"
                " FROM feeds WHERE last_polled_at IS NULL"
            )
        ).all()
        assert never == []
    engine.dispose()
    assert tuple(articles) == (3 * FEEDS, 3 * FEEDS)  # every story stored once
    assert statuses == {"sent": 3 * FEEDS}

    # No feed was polled by two instances at once, nor sooner than its interval.
    by_feed: dict[str, list[float]] = {}
    for request in feed_server.requests:
        by_feed.setdefault(request.path, []).append(request.received)
    assert len(by_feed) == FEEDS
    gaps = [b - a for times in by_feed.values() for a, b in pairwise(sorted(times))]
    assert min(gaps) >= INTERVAL * 0.95
