"""Crash safety of the outbox (issue 4): ``kill -9`` of a real daemon loses no alert.

A real ``python -m watcher run`` process polls a real feed server and alerts a real json://
receiver that stalls: it reads an alert, then holds its answer. The daemon is killed with
SIGKILL while an alert is held, started again on the same database, and the receiver's tally
shows what a user would see: every alert at least once, none more than twice, and only an alert
that was in flight when the daemon died ever twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers import FeedServer, LocalServer, Request, Response, rss, running
from watcher.store import Store

DEADLINE = 60.0  # seconds; generous for a slow, busy machine (each test normally takes a few)

OLD = {"guid": "old-1", "title": "Markets steady", "description": "Nothing to see."}
VOLCANOES = [
    {"guid": f"v-{n}", "title": f"Volcano {name} erupts", "link": f"https://example.org/v{n}"}
    for n, name in enumerate(("Etna", "Hekla", "Fuji", "Pelee"), 1)
]
QUAKE = {"guid": "q-1", "title": "Quake shakes the coast", "link": "https://example.org/q1"}


def alert_title(rule: str, item: dict[str, str]) -> str:
    return f"[{rule}] {item['title']}"


class StallingReceiver(LocalServer):
    """A json:// receiver that stalls: its first post, and every post after ``freeze()``, is held
    unanswered until ``release()``. A post is recorded as soon as its body is read, answered or
    not, as a receiver that shows an alert before replying would."""

    def __init__(self) -> None:
        self.arrived: list[Request] = []
        self.held: list[Request] = []
        self.answered: list[Request] = []
        self._arrival = threading.Condition()
        self._frozen = False
        self._released = threading.Event()
        super().__init__(self._respond)
        self._httpd.handle_error = self._quiet_about_killed_clients  # type: ignore[method-assign]

    def url(self, path: str) -> str:
        # rto: Apprise must still be waiting for a held answer when the daemon is killed.
        return "json://" + self.base_url.removeprefix("http://") + path + "?rto=30&cto=10"

    def _respond(self, request: Request) -> Response:
        with self._arrival:
            self.arrived.append(request)
            hold = not self._released.is_set() and (self._frozen or not self.held)
            (self.held if hold else self.answered).append(request)
            self._arrival.notify_all()
        if hold:
            self._released.wait(timeout=5 * DEADLINE)  # bounded only so no thread outlives a run
        return Response(200, b"{}")

    def _quiet_about_killed_clients(self, request: Any, client_address: Any) -> None:
        """A held answer goes to a daemon that was killed meanwhile: not the server's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            ThreadingHTTPServer.handle_error(self._httpd, request, client_address)

    def freeze(self) -> None:
        """Hold every post from now on, so the set of alerts in flight stops changing."""
        with self._arrival:
            self._frozen = True

    def release(self) -> None:
        """Answer the held posts, and every later one at once."""
        self._released.set()

    def wait_for_arrivals(self, predicate: Callable[[list[Request]], bool]) -> None:
        with self._arrival:
            if not self._arrival.wait_for(lambda: predicate(self.arrived), DEADLINE):
                raise AssertionError(f"timed out; posts so far: {titles(self.arrived)}")


def titles(requests: list[Request]) -> Counter[str]:
    return Counter(r.json()["title"] for r in requests)


@pytest.fixture
def stalling() -> Iterator[StallingReceiver]:
    server = StallingReceiver()
    with running(server):
        try:
            yield server
        finally:
            server.release()  # held handler threads finish instead of waiting out their bound


def config_text(feeds: FeedServer, receiver: StallingReceiver) -> str:
    return f"""
[watcher]
database = "sqlite:///watcher.db"
default_interval = "1s"

[[feeds]]
id = "wire"
url = "{feeds.url("/wire.xml")}"

[[rules]]
name = "volcano"
match = "volcano"
channels = ["desk"]

[[rules]]
name = "quake"
match = "quake"
channels = ["desk"]

[channels.desk]
urls = ["{receiver.url("/desk")}"]
"""


@contextmanager
def daemon(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``watcher run`` as a user starts it; killed at the end if the test left it running."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcher", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=DEADLINE)
    output = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output


def wait_for_baseline(feeds: FeedServer) -> None:
    """The daemon has fetched the feed once: what it holds now is backlog, never alerted."""
    feeds.wait_for(
        lambda reqs: any(r.path == "/wire.xml" and r.status == 200 for r in reqs), DEADLINE
    )


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a database query) until it holds; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def open_store(tmp_path: Path) -> Store:
    """The daemon's database, read alongside it (it exists once the first poll is done)."""
    return Store.open(f"sqlite:///{tmp_path / 'watcher.db'}", migrate=False)


def alerts(store: Store, status: str | None = None) -> Counter[str]:
    """The alerts ``watcher alerts`` lists, by title; only those with ``status`` if given."""
    return Counter(
        f"[{r.delivery.rule}] {r.delivery.title}"
        for r in store.recent_deliveries(limit=1000)
        if status is None or r.status == status
    )


def restart_and_deliver(
    config: Path, log: Path, stalling: StallingReceiver, owed: Counter[str]
) -> None:
    """Start the daemon again on the same database; it must send every alert still ``owed``."""
    stalling.release()
    restarted_at = len(stalling.arrived)
    with daemon(config, log) as proc:
        stalling.wait_for_arrivals(lambda posts: titles(posts[restarted_at:]) >= owed)
        stop(proc, log)


def test_kill_mid_send_loses_no_alert_and_repeats_only_one_in_flight(
    tmp_path: Path, feed_server: FeedServer, stalling: StallingReceiver, write_config
) -> None:
    expected = Counter(alert_title("volcano", item) for item in VOLCANOES)
    feed_server.put("/wire.xml", rss([OLD]))
    config = write_config(config_text(feed_server, stalling))

    with daemon(config, tmp_path / "first.log") as first, closing(open_store(tmp_path)) as store:
        wait_for_baseline(feed_server)
        feed_server.put("/wire.xml", rss([*VOLCANOES, OLD]))
        stalling.wait_for_arrivals(lambda posts: len(posts) >= 1)  # held: the daemon is mid-send
        stalling.freeze()
        answered = titles(stalling.answered)
        eventually(
            lambda: alerts(store, "sent") >= answered, "the answered alerts to be recorded as sent"
        )
        kill(first)

        # All four alerts were queued with their articles; only answered ones count as sent.
        in_flight = titles(stalling.held)
        owed = expected - answered
        assert alerts(store) == expected
        assert alerts(store, "sent") == answered
        assert alerts(store, "pending") == owed
        assert in_flight and in_flight <= owed

        restart_and_deliver(config, tmp_path / "second.log", stalling, owed)
        assert alerts(store, "sent") == expected

    received = titles(stalling.arrived)
    assert set(received) == set(expected)  # every alert arrived, and nothing else
    assert max(received.values()) <= 2
    assert {title for title, n in received.items() if n > 1} <= set(in_flight)


def test_alerts_queued_behind_a_hung_send_arrive_exactly_once_after_kill(
    tmp_path: Path, feed_server: FeedServer, stalling: StallingReceiver, write_config
) -> None:
    """New articles are stored while the channel's send hangs on an older alert; killed before
    any of their alerts went out, the restarted daemon sends each of them exactly once."""
    queued = Counter(alert_title("volcano", item) for item in VOLCANOES)
    hung = alert_title("quake", QUAKE)
    feed_server.put("/wire.xml", rss([OLD]))
    config = write_config(config_text(feed_server, stalling))

    with daemon(config, tmp_path / "first.log") as first, closing(open_store(tmp_path)) as store:
        wait_for_baseline(feed_server)
        feed_server.put("/wire.xml", rss([QUAKE, OLD]))
        stalling.wait_for_arrivals(lambda posts: len(posts) >= 1)  # the quake alert, held
        stalling.freeze()
        feed_server.put("/wire.xml", rss([*VOLCANOES, QUAKE, OLD]))
        eventually(lambda: alerts(store) >= queued, "the volcano alerts to be queued")
        kill(first)

        assert titles(stalling.arrived) == Counter({hung: 1})  # no queued alert was sent yet
        assert alerts(store, "pending") == queued + Counter({hung: 1})

        restart_and_deliver(config, tmp_path / "second.log", stalling, alerts(store, "pending"))
        assert alerts(store, "sent") == queued + Counter({hung: 1})

    received = titles(stalling.arrived)
    assert received - Counter({hung: 2}) == queued  # each queued alert exactly once
    assert 1 <= received[hung] <= 2  # the one in flight when killed
