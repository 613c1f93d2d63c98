"""Channels: the only module that imports Apprise. Network I/O.

A channel is a named list of Apprise URLs. Each URL is its own service, held in its own Apprise
object, because each gets the message written for its kind (see messages.format_for). Apprise
never raises on a failed send; it returns a result per service, which we inspect: a channel
succeeds only if every one of its services did, and the error names each failed service by its
privacy-masked URL (never the token).

What Apprise 2.3 does with the ``body_format`` we declare, and so what we declare:

    TEXT      TEXT      passed as it is; a service that wants HTML or Markdown gets it converted
                        (escaped) by Apprise.
    SLACK     MARKDOWN  Apprise converts CommonMark to Slack mrkdwn (**b** -> *b*, [t](<u>) ->
                        <u|t>, & -> &amp;, \\< -> &lt;). Declaring nothing is unsafe: Apprise then
                        escapes & < > and turns any "<!channel>" or "<url|text>" back into markup.
    TELEGRAM  HTML      Apprise reduces the HTML to Telegram's tags and sends parse_mode=HTML; the
                        title goes into the body as <b>title</b>, unescaped (so it is escaped
                        already). Declaring nothing is unsafe: Apprise then unescapes &quot;.
    EMAIL     HTML      Apprise sends multipart/alternative: our HTML, and a text/plain part it
                        derives from it. The title is the Subject, as plain text.

Also registers ``console://``, a channel that prints alerts to standard output, so the example
config shows alerts with no credentials at all.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from typing import Any

import apprise
from apprise.decorators import notify as apprise_plugin
from pydantic import SecretStr

from . import __version__
from .errors import NotifyError
from .messages import Content, Format, Message, Templates, format_for
from .models import Delivery

log = logging.getLogger(__name__)

SEND_TIMEOUT = 60.0

_BODY_FORMAT = {
    Format.TEXT: apprise.NotifyFormat.TEXT,
    Format.SLACK: apprise.NotifyFormat.MARKDOWN,
    Format.TELEGRAM: apprise.NotifyFormat.HTML,
    Format.EMAIL: apprise.NotifyFormat.HTML,
}


@apprise_plugin(on="console", name="Console (standard output)")
def _console(body: str, title: str, *args: Any, **kwargs: Any) -> bool:
    """Print an alert to the terminal. ``console://`` takes no options."""
    sys.stdout.write(f"\n=== {title} ===\n{body}\n")
    sys.stdout.flush()
    return True


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


class Channels:
    """The configured channels, each URL an Apprise service built and checked once at start."""

    def __init__(
        self, channels: Mapping[str, tuple[SecretStr, ...]], templates: Templates | None = None
    ) -> None:
        self.templates = templates if templates is not None else Templates()
        asset = apprise.AppriseAsset(app_id="watcher", app_desc=f"watcher {__version__}")
        self._services: dict[str, tuple[_Service, ...]] = {}
        problems = []
        for name, urls in channels.items():
            services = []
            for i, url in enumerate(urls):
                service = _Service.build(url.get_secret_value(), asset)
                if service is None:
                    problems.append(
                        f"channels.{name}.urls[{i}]: {mask(url.get_secret_value())} is not a "
                        "URL Apprise can use (unknown service or malformed)"
                    )
                else:
                    services.append(service)
            self._services[name] = tuple(services)
        if problems:
            raise NotifyError("\n".join(problems))

    def __contains__(self, channel: object) -> bool:
        return channel in self._services

    def describe(self, channel: str) -> list[str]:
        """The channel's services as privacy-masked URLs, safe to print."""
        return [service.masked for service in self._services[channel]]

    async def send(self, channel: str, content: Content) -> str | None:
        """Send ``content`` to every service of ``channel``; None on success, else the error."""
        outcomes = await self.send_each(channel, content)
        failed = [f"{service}: {error}" for service, error in outcomes if error is not None]
        return "; ".join(failed) if failed else None

    async def send_each(self, channel: str, content: Content) -> list[tuple[str, str | None]]:
        """Send ``content`` to each service, written for its format; per service, its masked URL
        and None or the error Apprise gave."""
        services = self._services[channel]
        if not services:
            return [(channel, "the channel has no services")]
        formats = {service.format for service in services}
        messages = {fmt: self.templates.render(content, channel, fmt) for fmt in formats}
        outcomes = await asyncio.gather(
            *(service.send(messages[service.format]) for service in services)
        )
        return [outcome for per_service in outcomes for outcome in per_service]


class _Service:
    """One Apprise URL: its own Apprise object, so it can be sent its own format."""

    def __init__(self, notifier: apprise.Apprise, fmt: Format) -> None:
        self.notifier = notifier
        self.format = fmt
        self.masked = ", ".join(str(plugin.url(privacy=True)) for plugin in notifier)

    @classmethod
    def build(cls, url: str, asset: apprise.AppriseAsset) -> _Service | None:
        notifier = apprise.Apprise(asset=asset)
        return cls(notifier, format_for(url)) if notifier.add(url) else None

    async def send(self, message: Message) -> list[tuple[str, str | None]]:
        with await self.notifier.async_notify(
            body=message.body,
            title=message.title,
            body_format=_BODY_FORMAT[message.format],
            timeout=SEND_TIMEOUT,
        ) as result:
            if not result.results:
                reasons = [entry.message for entry in result.call_logs()]
                why = "; ".join(reasons) or f"nothing was sent ({result.status.name.lower()})"
                return [(self.masked, why)]
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
