"""The whole path as a user runs it: feeds on a real HTTP server, a real SQLite file, alerts
through Apprise's json:// to a real receiver, driven through the ``watcher`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from tests.configs import NATO_UKRAINE_ENTITIES
from tests.servers import FeedServer, Receiver, rss
from watcher.cli import main

BACKLOG = [
    {
        "guid": "w-2",
        "title": "NATO ministers arrive in Kyiv",
        "link": "https://example.org/2",
        "description": "An old story that already matches the rule.",
        "pubDate": "Wed, 25 Nov 2026 12:00:00 +0000",
    },
    {
        "guid": "w-1",
        "title": "Markets steady",
        "link": "https://example.org/1",
        "description": "Nothing to see.",
        "pubDate": "Tue, 24 Nov 2026 12:00:00 +0000",
    },
]
MATCHING = {
    "guid": "w-3",
    "title": "Alliance pledges air defence",
    "link": "https://example.org/3",
    "description": "The <b>North Atlantic Treaty Organization</b> promised systems to "
    "Ukraine&#8217;s capital.",
    "pubDate": "Fri, 27 Nov 2026 09:00:00 +0000",
}
NOT_MATCHING = {
    "guid": "w-4",
    "title": "Senator visits Kyiv",
    "link": "https://example.org/4",
    "description": "A senator, not the alliance, went to Kyiv.",
}


def config_text(feed_server: FeedServer, receiver: Receiver, interval: str = "10m") -> str:
    return f"""
[watcher]
database = "sqlite:///state/watcher.db"
default_interval = "{interval}"
per_host_spacing = "0s"  # every test feed is on 127.0.0.1; politeness has its own test

[[feeds]]
id = "world"
url = "{feed_server.url("/world.xml")}"
tags = ["world"]

[[feeds]]
id = "html-page"
url = "{feed_server.url("/page.html")}"

[[feeds]]
id = "gone"
url = "{feed_server.url("/missing.xml")}"

{NATO_UKRAINE_ENTITIES}
[[rules]]
name = "nato-ukraine"
match = "@nato AND @ukraine"
channels = ["newsroom", "desk"]
feeds = ["tag:world"]

[channels.newsroom]
urls = ["{receiver.url("/newsroom")}"]

[channels.desk]
urls = ["{receiver.url("/desk")}"]
"""


def watcher(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_poll_store_match_alert(
    tmp_path: Path, feed_server: FeedServer, receiver: Receiver, write_config
) -> None:
    feed_server.put("/world.xml", rss(BACKLOG))
    feed_server.put("/page.html", b"<html><body>Welcome</body></html>", content_type="text/html")
    config = write_config(config_text(feed_server, receiver))

    # First poll: the backlog is stored, not alerted; broken feeds do not stop the others.
    first = watcher("run", "--once", "-c", str(config))
    assert "world: ok: 2 new, 0 matched" in first.output
    assert "html-page: error: got HTML, not a feed" in first.output
    assert "gone: error: HTTP 404" in first.output
    assert receiver.messages() == []
    assert (tmp_path / "state" / "watcher.db").exists()

    # A new matching article alerts each channel exactly once; a non-matching one never.
    feed_server.put("/world.xml", rss([NOT_MATCHING, MATCHING, *BACKLOG]))
    second = watcher("run", "--once", "-c", str(config))
    assert "world: ok: 2 new, 1 matched" in second.output
    assert "deliveries: 2 sent, 0 failed" in second.output
    for channel in ("/newsroom", "/desk"):
        [message] = receiver.messages(channel)
        assert message["title"] == "[nato-ukraine] Alliance pledges air defence"
        body = message["message"]
        assert "https://example.org/3" in body
        assert "Matched: North Atlantic Treaty Organization, Ukraine" in body
        assert "Feed: Test wire (world)" in body

    # Polling again: the server answers 304 and nothing new is stored or sent.
    third = watcher("run", "--once", "-c", str(config))
    assert "world: not_modified" in third.output
    assert feed_server.gets("/world.xml")[-1].headers.get("if-none-match")
    assert feed_server.gets("/world.xml")[-1].status == 304
    assert len(receiver.messages()) == 2

    # An edited entry (same guid, new text that now matches) is updated, not alerted again.
    edited = dict(NOT_MATCHING, title="Senator visits Kyiv with NATO envoy")
    feed_server.put("/world.xml", rss([edited, MATCHING, *BACKLOG]))
    fourth = watcher("run", "--once", "-c", str(config))
    assert "world: ok: 0 new, 0 matched" in fourth.output
    assert len(receiver.messages()) == 2

    listing = watcher("feeds", "-c", str(config)).output
    lines = listing.splitlines()
    assert lines[0].split() == ["FEED", "HEALTH", "LAST", "POLL", "NEXT", "POLL", "ARTICLES"]
    world = next(line for line in lines if line.startswith("world "))
    assert world.split()[1] == "ok" and world.endswith(" 4")
    html_page = next(line for line in lines if line.startswith("html-page "))
    assert "failing for " in html_page and " (4 polls)" in html_page
    assert "html-page: last error: got HTML, not a feed" in listing
    assert "gone: last error: HTTP 404" in listing
    records = {
        r["id"]: r
        for r in map(json.loads, watcher("feeds", "-c", str(config), "--json").stdout.splitlines())
    }
    assert (records["world"]["health"], records["world"]["articles"]) == ("ok", 4)
    assert records["html-page"]["health"] == "failing"
    assert records["html-page"]["consecutive_failures"] == 4
    assert records["html-page"]["last_error"].startswith("got HTML, not a feed")


def test_daemon_alerts_then_stops_cleanly_on_sigterm(
    tmp_path: Path, feed_server: FeedServer, receiver: Receiver, write_config
) -> None:
    feed_server.put("/world.xml", rss(BACKLOG))
    feed_server.put("/page.html", b"<html></html>", content_type="text/html")
    config = write_config(config_text(feed_server, receiver, interval="1s"))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "watcher", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        # Baseline first, then a new story: the daemon's next poll must alert both channels.
        feed_server.wait_for(
            lambda reqs: any(r.path == "/world.xml" and r.status == 200 for r in reqs)
        )
        feed_server.put("/world.xml", rss([MATCHING, *BACKLOG]))
        receiver.wait_for(lambda reqs: len([r for r in reqs if r.method == "POST"]) >= 2)
        # A second instance on the same SQLite file is refused, and says why.
        second = watcher("run", "--once", "-c", str(config), code=1)
        assert f"another watcher (pid {daemon.pid}) is already running on" in second.output
        assert "use PostgreSQL to run several" in second.output
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0, err
    assert "stopped" in err
    assert "Traceback" not in err, err
    assert sorted(r.path for r in receiver.requests) == ["/desk", "/newsroom"]
    assert "feed gone: fetch error: HTTP 404" in err


def test_secrets_never_reach_the_output(
    tmp_path: Path, feed_server: FeedServer, receiver: Receiver, write_config
) -> None:
    """A full run with debug logging (human and JSON), a failing channel whose password is
    read from a file and a feed that needs a token from the environment: neither secret
    appears in any output of any command."""
    feed_server.put("/world.xml?key=feed-s3cret", rss(BACKLOG))
    feed_server.put("/page.html", b"<html></html>", content_type="text/html")
    text = (
        config_text(feed_server, receiver)
        .replace(
            'url = "' + feed_server.url("/world.xml") + '"',
            'url = "' + feed_server.url("/world.xml") + '?key=${FEED_KEY}"\nalert_backlog = true',
        )
        .replace("json://", "json://alice:${file:hook-password}@")
    )
    config = write_config(text)
    (tmp_path / "hook-password").write_text("hook-s3cret\n")  # a secret from a file
    receiver.status = 500
    env = {"FEED_KEY": "feed-s3cret"}
    outputs = []
    for args in (
        ["--log-level", "debug", "--log-format", "json", "run", "--once"],
        ["--log-level", "debug", "run", "--once"],
        ["check"],
        ["feeds"],
        ["feeds", "--json"],
        ["alerts"],
        ["alerts", "--json"],
        ["notify-test", "newsroom"],
        ["db", "prune"],
    ):
        result = CliRunner().invoke(main, [*args, "-c", str(config)], env=env)
        outputs.append(result.output)
    everything = "\n".join(outputs)
    logged = [json.loads(line) for line in outputs[0].splitlines() if line.startswith("{")]
    assert any(r.get("feed") == "world" and "new" in r["message"] for r in logged)
    assert any(r.get("channel") == "newsroom" and r["level"] == "warning" for r in logged)
    assert "retrying" in everything  # the failing channel was really tried
    assert "world: ok: 2 new, 1 matched" in everything  # the token feed was really read
    assert "s3cret" not in everything
