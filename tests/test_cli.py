from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from watcher import __version__
from watcher.cli import limit_malloc_arenas, main

REPO = Path(__file__).resolve().parents[1]

CONFIG = """
[[feeds]]
id = "world"
url = "https://example.org/world.xml"

[entities.nato]
names = ["NATO"]

[[rules]]
name = "nato"
match = "@nato OR \\"North Atlantic\\""
channels = ["newsroom"]

[channels.newsroom]
urls = ["slack://T1JJ3T3L2/A1BRTD4JD/${SLACK_SECRET}/#news"]
"""
SECRET = "TIiajkdnlazkcOXrIdevi7FQ"


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_check_summarises_without_revealing_secrets(write_config) -> None:
    result = invoke("check", "-c", str(write_config(CONFIG)), env={"SLACK_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert "config OK" in result.output
    assert "world: https://example.org/world.xml every 10m" in result.output
    assert 'nato: @nato OR "North Atlantic"  ->  newsroom (every feed)' in result.output
    assert "newsroom: slack://" in result.output
    assert SECRET not in result.output


def test_check_reports_mistakes_with_exit_1_and_no_traceback(write_config) -> None:
    bad = CONFIG.replace('match = "@nato OR', 'match = "@nato OR (').replace(
        'url = "https://', 'url = "ftp://'
    )
    result = invoke("check", "-c", str(write_config(bad)), env={"SLACK_SECRET": SECRET})
    assert result.exit_code == 1
    assert "feeds[0].url: got 'ftp://example.org/world.xml'" in result.output
    assert "rules[0] (nato).match:" in result.output
    assert "Traceback" not in result.output
    assert SECRET not in result.output


def test_missing_variable_is_named(write_config) -> None:
    result = invoke("check", "-c", str(write_config(CONFIG)), env={})
    assert result.exit_code == 1
    assert "environment variable SLACK_SECRET is not set" in result.output


def test_unusable_channel_url_is_a_config_error(write_config) -> None:
    text = CONFIG.replace(
        "slack://T1JJ3T3L2/A1BRTD4JD/${SLACK_SECRET}/#news", "nosuch://${SLACK_SECRET}"
    )
    result = invoke("check", "-c", str(write_config(text)), env={"SLACK_SECRET": SECRET})
    assert result.exit_code == 1
    assert "channels.newsroom.urls[0]" in result.output
    assert SECRET not in result.output


def test_missing_config_file(tmp_path: Path) -> None:
    result = invoke("check", "-c", str(tmp_path / "nope.toml"))
    assert result.exit_code == 1
    assert "no such file" in result.output


def test_example_config_checks() -> None:
    result = invoke("check", "-c", str(REPO / "watcher.example.toml"))
    assert result.exit_code == 0, result.output


def test_example_config_alerts_offline_from_the_sample_feed(tmp_path: Path) -> None:
    # The example as a new user runs it without a network: the real feeds fail (here they
    # point at a closed local port, so the test never reaches the internet), the sample
    # feed alerts once.
    example = (REPO / "watcher.example.toml").read_text()
    offline = (
        example.replace("https://", "http://127.0.0.1:9/")
        .replace("file:config/sample-feed.xml", (REPO / "config" / "sample-feed.xml").as_uri())
        # all on one host now: the politeness spacing would make the test wait for nothing
        .replace("[watcher]", '[watcher]\nper_host_spacing = "0s"')
    )
    config = tmp_path / "watcher.toml"
    config.write_text(offline)
    first = invoke("run", "--once", "-c", str(config))
    assert first.exit_code == 0, first.output
    assert (
        "=== [nato-ukraine] Alliance defence ministers meet in Kyiv to discuss air defence ==="
        in (first.output)
    )
    assert first.output.count("=== [nato-ukraine]") == 1
    assert "sample-wire: ok: 4 new, 1 matched" in first.output
    assert "deliveries: 1 sent, 0 failed" in first.output
    again = invoke("run", "--once", "-c", str(config))
    assert "=== [" not in again.output
    assert "bbc-world: error: cannot connect" in again.output


def test_db_upgrade_and_feeds_listing(write_config) -> None:
    config = str(write_config(CONFIG))
    env = {"SLACK_SECRET": SECRET}
    assert "database is up to date" in invoke("db", "upgrade", "-c", config, env=env).output
    pruned = invoke("db", "prune", "-c", config, env=env).output
    assert pruned == "pruned 0 articles, 0 deliveries and 0 feed events\n"
    listing = invoke("feeds", "-c", config, env=env).output
    # never polled, no last poll, due now (it would be polled at once), no articles
    assert listing.splitlines()[1].split() == ["world", "never", "polled", "-", "now", "0"]


def test_check_shows_feed_urls_as_written_so_tokens_stay_hidden(write_config) -> None:
    text = CONFIG.replace("world.xml", "world.xml?key=${FEED_KEY}")
    result = invoke(
        "check",
        "-c",
        str(write_config(text)),
        env={"SLACK_SECRET": SECRET, "FEED_KEY": "k-hunter2"},
    )
    assert result.exit_code == 0, result.output
    assert "world: https://example.org/world.xml?key=${FEED_KEY} every 10m" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts(shell: str) -> None:
    result = invoke("completion", shell)
    assert result.exit_code == 0
    assert "_WATCHER_COMPLETE" in result.output and f"{shell}_complete" in result.output


def test_version() -> None:
    assert invoke("--version").output == f"watcher, version {__version__}\n"


ARENAS_IN_A_BUSY_PROCESS = """
import ctypes, sys, threading
from watcher.cli import limit_malloc_arenas

limit_malloc_arenas()
together = threading.Barrier(9)

def work():
    block = bytearray(1 << 16)  # from malloc, in the arena this thread was given
    together.wait()

threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
together.wait()
ctypes.CDLL(None).malloc_stats()  # one "Arena <n>:" paragraph per arena, on stderr
"""


@pytest.mark.parametrize(
    ("environ", "most"),
    [
        ({}, 2),
        ({"MALLOC_ARENA_MAX": "16"}, 16),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=16"}, 16),
    ],
)
def test_the_daemons_threads_share_two_malloc_arenas(environ: dict[str, str], most: int) -> None:
    if platform.libc_ver()[0] != "glibc":  # musl, macOS: no arenas to limit, and none touched
        assert limit_malloc_arenas() is False
        return
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    done = subprocess.run(
        [sys.executable, "-c", ARENAS_IN_A_BUSY_PROCESS],
        env=env | environ,
        capture_output=True,
        text=True,
        check=True,
    )
    arenas = done.stderr.count("Arena ")
    assert arenas <= most
    assert arenas > 2 or most == 2  # the operator's own limit stands
