"""The daemon as a service: /healthz, /readyz and /metrics on a real socket, systemd's readiness
datagrams, and `watcher health`; against a daemon running in this process, a real SQLite file,
feeds on a real HTTP server and alerts to a real receiver."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from tests.servers import FeedServer, LocalServer, Receiver, Response, rss, running
from watcher.cli import main
from watcher.config import Config, load_config
from watcher.db import utcnow
from watcher.fetch import make_client
from watcher.metrics import Metrics
from watcher.notify import Channels
from watcher.pipeline import Pipeline, fetch_limits
from watcher.scheduler import run_daemon
from watcher.service import Endpoint, Readiness, sd_notify
from watcher.store import Store

pytestmark = pytest.mark.anyio

ENV = {"FEED_KEY": "feed-s3cret", "HOOK_PASSWORD": "hook-s3cret"}
STORY = {"guid": "n-1", "title": "NATO summit opens", "link": "https://example.org/n-1"}
DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_config(feeds: FeedServer, receiver: Receiver, failing: LocalServer, http: str) -> str:
    hook = receiver.base_url.removeprefix("http://")
    return f"""
[watcher]
database = "sqlite:///state/watcher.db"
default_interval = "1s"
per_host_spacing = "0s"
parse_workers = 0
delivery_max_age = "1s"  # a failed alert is dead at once
{http}

[[feeds]]
id = "world"
url = "{feeds.url("/world.xml")}?key=${{FEED_KEY}}"
alert_backlog = true

[[feeds]]
id = "broken"
url = "{feeds.url("/broken.xml")}"

[[feeds]]
id = "removed"
url = "{feeds.url("/removed.xml")}"

[[rules]]
name = "nato"
match = "NATO"
channels = ["newsroom", "pager"]
feeds = ["world"]

[[rules]]
name = "nato-digest"
match = "NATO"
channels = ["digest"]
feeds = ["world"]
delivery = "daily 08:00"

[channels.newsroom]
urls = ["json://alice:${{HOOK_PASSWORD}}@{hook}/newsroom"]

[channels.pager]
urls = ["json://{failing.base_url.removeprefix("http://")}/pager"]

[channels.digest]
urls = ["json://{hook}/digest"]
"""


@pytest.fixture
def failing() -> Iterator[LocalServer]:
    with running(LocalServer(lambda request: Response(500, b"down"))) as server:
        yield server


@pytest.fixture
def world(tmp_path: Path, feed_server: FeedServer, receiver: Receiver, failing: LocalServer):  # type: ignore[no-untyped-def]
    """Feeds served (one ok, one 404, one 410) and a function writing a config for them."""
    feed_server.put("/world.xml?key=feed-s3cret", rss([STORY]))
    feed_server.put("/removed.xml", b"", status=410)

    def write(http: str | None) -> Path:
        setting = f'http = "{http}"' if http else ""
        path = tmp_path / "watcher.toml"
        path.write_text(daemon_config(feed_server, receiver, failing, setting))
        return path

    return write


@asynccontextmanager
async def daemon(config: Config) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(config, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


async def eventually(check: Callable[[], Awaitable[bool]], task: asyncio.Task[None]) -> None:
    """Poll ``check`` until it holds, failing at the deadline or if the daemon died."""
    deadline = time.monotonic() + DEADLINE
    while not await check():
        if task.done():
            task.result()
            raise AssertionError("the daemon stopped")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def watcher(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=ENV, catch_exceptions=False)


async def test_a_running_daemon_answers_health_readiness_and_metrics(
    world, feed_server: FeedServer, receiver: Receiver
) -> None:
    port = free_port()
    path = world(f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client, daemon(load_config(path, ENV)) as task:

        async def settled() -> bool:
            try:
                text = (await client.get("/metrics")).text
            except httpx.ConnectError:  # not listening yet
                return False
            return (
                value(text, "watcher_deliveries_total", channel="newsroom", status="sent") == 1
                and value(text, "watcher_deliveries_total", channel="pager", status="dead") == 1
                and value(text, "watcher_polls_total", feed="removed", outcome="gone") == 1
                and (value(text, "watcher_polls_total", feed="broken", outcome="error") or 0) >= 1
            )

        await eventually(settled, task)
        healthz, readyz, metrics = [
            await client.get(p) for p in ("/healthz", "/readyz", "/metrics")
        ]
        result = await asyncio.to_thread(watcher, "health", "-c", str(path))

    assert (healthz.status_code, healthz.text) == (200, "ok\n")
    assert (readyz.status_code, readyz.text) == (200, "ready\n")
    assert (result.exit_code, result.output) == (0, "ready\n")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'watcher_polls_total{feed="world",outcome="ok"} 1.0' in text.splitlines()
    assert value(text, "watcher_polls_total", feed="world", outcome="error") == 0
    assert value(text, "watcher_poll_duration_seconds_count") >= 3  # type: ignore[operator]
    assert value(text, "watcher_articles_stored_total", feed="world") == 1
    assert value(text, "watcher_matches_total", rule="nato") == 1
    assert value(text, "watcher_matches_total", rule="nato-digest") == 1
    assert value(text, "watcher_deliveries_total", channel="newsroom", status="failed") == 0
    assert value(text, "watcher_deliveries_total", channel="digest", status="sent") == 0
    # The digest's alert waits in the outbox, on purpose: it is no late alert.
    assert value(text, "watcher_outbox_pending", channel="digest") == 1
    assert value(text, "watcher_outbox_pending", channel="newsroom") == 0
    assert value(text, "watcher_outbox_pending", channel="pager") == 0
    assert value(text, "watcher_outbox_oldest_pending_seconds") == 0
    health = {h: value(text, "watcher_feeds", health=h) for h in ("ok", "failing", "gone", "never")}
    assert health == {"ok": 1, "failing": 1, "gone": 1, "never": 0}
    assert value(text, "watcher_config_reloads_total") == 0
    assert "watcher_polls_created" not in text
    # Labels are ids and names only: no URL, host, user or token of a feed or a channel.
    for secret in ("s3cret", "alice", "json://", receiver.base_url, feed_server.base_url):
        assert secret.removeprefix("http://") not in text
    assert [m["title"] for m in receiver.messages("/newsroom")] == ["[nato] NATO summit opens"]

    # Once the daemon has stopped, nothing answers: not healthy.
    stopped = await asyncio.to_thread(watcher, "health", "-c", str(path))
    assert stopped.exit_code == 1
    assert f"not ready: no answer from {base}/readyz" in stopped.output


def test_watcher_health_says_when_the_endpoint_is_off(world) -> None:
    result = watcher("health", "-c", str(world(None)))
    assert result.exit_code == 1
    assert "the health endpoint is off: set [watcher] http" in result.output


async def test_the_daemon_tells_systemd_it_is_ready_then_stopping(
    world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(DEADLINE)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        async with daemon(load_config(world(None), ENV)):
            ready = await asyncio.to_thread(systemd.recv, 64)
        stopping = await asyncio.to_thread(systemd.recv, 64)
    assert (ready, stopping) == (b"READY=1", b"STOPPING=1")


def test_sd_notify_reaches_an_abstract_socket_and_is_quiet_without_one(tmp_path: Path) -> None:
    name = f"watcher-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        systemd.settimeout(DEADLINE)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert systemd.recv(64) == b"READY=1"
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})


# The endpoint alone, on a store of its own.

MINIMAL = """
[[feeds]]
id = "world"
url = "http://127.0.0.1:9/world.xml"

[[rules]]
name = "nato"
match = "NATO"
channels = ["desk"]

[channels.desk]
urls = ["json://127.0.0.1:9/desk"]
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "watcher.toml"
    path.write_text(MINIMAL)
    return load_config(path, {})


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    store = Store.open(config.settings.database)
    store.sync_feeds((feed.id, feed.url) for feed in config.feeds)
    yield store
    store.close()


@asynccontextmanager
async def endpoint(
    config: Config,
    store: Store,
    *,
    loaded: bool = True,
    running: bool = True,
    read_timeout: float = 5.0,
) -> AsyncIterator[httpx.AsyncClient]:
    """The endpoint on a free port, its readiness as given, and a client for it."""
    readiness = Readiness(store, lambda: running, config if loaded else None)
    server = Endpoint(Metrics(config, store, utcnow), readiness, read_timeout=read_timeout)
    await server.start("127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            yield client
    finally:
        await server.close()


async def test_readyz_says_why_the_daemon_is_not_ready(config: Config, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    unreachable = Store(create_engine(f"sqlite:///{tmp_path}/a-file/watcher.db"))
    good = Store.open(config.settings.database)
    try:
        cases = [
            (unreachable, True, True, "database unreachable (OperationalError)"),
            (good, False, True, "config not loaded"),
            (good, True, False, "scheduler not running"),
            (good, True, True, None),
        ]
        for store, loaded, running, reason in cases:
            async with endpoint(config, store, loaded=loaded, running=running) as client:
                ready = await client.get("/readyz")
                metrics = await client.get("/metrics")
                healthz = await client.get("/healthz")
            assert healthz.status_code == 200
            if reason is None:
                assert (ready.status_code, ready.text) == (200, "ready\n")
            else:
                assert (ready.status_code, ready.text) == (503, reason + "\n")
            # The counters are served whatever the database does; its gauges only when it
            # answers (absent, not a made-up zero, when it does not).
            assert metrics.status_code == 200
            assert 'watcher_polls_total{feed="world",outcome="ok"} 0.0' in metrics.text
            assert ("watcher_outbox_pending{" in metrics.text) is (store is good)
            assert ("watcher_feeds{" in metrics.text) is (store is good)
    finally:
        good.close()
        unreachable.close()


GOOD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (GOOD, 200),
        (b"GET /healthz?verbose=1 HTTP/1.0\r\n\r\n", 200),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"BLAH\r\n\r\n", 400),
        (b"\xff\xfe\x00\r\n\r\n", 400),
        (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 400),
        (b"GET healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 needs Host
        (b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 20000, 431),
    ],
)
async def test_a_bad_request_gets_an_error_and_the_server_serves_on(
    config: Config, store: Store, request_bytes: bytes, status: int
) -> None:
    async with endpoint(config, store) as client:
        port = client.base_url.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), DEADLINE)  # until the server closes
        writer.close()
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
        assert b"\r\nConnection: close\r\n" in answer
        assert (await client.get("/healthz")).status_code == 200


async def test_head_answers_without_a_body(config: Config, store: Store) -> None:
    async with endpoint(config, store) as client:
        response = await client.head("/metrics")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


async def test_a_slow_or_vanishing_client_is_cut_off(config: Config, store: Store) -> None:
    async with endpoint(config, store, read_timeout=0.2) as client:
        port = client.base_url.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # ...and never the rest
        answer = await asyncio.wait_for(reader.read(), DEADLINE)
        writer.close()
        _, gone = await asyncio.open_connection("127.0.0.1", port)
        gone.write(b"GET /heal")
        gone.close()
        assert (await client.get("/healthz")).status_code == 200
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_a_failed_attempt_and_the_age_of_what_waits(
    tmp_path: Path, feed_server: FeedServer, failing: LocalServer
) -> None:
    """Metrics straight from a pipeline, with the clock in hand: a failed send is counted as
    failed (to be retried), and the alert's age grows with the clock until it is sent."""
    feed_server.put("/f.xml", rss([STORY]))
    path = tmp_path / "watcher.toml"
    path.write_text(
        MINIMAL.replace("http://127.0.0.1:9/world.xml", feed_server.url("/f.xml"))
        .replace("json://127.0.0.1:9/desk", "json://" + failing.base_url[7:] + "/desk")
        .replace('url = "', 'alert_backlog = true\nurl = "', 1)
    )
    config = load_config(path, {})
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    store = Store.open(config.settings.database)
    store.sync_feeds((feed.id, feed.url) for feed in config.feeds)
    channels = Channels({name: c.urls for name, c in config.channels.items()})
    try:
        async with make_client(fetch_limits(config)) as client:
            pipeline = Pipeline(config, store, channels, client, clock=lambda: now)
            await pipeline.poll(config.feeds[0])
            await pipeline.settle()
            now += timedelta(seconds=90)
            text = (await asyncio.to_thread(pipeline.metrics.exposition)).decode()
            pipeline.close()
    finally:
        store.close()
    assert value(text, "watcher_deliveries_total", channel="desk", status="failed") == 1
    assert value(text, "watcher_deliveries_total", channel="desk", status="dead") == 0
    assert value(text, "watcher_outbox_pending", channel="desk") == 1
    assert value(text, "watcher_outbox_oldest_pending_seconds") == 90
