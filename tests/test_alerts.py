"""``watcher alerts`` and ``watcher notify-test``, as a user runs them."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from tests.servers import FeedServer, Receiver, rss
from watcher.cli import main


def watcher(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def make_config(write_config, feed_server: FeedServer, receiver: Receiver) -> str:  # type: ignore[no-untyped-def]
    feed_server.put(
        "/f.xml",
        rss(
            [
                {"guid": "2", "title": "NATO second", "link": "https://example.org/2"},
                {"guid": "1", "title": "NATO first", "link": "https://example.org/1"},
            ]
        ),
    )
    return str(
        write_config(f"""
[[feeds]]
id = "world"
url = "{feed_server.url("/f.xml")}"
alert_backlog = true

[[rules]]
name = "nato"
match = "NATO"
channels = ["hook"]

[channels.hook]
urls = ["{receiver.url("/hook")}"]

[channels.broken]
urls = ["json://127.0.0.1:9/closed", "{receiver.url("/other")}"]
""")
    )


def test_alerts_lists_failures_and_retry_sends_them(
    write_config, feed_server: FeedServer, receiver: Receiver
) -> None:
    config = make_config(write_config, feed_server, receiver)
    receiver.status = 500
    watcher("run", "--once", "-c", config)

    listing = watcher("alerts", "-c", config).output.splitlines()
    assert listing[0].split() == ["ID", "STATUS", "CHANNEL", "RULE", "TRIES", "CREATED", "TITLE"]
    rows = {line.split()[0]: line.split() for line in listing[1:3]}
    # The first alert failed and backs off; the second waits behind it.
    assert rows["1"][1:5] == ["retrying", "hook", "nato", "1"]
    assert rows["2"][1:5] == ["pending", "hook", "nato", "0"]
    assert listing[3].startswith("1: retrying, next try in ")
    assert "error=500" in listing[3]

    records = [
        json.loads(line) for line in watcher("alerts", "-c", config, "--json").output.splitlines()
    ]
    assert [(r["id"], r["status"], r["title"]) for r in records] == [
        (2, "pending", "NATO second"),
        (1, "retrying", "NATO first"),
    ]
    assert records[1]["last_error"] and records[1]["next_attempt_at"]

    receiver.status = 200
    retried = watcher("alerts", "retry", "-c", config, "1", "2", "7").output
    assert "queued 1 delivery for sending" in retried
    assert "not queued (no such delivery, or already sent or pending): 2, 7" in retried
    watcher("run", "--once", "-c", config)
    assert sorted(m["title"] for m in receiver.messages("/hook")) == [
        "[nato] NATO first",
        "[nato] NATO second",
    ]
    sent = watcher("alerts", "-c", config, "--status", "sent").output
    assert len(sent.splitlines()) == 3
    assert "queued 0 deliveries" in watcher("alerts", "retry", "-c", config, "--all-dead").output


def test_retry_needs_ids_or_all_dead(
    write_config, feed_server: FeedServer, receiver: Receiver
) -> None:
    config = make_config(write_config, feed_server, receiver)
    assert (
        "give delivery IDs, or --all-dead"
        in watcher("alerts", "retry", "-c", config, code=2).output
    )


def test_notify_test_reports_each_url(
    write_config, feed_server: FeedServer, receiver: Receiver
) -> None:
    config = make_config(write_config, feed_server, receiver)
    ok = watcher("notify-test", "-c", config, "hook").output
    assert ok.startswith("ok      JSON json://127.0.0.1:")
    [message] = receiver.messages("/hook")
    assert message["title"] == "[notify-test] Test alert from watcher 0.1.0 to channel hook"

    mixed = watcher("notify-test", "-c", config, "broken", code=1).stdout.splitlines()
    assert mixed[0].startswith("FAILED  JSON json://127.0.0.1:9/")
    assert mixed[1].startswith("ok      JSON json://127.0.0.1:")
    assert (
        "no channel 'nope'; the config has hook, broken"
        in watcher("notify-test", "-c", config, "nope", code=2).output
    )


def test_rules_that_match_one_story_make_one_alert_per_channel(
    write_config, feed_server: FeedServer, receiver: Receiver
) -> None:
    feed_server.put(
        "/f.xml",
        rss(
            [
                {"guid": "2", "title": "NATO meets in Kyiv", "link": "https://example.org/2"},
                {"guid": "1", "title": "NATO budget", "link": "https://example.org/1"},
            ]
        ),
    )
    rules = "".join(
        f'[[rules]]\nname = "{name}"\nmatch = "{match}"\nchannels = {channels}\n\n'
        for name, match, channels in (
            ("nato", "NATO", '["desk", "pager"]'),
            ("kyiv", "Kyiv", '["desk"]'),
            ("meets", "meets", '["desk", "pager"]'),
        )
    )
    config = write_config(f"""
[[feeds]]
id = "world"
url = "{feed_server.url("/f.xml")}"
alert_backlog = true

{rules}
[channels.desk]
urls = ["{receiver.url("/desk")}"]

[channels.pager]
urls = ["{receiver.url("/pager")}"]
""")
    watcher("run", "--once", "-c", str(config))
    desk = {m["title"]: m["message"] for m in receiver.messages("/desk")}
    assert sorted(desk) == ["[nato, kyiv, meets] NATO meets in Kyiv", "[nato] NATO budget"]
    assert "Matched: NATO, Kyiv, meets" in desk["[nato, kyiv, meets] NATO meets in Kyiv"]
    pager = sorted(m["title"] for m in receiver.messages("/pager"))
    assert pager == ["[nato, meets] NATO meets in Kyiv", "[nato] NATO budget"]
    # each rule's match is still on record, and each delivery is marked sent
    sent = watcher("alerts", "-c", str(config), "--status", "sent", "--json").output.splitlines()
    assert sorted(json.loads(line)["rule"] for line in sent) == sorted(
        ["nato", "nato", "kyiv", "meets", "nato", "nato", "meets"]
    )
