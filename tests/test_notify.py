from __future__ import annotations

import email
import email.message
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from pydantic import SecretStr
from requests import Response
from requests.adapters import HTTPAdapter

from tests.samples import DELIVERY
from tests.servers import Receiver
from watcher.errors import NotifyError
from watcher.messages import Batch, Format, Health, Templates
from watcher.notify import Channels, mask

pytestmark = pytest.mark.anyio


def channels(**urls: str) -> Channels:
    return Channels({name: (SecretStr(url),) for name, url in urls.items()})


async def test_console_channel_prints_the_alert(capsys: pytest.CaptureFixture[str]) -> None:
    error = await channels(terminal="console://").send("terminal", DELIVERY)
    assert error is None
    body = Templates().render(DELIVERY, "terminal", Format.TEXT).body
    assert body.startswith("NATO ministers meet in Kyiv (https://example.org/story)\n")
    expected = f"\n=== [nato-ukraine] NATO ministers meet in Kyiv ===\n{body}\n"
    assert capsys.readouterr().out == expected


async def test_json_channel_posts_plain_text(receiver: Receiver) -> None:
    hostile = replace(DELIVERY, summary="<b>&amp;</b> *x*")
    error = await channels(hook=receiver.url("/hook")).send("hook", hostile)
    assert error is None
    [posted] = receiver.messages("/hook")
    assert posted["title"] == "[nato-ukraine] NATO ministers meet in Kyiv"
    lines = posted["message"].splitlines()
    assert lines[0] == "NATO ministers meet in Kyiv (https://example.org/story)"
    assert "Matched: NATO, Kyiv" in lines
    assert lines[-1] == "<b>&amp;</b> *x*"  # plain text: feed text exactly as it was


async def test_each_url_of_a_channel_gets_its_own_format(
    internet: list[requests.PreparedRequest],
) -> None:
    both = Channels({"mixed": (SecretStr("json://127.0.0.1:9/hook"), SecretStr(SLACK))})
    assert await both.send("mixed", DELIVERY) is None
    by_host = {urlsplit(r.url or "").hostname: posted(r) for r in internet}
    assert by_host["127.0.0.1"]["message"].startswith(
        "NATO ministers meet in Kyiv (https://example.org/story)\n"
    )
    text = by_host["hooks.slack.com"]["attachments"][0]["text"]
    assert text.startswith("*<https://example.org/story|NATO ministers meet in Kyiv>*\n")


async def test_a_failing_service_is_reported_without_its_secret(receiver: Receiver) -> None:
    receiver.status = 500
    url = receiver.url("/hook").replace("json://", "json://alice:hunter2@")
    hook = channels(hook=url)
    error = await hook.send("hook", DELIVERY)
    assert error is not None and "500" in error
    assert "hunter2" not in error
    assert all("hunter2" not in described for described in hook.describe("hook"))


async def test_one_failing_url_fails_the_channel(receiver: Receiver) -> None:
    both = Channels(
        {"mixed": (SecretStr(receiver.url("/ok")), SecretStr("json://127.0.0.1:9/closed"))}
    )
    error = await both.send("mixed", DELIVERY)
    assert error is not None and "127.0.0.1:9" in error
    assert len(receiver.messages("/ok")) == 1


def test_unusable_urls_are_rejected_by_name_without_the_secret() -> None:
    with pytest.raises(NotifyError) as caught:
        channels(newsroom="nosuchservice://token-hunter2")
    assert "channels.newsroom.urls[0]" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#news", "TIiajkdnlazkcOXrIdevi7FQ"),
        ("tgram://123456789:abcdefg_hijklmnop/12315544/", "abcdefg_hijklmnop"),
        ("mailtos://user:hunter2@example.org", "hunter2"),
        ("unknown://supersecret", "supersecret"),
    ],
)
def test_mask_hides_credentials(url: str, secret: str) -> None:
    assert secret not in mask(url)


@pytest.fixture
def internet(monkeypatch: pytest.MonkeyPatch) -> list[requests.PreparedRequest]:
    """Slack's and Telegram's servers cannot be reached from here: capture the real HTTP
    requests Apprise makes, at the transport, and answer them as the service would."""
    sent: list[requests.PreparedRequest] = []

    def send(self: HTTPAdapter, request: requests.PreparedRequest, **kwargs: object) -> Response:
        sent.append(request)
        response = Response()
        response.status_code = 200
        slack = (request.url or "").startswith("https://hooks.slack.com/")
        response._content = b"ok" if slack else b'{"ok": true, "result": {}}'
        response.request = request
        return response

    monkeypatch.setattr(HTTPAdapter, "send", send)
    return sent


SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#news"
TELEGRAM = "tgram://123456789:abcdefg_hijklmnop/12315544/"
# Feed text that would be markup in Slack, Telegram or email if it reached them unescaped.
HOSTILE = replace(
    DELIVERY,
    title="<!channel> <https://evil.example|click> *bold* &amp; a & b",
    summary='# Hi </a><a href="https://evil.example">x</a> <script>s()</script> _it_ `c` <!here>',
)


def posted(request: requests.PreparedRequest) -> dict[str, Any]:
    assert isinstance(request.body, bytes | str)
    payload: dict[str, Any] = json.loads(request.body)
    return payload


def slack_payload(internet: list[requests.PreparedRequest]) -> dict[str, Any]:
    [request] = internet
    assert request.url == (
        "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
    )
    return posted(request)


def telegram_payload(internet: list[requests.PreparedRequest]) -> dict[str, Any]:
    [request] = [r for r in internet if r.url and r.url.endswith("/sendMessage")]
    assert request.url == "https://api.telegram.org/bot123456789:abcdefg_hijklmnop/sendMessage"
    payload = posted(request)
    assert str(payload["chat_id"]) == "12315544"
    assert payload["parse_mode"] == "HTML"
    return payload


async def test_slack_gets_mrkdwn(internet: list[requests.PreparedRequest]) -> None:
    assert await channels(newsroom=SLACK).send("newsroom", DELIVERY) is None
    payload = slack_payload(internet)
    assert payload["channel"] == "#news"
    assert payload["mrkdwn"] is True
    [attachment] = payload["attachments"]
    assert attachment["title"] == "[nato-ukraine] NATO ministers meet in Kyiv"
    lines = attachment["text"].splitlines()
    assert lines[0] == "*<https://example.org/story|NATO ministers meet in Kyiv>*"
    assert lines[1:5] == [
        "",
        "Rule: nato-ukraine",
        "Matched: NATO, Kyiv",
        "Feed: World news (world)",
    ]
    assert lines[-1].startswith("Ministers met. Ministers met.")


async def test_slack_escapes_feed_text_once(internet: list[requests.PreparedRequest]) -> None:
    assert await channels(newsroom=SLACK).send("newsroom", HOSTILE) is None
    [attachment] = slack_payload(internet)["attachments"]
    text = attachment["text"]
    # The only Slack control sequence is our own link; everything else arrives as text.
    assert re.findall(r"<[^<>]*>", text) == [
        "<https://example.org/story|&lt;!channel&gt; &lt;https://evil.example|click&gt;"
        " \N{ASTERISK OPERATOR}bold\N{ASTERISK OPERATOR} &amp;amp; a &amp; b>"
    ]
    assert text.splitlines()[-1] == (
        '# Hi &lt;/a&gt;&lt;a href="https://evil.example"&gt;x&lt;/a&gt;'
        " &lt;script&gt;s()&lt;/script&gt;"
        " \N{MODIFIER LETTER LOW MACRON}it\N{MODIFIER LETTER LOW MACRON}"
        " \N{MODIFIER LETTER GRAVE ACCENT}c\N{MODIFIER LETTER GRAVE ACCENT} &lt;!here&gt;"
    )
    assert "*bold*" not in text and "&amp;amp;amp;" not in text and "\\" not in text
    assert attachment["title"] == (
        "[nato-ukraine] &lt;!channel&gt; &lt;https://evil.example|click&gt; *bold* &amp;amp; a"
        " &amp; b"
    )


async def test_slack_gets_a_digest(internet: list[requests.PreparedRequest]) -> None:
    items = (DELIVERY, replace(DELIVERY, rule="markets", title="Stocks & <bonds>", link=None))
    digest = Batch("digest", items, "daily 08:00 Europe/Berlin")
    assert await channels(newsroom=SLACK).send("newsroom", digest) is None
    [attachment] = slack_payload(internet)["attachments"]
    assert attachment["title"] == "Digest: 2 alerts"
    assert attachment["text"].splitlines() == [
        "_daily 08:00 Europe/Berlin_",
        "",
        "*nato-ukraine* (1)",
        "• 2026-11-27 09:30 UTC · World news · "
        "<https://example.org/story|NATO ministers meet in Kyiv>",
        "",
        "*markets* (1)",
        "• 2026-11-27 09:30 UTC · World news · Stocks &amp; &lt;bonds&gt;",
    ]


async def test_telegram_gets_html(internet: list[requests.PreparedRequest]) -> None:
    assert await channels(phone=TELEGRAM).send("phone", DELIVERY) is None
    lines = telegram_payload(internet)["text"].split("\r\n")
    assert lines[:5] == [
        "<b>[nato-ukraine] NATO ministers meet in Kyiv</b>",
        '<b><a href="https://example.org/story">NATO ministers meet in Kyiv</a></b>',
        "",
        "Rule: nato-ukraine",
        "Matched: NATO, Kyiv",
    ]


async def test_telegram_escapes_feed_text_once(internet: list[requests.PreparedRequest]) -> None:
    hostile = replace(HOSTILE, link='https://example.org/a"><b>x')
    assert await channels(phone=TELEGRAM).send("phone", hostile) is None
    text = telegram_payload(internet)["text"]
    assert re.findall(r"<[^<>]*>", text) == [
        "<b>",
        "</b>",
        "<b>",
        '<a href="https://example.org/a%22%3E%3Cb%3Ex">',
        "</a>",
        "</b>",
    ]
    assert text.split("\r\n")[-1] == (
        '# Hi &lt;/a&gt;&lt;a href="https://evil.example"&gt;x&lt;/a&gt;'
        " &lt;script&gt;s()&lt;/script&gt; _it_ `c` &lt;!here&gt;"
    )
    assert "&amp;amp;amp;" not in text and "&amp;lt;" not in text


async def test_telegram_gets_a_feed_health_alert(
    internet: list[requests.PreparedRequest],
) -> None:
    failing = Health(
        state="failing",
        feed_id="world",
        feed_title="World news",
        url="https://example.org/feed.xml",
        since=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        failures=4,
        error="HTTP 503 <Service Unavailable>",
        at=datetime(2026, 11, 27, 9, 5, tzinfo=UTC),
    )
    assert await channels(phone=TELEGRAM).send("phone", failing) is None
    assert telegram_payload(internet)["text"].split("\r\n") == [
        "<b>Feed World news (world) is failing</b>",
        "<b>World news</b> has failed 4 polls in a row, since 2026-11-27 06:00 UTC.",
        "Last error: <code>HTTP 503 &lt;Service Unavailable&gt;</code>",
        "Feed: world, https://example.org/feed.xml",
    ]


def alternatives(message: email.message.Message) -> tuple[str, str]:
    """The text/plain and text/html parts of a multipart/alternative email, decoded."""
    assert message.get_content_type() == "multipart/alternative"
    payload = message.get_payload()
    assert isinstance(payload, list)
    parts = [part for part in payload if isinstance(part, email.message.Message)]
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    return decoded(parts[0]), decoded(parts[1])


def decoded(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


class Mailbox:
    """aiosmtpd handler: keeps every message a real SMTP session delivered."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(bytes(envelope.original_content or b"")))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with socket.socket() as probe:  # a free port: Controller needs one up front
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


async def test_email_through_a_real_smtp_server(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    url = f"mailto://127.0.0.1:{port}?to=desk@example.org&from=watcher@example.org"
    assert await channels(desk=url).send("desk", HOSTILE) is None
    [(sender, recipients)] = mailbox.envelopes
    assert (sender, recipients) == ("watcher@example.org", ["desk@example.org"])
    [message] = mailbox.messages
    assert message["Subject"] == f"[nato-ukraine] {HOSTILE.title}"
    assert message["From"].endswith("<watcher@example.org>") or message["From"] == (
        "watcher@example.org"
    )
    assert message["To"] == "desk@example.org"
    plain, html = alternatives(message)
    assert '<b><a href="https://example.org/story">&lt;!channel&gt;' in html
    assert "&lt;script&gt;s()&lt;/script&gt;" in html and "<script>" not in html
    assert '&lt;/a&gt;&lt;a href="https://evil.example"&gt;' in html
    assert "&amp;amp; a &amp; b" in html
    text = plain.splitlines()
    assert text[0] == f"{HOSTILE.title} (https://example.org/story)"
    assert "Matched: NATO, Kyiv" in text


async def test_email_of_a_recovered_feed(smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    recovered = Health(
        state="recovered",
        feed_id="world",
        feed_title=None,
        url="https://example.org/feed.xml",
        since=datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        failures=4,
        error=None,
        at=datetime(2026, 11, 28, 7, 30, tzinfo=UTC),
    )
    url = f"mailto://127.0.0.1:{port}?to=desk@example.org&from=watcher@example.org"
    assert await channels(desk=url).send("desk", recovered) is None
    [message] = mailbox.messages
    assert message["Subject"] == "Feed world recovered"
    plain, _ = alternatives(message)
    assert "recovered at 2026-11-28 07:30 UTC after 1 d 1 h down" in plain
