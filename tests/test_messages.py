from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from tests.samples import DELIVERY
from watcher.errors import WatcherError
from watcher.messages import (
    DEFAULTS,
    TEMPLATE_NAMES,
    Batch,
    Format,
    Health,
    Message,
    TemplateError,
    Templates,
    format_for,
)
from watcher.models import Delivery

BARE = replace(
    DELIVERY, terms=(), feed_title=None, title="", link=None, published_at=None, summary=""
)
FAILING = Health(
    state="failing",
    feed_id="world",
    feed_title="World news",
    url="https://example.org/feed.xml",
    since=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
    failures=4,
    error="HTTP 503 from example.org",
    at=datetime(2026, 11, 27, 9, 5, tzinfo=UTC),
)
RECOVERED = replace(FAILING, state="recovered", error=None)

# Feed text that would be markup somewhere: Slack control sequences and emphasis, HTML tags,
# a link closed early, an entity that must stay literal, and a heading.
HOSTILE = (
    "<!channel> <https://evil.example|click> *bold* _it_ ~gone~ `code` <b>b</b> "
    '</a><a href="https://evil.example">x</a> <script>alert(1)</script> '
    "&amp; a & b [l](https://evil.example) # h \\<!here>"
)


def render(content: Delivery | Batch | Health, fmt: Format = Format.TEXT) -> Message:
    return Templates().render(content, "newsroom", fmt)


class Tags(HTMLParser):
    """The tags and hrefs in a piece of HTML."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.hrefs: list[str | None] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.hrefs.extend(value for name, value in attrs if name == "href")


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#news", Format.SLACK),
        ("SLACK://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", Format.SLACK),
        ("https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnla", Format.SLACK),
        ("tgram://123456789:abcdefg_hijklmnop/12315544/", Format.TELEGRAM),
        ("mailto://user:pass@example.org", Format.EMAIL),
        ("mailtos://user:pass@example.org?to=desk@example.org", Format.EMAIL),
        ("json://127.0.0.1:8080/hook", Format.TEXT),
        ("console://", Format.TEXT),
        ("https://example.org/hooks.slack.com", Format.TEXT),
        ("ntfy://topic", Format.TEXT),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/?format=text", Format.TEXT),
    ],
)
def test_format_for_url(url: str, fmt: Format) -> None:
    assert format_for(url) is fmt


def test_alert_names_rule_feed_title_link_and_terms() -> None:
    message = render(DELIVERY)
    assert message.title == "[nato-ukraine] NATO ministers meet in Kyiv"
    assert message.format is Format.TEXT
    lines = message.body.splitlines()
    assert lines[:2] == ["NATO ministers meet in Kyiv (https://example.org/story)", ""]
    assert lines[2:7] == [
        "Rule: nato-ukraine",
        "Matched: NATO, Kyiv",
        "Feed: World news (world)",
        "Published: 2026-11-27 09:30 UTC",
        "",
    ]
    excerpt, full = lines[-1], " ".join(DELIVERY.summary.split())
    assert excerpt.endswith("…") and 280 <= len(excerpt) <= 300
    cut = excerpt.removesuffix("…")
    assert full.startswith(cut) and full[len(cut)] == " "  # cut where a word ends


@pytest.mark.parametrize(
    ("fmt", "first_line"),
    [
        (Format.TEXT, "NATO ministers meet in Kyiv (https://example.org/story)"),
        (Format.SLACK, "**[NATO ministers meet in Kyiv](<https://example.org/story>)**"),
        (
            Format.TELEGRAM,
            '<b><a href="https://example.org/story">NATO ministers meet in Kyiv</a></b>',
        ),
        (
            Format.EMAIL,
            '<html><body><b><a href="https://example.org/story">NATO ministers meet in Kyiv</a>'
            " <small>(https://example.org/story)</small></b><br>",
        ),
    ],
)
def test_default_alert_in_each_format(fmt: Format, first_line: str) -> None:
    message = render(replace(DELIVERY, also_seen_in=("wire", "bbc")), fmt)
    assert message.title == "[nato-ukraine] NATO ministers meet in Kyiv"
    assert message.format is fmt
    assert message.body.startswith(first_line)
    for line in ("Matched: NATO, Kyiv", "Published: 2026-11-27 09:30 UTC"):
        assert line in message.body
    assert "Also seen in: wire, bbc" in message.body


def test_email_is_one_html_document_with_line_breaks() -> None:
    body = render(DELIVERY, Format.EMAIL).body
    assert body.startswith("<html><body>") and body.endswith("</body></html>")
    assert "\n" not in body
    assert "<br>Rule: nato-ukraine<br>Matched: NATO, Kyiv<br>" in body


@pytest.mark.parametrize("fmt", list(Format))
def test_empty_optional_fields_render_cleanly(fmt: Format) -> None:
    message = render(BARE, fmt)
    assert message.title == "[nato-ukraine] (untitled)"
    assert "(untitled)" in message.body
    assert "Feed: world" in message.body
    for absent in ("None", "Matched", "Published", "Also seen in", "()", "href"):
        assert absent not in message.body
    assert not message.body.endswith(("\n", "<br>", "<br></body></html>"))


def test_also_seen_in_is_shown_only_when_known() -> None:
    assert "Also seen in" not in render(DELIVERY).body
    seen = render(replace(DELIVERY, also_seen_in=("wire",))).body
    assert "Also seen in: wire" in seen.splitlines()


def test_a_short_summary_is_kept_whole_on_one_line() -> None:
    body = render(replace(DELIVERY, summary="Two\nlines  of   text.")).body
    assert body.splitlines()[-1] == "Two lines of text."


def test_feed_text_cannot_lay_out_the_message() -> None:
    message = render(replace(DELIVERY, title="Line\r\nBcc: victim@example.org"), Format.EMAIL)
    assert message.title == "[nato-ukraine] Line Bcc: victim@example.org"


def test_plain_text_shows_feed_text_exactly() -> None:
    message = render(replace(DELIVERY, title=HOSTILE, summary=HOSTILE), Format.TEXT)
    assert message.title == f"[nato-ukraine] {HOSTILE}"
    assert message.body.splitlines()[-1] == HOSTILE


@pytest.mark.parametrize(
    ("hostile", "written"),
    [
        ("<!channel>", "\\<!channel\\>"),
        ("<https://evil.example|click>", "\\<https://evil.example|click\\>"),
        ("*bold*", "\N{ASTERISK OPERATOR}bold\N{ASTERISK OPERATOR}"),
        ("_it_", "\N{MODIFIER LETTER LOW MACRON}it\N{MODIFIER LETTER LOW MACRON}"),
        ("~gone~", "\N{TILDE OPERATOR}gone\N{TILDE OPERATOR}"),
        ("`code`", "\N{MODIFIER LETTER GRAVE ACCENT}code\N{MODIFIER LETTER GRAVE ACCENT}"),
        ("2*3", "2\N{ASTERISK OPERATOR}3"),
        ("snake_case a~b", "snake_case a~b"),
        ("[l](https://evil.example)", "\\[l\\](https://evil.example)"),
        ("# heading", "\\# heading"),
        ("\\<!here>", "\N{SET MINUS}\\<!here\\>"),
        ("&amp; a & b", "&amp; a & b"),  # Apprise writes every & as &amp; for Slack
        ("</a><b>", "\\</a\\>\\<b\\>"),
    ],
)
def test_slack_escaping(hostile: str, written: str) -> None:
    message = render(replace(DELIVERY, summary=hostile), Format.SLACK)
    assert message.body.splitlines()[-1] == written
    assert message.title == "[nato-ukraine] NATO ministers meet in Kyiv"  # Apprise escapes it


@pytest.mark.parametrize("fmt", [Format.TELEGRAM, Format.EMAIL])
@pytest.mark.parametrize(
    ("hostile", "written"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        (
            '</a><a href="https://evil.example">x</a>',
            '&lt;/a&gt;&lt;a href="https://evil.example"&gt;x&lt;/a&gt;',
        ),
        ("<b>bold</b>", "&lt;b&gt;bold&lt;/b&gt;"),
        ("&amp; a & b", "&amp;amp; a &amp; b"),
        ("*not bold* <!channel>", "*not bold* &lt;!channel&gt;"),
    ],
)
def test_html_escaping(fmt: Format, hostile: str, written: str) -> None:
    message = render(replace(DELIVERY, title=hostile, summary=hostile), fmt)
    assert written in message.body
    parsed = Tags(message.body)
    allowed = {"b", "i", "a", "code"} | (
        {"html", "body", "br", "small"} if fmt is Format.EMAIL else set()
    )
    assert parsed.tags <= allowed and "script" not in parsed.tags
    assert set(parsed.hrefs) == {"https://example.org/story"}


def test_telegram_title_is_escaped_and_others_are_plain() -> None:
    hostile = replace(DELIVERY, title="<b>x</b> & y")
    assert render(hostile, Format.TELEGRAM).title == "[nato-ukraine] &lt;b&gt;x&lt;/b&gt; &amp; y"
    for fmt in (Format.TEXT, Format.SLACK, Format.EMAIL):
        assert render(hostile, fmt).title == "[nato-ukraine] <b>x</b> & y"


@pytest.mark.parametrize(
    ("link", "href"),
    [
        ('https://example.org/a"onclick="steal()', "https://example.org/a%22onclick=%22steal()"),
        ("https://example.org/a?x=1&y=<2>", "https://example.org/a?x=1&y=%3C2%3E"),
        ("https://example.org/a b|c", "https://example.org/a%20b%7Cc"),
    ],
)
@pytest.mark.parametrize("fmt", [Format.TELEGRAM, Format.EMAIL])
def test_link_cannot_break_out_of_its_href(link: str, href: str, fmt: Format) -> None:
    body = render(replace(DELIVERY, link=link), fmt).body
    assert Tags(body).hrefs == [href]


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,hi", "http://[bad/x"])
@pytest.mark.parametrize("fmt", list(Format))
def test_only_web_links_are_linked(fmt: Format, link: str) -> None:
    body = render(replace(DELIVERY, link=link), fmt).body
    assert link.split(":")[0] not in body and "href" not in body and "](" not in body
    assert "NATO ministers meet in Kyiv" in body


def test_slack_link_target_is_encoded() -> None:
    body = render(replace(DELIVERY, link="https://example.org/a b>c|d_e"), Format.SLACK).body
    assert body.startswith(
        "**[NATO ministers meet in Kyiv](<https://example.org/a%20b%3Ec%7Cd_e>)**"
    )


OVERRIDE = {
    "desk": {
        "alert_title": "{{ rule|upper }}: {{ title }}",
        "alert_body": '<b>{{ feed.title }}</b> → <a href="{{ link }}">open</a>\n{{ terms }}',
    }
}


def test_override_is_used_for_its_channel_only() -> None:
    templates = Templates(OVERRIDE)
    desk = templates.render(DELIVERY, "desk", Format.TEXT)
    assert desk.title == "NATO-UKRAINE: NATO ministers meet in Kyiv"
    assert desk.body == "World news → open (https://example.org/story)\nNATO, Kyiv"
    other = templates.render(DELIVERY, "newsroom", Format.TEXT)
    assert other == render(DELIVERY)


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        (Format.SLACK, "**World news** → [open](<https://example.org/story>)\nNATO, Kyiv"),
        (
            Format.TELEGRAM,
            '<b>World news</b> → <a href="https://example.org/story">open</a>\nNATO, Kyiv',
        ),
    ],
)
def test_one_override_serves_every_format(fmt: Format, body: str) -> None:
    assert Templates(OVERRIDE).render(DELIVERY, "desk", fmt).body == body


def test_override_values_are_escaped_too() -> None:
    templates = Templates({"desk": {"alert_body": "{{ title }}"}})
    hostile = replace(DELIVERY, title="<script>x</script>")
    assert (
        templates.render(hostile, "desk", Format.TELEGRAM).body == "&lt;script&gt;x&lt;/script&gt;"
    )


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("Rule: {{ rule }}\n{% if link %}unclosed", "line 2: Unexpected end of template"),
        ("{{ rule }}\n\n{{ rule | nosuchfilter }}", "line 3: No filter named 'nosuchfilter'"),
        ("{{ rule }}\n{{ alert.title }}", "line 2: UndefinedError: 'alert' is undefined"),
        ("{{ feed.nosuchfield }}", "line 1: UndefinedError: "),
    ],
)
def test_a_bad_template_is_refused_at_start(source: str, problem: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Templates({"ok": {"alert_title": "{{ rule }}"}, "desk": {"alert_body": source}})
    assert isinstance(caught.value, WatcherError)
    assert (caught.value.channel, caught.value.name) == ("desk", "alert_body")
    assert str(caught.value).startswith("channel 'desk', template 'alert_body': ")
    assert problem in str(caught.value)


def test_an_unknown_template_name_is_refused() -> None:
    with pytest.raises(TemplateError) as caught:
        Templates({"desk": {"alert_tilte": "{{ rule }}"}})
    assert (caught.value.channel, caught.value.name) == ("desk", "alert_tilte")
    assert "unknown template name; known: alert_title, alert_body" in str(caught.value)


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ("{{ ''.__class__.__mro__ }}", "'__class__' of 'str'"),
        ("{{ rule.__class__.__base__.__subclasses__() }}", "'__class__' of 'str'"),
        ("{{ cycler.__init__.__globals__ }}", "'__init__' of 'type'"),
    ],
)
def test_the_sandbox_refuses_python_internals_at_start(source: str, refused: str) -> None:
    # It raises (rather than rendering something harmless), so the mistake shows at start.
    with pytest.raises(TemplateError) as caught:
        Templates({"desk": {"alert_body": source}})
    assert f"line 1: SecurityError: access to attribute {refused} object is unsafe" in str(
        caught.value
    )


def test_the_sandbox_also_holds_at_send_time(caplog: pytest.LogCaptureFixture) -> None:
    # Passes the start-up trial (the sample alert has a link), reaches the sandbox on a real one.
    sneaky = "{% if not link %}{{ ''.__class__.__mro__ }}{% endif %}{{ title }}"
    templates = Templates({"desk": {"alert_body": sneaky}})
    with caplog.at_level(logging.WARNING, logger="watcher.messages"):
        message = templates.render(BARE, "desk", Format.TEXT)
    assert message == render(BARE)
    assert "object" not in message.body and "mro" not in message.body
    assert "SecurityError" in caplog.text


def test_a_template_that_fails_at_send_time_falls_back_to_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    templates = Templates(
        {"desk": {"alert_title": "{{ title }}", "alert_body": "{{ link.upper() }}"}}
    )
    with caplog.at_level(logging.WARNING, logger="watcher.messages"):
        message = templates.render(replace(DELIVERY, link=None), "desk", Format.SLACK)
    assert message.title == "NATO ministers meet in Kyiv"  # the working override still applies
    assert message.body == render(replace(DELIVERY, link=None), Format.SLACK).body
    [record] = caplog.records
    assert "channel desk: template alert_body failed, the default was used" in record.message
    assert "line 1" in record.message


def test_defaults_cover_every_template_name() -> None:
    assert set(DEFAULTS) == set(TEMPLATE_NAMES)
    Templates({"desk": dict(DEFAULTS)})  # the defaults pass the same checks as overrides


def _item(n: int, rule: str, link: str | None = "https://example.org/{n}") -> Delivery:
    return replace(
        DELIVERY,
        id=n,
        rule=rule,
        title=f"Story {n}",
        link=link.format(n=n) if link else None,
        published_at=datetime(2026, 11, 27, 8, n, tzinfo=UTC),
    )


BATCH_ITEMS = (
    _item(1, "nato"),
    _item(2, "markets", link=None),
    _item(3, "nato"),
    replace(_item(4, "markets"), published_at=None, queued_at=datetime(2026, 11, 27, 9, 0)),
)


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        ("digest", "Digest: 4 alerts"),
        ("quiet", "Quiet hours: 4 alerts held"),
        ("rate_limit", "Rate limit: 4 alerts folded"),
    ],
)
def test_batch_title_says_how_many_and_why(kind: str, title: str) -> None:
    batch = Batch(kind, BATCH_ITEMS, "the note")  # type: ignore[arg-type]
    assert render(batch).title == title


def test_a_batch_of_one_is_singular() -> None:
    assert render(Batch("digest", BATCH_ITEMS[:1])).title == "Digest: 1 alert"


def test_batch_groups_by_rule_in_order_of_first_appearance() -> None:
    body = render(Batch("digest", BATCH_ITEMS, "daily 08:00 Europe/Berlin")).body
    assert body.splitlines() == [
        "daily 08:00 Europe/Berlin",
        "",
        "nato (2)",
        "• 2026-11-27 08:01 UTC · World news · Story 1 (https://example.org/1)",
        "• 2026-11-27 08:03 UTC · World news · Story 3 (https://example.org/3)",
        "",
        "markets (2)",
        "• 2026-11-27 08:02 UTC · World news · Story 2",
        "• 2026-11-27 09:00 UTC · World news · Story 4 (https://example.org/4)",
    ]


def test_batch_in_slack_links_each_item() -> None:
    body = render(Batch("quiet", BATCH_ITEMS, "held during quiet hours 22:00-07:00"), Format.SLACK)
    lines = body.body.splitlines()
    assert lines[0] == "_held during quiet hours 22:00-07:00_"
    assert lines[2] == "**nato** (2)"
    assert lines[3] == "• 2026-11-27 08:01 UTC · World news · [Story 1](<https://example.org/1>)"


def test_batch_without_note_starts_with_its_first_rule() -> None:
    assert render(Batch("digest", BATCH_ITEMS)).body.startswith("nato (2)\n")


def test_failing_feed_says_since_when_how_often_and_why() -> None:
    message = render(FAILING)
    assert message.title == "Feed World news (world) is failing"
    assert message.body.splitlines() == [
        "World news has failed 4 polls in a row, since 2026-11-27 06:00 UTC.",
        "Last error: HTTP 503 from example.org",
        "Feed: world, https://example.org/feed.xml",
    ]


def test_recovered_feed_says_how_long_it_was_down() -> None:
    message = render(RECOVERED)
    assert message.title == "Feed World news (world) recovered"
    assert message.body.splitlines() == [
        "World news recovered at 2026-11-27 09:05 UTC after 3 h 5 min down"
        " (4 failed polls since 2026-11-27 06:00 UTC).",
        "Feed: world, https://example.org/feed.xml",
    ]


def test_health_of_an_untitled_feed_names_its_id() -> None:
    assert render(replace(FAILING, feed_title=None)).title == "Feed world is failing"


@pytest.mark.parametrize(
    ("down", "shown"),
    [
        (timedelta(seconds=40), "40 s"),
        (timedelta(minutes=1, seconds=5), "1 min 5 s"),
        (timedelta(days=2, hours=3, minutes=4), "2 d 3 h"),
        (timedelta(0), "0 s"),
    ],
)
def test_down_time_reads_in_two_units(down: timedelta, shown: str) -> None:
    body = render(replace(RECOVERED, at=RECOVERED.since + down)).body
    assert f" after {shown} down " in body


def test_health_error_is_escaped_in_code() -> None:
    body = render(replace(FAILING, error="<html> & <b>"), Format.TELEGRAM).body
    assert "Last error: <code>&lt;html&gt; &amp; &lt;b&gt;</code>" in body


def test_health_error_in_slack_is_code_that_cannot_close_early() -> None:
    body = render(replace(FAILING, error="bad `tick` & <tag>"), Format.SLACK).body
    grave = "\N{MODIFIER LETTER GRAVE ACCENT}"
    assert f"Last error: `bad {grave}tick{grave} & <tag>`" in body  # Apprise escapes & < > in code
