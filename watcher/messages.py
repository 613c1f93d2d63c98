"""The messages people read: what each alert, batch or feed-health event says, written for the
kind of service it goes to. Pure: no I/O, and no Apprise (notify.py hands the result to it).

    content (Delivery | Batch | Health) -> context -> sandboxed Jinja2 template
      -> light markup, every value escaped -> Message for one Format

Templates are written once per channel and serve every service in it, so they write a light
HTML: text and line breaks as written, plus ``<b>``, ``<i>``, ``<code>`` and ``<a href>`` (a
literal "<" is written "&lt;"). Jinja's autoescape escapes every value, so feed text (untrusted)
can never become markup. The markup is then read back and written out for the service:

    TEXT      plain text; a link reads "text (url)"
    SLACK     the CommonMark that Apprise's Slack plugin turns into mrkdwn (see _slack_text)
    TELEGRAM  Telegram's HTML: b, i, code, a href; text escaped
    EMAIL     an HTML document; Apprise derives the plain-text alternative part from it

Titles are plain text everywhere; for Telegram escaped too, as Apprise puts the title in the body.
"""

from __future__ import annotations

import html
import logging
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .errors import WatcherError
from .models import Delivery

log = logging.getLogger(__name__)

EXCERPT_CHARS = 300


@dataclass(frozen=True, slots=True)
class Batch:
    """Several alerts in one message: a digest, or alerts held during quiet hours or folded by
    a rate limit."""

    kind: Literal["digest", "quiet", "rate_limit"]
    items: tuple[Delivery, ...]  # oldest first; the message groups them by rule (first seen first)
    note: str = ""  # why/when, e.g. "daily 08:00 Europe/Berlin"


@dataclass(frozen=True, slots=True)
class Health:
    """A feed started failing, or recovered."""

    state: Literal["failing", "recovered"]
    feed_id: str
    feed_title: str | None
    url: str  # safe to show (already masked by the caller)
    since: datetime  # failing: first failure of this streak; recovered: when it failed first
    failures: int  # consecutive failed polls in the streak
    error: str | None  # last error (failing); None when recovered
    at: datetime  # when this event happened


Content = Delivery | Batch | Health


class Format(StrEnum):
    TEXT = "text"
    SLACK = "slack"
    TELEGRAM = "telegram"
    EMAIL = "email"


def format_for(url: str) -> Format:
    """The format a service takes, from its Apprise URL. A URL's own ``?format=text`` wins."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if parse_qs(parts.query).get("format", [""])[-1].lower() == "text":
        return Format.TEXT
    if scheme == "slack" or (scheme == "https" and host == "hooks.slack.com"):
        return Format.SLACK
    if scheme == "tgram":
        return Format.TELEGRAM
    if scheme in ("mailto", "mailtos"):
        return Format.EMAIL
    return Format.TEXT


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    format: Format


TEMPLATE_NAMES = (
    "alert_title",
    "alert_body",
    "batch_title",
    "batch_body",
    "health_title",
    "health_body",
)


class TemplateError(WatcherError):
    """A channel's template cannot be used: ``channel``, ``name`` and what is wrong, where."""

    def __init__(self, channel: str, name: str, problem: str) -> None:
        self.channel = channel
        self.name = name
        self.problem = problem
        super().__init__(f"channel {channel!r}, template {name!r}: {problem}")


DEFAULTS: Mapping[str, str] = {
    "alert_title": '[{{ rule }}] {{ title or "(untitled)" }}',
    "alert_body": """\
{% if link %}<b><a href="{{ link }}">{{ title or "(untitled)" }}</a></b>
{% else %}<b>{{ title or "(untitled)" }}</b>
{% endif %}

Rule: {{ rule }}
{% if terms %}Matched: {{ terms|join(", ") }}
{% endif %}
Feed: {{ feed.name }}
{% if published %}Published: {{ published }}
{% endif %}
{% if also_seen_in %}Also seen in: {{ also_seen_in|join(", ") }}
{% endif %}
{% if summary %}

{{ summary }}
{% endif %}
""",
    "batch_title": (
        '{{ {"digest": "Digest", "quiet": "Quiet hours", "rate_limit": "Rate limit"}[kind] }}: '
        '{{ count }} alert{{ "s" if count != 1 else "" }}'
        '{{ " held" if kind == "quiet" else " folded" if kind == "rate_limit" else "" }}'
    ),
    "batch_body": """\
{% if note %}<i>{{ note }}</i>

{% endif %}
{% for group in groups %}
<b>{{ group.rule }}</b> ({{ group.alerts|length }})
{% for alert in group.alerts %}
• {% if alert.time %}{{ alert.time }} · {% endif %}{{ alert.feed.title or alert.feed.id }} · \
{% if alert.link %}<a href="{{ alert.link }}">{{ alert.title or "(untitled)" }}</a>\
{% else %}{{ alert.title or "(untitled)" }}{% endif %}

{% endfor %}

{% endfor %}
""",
    "health_title": 'Feed {{ feed.name }} {{ "is failing" if failing else "recovered" }}',
    "health_body": """\
{% if failing %}
<b>{{ feed.title or feed.id }}</b> has failed {{ failures }} poll{{ "s" if failures != 1 else "" }}\
 in a row, since {{ since }}.
{% if error %}Last error: <code>{{ error }}</code>
{% endif %}
{% else %}
<b>{{ feed.title or feed.id }}</b> recovered at {{ at }} after {{ down_for }} down\
 ({{ failures }} failed poll{{ "s" if failures != 1 else "" }} since {{ since }}).
{% endif %}
Feed: {{ feed.id }}, {{ url }}
""",
}


class Templates:
    """The default templates and each channel's overrides, compiled and tried once at start."""

    def __init__(self, overrides: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._env = _environment()
        self._defaults = {name: self._env.from_string(DEFAULTS[name]) for name in TEMPLATE_NAMES}
        self._overrides: dict[tuple[str, str], jinja2.Template] = {}
        for channel, sources in (overrides or {}).items():
            for name, source in sources.items():
                self._overrides[channel, name] = self._compile(channel, name, source)

    def render(self, content: Content, channel: str, fmt: Format) -> Message:
        """The message ``channel`` sends for ``content`` to a service that takes ``fmt``."""
        kind, context = _context(content)
        title = _flat(_text(_read(self._render(channel, f"{kind}_title", context))))
        body = _BODY_WRITERS[fmt](_read(self._render(channel, f"{kind}_body", context)))
        return Message(
            html.escape(title, quote=False) if fmt is Format.TELEGRAM else title, body, fmt
        )

    def _render(self, channel: str, name: str, context: Mapping[str, Any]) -> str:
        template = self._overrides.get((channel, name))
        if template is not None:
            try:
                return _tidy(template.render(context))
            except Exception as exc:  # a user's template: never lose the alert over it
                log.warning(
                    "channel %s: template %s failed, the default was used: %s",
                    channel,
                    name,
                    _describe(exc),
                )
        return _tidy(self._defaults[name].render(context))

    def _compile(self, channel: str, name: str, source: str) -> jinja2.Template:
        if name not in TEMPLATE_NAMES:
            known = ", ".join(TEMPLATE_NAMES)
            raise TemplateError(channel, name, f"unknown template name; known: {known}")
        try:
            template = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(channel, name, f"line {exc.lineno}: {exc.message}") from exc
        for sample in _SAMPLES[name.split("_")[0]]:
            try:
                template.render(_context(sample)[1])
            except Exception as exc:  # reported now rather than on every send
                raise TemplateError(channel, name, _describe(exc)) from exc
        return template


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, cut at a word to at most ``limit`` characters, with "…" if cut."""
    text = _flat(text)
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0] + "…"


# --- what a template sees -------------------------------------------------------------------


def _context(content: Content) -> tuple[str, dict[str, Any]]:
    if isinstance(content, Batch):
        return "batch", _batch(content)
    if isinstance(content, Health):
        return "health", _health(content)
    return "alert", _alert(content)


def _alert(delivery: Delivery) -> dict[str, Any]:
    return {
        "channel": delivery.channel,
        "rule": delivery.rule,
        "feed": _feed(delivery.feed_id, delivery.feed_title),
        "title": _flat(delivery.title),
        "link": _safe_url(delivery.link) or None,
        "published": delivery.published_at,
        "summary": excerpt(delivery.summary),
        "terms": [_flat(term) for term in delivery.terms],
        "also_seen_in": [_flat(feed) for feed in delivery.also_seen_in],
        "time": delivery.published_at or delivery.queued_at,
    }


def _batch(batch: Batch) -> dict[str, Any]:
    alerts = [_alert(item) for item in batch.items]
    groups: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        groups.setdefault(alert["rule"], []).append(alert)
    return {
        "kind": batch.kind,
        "note": _flat(batch.note),
        "count": len(alerts),
        "alerts": alerts,
        "groups": [{"rule": rule, "alerts": items} for rule, items in groups.items()],
    }


def _health(event: Health) -> dict[str, Any]:
    return {
        "state": event.state,
        "failing": event.state == "failing",
        "feed": _feed(event.feed_id, event.feed_title),
        "url": _flat(event.url),
        "since": event.since,
        "failures": event.failures,
        "error": _flat(event.error or "") or None,
        "at": event.at,
        "down_for": event.at - event.since,
    }


def _feed(feed_id: str, title: str | None) -> dict[str, Any]:
    """A feed as templates see it; ``name`` is "Title (id)", or the id of an untitled feed."""
    title = _flat(title or "") or None
    return {"id": feed_id, "title": title, "name": f"{title} ({feed_id})" if title else feed_id}


_SAMPLE_ALERT = Delivery(
    id=0,
    channel="sample",
    attempts=0,
    rule="sample-rule",
    terms=("term",),
    feed_id="sample-feed",
    feed_title="Sample feed",
    title="Sample title",
    link="https://example.org/sample",
    published_at=datetime(2000, 1, 1, tzinfo=UTC),
    summary="Sample summary.",
    queued_at=datetime(2000, 1, 1, tzinfo=UTC),
    also_seen_in=("other-feed",),
)
_SAMPLE_FAILING = Health(
    state="failing",
    feed_id="sample-feed",
    feed_title="Sample feed",
    url="https://example.org/feed",
    since=datetime(2000, 1, 1, tzinfo=UTC),
    failures=3,
    error="sample error",
    at=datetime(2000, 1, 1, 1, tzinfo=UTC),
)
# What a channel's templates are tried on at start: every kind, and both states of health.
_SAMPLES: Mapping[str, tuple[Content, ...]] = {
    "alert": (_SAMPLE_ALERT,),
    "batch": (Batch("digest", (_SAMPLE_ALERT, _SAMPLE_ALERT), "sample note"),),
    "health": (_SAMPLE_FAILING, replace(_SAMPLE_FAILING, state="recovered", error=None)),
}


# --- the template environment ---------------------------------------------------------------


def _environment() -> SandboxedEnvironment:
    """Sandboxed (feed text and templates are untrusted), autoescaped, strict about names."""
    return SandboxedEnvironment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shown,
    )


def _shown(value: Any) -> Any:
    """How a value reads in a message: nothing for None, UTC times, durations, lists joined."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return f"{moment:%Y-%m-%d %H:%M} UTC"
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(_shown(item)) for item in value)
    return value


def _duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts = []
    for unit, size in units:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}")
    return " ".join(parts[:2]) or "0 s"


def _describe(exc: BaseException) -> str:
    """What went wrong in a template, with its line when the traceback knows it."""
    lines = [
        f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"
    ]
    where = f"line {lines[-1]}: " if lines and lines[-1] else ""
    return f"{where}{type(exc).__name__}: {exc}"


def _tidy(text: str) -> str:
    """No spaces at line ends, at most one blank line in a row, none at either end."""
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _flat(text: str) -> str:
    """Untrusted text on one line: a feed's newlines must not lay out our message."""
    return " ".join(text.split())


def _safe_url(url: str | None) -> str:
    """An http(s) or mailto URL with anything that could break out of markup percent-encoded;
    "" for any other scheme (javascript:, data:...)."""
    if not url:
        return ""
    url = url.strip()
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:  # e.g. an unbalanced "[" in the host
        return ""
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~") if scheme in ("http", "https", "mailto") else ""


# --- reading the markup back, and writing it for each format --------------------------------


@dataclass
class _Span:
    """A marked run of the message: ``b``, ``i``, ``code`` or ``a`` (with ``href``); "" is the
    whole message."""

    tag: str
    href: str = ""
    children: list[str | _Span] = field(default_factory=list)


_MARKS = {"b": "b", "strong": "b", "i": "i", "em": "i", "code": "code", "a": "a"}
_HIDDEN = ("script", "style")


class _Reader(HTMLParser):
    """Reads rendered markup: the marks above are kept (a link only with a safe URL), a ``<br>``
    is a line break, anything else is dropped and its text kept. Always balanced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Span("")
        self._open = [self.root]
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        mark = _MARKS.get(tag)
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self.handle_data("\n")
        elif mark and all(span.tag != mark for span in self._open):
            href = _safe_url(dict(attrs).get("href")) if mark == "a" else ""
            if mark != "a" or href:
                span = _Span(mark, href)
                self._open[-1].children.append(span)
                self._open.append(span)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == _MARKS.get(tag):
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._open[-1].children.append(data)


def _read(markup: str) -> _Span:
    reader = _Reader()
    reader.feed(markup)
    reader.close()
    return reader.root


def _plain(span: _Span) -> str:
    return "".join(child if isinstance(child, str) else _plain(child) for child in span.children)


def _text(span: _Span) -> str:
    inner = "".join(child if isinstance(child, str) else _text(child) for child in span.children)
    if span.tag == "a" and inner.strip() != span.href:
        return f"{inner} ({span.href})" if inner.strip() else span.href
    return inner


def _html(span: _Span, show_urls: bool = False) -> str:
    """Escaped HTML; with ``show_urls`` a link's URL is also shown after it, as in plain text."""
    inner = "".join(
        html.escape(child, quote=False) if isinstance(child, str) else _html(child, show_urls)
        for child in span.children
    )
    if span.tag == "a":
        url = html.escape(span.href)
        shown = (
            f" <small>({url})</small>" if show_urls and _plain(span).strip() != span.href else ""
        )
        return f'<a href="{url}">{inner}</a>{shown}'
    return f"<{span.tag}>{inner}</{span.tag}>" if span.tag else inner


# Slack has no escape for its formatting characters (a backslash stays visible), so in text they
# become look-alikes that cannot format. Always for * and ` (Apprise pairs them even inside a
# word) and for a backslash (Apprise would take it as escaping what follows); _ and ~ only where
# Slack could read them as formatting, at a word's edge, so snake_case and URLs stay as written.
_SLACK_LOOKALIKES = {
    "*": "\N{ASTERISK OPERATOR}",
    "`": "\N{MODIFIER LETTER GRAVE ACCENT}",
    "\\": "\N{SET MINUS}",
    "_": "\N{MODIFIER LETTER LOW MACRON}",
    "~": "\N{TILDE OPERATOR}",
}
_SLACK_FORMATTING = re.compile(r"[*`\\]|(?<![^\W_])[_~]|[_~](?![^\W_])")
_SLACK_ESCAPED = re.compile(r"([<>\[\]#])")


def _slack_text(text: str) -> str:
    """Text for Apprise's CommonMark-to-mrkdwn conversion, so that it reaches Slack literal.

    Apprise 2.3 writes ``&`` as ``&amp;`` itself (so it is left alone here), turns ``\\<`` and
    ``\\>`` into ``&lt;`` and ``&gt;``, and ``\\[``, ``\\]``, ``\\#`` into the plain character;
    a bare ``<`` would reach Slack as the start of ``<!channel>`` or ``<url|label>``."""
    text = _SLACK_FORMATTING.sub(lambda found: _SLACK_LOOKALIKES[found[0]], text)
    return _SLACK_ESCAPED.sub(r"\\\1", text)


def _slack(span: _Span) -> str:
    if span.tag == "code":
        return _around("`", _text(span).replace("`", _SLACK_LOOKALIKES["`"]))
    inner = "".join(
        _slack_text(child) if isinstance(child, str) else _slack(child) for child in span.children
    )
    if span.tag == "a":
        return f"[{inner}](<{span.href}>)"
    return _around({"b": "**", "i": "_"}.get(span.tag, ""), inner)


def _around(mark: str, inner: str) -> str:
    """``inner`` between ``mark``s, with its outer spaces outside: ``** x**`` is not bold."""
    core = inner.strip()
    if not mark or not core:
        return inner
    start = inner.index(core[0])
    return f"{inner[:start]}{mark}{core}{mark}{inner[start + len(core) :]}"


def _email(span: _Span) -> str:
    """HTML whose links show their URL too: Apprise derives the text/plain part from it, and
    would otherwise leave the URLs out."""
    return "<html><body>" + _html(span, show_urls=True).replace("\n", "<br>") + "</body></html>"


_BODY_WRITERS: Mapping[Format, Callable[[_Span], str]] = {
    Format.TEXT: _text,
    Format.SLACK: _slack,
    Format.TELEGRAM: _html,
    Format.EMAIL: _email,
}
