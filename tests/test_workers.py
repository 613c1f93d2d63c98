"""watcher.workers: parsing in worker processes, under a time and a memory limit.

Real worker processes throughout. A parse that overruns, runs out of memory or loses its worker
must fail alone with a clear ParseError, leave no process behind, and the pool must go on parsing.
Slow inputs are attribute floods: feedparser's time grows with the square of an element's
attribute count (20,000 take it ~2.5 s, 60,000 ~25 s), in C and Python alike.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watcher.errors import ParseError
from watcher.models import ParsedFeed
from watcher.parse import parse_feed
from watcher.workers import MiB, ParsePool, _Job, _Worker

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 6, 1, tzinfo=UTC)
URL = "https://example.com/feed"
DATA = Path(__file__).parent / "data" / "parse"
FEEDS = sorted(DATA.iterdir())
FEED = (DATA / "rss2.xml").read_bytes()
ENDLESS = 60_000  # attributes: ~25 s of parsing, so a parse that ends sooner was stopped


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    before = set(children())
    yield
    assert set(children()) <= before


def children() -> dict[int, float]:
    """This process's children (zombies too), each with the CPU seconds it has used."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it exited meanwhile
            continue
        fields = text[text.rindex(")") + 2 :].split()  # the name in brackets may hold spaces
        if int(fields[1]) == os.getpid():
            ticks = int(fields[11]) + int(fields[12])  # user and system time
            found[int(stat.parent.name)] = ticks / os.sysconf("SC_CLK_TCK")
    return found


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.01)


async def busy_worker(before: Mapping[int, float]) -> int:
    """The pid of the worker that has used 0.2 s more CPU than in ``before``: it is parsing."""
    busy: list[int] = []

    def found() -> bool:
        busy[:] = [pid for pid, cpu in children().items() if cpu > before.get(pid, 0.0) + 0.2]
        return bool(busy)

    await wait_until(found)
    return busy[0]


def attribute_flood(attributes: int) -> bytes:
    flood = " ".join(f'a{i}="{i}"' for i in range(attributes))
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Flood</title>'
        f"<item {flood}><title>Flooded</title></item></channel></rss>"
    ).encode()


def huge_description(megabytes: int) -> bytes:
    words = b"word " * (megabytes * MiB // 5)
    return (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>Huge</title><item>'
        b"<title>Huge</title><description>" + words + b"</description></item></channel></rss>"
    )


async def parse(pool: ParsePool, body: bytes, max_entries: int = 1000) -> ParsedFeed:
    return await pool.parse(body, url=URL, headers={}, now=NOW, max_entries=max_entries)


async def failure(parsing: Awaitable[ParsedFeed]) -> ParseError:
    with pytest.raises(ParseError) as caught:
        await parsing
    assert caught.value.url == URL
    return caught.value


async def still_parses(pool: ParsePool) -> bool:
    return await parse(pool, FEED) == parse_here(FEED)


def parse_here(body: bytes) -> ParsedFeed:
    return parse_feed(body, url=URL, headers={}, now=NOW, max_entries=1000)


def error_here(body: bytes) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse_here(body)
    return caught.value


async def test_a_feed_parses_in_a_worker_as_it_does_here() -> None:
    with ParsePool(1) as pool:
        for path in FEEDS:
            assert await parse(pool, path.read_bytes()) == parse_here(path.read_bytes())
        assert len(children()) == 1


async def test_the_feeds_own_parse_error_comes_through_and_the_worker_stays() -> None:
    crashes_feedparser = b"<rss><channel><item><title>&#99999999999999999999;</title></item>"
    with ParsePool(1) as pool:
        await parse(pool, FEED)
        workers = set(children())
        for body in (b"", b"\x89PNG\r\n\x1a\n", crashes_feedparser):
            error = await failure(parse(pool, body))
            assert error.message == error_here(body).message
        assert "OverflowError" in str(error.__cause__)  # the worker's traceback
        assert set(children()) == workers


async def test_a_bug_in_the_parser_surfaces_as_itself() -> None:
    with ParsePool(1) as pool, pytest.raises(ValueError, match="max_entries must be at least 1"):
        await parse(pool, FEED, max_entries=0)


async def test_a_parse_that_overruns_is_killed_and_the_next_gets_a_new_worker() -> None:
    with ParsePool(1, timeout=0.5) as pool:
        await parse(pool, FEED)
        [first] = children()
        started = time.monotonic()
        error = await failure(parse(pool, attribute_flood(ENDLESS)))
        assert error.message == "parsing took longer than 0.5 s; the feed was abandoned"
        assert time.monotonic() - started < 1.5  # the worker's own alarm would take 2 s
        assert first not in children()
        assert await still_parses(pool)
        assert len(children()) == 1


async def test_a_feed_queued_behind_one_that_overruns_is_parsed_by_the_next_worker() -> None:
    with ParsePool(1, timeout=0.5) as pool:
        await parse(pool, FEED)
        slow = asyncio.create_task(parse(pool, attribute_flood(ENDLESS)))
        queued = [asyncio.create_task(parse(pool, FEED)) for _ in range(3)]  # one in its pipe
        error = await failure(slow)
        assert error.message == "parsing took longer than 0.5 s; the feed was abandoned"
        assert await asyncio.gather(*queued) == [parse_here(FEED)] * 3
        assert len(children()) == 1


async def test_big_feeds_queued_behind_big_answers_flow_both_ways() -> None:
    """A job queued in a worker's pipe is sent while that worker writes its answer to the
    previous one: with both larger than what a pipe holds, neither side may wait for the
    other (a deadlock until the worker's alarm would fail them all as overrunning)."""
    items = "".join(
        f"<item><guid>g{n}</guid><title>Story {n}</title><description>{'word ' * 400}"
        "</description></item>"
        for n in range(300)
    )
    big = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Big</title>{items}'
    big_feed = (big + "</channel></rss>").encode()  # ~700 KB each way
    with ParsePool(1, timeout=20) as pool:
        parsed = await asyncio.gather(*(parse(pool, big_feed) for _ in range(4)))
        assert [len(feed.articles) for feed in parsed] == [300] * 4


async def test_a_cancelled_parse_waiting_its_turn_stops_no_other_parse() -> None:
    flood = attribute_flood(8_000)  # ~0.5 s: still parsing when the next one is cancelled
    with ParsePool(1) as pool:
        await parse(pool, FEED)
        [worker] = children()
        first, queued, last = (
            asyncio.create_task(parse(pool, body)) for body in [flood, FEED, FEED]
        )
        await busy_worker(children())  # parsing the first, the second queued in its pipe
        queued.cancel()
        assert [article.title for article in (await first).articles] == ["Flooded"]
        assert await last == parse_here(FEED)
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert list(children()) == [worker]


async def test_the_corpus_attribute_flood_overruns_a_short_limit(corpus: Path) -> None:
    flood = (corpus / "adversarial" / "attribute_flood_20000.xml").read_bytes()  # ~2.5 s
    with ParsePool(1, timeout=0.25) as pool:
        error = await failure(parse(pool, flood))
        assert error.message == "parsing took longer than 0.25 s; the feed was abandoned"
        assert await still_parses(pool)


async def test_a_parse_that_needs_too_much_memory_fails_and_the_next_one_works() -> None:
    with ParsePool(1, memory_bytes=64 * MiB) as pool:
        await parse(pool, FEED)
        [first] = children()
        error = await failure(parse(pool, huge_description(16)))  # needs ~150 MiB
        assert error.message == "parsing needed more than 64 MiB of memory; the feed was abandoned"
        assert first not in children()
        assert await still_parses(pool)


async def test_a_worker_killed_from_outside_fails_only_its_own_parse() -> None:
    with ParsePool(2) as pool:
        await parse(pool, FEED)
        victim = asyncio.create_task(parse(pool, attribute_flood(ENDLESS)))
        pid = await busy_worker(children())
        bystander = asyncio.create_task(parse(pool, attribute_flood(10_000)))  # ~0.7 s
        await wait_until(lambda: len(children()) == 2)
        os.kill(pid, signal.SIGKILL)
        error = await failure(victim)
        assert error.message == "the parse worker died (killed by SIGKILL); the feed was abandoned"
        assert [article.title for article in (await bystander).articles] == ["Flooded"]
        assert await still_parses(pool)


async def test_a_worker_that_died_while_idle_costs_no_feed_its_parse() -> None:
    """The kernel's out-of-memory killer may take an idle worker: the next feed gets a new one."""
    with ParsePool(1) as pool:
        await parse(pool, FEED)
        [idle] = children()
        os.kill(idle, signal.SIGKILL)
        stat = Path(f"/proc/{idle}/stat")
        await wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
        assert await still_parses(pool)
        assert idle not in children()


def test_a_worker_whose_parent_is_gone_stops_at_its_own_deadline() -> None:
    """Should the daemon die mid-parse, no one would kill the worker: its own alarm must."""
    worker = _Worker.start(512 * MiB, timeout=0.2)
    try:
        assert worker.handshake(10)
        worker.conn.send(_Job(attribute_flood(ENDLESS), URL, {}, NOW, 10))
        worker.conn.close()  # as if the parent had died
        assert worker.process.wait(10) == -signal.SIGALRM
    finally:
        worker.close()


async def test_parses_at_once_all_complete_in_at_most_workers_processes() -> None:
    bodies = [path.read_bytes() for path in FEEDS] * 3
    with ParsePool(2) as pool:
        results = await asyncio.gather(*(parse(pool, body) for body in bodies))
        assert results == [parse_here(body) for body in bodies]
        assert len(children()) == 2


async def test_a_cancelled_parse_stops_its_worker() -> None:
    with ParsePool(1) as pool:
        await parse(pool, FEED)
        task = asyncio.create_task(parse(pool, attribute_flood(ENDLESS)))
        await busy_worker(children())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: not children())
        assert await still_parses(pool)


async def test_close_stops_every_worker_and_fails_the_parses_in_flight() -> None:
    pool = ParsePool(2)
    await asyncio.gather(parse(pool, FEED), parse(pool, FEED))
    flood = attribute_flood(ENDLESS)
    tasks = [asyncio.create_task(parse(pool, flood)) for _ in range(3)]  # the third one waits
    await busy_worker(children())
    pool.close()
    assert children() == {}
    for task in tasks:
        assert (await failure(task)).message == "parsing was abandoned: the parse pool closed"
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        await parse(pool, FEED)


async def test_no_workers_means_parsing_in_this_process() -> None:
    async with ParsePool(0) as pool:
        assert await still_parses(pool)
        assert children() == {}


@pytest.mark.parametrize(
    ("workers", "memory_bytes", "timeout"), [(-1, MiB, 1.0), (1, 0, 1.0), (1, MiB, 0.0)]
)
def test_settings_out_of_range_are_refused(workers: int, memory_bytes: int, timeout: float) -> None:
    with pytest.raises(ValueError, match="need workers >= 0"):
        ParsePool(workers, memory_bytes=memory_bytes, timeout=timeout)
