"""``watcher match``: run rules over feed files, URLs or stored articles, and say what they
would have caught, and why. Reads feeds and the database; never writes, never sends.

    sources -> fetch -> parse -> (source, article) -> rules -> Finding(rule, hits, explanation)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .config import Rule
from .errors import FeedError
from .fetch import Limits, fetch, make_client
from .models import Article, ParsedFeed
from .pipeline import document_of
from .rules import Explanation, Hit


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule against one article: whether it matched, the words that did, and (on request)
    the whole evaluation tree."""

    rule: str
    source: str
    article: Article
    hits: tuple[Hit, ...]
    explanation: Explanation | None = None

    @property
    def matched(self) -> bool:
        return bool(self.hits)


@dataclass(frozen=True, slots=True)
class SourceError:
    source: str
    message: str


def source_url(source: str) -> str:
    """A feed URL as given, or a local path turned into a ``file:`` URL."""
    if source.lower().startswith(("http://", "https://", "file:")):
        return source
    return Path(source).expanduser().resolve().as_uri()


async def read_sources(
    sources: Sequence[str], limits: Limits, now: datetime
) -> tuple[list[tuple[str, Article]], list[SourceError]]:
    """Fetch and parse every source; one that fails is reported and the rest still run."""
    articles: list[tuple[str, Article]] = []
    errors: list[SourceError] = []
    async with make_client(limits) as client:
        for source in sources:
            url = source_url(source)
            try:
                result = await fetch(client, url, limits=limits)
                parsed = await asyncio.to_thread(
                    _parse_feed(), result.body, url=result.url, headers=result.headers, now=now
                )
            except FeedError as exc:
                errors.append(SourceError(source, exc.message))
                continue
            articles.extend((source, article) for article in parsed.articles)
    return articles, errors


def evaluate(
    rules: Sequence[Rule],
    articles: Iterable[tuple[str, Article]],
    *,
    explain: bool = False,
    scoped: bool = False,
) -> Iterator[Finding]:
    """Every (article, rule) pair that matched; with ``explain``, the misses too. ``scoped``:
    the source is a feed id, and a rule only sees the feeds it watches (stored articles)."""
    for source, article in articles:
        document = document_of(article, source)
        for rule in rules:
            if scoped and not rule.watches(source):
                continue
            hits = rule.query.hits(document)
            if hits or explain:
                explanation = rule.query.explain(document) if explain else None
                yield Finding(rule.name, source, article, hits, explanation)


def _parse_feed() -> Callable[..., ParsedFeed]:
    """``watcher.parse.parse_feed``, imported when first needed: feedparser and its
    dependencies cost the daemon (which parses in worker processes) 10 MB it never uses."""
    from .parse import parse_feed

    return parse_feed
