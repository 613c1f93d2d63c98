"""watcher.parse over the shared corpus: real-world snapshots, hostile inputs, feedparser's tests.

Every input must come out as a ``ParsedFeed`` of sane articles or as a ``ParseError``; nothing
else may escape, and parsing must not touch files or the network. Some inputs also carry a
specific expectation from ``adversarial/README.md`` (see ``EXPECTATIONS``).

The corpus is third-party data and lives outside the repository: ``<repo>/../shared/corpus``, or
``$WATCHER_CORPUS``. Without it these tests skip, except under CI (``$CI`` set), where they fail.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import CORPUS
from watcher.errors import ParseError
from watcher.models import Article, ParsedFeed
from watcher.parse import (
    MAX_LINK_CHARS,
    MAX_NAME_CHARS,
    MAX_NAMES,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    parse_feed,
)

NOW = datetime(2025, 6, 1, tzinfo=UTC)
URL = "https://example.com/"
MISSING = "(corpus missing)"
NOT_INPUTS = {"generate.py", "README.md", "MANIFEST.tsv", "FILE-COUNTS.txt", "LICENSE-NOTE.txt"}
# Controls except tab and newline, C1, zero-width space, word joiner, BOM, bidi overrides and
# isolates, non-characters, lone surrogates: what no stored text may contain.
UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060\ufeff"
    "\u202a-\u202e\u2066-\u2069\ufffe\uffff\ud800-\udfff]"
)

Outcome = ParsedFeed | ParseError


def corpus_inputs(folder: str) -> list[str]:
    """Paths (relative to the corpus) of the inputs in ``folder``; a placeholder when the corpus
    is missing, so that the ``corpus`` fixture gets to skip or fail the test."""
    root = CORPUS / folder
    if not root.is_dir():
        return [MISSING]
    inputs = (path for path in root.rglob("*") if path.is_file())
    return sorted(str(path.relative_to(CORPUS)) for path in inputs if is_input(path))


def is_input(path: Path) -> bool:
    sidecar = path.name.endswith(".headers.json")
    return not sidecar and path.name not in NOT_INPUTS and "LICENSES" not in path.parts


@pytest.fixture(autouse=True)
def parse_does_no_io(no_io: list[str]) -> Iterator[None]:
    """Every corpus parse runs with file opens and connections refused, and reported.
    (The tests read their inputs through pathlib, which does not use ``builtins.open``.)"""
    yield
    assert no_io == [], f"parse tried to open files or connections: {no_io}"


def parse_input(corpus: Path, relative: str, max_entries: int = 1000) -> tuple[Outcome, float]:
    """Parse one corpus input with its sidecar headers; check the invariants; time it."""
    path = corpus / relative
    sidecar = path.with_name(path.name + ".headers.json")
    headers = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    body = path.read_bytes()
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome: Outcome = parse_feed(
                body, url=URL, headers=headers, now=NOW, max_entries=max_entries
            )
        except ParseError as error:
            outcome = error
    seconds = time.monotonic() - started
    assert [str(warning.message) for warning in caught] == []
    check_invariants(outcome)
    return outcome, seconds


def check_invariants(outcome: Outcome) -> None:
    if isinstance(outcome, ParseError):
        assert outcome.message
        assert outcome.url == URL
        assert "\n" not in outcome.message
        return
    assert isinstance(outcome, ParsedFeed)
    check_line(outcome.title, MAX_TITLE_CHARS)
    check_link(outcome.link)
    keys = [article.key for article in outcome.articles]
    assert len(set(keys)) == len(keys)
    for article in outcome.articles:
        check_article(article)


def check_article(article: Article) -> None:
    assert re.fullmatch("[0-9a-f]{64}", article.key)
    check_line(article.title, MAX_TITLE_CHARS)
    check_link(article.link)
    for text in (article.summary, article.content):
        assert len(text) <= MAX_TEXT_CHARS
        assert not UNSAFE.search(text), repr(text[:200])
    assert len(article.authors) <= MAX_NAMES
    assert len(article.tags) <= MAX_NAMES
    for name in (*article.authors, *article.tags):
        assert name
        check_line(name, MAX_NAME_CHARS)
    if article.published is not None:
        assert article.published.utcoffset() == timedelta(0)
        assert datetime(1990, 1, 1, tzinfo=UTC) <= article.published <= NOW + timedelta(days=1)


def check_line(text: str, cap: int) -> None:
    assert len(text) <= cap
    assert not UNSAFE.search(text), repr(text[:200])
    assert "\n" not in text
    assert "\t" not in text


def check_link(link: str | None) -> None:
    if link is not None:
        parts = urlsplit(link)
        assert parts.scheme in ("http", "https"), link
        assert parts.netloc, link
        assert len(link) <= MAX_LINK_CHARS


# --- what particular inputs must give ------------------------------------------------------

Expectation = Callable[[Outcome, float], None]


def error_mentioning(*fragments: str) -> Expectation:
    def check(outcome: Outcome, seconds: float) -> None:
        assert isinstance(outcome, ParseError), outcome
        for fragment in fragments:
            assert fragment in outcome.message

    return check


def feedparser_crash(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParseError), outcome
    assert outcome.message.startswith("feedparser failed:")
    assert outcome.__cause__ is not None


def articles(count: int, *, partial: bool = False) -> Expectation:
    def check(outcome: Outcome, seconds: float) -> None:
        assert isinstance(outcome, ParsedFeed), outcome
        assert len(outcome.articles) == count
        assert (outcome.warning is not None) == partial

    return check


def partial_result(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    assert len(outcome.articles) >= 10
    assert outcome.warning


def no_entity_expansion(outcome: Outcome, seconds: float) -> None:
    assert seconds < 10
    assert isinstance(outcome, ParsedFeed), outcome
    texts = [outcome.title] + [a.title + a.summary + a.content for a in outcome.articles]
    assert not any("AAAAAAAAAA" in text or "lollollol" in text for text in texts)


def no_local_file_contents(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    texts = [outcome.title] + [a.title + a.summary + a.content for a in outcome.articles]
    assert not any("root:" in text for text in texts)


def script_links_dropped(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    links = {a.title: a.link for a in outcome.articles}
    assert links["javascript link"] is None
    assert links["obfuscated javascript"] is None
    assert links["data uri"] is None
    assert links["script tag"] == "https://example.com/1"


def javascript_base_ignored(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    assert outcome.link is None
    assert all(a.link is None or a.link.startswith(URL) for a in outcome.articles)


def capped_at_500_in_document_order(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    assert len(outcome.articles) == 500
    assert [a.title.split(":")[0] for a in outcome.articles[:3]] == [
        "Entry 0",
        "Entry 1",
        "Entry 2",
    ]


def absurd_dates_dropped(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    dates = {a.title.split(":")[0]: a.published for a in outcome.articles}
    assert dates["date #0"] == datetime(2025, 1, 6, 10, tzinfo=UTC)
    for absurd in ("#4", "#6", "#7", "#8", "#13"):  # year 0, 99999, 1901, 2038, unix seconds
        assert dates[f"date {absurd}"] is None


def guid_collisions_keep_the_first(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    titles = [a.title for a in outcome.articles]
    assert "same guid A" in titles
    assert "same guid B (different content)" not in titles
    assert "trailing space variant" not in titles
    assert "case variant" in titles
    assert titles.count("no guid no link no date") == 1


def json_items_checked_one_by_one(outcome: Outcome, seconds: float) -> None:
    assert isinstance(outcome, ParsedFeed), outcome
    assert outcome.warning == "skipped 3 invalid JSON Feed item(s)"
    assert (outcome.title, outcome.link) == ("", None)
    assert [a.title for a in outcome.articles][:2] == ["", "dup A"]
    assert all(a.link is None for a in outcome.articles)


def text_readable(title: str) -> Expectation:
    def check(outcome: Outcome, seconds: float) -> None:
        assert isinstance(outcome, ParsedFeed), outcome
        assert outcome.articles[0].title == title

    return check


EXPECTATIONS: dict[str, Expectation] = {
    "adversarial/billion_laughs.xml": no_entity_expansion,
    "adversarial/quadratic_blowup.xml": no_entity_expansion,
    "adversarial/quadratic_blowup_1g.xml": no_entity_expansion,
    "adversarial/xxe_file_etc_passwd.xml": no_local_file_contents,
    "adversarial/xxe_atom_file_hostname.xml": no_local_file_contents,
    "adversarial/xxe_parameter_entity_oob.xml": articles(1),
    "adversarial/xxe_external_dtd.xml": articles(1),
    "adversarial/charref_beyond_unicode.xml": feedparser_crash,
    "adversarial/charref_lone_surrogate.xml": feedparser_crash,
    "adversarial/charref_overflow.xml": feedparser_crash,
    "adversarial/georss_gml_srsname_not_numeric.xml": feedparser_crash,
    # No longer a crash: its entity declaration is dropped before feedparser sees it.
    "adversarial/doctype_entity_backslash.xml": articles(1, partial=True),
    "adversarial/truncated_mid_element.xml": partial_result,
    "adversarial/truncated_mid_cdata.xml": partial_result,
    "adversarial/truncated_mid_utf8_sequence.xml": partial_result,
    "adversarial/truncated_after_xml_decl.xml": error_mentioning("not a feed"),
    "adversarial/binary_garbage.bin": error_mentioning("not a feed"),
    "adversarial/image_png_as_feed.png": error_mentioning("not a feed: got a PNG image"),
    "adversarial/gzip_bomb_100mib.xml.gz": error_mentioning("not a feed: got gzip"),
    "adversarial/html_instead_of_feed.html": error_mentioning(
        "got HTML, not a feed", "advertises https://example.com/feeds/all.rss"
    ),
    "adversarial/bot_challenge_page_served_as_rss.html": error_mentioning(
        "got HTML", "bot-challenge", "Just a moment..."
    ),
    "adversarial/body_is_local_path_dev_zero.txt": error_mentioning("not a feed"),
    "adversarial/body_is_local_path_etc_passwd.txt": error_mentioning("not a feed"),
    "adversarial/body_is_url.txt": error_mentioning("not a feed"),
    "adversarial/xss_javascript_links_rss.xml": script_links_dropped,
    "adversarial/xss_atom_xhtml_and_base.xml": javascript_base_ignored,
    "adversarial/entries_10000.xml": capped_at_500_in_document_order,
    "adversarial/weird_dates.xml": absurd_dates_dropped,
    "adversarial/guid_abuse.xml": guid_collisions_keep_the_first,
    "adversarial/json_deep_nesting.json": error_mentioning("invalid JSON Feed", "nested deeper"),
    "adversarial/json_items_is_object.json": error_mentioning("invalid JSON Feed", "'items'"),
    "adversarial/json_feed_wrong_types.json": json_items_checked_one_by_one,
    "adversarial/content_type_charset_conflict.xml": text_readable("Новости ✓"),
    "adversarial/bom_utf16le_vs_decl_utf8.xml": text_readable("café ✓"),
    "adversarial/bom_utf8_vs_decl_latin1.xml": text_readable("café ✓"),
    "adversarial/invalid_utf8_bytes.xml": articles(7),
    "adversarial/undeclared_html_entities.xml": articles(1, partial=True),
    "adversarial/titles_1mb_x3.xml": articles(3),
    "adversarial/description_5mb_single_entry.xml": articles(1),
    "adversarial/deep_nesting_xhtml_5000.xml": text_readable("deep"),
    "realworld/newsboat/empty.xml": error_mentioning("empty response"),
    "realworld/node-feedparser/notafeed.html": error_mentioning("got HTML, not a feed"),
    "realworld/node-feedparser/compressed.xml": error_mentioning("gzip"),
    "realworld/feedjira/json_feed.json": articles(20),
    "realworld/feedjira/json_feed_with_escaped_uris.json": articles(30),
    "realworld/reader/full.json": articles(2),
    "realworld/miniflux/koi8r.xml": articles(2),
    "realworld/rss-parser/giantbomb-podcast.rss": articles(730),
}
MAX_ENTRIES = {"adversarial/entries_10000.xml": 500}


def check_input(corpus: Path, relative: str) -> None:
    outcome, seconds = parse_input(corpus, relative, MAX_ENTRIES.get(relative, 1000))
    if relative in EXPECTATIONS:
        EXPECTATIONS[relative](outcome, seconds)


@pytest.mark.parametrize("relative", corpus_inputs("realworld"))
def test_realworld_feed(corpus: Path, relative: str) -> None:
    check_input(corpus, relative)


@pytest.mark.parametrize("relative", corpus_inputs("adversarial"))
def test_adversarial_input(corpus: Path, relative: str) -> None:
    check_input(corpus, relative)


def test_every_expectation_names_an_input(corpus: Path) -> None:
    inputs = set(corpus_inputs("realworld") + corpus_inputs("adversarial"))

    assert set(EXPECTATIONS) - inputs == set()


def test_feedparser_test_suite_files(corpus: Path) -> None:
    # One test for 2,107 small files: a failure lists every file that broke.
    inputs = corpus_inputs("feedparser-tests")
    failures = []
    for relative in inputs:
        try:
            parse_input(corpus, relative)
        except Exception as exc:  # collect assertion failures and escaped exceptions alike
            failures.append(f"{relative}: {type(exc).__name__}: {exc}")

    assert len(inputs) > 2000
    assert failures == []
