"""Channels and messages: the only module that imports Apprise. Network I/O.

A channel is a named list of Apprise URLs. Apprise never raises on a failed send; it returns a
result per service, which we inspect: a channel succeeds only if every one of its services did,
and the error names each failed service by its privacy-masked URL (never the token).

Also registers ``console://``, a channel that prints alerts to standard output, so the example
config shows alerts with no credentials at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apprise
from apprise.decorators import notify as apprise_plugin
from pydantic import SecretStr

from . import __version__
from .errors import NotifyError
from .models import Delivery

log = logging.getLogger(__name__)

SEND_TIMEOUT = 60.0
EXCERPT_CHARS = 300


@apprise_plugin(on="console", name="Console (standard output)")
def _console(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    """Print an alert to the terminal. ``console://`` takes no options."""
    sys.stdout.write(f"\n=== {title} ===\n{body}\n")
    sys.stdout.flush()
    return True


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str


def render(delivery: Delivery) -> Message:
    """The alert a person reads: rule, feed, title, link, when, which terms matched."""
    feed = (
        f"{delivery.feed_title} ({delivery.feed_id})" if delivery.feed_title else delivery.feed_id
    )
    lines = [delivery.title or "(untitled)"]
    if delivery.link:
        lines.append(delivery.link)
    lines.append("")
    lines.append(f"Rule: {delivery.rule}")
    if delivery.terms:
        lines.append(f"Matched: {', '.join(delivery.terms)}")
    lines.append(f"Feed: {feed}")
    if delivery.published_at:
        lines.append(f"Published: {delivery.published_at:%Y-%m-%d %H:%M} UTC")
    excerpt = _excerpt(delivery.summary)
    if excerpt:
        lines.extend(("", excerpt))
    return Message(
        title=f"[{delivery.rule}] {delivery.title or '(untitled)'}", body="\n".join(lines)
    )


def sample_alert(channel: str) -> Delivery:
    """What ``watcher notify-test`` sends: an alert shaped like a real one."""
    return Delivery(
        id=0,
        channel=channel,
        attempts=0,
        rule="notify-test",
        terms=("watcher",),
        feed_id="notify-test",
        feed_title="watcher",
        title=f"Test alert from watcher {__version__} to channel {channel}",
        link="https://example.org/watcher-test",
        published_at=None,
        summary="If you can read this, the channel works: real alerts will look like this.",
    )


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= EXCERPT_CHARS:
        return text
    return text[: EXCERPT_CHARS - 1].rsplit(" ", 1)[0] + "…"


class Channels:
    """The configured channels, each an Apprise object built and checked once at start."""

    def __init__(self, channels: Mapping[str, tuple[SecretStr, ...]]) -> None:
        asset = apprise.AppriseAsset(app_id="watcher", app_desc=f"watcher {__version__}")
        self._apprise: dict[str, apprise.Apprise] = {}
        problems = []
        for name, urls in channels.items():
            obj = apprise.Apprise(asset=asset)
            for i, url in enumerate(urls):
                if not obj.add(url.get_secret_value()):
                    problems.append(
                        f"channels.{name}.urls[{i}]: {mask(url.get_secret_value())} is not a "
                        "URL Apprise can use (unknown service or malformed)"
                    )
            self._apprise[name] = obj
        if problems:
            raise NotifyError("\n".join(problems))

    def __contains__(self, channel: object) -> bool:
        return channel in self._apprise

    def describe(self, channel: str) -> list[str]:
        """The channel's services as privacy-masked URLs, safe to print."""
        return [str(service.url(privacy=True)) for service in self._apprise[channel]]

    async def send(self, channel: str, message: Message) -> str | None:
        """Send ``message`` to every service of ``channel``; None on success, else the error."""
        outcomes = await self.send_each(channel, message)
        failed = [f"{service}: {error}" for service, error in outcomes if error is not None]
        return "; ".join(failed) if failed else None

    async def send_each(self, channel: str, message: Message) -> list[tuple[str, str | None]]:
        """Send ``message``; per service, its masked URL and None or the error Apprise gave."""
        result = await self._apprise[channel].async_notify(
            body=message.body,
            title=message.title,
            body_format=apprise.NotifyFormat.TEXT,
            timeout=SEND_TIMEOUT,
        )
        if not result.results:
            reasons = [entry.message for entry in result.call_logs()]
            why = "; ".join(reasons) or f"nothing was sent ({result.status.name.lower()})"
            return [(channel, why)]
        return [(f"{r.name} {r.url}", None if r else _last_error(r)) for r in result.results]


def _last_error(service_result: Any) -> str:
    entries = list(service_result.logs())
    if not entries:
        return str(service_result.status.name).lower()
    return str(entries[-1].message)


def mask(url: str) -> str:
    """A URL safe to show: Apprise's privacy form when it knows the service, else the scheme."""
    service = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if service:
        return str(service.url(privacy=True))
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    return f"{scheme}://…"
