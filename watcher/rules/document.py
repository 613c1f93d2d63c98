"""An article's text as rules see it, and the per-article index that every rule reads. No I/O.

    Document(title=..., summary=..., ...).index -> TextIndex, built once on first use

Every field value (the title, each tag, each author...) is a stretch of words of its own, in
the order of ``FIELDS``. A word's position is ``value * STRIDE + offset``: two words of one
value are near each other, two words of different values never are, so phrases and NEAR stay
inside one field with no extra check. Only the folded words are computed up front; their
sets, pairs, positions, exact words, offsets and regex text wait until a rule asks for them
(RuleSet asks for few: it looks the words up in its own keys).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise
from typing import Any, Generic, TypeVar, cast, overload

from watcher.rules.results import Hit
from watcher.rules.text import (
    exact_words_of,
    folded_streams,
    original_span,
    regex_text,
    word_spans,
)

FIELDS = ("title", "summary", "content", "tags", "author", "link", "feed")
UNSCOPED = ("title", "summary", "content", "tags")  # what a term without ``field:`` reads
STRIDE = 1 << 32  # larger than any field's word count and any NEAR distance

Span = tuple[int, int]  # word positions, end excluded
T = TypeVar("T")
Owner = TypeVar("Owner")


class lazy(Generic[Owner, T]):
    """``functools.cached_property`` without the lock it takes in Python 3.11, a cost paid
    for every article here: the first read computes the value and stores it in the
    instance, where later reads find it without calling this descriptor again."""

    def __init__(self, compute: Callable[[Owner], T]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> lazy[Owner, T]: ...

    @overload
    def __get__(self, instance: Owner, owner: type[Any]) -> T: ...

    def __get__(self, instance: Owner | None, owner: type[Any]) -> lazy[Owner, T] | T:
        if instance is None:
            return self
        value = instance.__dict__[self._name] = self._compute(instance)
        return value


@dataclass(frozen=True)
class Document:
    """An article's text as rules see it: plain text, HTML already stripped by the caller.
    ``feed`` is whatever names the feed to a rule (its id, its title, or both)."""

    title: str
    summary: str = ""
    content: str = ""
    tags: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    link: str = ""
    feed: str = ""

    # Not slots=True: ``lazy`` keeps its value in the instance __dict__, which a frozen
    # dataclass still allows, so the text is normalised once however many rules test it.
    @lazy
    def index(self) -> TextIndex:
        """The words of every field, indexed on first use."""
        return TextIndex(self)


class TextIndex:
    """Where each word of a document occurs, by field. ``memo`` keeps what compiled terms
    found here, so a term or entity shared by many rules is looked up once."""

    def __init__(self, document: Document) -> None:
        tags, authors = document.tags, document.authors
        self.texts = (document.title, document.summary, document.content, *tags, *authors)
        self.texts += (document.link, document.feed)
        self.streams = folded_streams(self.texts)
        self.tokens = [stream.split() for stream in self.streams]
        self._ranges = _value_ranges(len(tags), len(authors))
        self._words: dict[str | None, frozenset[str]] = {}
        self._streams: dict[str | None, str] = {}  # scope -> its streams joined, see _stream
        self._positions: dict[tuple[str, str | None, bool], list[int]] = {}
        self.memo: dict[object, Any] = {}

    def remember(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        """``compute()``, once per document and ``key`` (a tuple naming what it derives)."""
        try:
            return cast(T, self.memo[key])
        except KeyError:
            found = self.memo[key] = compute()
            return found

    # --- scopes: None (the unscoped fields) or one field name ---------------------------------

    def words_in(self, scope: str | None) -> frozenset[str]:
        """The folded words of ``scope``'s values."""
        found = self._words.get(scope)
        if found is None:
            found = self._words[scope] = frozenset(chain.from_iterable(self.tokens_in(scope)))
        return found

    def has_word(self, word: str, scope: str | None) -> bool:
        """Whether ``word`` (folded) is a word of ``scope``: ``word in words_in(scope)``
        without building that set, for a document that is asked about few words."""
        return f" {word} " in self._stream(scope)

    def has_prefix(self, prefix: str, scope: str | None) -> bool:
        """Whether a folded word of ``scope`` starts with ``prefix`` (itself a folded word)."""
        return " " + prefix in self._stream(scope)

    def _stream(self, scope: str | None) -> str:
        """``scope``'s folded streams between spaces: every word has a space either side."""
        found = self._streams.get(scope)
        if found is None:
            found = self._streams[scope] = f" {' '.join(self.streams[self.value_range(scope)])} "
        return found

    def value_range(self, scope: str | None) -> slice:
        first, end = self._ranges[scope]
        return slice(first, end)

    @lazy
    def unscoped_words(self) -> frozenset[str]:
        """The words of the fields a term reads by default."""
        return self.words_in(None)

    @lazy
    def unscoped_pairs(self) -> frozenset[tuple[str, str]]:
        """Two words in a row within one value of the fields a term reads by default."""
        return frozenset(chain.from_iterable(map(pairwise, self.tokens_in(None))))

    def tokens_in(self, scope: str | None) -> list[list[str]]:
        """The words of each of ``scope``'s values."""
        return self.tokens[self.value_range(scope)]

    # --- positions, built on first use --------------------------------------------------------

    def positions_of(self, word: str, scope: str | None, *, exact: bool = False) -> list[int]:
        """Where ``word`` (folded, or with its case when ``exact``) occurs in ``scope``,
        ascending."""
        key = (word, scope, exact)
        found = self._positions.get(key)
        if found is None:
            found = self._positions[key] = self._scan(word, scope, exact=exact)
        return found

    def _scan(self, word: str, scope: str | None, *, exact: bool) -> list[int]:
        values = self.exact_tokens if exact else self.tokens
        found: list[int] = []
        for value in range(*self._ranges[scope]):
            tokens = values[value]
            if word in tokens:  # most values do not have it
                found += _occurrences(tokens, word, value * STRIDE)
        return found

    def positions_within(
        self, word: str, scope: str | None, window: Span, *, exact: bool = False
    ) -> list[int]:
        """``positions_of`` in ``window``: positions [low, high) inside one value."""
        low, high = window
        value, offset = divmod(low, STRIDE)
        first, end = self._ranges[scope]
        if not first <= value < end:
            return []
        tokens = (self.exact_tokens if exact else self.tokens)[value][
            offset : high - value * STRIDE
        ]
        return _occurrences(tokens, word, low) if word in tokens else []

    @lazy
    def exact_tokens(self) -> list[list[str]]:
        return exact_words_of(self.texts)

    def tokens_at(self, position: int, length: int, *, exact: bool) -> list[str]:
        value, offset = divmod(position, STRIDE)
        tokens = self.exact_tokens if exact else self.tokens
        return tokens[value][offset : offset + length]

    def with_prefix(self, prefix: str, *, exact: bool) -> list[str]:
        """The distinct words (folded, or exact) that start with ``prefix``."""
        ordered = self._sorted_exact if exact else self._sorted_words
        found = []
        for word in ordered[bisect_left(ordered, prefix) :]:
            if not word.startswith(prefix):
                break
            found.append(word)
        return found

    @lazy
    def _sorted_words(self) -> list[str]:
        return sorted(set(chain.from_iterable(self.tokens)))

    @lazy
    def _sorted_exact(self) -> list[str]:
        return sorted(set(chain.from_iterable(self.exact_tokens)))

    # --- back to the original text ------------------------------------------------------------

    def word_hit(self, span: Span, term: str) -> Hit:
        """The hit for the words at ``span``, with offsets into the original field value."""
        value, first = divmod(span[0], STRIDE)
        spans = self.remember(("spans", value), lambda: word_spans(self.texts[value]))
        start, end = spans[first][0], spans[span[1] - 1 - value * STRIDE][1]
        return self._hit(value, start, end, term)

    def regex_text(self, value: int) -> str:
        """What a regex sees of field value ``value``."""
        return self._regex_text(value)[0]

    def regex_hit(self, value: int, start: int, end: int, term: str) -> Hit:
        """The hit for ``regex_text(value)[start:end]``, with offsets into the original."""
        start, end = original_span(self._regex_text(value)[1], start, end)
        return self._hit(value, start, end, term)

    def _regex_text(self, value: int) -> tuple[str, list[int] | None]:
        return self.remember(("regex", value), lambda: regex_text(self.texts[value]))

    def _hit(self, value: int, start: int, end: int, term: str) -> Hit:
        field = next(f for f in FIELDS if self._ranges[f][0] <= value < self._ranges[f][1])
        index = value - self._ranges[field][0]
        return Hit(field, self.texts[value][start:end], start, end, term, index)


def _occurrences(tokens: list[str], word: str, base: int) -> list[int]:
    """``base`` plus each offset of ``word`` in ``tokens``. list.count and list.index scan in
    C: cheaper than indexing every word of every article when only a few terms need
    positions."""
    found = []
    offset = -1
    for _ in range(tokens.count(word)):
        offset = tokens.index(word, offset + 1)
        found.append(base + offset)
    return found


@lru_cache(maxsize=256)  # one per count of tags and authors, shared by every document
def _value_ranges(tags: int, authors: int) -> Mapping[str | None, Span]:
    """Scope -> (first value, end value), for a document with this many tags and authors."""
    link = 3 + tags + authors
    return {
        None: (0, 3 + tags),
        "title": (0, 1),
        "summary": (1, 2),
        "content": (2, 3),
        "tags": (3, 3 + tags),
        "author": (3 + tags, link),
        "link": (link, link + 1),
        "feed": (link + 1, link + 2),
    }
