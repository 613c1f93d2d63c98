from __future__ import annotations

import email
import email.message
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from pydantic import SecretStr
from requests import Response
from requests.adapters import HTTPAdapter

from tests.servers import Receiver
from watcher.errors import NotifyError
from watcher.models import Delivery
from watcher.notify import Channels, Message, mask, render

pytestmark = pytest.mark.anyio

DELIVERY = Delivery(
    id=1,
    channel="newsroom",
    attempts=0,
    rule="nato-ukraine",
    terms=("NATO", "Kyiv"),
    feed_id="world",
    feed_title="World news",
    title="NATO ministers meet in Kyiv",
    link="https://example.org/story",
    published_at=datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
    summary="Ministers met. " * 60,
)


def channels(**urls: str) -> Channels:
    return Channels({name: (SecretStr(url),) for name, url in urls.items()})


def test_message_names_rule_feed_title_link_and_terms() -> None:
    message = render(DELIVERY)
    assert message.title == "[nato-ukraine] NATO ministers meet in Kyiv"
    lines = message.body.splitlines()
    assert lines[:2] == ["NATO ministers meet in Kyiv", "https://example.org/story"]
    assert "Rule: nato-ukraine" in lines
    assert "Matched: NATO, Kyiv" in lines
    assert "Feed: World news (world)" in lines
    assert "Published: 2026-11-27 09:30 UTC" in lines
    excerpt = lines[-1]
    assert excerpt.startswith("Ministers met.") and excerpt.endswith("…") and len(excerpt) <= 300


def test_message_without_optional_parts() -> None:
    bare = replace(DELIVERY, link=None, published_at=None, feed_title=None, summary="", title="")
    message = render(bare)
    assert message.title == "[nato-ukraine] (untitled)"
    assert "Feed: world" in message.body
    assert "Published" not in message.body


async def test_console_channel_prints_the_alert(capsys: pytest.CaptureFixture[str]) -> None:
    error = await channels(terminal="console://").send("terminal", Message("Title", "Body"))
    assert error is None
    assert capsys.readouterr().out == "\n=== Title ===\nBody\n"


async def test_json_channel_posts_title_and_body(receiver: Receiver) -> None:
    error = await channels(hook=receiver.url("/hook")).send("hook", render(DELIVERY))
    assert error is None
    [posted] = receiver.messages("/hook")
    assert posted["title"] == "[nato-ukraine] NATO ministers meet in Kyiv"
    assert "Matched: NATO, Kyiv" in posted["message"]


async def test_a_failing_service_is_reported_without_its_secret(receiver: Receiver) -> None:
    receiver.status = 500
    url = receiver.url("/hook").replace("json://", "json://alice:hunter2@")
    hook = channels(hook=url)
    error = await hook.send("hook", Message("t", "b"))
    assert error is not None and "500" in error
    assert "hunter2" not in error
    assert all("hunter2" not in described for described in hook.describe("hook"))


async def test_one_failing_url_fails_the_channel(receiver: Receiver) -> None:
    both = Channels(
        {"mixed": (SecretStr(receiver.url("/ok")), SecretStr("json://127.0.0.1:9/closed"))}
    )
    error = await both.send("mixed", Message("t", "b"))
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


async def test_slack_webhook_payload(internet: list[requests.PreparedRequest]) -> None:
    url = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#news"
    assert await channels(newsroom=url).send("newsroom", render(DELIVERY)) is None
    [request] = internet
    assert request.url == (
        "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
    )
    payload = json.loads(request.body or b"{}")
    assert payload["channel"] == "#news"
    text = json.dumps(payload)
    assert "NATO ministers meet in Kyiv" in text
    assert "Matched: NATO, Kyiv" in text


async def test_telegram_payload(internet: list[requests.PreparedRequest]) -> None:
    url = "tgram://123456789:abcdefg_hijklmnop/12315544/"
    assert await channels(phone=url).send("phone", render(DELIVERY)) is None
    [request] = [r for r in internet if r.url and r.url.endswith("/sendMessage")]
    assert request.url == "https://api.telegram.org/bot123456789:abcdefg_hijklmnop/sendMessage"
    payload = json.loads(request.body or b"{}")
    assert str(payload["chat_id"]) == "12315544"
    assert "NATO ministers meet in Kyiv" in payload["text"]
    assert "https://example.org/story" in payload["text"]


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
    assert await channels(desk=url).send("desk", render(DELIVERY)) is None
    [(sender, recipients)] = mailbox.envelopes
    assert (sender, recipients) == ("watcher@example.org", ["desk@example.org"])
    [message] = mailbox.messages
    assert message["Subject"] == "[nato-ukraine] NATO ministers meet in Kyiv"
    assert message["To"] == "desk@example.org"
    body = message.get_payload(decode=True).decode()
    assert "https://example.org/story" in body
    assert "Matched: NATO, Kyiv" in body
