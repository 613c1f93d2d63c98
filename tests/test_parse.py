"""Tests for watcher.parse: what a user would notice in the articles a feed turns into."""

from __future__ import annotations

import json
import time
import warnings
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import pytest

from watcher.errors import ParseError
from watcher.models import Article, ParsedFeed
from watcher.parse import (
    MAX_LINK_CHARS,
    MAX_NAME_CHARS,
    MAX_NAMES,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    entry_key,
    html_to_text,
    parse_feed,
)

DATA = Path(__file__).parent / "data" / "parse"
NOW = datetime(2025, 4, 15, 12, 0, tzinfo=UTC)
FEED_URL = "https://news.example.org/feeds/main.xml"


def parse(body: bytes | str, url: str = FEED_URL, **kwargs: Any) -> ParsedFeed:
    if isinstance(body, str):
        body = body.encode("utf-8")
    kwargs.setdefault("headers", {})
    kwargs.setdefault("now", NOW)
    return parse_feed(body, url=url, **kwargs)


def parse_error(body: bytes | str, **kwargs: Any) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(body, **kwargs)
    assert caught.value.url == kwargs.get("url", FEED_URL)
    assert "\n" not in caught.value.message
    return caught.value


def rss(*items: str, channel: str = "<title>Test feed</title>") -> str:
    body = channel + "".join(items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel>{body}</channel></rss>'


def item(**fields: str) -> str:
    return (
        "<item>" + "".join(f"<{tag}>{value}</{tag}>" for tag, value in fields.items()) + "</item>"
    )


def only_article(body: bytes | str, **kwargs: Any) -> Article:
    (article,) = parse(body, **kwargs).articles
    return article


# --- the fixture feeds ---------------------------------------------------------------------


def test_rss2_feed_reads_as_plain_text_articles() -> None:
    feed = parse((DATA / "rss2.xml").read_bytes(), url="https://gazette.example.org/feed.xml")

    assert (feed.title, feed.link, feed.warning) == (
        "Riverside Gazette",
        "https://gazette.example.org/",
        None,
    )
    ferry, library, flood = feed.articles
    assert ferry.title == "Harbour ferry adds & extends evening sailings"
    assert ferry.link == "https://gazette.example.org/news/ferry-evening-sailings"
    assert ferry.published == datetime(2025, 4, 8, 15, 30, tzinfo=UTC)
    assert ferry.summary == "The last ferry now leaves at 23:40.\n\nFares are unchanged."
    assert ferry.content == (
        "The harbour ferry will run two extra evening sailings from May.\n\n"
        "Commuters welcomed the change.\nTickets go on sale Monday."
    )
    assert "trackReader" not in ferry.content
    assert ferry.authors == ("Mara Lindqvist",)
    assert ferry.tags == ("Transport", "Harbour")
    assert library.link == "https://gazette.example.org/news/library-weekend-hours"
    assert flood.link == "https://gazette.example.org/news/flood-plan"


def test_atom_feed_uses_xhtml_content_authors_and_updated_dates() -> None:
    feed = parse((DATA / "atom.xml").read_bytes(), url="https://orchard.example.net/feed.atom")

    assert feed.title == "Orchard Notes"
    grafting, diary = feed.articles
    assert (
        grafting.content
        == "Scion wood\n\nCut the scions in late winter.\n\nwhip graft\n\ncleft graft"
    )
    assert grafting.summary == "How we saved a ninety-year-old pear."
    assert grafting.published == datetime(2025, 3, 1, 15, 0, tzinfo=UTC)
    assert grafting.authors == ("Ines Okafor", "Tomas Brandt")
    assert grafting.tags == ("grafting", "pears")
    assert diary.link == "https://orchard.example.net/diary/week-9"
    assert diary.published == datetime(2025, 2, 24, 17, 45, tzinfo=UTC)  # <updated> only
    assert diary.content == "Cold week. Pruned 14 trees & sharpened the saws."


def test_rdf_feed_reads_dublin_core_fields() -> None:
    feed = parse((DATA / "rdf.xml").read_bytes(), url="https://birds.example.com/rss")

    assert feed.title == "Marsh Bird Count"
    avocets, geese = feed.articles
    assert avocets.title == "Week 14: first avocets of spring"
    assert avocets.link == "https://birds.example.com/counts/2025-w14"
    assert avocets.published == datetime(2025, 4, 6, 7, 30, tzinfo=UTC)
    assert avocets.authors == ("Priya Nandakumar",)
    assert avocets.tags == ("avocet",)
    assert geese.published == datetime(2025, 3, 30, 6, 30, tzinfo=UTC)


def test_json_feed_reads_items_like_any_other_feed() -> None:
    body = (DATA / "feed.json").read_bytes()

    feed = parse(body, url="https://trams.example.com/feed.json")

    assert (feed.title, feed.link) == ("Tram Works Bulletin", "https://trams.example.com/")
    renewal, museum = feed.articles
    assert renewal.link == "https://trams.example.com/bulletins/88"
    assert renewal.summary == "Quay Street closes to trams for nine nights."
    assert renewal.content == (
        "Night work on Quay Street starts 14 April.\n\nReplacement buses run every 10 minutes."
    )
    assert renewal.published == datetime(2025, 4, 10, 4, 0, tzinfo=UTC)
    assert renewal.authors == ("Works Desk",)
    assert renewal.tags == ("closures", "Quay Street")
    assert museum.authors == ("Press Office",)  # JSON Feed 1.0 'author'
    assert (
        museum.content == "The Museum stop opens on Saturday.\nStep-free access on both platforms."
    )
    assert museum.key == entry_key(guid="87", link=None, title="", date="", summary="")


def test_json_feed_is_recognised_by_content_type_whatever_the_case() -> None:
    body = b'\n  ["not", "an", "object"]'

    error = parse_error(body, headers={"CONTENT-TYPE": "application/feed+json; charset=utf-8"})

    assert error.message == "invalid JSON Feed: the top level is a list"


# --- identity ------------------------------------------------------------------------------


def test_keys_are_stable_across_parses_and_edits() -> None:
    original = parse((DATA / "rss2.xml").read_bytes())
    edited_body = (DATA / "rss2.xml").read_text().replace("two extra", "three extra")
    edited_body = edited_body.replace("Harbour ferry adds", "Harbour ferry finally adds")

    again = parse((DATA / "rss2.xml").read_bytes())
    edited = parse(edited_body)

    assert [a.key for a in again.articles] == [a.key for a in original.articles]
    assert [a.key for a in edited.articles] == [a.key for a in original.articles]
    assert edited.articles[0].fingerprint != original.articles[0].fingerprint
    assert all(len(a.key) == 64 for a in original.articles)


def test_key_prefers_guid_then_link_then_title_and_date() -> None:
    opaque_guid = '<guid isPermaLink="false"> abc-1 </guid>'
    with_guid = only_article(rss(f"<item>{opaque_guid}<link>https://a.example/1</link></item>"))
    blank_guid = only_article(rss(item(guid="   ", link="https://a.example/1", title="T")))
    no_guid = only_article(rss(item(link="HTTPS://A.Example/1#comments", title="Other")))
    no_link = only_article(rss(item(title="T", pubDate="Mon, 07 Apr 2025 09:00:00 GMT")))
    nothing = only_article(rss(item(description="Only a body")))

    assert with_guid.key == entry_key(guid="abc-1", link=None, title="", date="", summary="")
    assert blank_guid.key == no_guid.key  # link, fragment and host case ignored
    assert blank_guid.key == entry_key(
        guid=None, link="https://a.example/1", title="", date="", summary=""
    )
    assert no_link.key == entry_key(
        guid=None, link=None, title="T", date="Mon, 07 Apr 2025 09:00:00 GMT", summary="x"
    )
    assert nothing.key == entry_key(guid=None, link=None, title="", date="", summary="Only a body")
    assert len({with_guid.key, no_guid.key, no_link.key, nothing.key}) == 4


def test_id_and_link_that_read_the_same_are_different_keys() -> None:
    link = "https://a.example/1"

    assert entry_key(guid=link, link=None, title="", date="", summary="") != entry_key(
        guid=None, link=link, title="", date="", summary=""
    )


def test_repeated_key_in_one_document_keeps_the_first_entry() -> None:
    body = rss(
        item(guid="same", title="Newest version"),
        item(guid="same", title="Older version"),
        item(guid="other", title="Another story"),
    )

    titles = [a.title for a in parse(body).articles]

    assert titles == ["Newest version", "Another story"]


# --- links ---------------------------------------------------------------------------------


def test_relative_links_are_resolved_against_the_feed_url() -> None:
    body = rss(item(title="a", link="../posts/1"), channel="<title>x</title><link>/</link>")

    feed = parse(body)

    assert feed.link == "https://news.example.org/"
    assert feed.articles[0].link == "https://news.example.org/posts/1"


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(document.domain)",
        "JavaScript:alert(1)",
        "jav&amp;#x09;ascript:alert(1)",
        "data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;",
        "vbscript:msgbox(1)",
        "mailto:editor@example.org",
        "file:///etc/passwd",
        "ftp://files.example.org/x",
        "https://" + "a" * MAX_LINK_CHARS + ".example/",
    ],
)
def test_links_that_are_not_http_are_dropped(link: str) -> None:
    body = rss(item(title="a", link=link), channel=f"<title>x</title><link>{link}</link>")

    feed = parse(body)

    assert feed.link is None or feed.link.startswith("https://news.example.org/")
    assert feed.articles[0].link is None or feed.articles[0].link.startswith(
        "https://news.example.org/"
    )


def test_relative_links_resolve_against_xml_base_then_the_feed_url() -> None:
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.org/base/">'
        '<title>x</title><link href="home"/>'
        '<entry xml:base="posts/"><id>1</id><title>a</title><link href="one.html"/></entry>'
        '<entry><id>urn:x:2</id><title>b</title><link href="/two.html"/></entry>'
        '<entry xml:base="javascript:alert(1)//"><id>urn:x:3</id><title>c</title>'
        '<link href="three.html"/></entry>'
        "</feed>"
    )

    feed = parse(body)

    assert feed.link == "https://blog.example.org/base/home"
    assert [a.link for a in feed.articles] == [
        "https://blog.example.org/base/posts/one.html",
        "https://blog.example.org/two.html",
        "https://blog.example.org/base/three.html",  # a javascript: base is ignored
    ]
    # A relative id resolves like a link (feedparser's rule), so keys stay what they have been.
    assert feed.articles[0].key == entry_key(
        guid="https://blog.example.org/base/posts/1", link=None, title="", date="", summary=""
    )


def test_one_document_resolves_against_each_url_it_is_read_from() -> None:
    body = rss(item(guid="7", title="a", link="posts/7"), channel="<title>x</title><link>./</link>")
    urls = ["https://one.example/feeds/a.xml", "https://two.example/b/c.xml"]

    feeds = [parse(body, url=url) for url in [*urls, urls[0]]]

    assert [(f.link, f.articles[0].link) for f in feeds] == [
        ("https://one.example/feeds/", "https://one.example/feeds/posts/7"),
        ("https://two.example/b/", "https://two.example/b/posts/7"),
        ("https://one.example/feeds/", "https://one.example/feeds/posts/7"),
    ]
    assert feeds[0].articles[0].key != feeds[1].articles[0].key  # a permalink guid resolves too


def test_relative_links_of_a_local_file_feed_are_dropped() -> None:
    article = only_article(rss(item(title="a", link="posts/1")), url="file:///srv/feed.xml")

    assert article.link is None


# --- untrusted text ------------------------------------------------------------------------


def test_control_bidi_and_invisible_characters_are_stripped() -> None:
    nasty = "a\x1b[31mred\x1b[0m\x07 \u202eexe.txt\u2066 z\u200bw\ufeff end"
    body = rss(item(title=f"Title {nasty}\nsecond line", description=f"Line one {nasty}\nLine two"))

    article = only_article(body)

    assert article.title == "Title a[31mred[0m exe.txt zw end second line"
    assert article.summary == "Line one a[31mred[0m exe.txt zw end\nLine two"


def test_c1_controls_are_stripped() -> None:
    # In XML, feedparser already turns C1 controls into their windows-1252 look-alikes.
    document = {"items": [{"id": "1", "title": "a\x9bb\x85c", "summary": "d\x85e\x9bf"}]}

    article = only_article(json.dumps(document))

    assert (article.title, article.summary) == ("ab c", "d\nef")


def test_lone_surrogates_and_noncharacters_are_stripped() -> None:
    document = {"items": [{"id": "1", "title": "ok\ud800 \uffff\ufffe here"}]}

    article = only_article(json.dumps(document))

    assert article.title == "ok here"


def test_lengths_are_capped() -> None:
    categories = "".join(f"<category>{i}{'c' * 300}</category>" for i in range(80))
    body = rss(
        "<item>"
        f"<title>{'t' * 5000}</title><description>{'word ' * 60_000}</description>"
        f"<author>me@example.org ({'n' * 500})</author>{categories}"
        "</item>"
    )

    article = only_article(body)

    assert len(article.title) == MAX_TITLE_CHARS
    assert len(article.summary) <= MAX_TEXT_CHARS
    assert article.summary.startswith("word word")
    assert len(article.tags) == MAX_NAMES
    assert all(len(tag) == MAX_NAME_CHARS for tag in article.tags)
    assert [len(name) for name in article.authors] == [MAX_NAME_CHARS]


def test_summary_equal_to_content_is_kept_twice() -> None:
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title><entry><id>1</id>'
        "<title>t</title><content>Same words</content></entry></feed>"
    )

    article = only_article(body)

    assert (article.summary, article.content) == ("Same words", "Same words")


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("<p>Before</p><script>steal(document.cookie)</script><p>after</p>", "Before\n\nafter"),
        (
            '<script type="text/javascript"><!--\n'
            "document.write('<script src=\"https://ads.example/x.js\"></script>');\n"
            "//--></script>Story",
            "Story",
        ),
        ('<script>alert(1)</script foo="bar">Story', "Story"),
        ("<style>body { background: url(javascript:alert(1)) }</style>Story", "Story"),
        ("<svg onload=alert(1)><script>alert(2)</script><style>x{}</style></svg>Story", "Story"),
        ("<template><img src=x onerror=alert(1)>hidden</template>Story", "Story"),
        ('<a href="javascript:alert(1)" onclick="alert(2)">Story</a>', "Story"),
        ('<img src="x" onerror="alert(1)">Story', "Story"),
        ('<iframe src="javascript:alert(1)"></iframe><object data="x.swf"></object>Story', "Story"),
        ('<embed src="x.swf"><meta http-equiv="refresh" content="0;url=x">Story', "Story"),
        ("<!-- <script>alert(1)</script> -->Story", "Story"),
        ('<form action="https://evil.invalid"><input type="password">Story</form>', "Story"),
    ],
)
def test_code_and_markup_in_html_fields_never_reach_the_text(markup: str, text: str) -> None:
    # feedparser's sanitizer is off: html_to_text alone stands between the markup and the text.
    body = rss(item(guid="1", title="t", description=escape(markup)))

    assert only_article(body).summary == text


def test_xhtml_line_breaks_count_once() -> None:
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title><entry><id>1</id><title>t</title>'
        '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
        "one<br/>two<hr/>three <img src='x.png'/>four</div></content></entry></feed>"
    )

    assert only_article(body).content == "one\ntwo\nthree four"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two<br>Three</p>", "One\n\nTwo\nThree"),
        ("caf&eacute; &amp; cr&#232;me&nbsp;br&ucirc;l&eacute;e", "café & crème brûlée"),
        ("<script>alert('x')</script>Hi<style>p{}</style> there", "Hi there"),
        ("<SCRIPT type='a>b'>x</Script >kept", "kept"),
        ("a  \t b\n\n\n\n\nc", "a b\n\nc"),
        ("<a href=\"x>y\" title='q'>link</a> text", "link text"),
        ("<td>1</td><td>2</td>", "1 2"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("<!-- hidden --><![CDATA[gone]]><!DOCTYPE html><?php x ?>shown", "shown"),
        ("unclosed <!-- comment", "unclosed"),
        ("unclosed <script>forever", "unclosed"),
        ("<b>bold", "bold"),
        ("\x00nul &#27;esc &#x202e;rtl", "nul esc rtl"),
        ("one</br>two", "one\ntwo"),  # browsers read a stray </br> as <br>
        ("<script>x</script/>kept", "kept"),
        ("<script><!--\nw('<script src=x></script>');\n//--></script>kept", "kept"),
        ("<script><!--</script>shown-->", "shown-->"),  # <!-- alone does not hide </script>
        ("<style><!--</style>shown", "shown"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_html_to_text_handles_deep_nesting_and_hostile_markup_in_linear_time() -> None:
    deep = "<div>" * 5000 + "deep" + "</div>" * 5000
    hostile = ["<a" * 100_000, "<!--" * 100_000, "<![" * 100_000, "<a b='" * 50_000]
    hostile += ["<script><!--" + "<script " * 50_000, "<script>" + "<!--</script" * 50_000]

    started = time.monotonic()
    assert html_to_text(deep) == "deep"
    for markup in hostile:
        html_to_text(markup)

    # The stdlib html.parser needs minutes for these; a linear pass needs well under a second.
    assert time.monotonic() - started < 5


def test_hostile_html_in_a_feed_parses_in_linear_time() -> None:
    # feedparser's own sanitizer (off here) needs about 30 s for this 640 KB document.
    body = rss(item(guid="1", title="t", description=escape("x<!--" * 80_000)))

    started = time.monotonic()
    article = only_article(body)

    assert article.summary == "x"
    assert time.monotonic() - started < 5


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tue, 08 Apr 2025 17:30:00 +0200", datetime(2025, 4, 8, 15, 30, tzinfo=UTC)),
        ("Wed, 16 Apr 2025 11:00:00 GMT", datetime(2025, 4, 16, 11, 0, tzinfo=UTC)),
        ("Thu, 17 Apr 2025 13:00:00 GMT", None),  # more than a day ahead of NOW
        ("Thu, 01 Jan 1970 00:00:00 GMT", None),
        ("Sun, 31 Dec 1989 23:59:59 GMT", None),
        ("1736157600", None),
        ("0000-00-00", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_dates_are_utc_and_within_a_sane_window(raw: str, expected: datetime | None) -> None:
    article = only_article(rss(item(title="t", pubDate=raw)))

    assert article.published == expected


def test_json_feed_dates_without_timezone_are_utc() -> None:
    document = {
        "items": [
            {"id": "1", "date_published": "2025-04-01T08:00:00"},
            {"id": "2", "date_published": "2025-13-45T99:99:99Z", "date_modified": "2025-04-02"},
            {"id": "3", "date_published": "2999-01-01T00:00:00Z"},
        ]
    }

    dates = [a.published for a in parse(json.dumps(document)).articles]

    assert dates == [datetime(2025, 4, 1, 8, tzinfo=UTC), datetime(2025, 4, 2, tzinfo=UTC), None]


# --- outcomes ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"  \r\n\t ", b"\xef\xbb\xbf\n"])
def test_empty_body_is_an_error(body: bytes) -> None:
    assert parse_error(body).message == "empty response"


def test_valid_feed_without_entries_is_a_success() -> None:
    feed = parse(rss())

    assert (feed.title, feed.articles, feed.warning) == ("Test feed", (), None)


def test_truncated_feed_keeps_the_entries_it_has_with_a_warning() -> None:
    body = rss(*(item(guid=str(i), title=f"Story {i}") for i in range(10)))
    truncated = body[: body.index("<item><guid>6")] + "<item><ti"

    feed = parse(truncated)

    assert [a.title for a in feed.articles] == [f"Story {i}" for i in range(6)]
    assert feed.warning is not None
    assert feed.warning.startswith("malformed feed:")


def test_malformed_document_with_no_entries_is_an_error() -> None:
    error = parse_error('<?xml version="1.0"?><rss version="2.0"><channel><title>x</ti')

    assert error.message.startswith("malformed feed (rss20) with no readable entries:")


def test_html_page_names_the_feed_it_advertises() -> None:
    page = (
        "<!DOCTYPE html><html><head><title>Home</title>"
        '<link rel="stylesheet" href="/site.css">'
        '<link rel="alternate" type="application/atom+xml" href="/feeds/atom.xml">'
        "</head><body><p>Welcome</p></body></html>"
    )

    error = parse_error(page, headers={"Content-Type": "text/html"}, url="https://site.example/")

    assert error.message == (
        "got HTML, not a feed; the page advertises https://site.example/feeds/atom.xml"
    )


def test_html_without_markers_is_recognised_by_content_type() -> None:
    error = parse_error("<p>Hello</p>", headers={"content-type": "text/html; charset=utf-8"})

    assert error.message == "got HTML, not a feed"


def test_bot_challenge_page_says_so() -> None:
    page = (
        "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
        "<body><h1>Checking your browser</h1></body></html>"
    )

    error = parse_error(page, headers={"content-type": "application/rss+xml"})

    assert error.message.startswith("got HTML, not a feed (a bot-challenge page")
    assert "Just a moment..." in error.message


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a PNG image"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "gzip-compressed data"),
        (b"%PDF-1.7\n", "a PDF document"),
    ],
)
def test_known_binary_formats_are_not_feeds(body: bytes, kind: str) -> None:
    assert parse_error(body).message == f"not a feed: got {kind}"


def test_random_bytes_are_not_a_feed() -> None:
    noise = bytes((i * 7919 + 13) % 256 for i in range(4096))

    error = parse_error(noise, headers={"content-type": "text/xml; charset=utf-8"})

    assert error.message.startswith("not a feed")


def test_feedparser_crash_becomes_a_parse_error_with_its_cause() -> None:
    error = parse_error(rss(item(title="&#99999999999999999999;")))

    assert error.message.startswith("feedparser failed: OverflowError")
    assert isinstance(error.__cause__, OverflowError)


def test_max_entries_keeps_the_first_entries_in_document_order() -> None:
    body = rss(*(item(guid=str(i), title=f"Story {i}") for i in range(30)))

    feed = parse(body, max_entries=10)

    assert [a.title for a in feed.articles] == [f"Story {i}" for i in range(10)]


def test_max_entries_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        parse(rss(), max_entries=0)


def test_normal_parsing_emits_no_warnings() -> None:
    # A date that feedparser cannot parse makes FeedParserDict warn if asked for 'updated'.
    body = rss(item(title="t", pubDate="not a date"), item(title="u", pubDate="Mon, 07 Apr 2025"))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse(body)
        parse((DATA / "atom.xml").read_bytes())

    assert [str(w.message) for w in caught] == []


# --- the body is data, never a path or a URL -----------------------------------------------


@pytest.mark.parametrize("body", [b"/dev/zero", b"/etc/passwd", b"http://127.0.0.1:9/feed.xml"])
def test_body_naming_a_path_or_url_is_just_text(body: bytes, no_io: list[str]) -> None:
    error = parse_error(body)

    assert error.message.startswith("not a feed")
    assert no_io == []


def test_body_naming_a_local_feed_file_does_not_return_its_entries(tmp_path: Path) -> None:
    local_feed = tmp_path / "local.rss"
    local_feed.write_text(rss(item(guid="secret", title="Local secret")))

    with pytest.raises(ParseError):
        parse(str(local_feed))


# --- entities ------------------------------------------------------------------------------


def test_billion_laughs_is_not_expanded() -> None:
    levels = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)
    ]
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n{chr(10).join(levels)}\n]>\n'
        + rss(item(guid="1", title="&lol9;", description="&lol9;")).split("?>", 1)[1]
    )

    article = only_article(body)

    assert article.title == "&lol9;"
    assert "lollol" not in article.summary


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_quadratic_entity_blowup_is_not_expanded(encoding: str) -> None:
    refs = "&a;" * 10_000
    body = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<!DOCTYPE rss [\n<!ENTITY a "{"A" * 10_000}">\n]>\n'
        f'<rss version="2.0"><channel><title>q</title>'
        f"<item><guid>1</guid><title>x</title><description>{refs}</description></item>"
        "</channel></rss>"
    )

    article = only_article(body.encode(encoding))

    assert "AAAA" not in article.summary
    assert len(article.summary) <= len(refs)


def test_charset_that_could_hide_markup_is_not_honoured() -> None:
    # In a document decoded as unicode_escape, '\x3c!ENTITY' would become '<!ENTITY'.
    body = (
        '<?xml version="1.0" encoding="unicode_escape"?>\n'
        '<!DOCTYPE rss [\n\\x3c!ENTITY a "'
        + "A" * 1000
        + '">\n]>\n'
        + rss(item(guid="1", title="&a;")).split("?>", 1)[1]
    )

    article = only_article(body)

    assert "AAAA" not in article.title


def test_external_entities_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    body = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY xxe SYSTEM "{secret.as_uri()}">\n]>\n'
        + rss(item(guid="1", title="&xxe;", description="&xxe;")).split("?>", 1)[1]
    )

    article = only_article(body)

    assert "TOP-SECRET-MARKER" not in article.title + article.summary


# --- encodings -----------------------------------------------------------------------------


def test_valid_utf8_wins_over_a_conflicting_http_charset() -> None:
    body = rss(item(guid="1", title="Привет, café")).encode("utf-8")

    article = only_article(body, headers={"Content-Type": "text/xml; charset=windows-1251"})

    assert article.title == "Привет, café"


def test_declared_legacy_charset_is_used_for_non_utf8_bytes() -> None:
    body = rss(item(guid="1", title="Grüße aus Köln")).replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="iso-8859-1"?>'
    )

    article = only_article(body.encode("iso-8859-1"))

    assert article.title == "Grüße aus Köln"


def test_damaged_utf8_keeps_the_valid_characters() -> None:
    body = rss(item(guid="1", title="café ✓ BAD")).encode("utf-8").replace(b"BAD", b"\xff\xc0")

    article = only_article(body)

    assert article.title == "café ✓ \ufffd\ufffd"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_documents_are_read_with_or_without_bom(encoding: str) -> None:
    body = rss(item(guid="1", title="Ünïcödé")).encode(encoding)

    assert only_article(body).title == "Ünïcödé"


def test_utf7_is_never_decoded() -> None:
    body = rss(item(guid="1", title="+ADw-script+AD4-")).replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-7"?>'
    )

    assert only_article(body).title == "+ADw-script+AD4-"


# --- JSON Feed -----------------------------------------------------------------------------


def test_json_feed_items_of_the_wrong_type_are_skipped_one_by_one() -> None:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": ["not", "a", "string"],
        "home_page_url": "javascript:alert(1)",
        "items": [
            "not an object",
            None,
            42,
            {},
            {"id": 7, "title": None, "url": "javascript:alert(3)", "tags": "not-a-list"},
            {"id": "ok", "title": "Fine", "authors": [{"name": None}, "x", {"name": "Ann"}]},
        ],
    }

    feed = parse(json.dumps(document), headers={"content-type": "application/feed+json"})

    assert (feed.title, feed.link) == ("", None)
    assert [(a.title, a.link, a.tags, a.authors) for a in feed.articles] == [
        ("", None, (), ()),
        ("Fine", None, (), ("Ann",)),
    ]
    assert feed.articles[0].key == entry_key(guid="7", link=None, title="", date="", summary="")
    assert feed.warning == "skipped 4 invalid JSON Feed item(s)"


def test_json_feed_huge_integer_does_not_sink_the_feed() -> None:
    body = '{"items": [{"id": "a", "n": ' + "9" * 5000 + '}, {"id": "b"}]}'

    assert len(parse(body).articles) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"version": "1", "items": {"id": "1"}}', "invalid JSON Feed: 'items' is an object"),
        ('{"version": "1"}', "invalid JSON Feed: 'items' is missing or null, not a list"),
        ('{"items": [1, 2, "x"]}', "invalid JSON Feed: none of its 3 items is usable"),
        ('{"items": [}', "invalid JSON Feed: JSONDecodeError"),
        ('{"items": [{"x": ' + "[" * 100_000 + "]" * 100_000 + "}]}", "nested deeper than 64"),
    ],
)
def test_invalid_json_feed_is_an_error(body: str, message: str) -> None:
    assert message in parse_error(body).message


def test_json_nesting_inside_strings_does_not_count() -> None:
    body = json.dumps({"items": [{"id": "1", "title": "[" * 500 + "{" * 500}]})

    assert only_article(body).title.startswith("[[[")


def test_xml_served_as_json_is_still_read_as_xml() -> None:
    article = only_article(
        rss(item(guid="1", title="XML")), headers={"content-type": "application/json"}
    )

    assert article.title == "XML"


def test_a_thousand_entries_take_seconds_not_minutes() -> None:
    # Guards against quadratic work in normalisation; feedparser itself needs about a second.
    body = rss(
        *(item(guid=str(i), title=f"S{i}", description="<p>x</p>" * 50) for i in range(1000))
    )

    started = time.monotonic()
    feed = parse(body)

    assert len(feed.articles) == 1000
    assert time.monotonic() - started < 30
