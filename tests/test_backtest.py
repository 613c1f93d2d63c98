"""``watcher match``: rules over feed files, URLs and stored articles, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.configs import NATO_UKRAINE_ENTITIES
from tests.servers import FeedServer, rss
from watcher.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "config" / "sample-feed.xml"

CONFIG = (
    """
[watcher]
database = "sqlite:///watcher.db"

[[feeds]]
id = "sample-wire"
url = "file:sample.xml"

"""
    + NATO_UKRAINE_ENTITIES
    + """
[[rules]]
name = "nato-ukraine"
match = "@nato AND @ukraine"
channels = ["terminal"]

[[rules]]
name = "shipping"
match = "shipping OR ships"
channels = ["terminal"]

[channels.terminal]
urls = ["console://"]
"""
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "sample.xml").write_bytes(SAMPLE.read_bytes())
    path = tmp_path / "watcher.toml"
    path.write_text(CONFIG)
    return path


def watcher(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def test_matches_in_a_feed_file_show_the_rule_the_article_and_the_words(config: Path) -> None:
    out = watcher("match", "-c", str(config), "--rule", "nato-ukraine", str(SAMPLE)).output
    assert "[nato-ukraine] matched: Alliance defence ministers meet in Kyiv" in out
    assert "link:   https://example.org/wire/ministers-meet-in-kyiv" in out
    assert "title:   Alliance defence ministers meet in Kyiv to discuss air defence" in out
    assert "North Atlantic Treaty Organization" in out.split("summary:")[1]
    assert "Senator" not in out  # not a match: not shown
    assert out.rstrip().endswith("1 match in 4 articles, 1 rule")


def test_json_gives_one_object_per_match_with_offsets_into_the_original_text(
    config: Path,
) -> None:
    out = watcher("match", "-c", str(config), "--json", str(SAMPLE)).output
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted((r["rule"], r["title"][:20]) for r in records) == [
        ("nato-ukraine", "Alliance defence min"),
        ("shipping", "Grain corridor reope"),
        ("shipping", "Senator proposes new"),
    ]
    nato = next(r for r in records if r["rule"] == "nato-ukraine")
    assert nato["source"] == str(SAMPLE)
    assert len(nato["entry_id"]) == 64
    assert nato["link"] == "https://example.org/wire/ministers-meet-in-kyiv"
    title_hits = [h for h in nato["hits"] if h["field"] == "title"]
    assert [(h["text"], nato["title"][h["start"] : h["end"]]) for h in title_hits] == [
        ("Kyiv", "Kyiv")
    ]
    assert {h["text"] for h in nato["hits"]} >= {"North Atlantic Treaty Organization", "Kyiv"}


def test_explain_shows_which_clause_held_for_a_chosen_article(config: Path) -> None:
    out = watcher(
        "match", "-c", str(config), "--explain", "--entry", "NATO summit", str(SAMPLE)
    ).output
    assert "[nato-ukraine] no match: NATO summit dates confirmed" in out
    assert "[shipping] no match: NATO summit dates confirmed" in out
    tree = out.split("[nato-ukraine] no match")[1].split("[shipping]")[0]
    assert "✓" in tree and "✗" in tree  # @nato held, @ukraine did not
    assert out.rstrip().endswith("0 matches in 1 article, 2 rules")


def test_stored_articles_show_what_a_new_rule_would_have_caught(config: Path) -> None:
    watcher("run", "--once", "-c", str(config))  # baselines the feed: stored, not alerted
    out = watcher("match", "-c", str(config), "--stored", "--since", "1d", "--json").output
    records = [json.loads(line) for line in out.splitlines()]
    assert {(r["rule"], r["source"]) for r in records} == {
        ("nato-ukraine", "sample-wire"),
        ("shipping", "sample-wire"),
    }


def test_urls_are_read_and_a_failing_source_does_not_stop_the_rest(
    config: Path, feed_server: FeedServer
) -> None:
    feed_server.put(
        "/f.xml", rss([{"guid": "1", "title": "Ships leave Kyiv", "link": "https://e.org/1"}])
    )
    result = watcher(
        "match", "-c", str(config), feed_server.url("/f.xml"), feed_server.url("/404"), code=1
    )
    assert "[shipping] matched: Ships leave Kyiv" in result.output
    assert f"error: {feed_server.url('/404')}: HTTP 404" in result.output


def test_unknown_rule_is_a_usage_error(config: Path) -> None:
    result = watcher("match", "-c", str(config), "--rule", "nope", str(SAMPLE), code=2)
    assert "no rule named nope; the config has nato-ukraine, shipping" in result.output


def test_nothing_to_read_is_a_usage_error(config: Path) -> None:
    result = watcher("match", "-c", str(config), code=2)
    assert "give feed files or URLs to read, or --stored" in result.output
