"""Plain frozen values passed between the pipeline's stages. No I/O.

fetch -> FetchResult -> parse -> ParsedFeed(articles) -> store -> rules -> Match -> notify
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from operator import attrgetter


@dataclass(frozen=True, slots=True)
class Article:
    """One feed entry, normalised and sanitised: text is plain (no HTML), links are http(s)."""

    key: str  # stable identity within its feed (see parse.entry_key)
    title: str
    link: str | None = None
    published: datetime | None = None  # timezone-aware UTC, or None when absent or absurd
    summary: str = ""
    content: str = ""
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type[Article], tuple[object, ...]]:
        # Parse workers send articles to the daemon by pickle. A frozen dataclass with slots
        # is otherwise rebuilt field by field through dataclasses.fields(), which cost the
        # daemon's event loop about a tenth of its time in a first pass; the constructor is
        # half the price.
        return Article, _article_state(self)

    @property
    def fingerprint(self) -> str:
        """A hash of what a reader sees; a change means the entry was edited."""
        parts = (self.title, self.link or "", self.summary, self.content, *self.authors, *self.tags)
        return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()


_article_state = attrgetter(*(field.name for field in fields(Article)))  # in __init__'s order


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """What a feed document held. ``warning`` is set when the document was malformed but
    entries could still be read (a partial result, never a reason to forget old entries)."""

    title: str
    link: str | None
    articles: tuple[Article, ...]
    warning: str | None = None
    # The feed's own word on when to poll it (RSS): <ttl>, <skipHours> (UTC), <skipDays>.
    ttl: timedelta | None = None
    skip_hours: frozenset[int] = frozenset()  # 0-23
    skip_days: frozenset[int] = frozenset()  # 0 = Monday


@dataclass(frozen=True, slots=True)
class Match:
    """A rule matched an article: the terms that made it match, and where to alert."""

    rule: str
    terms: tuple[str, ...]
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """A feed started failing (``failures`` polls in a row since ``since``), or recovered."""

    state: str  # "failing" or "recovered"
    feed_id: str
    at: datetime
    since: datetime
    failures: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message waiting to go to one channel, with everything it needs: an alert about a
    match, or (``event`` set, no rule) a health alert about a feed."""

    id: int
    channel: str
    attempts: int
    rule: str
    terms: tuple[str, ...]
    feed_id: str
    feed_title: str | None
    title: str
    link: str | None
    published_at: datetime | None
    summary: str
    queued_at: datetime | None = None  # when the match was stored
    also_seen_in: tuple[str, ...] = ()  # other feeds that carried the same link, when known
    hold: str | None = None  # held for a "digest", "quiet" hours or a "rate_limit"; None: now
    event: FeedEvent | None = None
    article_id: int | None = None  # the stored story it is about (None: a health alert)
