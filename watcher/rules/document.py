"""An article's text as rules see it, and the per-article index that every rule reads. No I/O.

    Document(title=..., summary=..., ...).index -> TextIndex, built once on first use

Every field value (the title, each tag, each author...) is a stretch of words of its own, in
the order of ``FIELDS``. A word's position is ``value * STRIDE + offset``: two words of one
value are near each other, two words of different values never are, so phrases and NEAR stay
inside one field with no extra check. Only the folded words and their sets are computed up
front; positions, exact words, offsets and regex text wait until a rule asks for them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import Any, Generic, TypeVar, cast, overload

from watcher.rules.results import Hit
from watcher.rules.text import exact_words, original_span, regex_text, word_spans, words

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
    """Where each word of a document occurs, by field. ``held`` and ``found`` keep what
    compiled terms found here, so a term shared by many rules is looked up once."""

    def __init__(self, document: Document) -> None:
        tags, authors = document.tags, document.authors
        self.texts = (document.title, document.summary, document.content, *tags, *authors)
        self.texts += (document.link, document.feed)
        self.tokens = [words(text) if text else [] for text in self.texts]
        self._counts = len(tags), len(authors)
        self._unscoped_end = unscoped_end = 3 + len(tags)
        self.unscoped_words = frozenset(chain.from_iterable(self.tokens[:unscoped_end]))
        self.all_words = self.unscoped_words.union(*self.tokens[unscoped_end:])
        self.held: dict[object, bool] = {}
        self.found: dict[object, list[Span]] = {}
        self._positions: dict[tuple[str, bool], list[int]] = {}
        self._memo: dict[object, object] = {}

    def remember(self, key: tuple[object, ...], compute: Callable[[], T]) -> T:
        """``compute()``, once per document and ``key`` (a tuple naming what it derives)."""
        try:
            return cast(T, self._memo[key])
        except KeyError:
            found = self._memo[key] = compute()
            return found

    # --- scopes: None (the unscoped fields) or one field name ---------------------------------

    @lazy
    def _ranges(self) -> dict[str | None, Span]:
        return _value_ranges(*self._counts)

    def words_in(self, scope: str | None) -> frozenset[str]:
        """The folded words of ``scope``'s values."""
        if scope is None:
            return self.unscoped_words
        tokens = self.tokens[self.value_range(scope)]
        return self.remember(("words", scope), lambda: frozenset(chain.from_iterable(tokens)))

    def value_range(self, scope: str | None) -> slice:
        first, end = self._ranges[scope]
        return slice(first, end)

    def bounds(self, scope: str | None) -> Span:
        """The positions of ``scope``'s words lie in [low, high)."""
        first, end = self._ranges[scope]
        return first * STRIDE, end * STRIDE

    @lazy
    def pairs(self) -> frozenset[tuple[str, str]]:
        """Every two words in a row within one field value."""
        others = map(pairwise, self.tokens[self._unscoped_end :])
        return self.unscoped_pairs.union(*others)

    @lazy
    def unscoped_pairs(self) -> frozenset[tuple[str, str]]:
        """Two words in a row within one value of the fields a term reads by default."""
        unscoped = self.tokens[: self._unscoped_end]
        return frozenset(chain.from_iterable(map(pairwise, unscoped)))

    # --- positions, built on first use --------------------------------------------------------

    def positions_of(self, word: str, *, exact: bool = False) -> list[int]:
        """Where ``word`` (folded, or with its case when ``exact``) occurs, ascending."""
        found = self._positions.get((word, exact))
        if found is None:
            found = self._positions[word, exact] = self._scan(word, exact=exact)
        return found

    def _scan(self, word: str, *, exact: bool) -> list[int]:
        # list.index scans in C: cheaper than indexing every word of every article when
        # only a few phrases need positions.
        found: list[int] = []
        for value, tokens in enumerate(self.exact_tokens if exact else self.tokens):
            if word in tokens:
                offset = tokens.index(word)
                while True:
                    found.append(value * STRIDE + offset)
                    try:
                        offset = tokens.index(word, offset + 1)
                    except ValueError:
                        break
        return found

    @lazy
    def exact_tokens(self) -> list[list[str]]:
        return [exact_words(text) for text in self.texts]

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
        return sorted(self.all_words)

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


def _value_ranges(tags: int, authors: int) -> dict[str | None, Span]:
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
