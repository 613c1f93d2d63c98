"""Compiled rules: the syntax tree turned into small matchers that read a document's
TextIndex. No I/O.

    build(syntax, entities) -> Matcher
    matcher.found(index)         the terms that made the node hold, and where; None if it
                                 does not hold (NOT holds with nothing to report: [])
    matcher.holds(index)         only whether it holds: what NOT asks, with short cuts
    matcher.explain(index)       the node as an Explanation, every part evaluated
    matcher.requirements()       groups of keys such that a document must have a key of
                                 every group for the node to hold: RuleSet's index

Term leaves are interned: every rule that says "black sea" in the title shares one leaf, and
what it found in a document is kept in that document's memo for the next rule.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise
from typing import Protocol

from watcher.rules.document import Span, TextIndex
from watcher.rules.regex import Regex
from watcher.rules.results import Explanation, Hit
from watcher.rules.syntax import And, EntityRef, Near, Not, RegexTerm, Syntax, Term
from watcher.rules.text import exact_words, words

# A key is a folded word; a pair of words that must occur in that order; or "*" and the first
# letters of a prefix (no word contains "*").
Key = str | tuple[str, str]
Keys = frozenset[Key]
Requirements = list[Keys]  # all of these groups, a key of each; [] requires nothing
Names = tuple[tuple[str, ...], tuple[str, ...]]  # an entity's (names, exact names)
HEAD_MAX = 3  # a prefix is indexed by this many first letters (fewer if it is shorter)

# Words too common to be worth indexing a rule by when it has another term to offer.
_COMMON = frozenset(
    words(
        "a an and are as at be but by for from had has have he her his in is it its not of on "
        "or said she that the their they this to was were will with"
    )
)


class Matcher(Protocol):
    def found(self, index: TextIndex) -> list[Contribution] | None: ...

    def holds(self, index: TextIndex) -> bool: ...

    def explain(self, index: TextIndex) -> Explanation: ...

    def requirements(self) -> Requirements: ...


class Leaf(Matcher, Protocol):
    """A term: what a match reports (``label``, once per ``key``) and where it was found."""

    @property
    def label(self) -> str: ...

    @property
    def key(self) -> tuple[str, ...]: ...

    def hits(self, index: TextIndex, spans: Sequence[Span] | None = None) -> list[Hit]: ...


class WordLeaf(Leaf, Protocol):
    """A term found at word positions: it can stand on either side of NEAR."""

    def find(self, index: TextIndex) -> Sequence[Span]: ...


# A term that made a node hold, with the spans that counted (None: wherever it occurs).
Contribution = tuple[Leaf, Sequence[Span] | None]


@lru_cache(maxsize=1 << 16)
def _shared(*identity: object) -> object:
    """One object per distinct term: the key its findings are memoised under in a document."""
    return object()


# ---------------------------------------------------------------------------------------------
# Leaves.


class _WordLeafBase(ABC):
    """What every word-position term shares: hits and explanations from ``find``."""

    __slots__ = ()
    label: str
    key: tuple[str, ...]
    description: str
    scope: str | None

    @abstractmethod
    def find(self, index: TextIndex) -> Sequence[Span]:
        """Where the term occurs, as word spans."""

    @abstractmethod
    def requirements(self) -> Requirements:
        """The words a document must contain for the term to hold (the RuleSet's index)."""

    def holds(self, index: TextIndex) -> bool:
        return bool(self.find(index))

    def found(self, index: TextIndex) -> list[Contribution] | None:
        return [(self, None)] if self.holds(index) else None

    def hits(self, index: TextIndex, spans: Sequence[Span] | None = None) -> list[Hit]:
        found = self.find(index) if spans is None else spans
        return [index.word_hit(span, self.label) for span in found]

    def explain(self, index: TextIndex) -> Explanation:
        held = self.holds(index)
        hits = tuple(self.hits(index)) if held else ()
        return Explanation(self.description, held, hits=hits, note="" if held else self._absent())

    def _absent(self) -> str:
        return f"not found in {self.scope}" if self.scope else "not found"

    def _spans(self, index: TextIndex, positions: Sequence[int], length: int) -> list[Span]:
        low, high = index.bounds(self.scope)
        return [(p, p + length) for p in positions if low <= p < high]


@dataclass(frozen=True, slots=True, eq=False)
class _Word(_WordLeafBase):
    """One word, any case: the commonest term, and a set lookup."""

    label: str
    key: tuple[str, ...]
    description: str
    scope: str | None
    word: str

    def holds(self, index: TextIndex) -> bool:
        if self.scope is None:
            return self.word in index.unscoped_words
        return self.word in index.words_in(self.scope)

    def find(self, index: TextIndex) -> Sequence[Span]:
        return self._spans(index, index.positions_of(self.word), 1)

    def requirements(self) -> Requirements:
        return [frozenset({self.word})]


@dataclass(frozen=True, slots=True, eq=False)
class _Phrase(_WordLeafBase):
    """Consecutive words within one field value; ``exact`` when case counts (``=``)."""

    label: str
    key: tuple[str, ...]
    description: str
    scope: str | None
    words: tuple[str, ...]  # folded: all must be present before positions are looked at
    exact: tuple[str, ...] | None
    memo_key: object

    def holds(self, index: TextIndex) -> bool:
        if self.exact is None and self.scope is None and len(self.words) == 2:
            return (self.words[0], self.words[1]) in index.unscoped_pairs  # most names
        return bool(self.find(index))

    def find(self, index: TextIndex) -> Sequence[Span]:
        present = index.words_in(self.scope)
        for word in self.words:
            if word not in present:
                return ()
        found = index.found.get(self.memo_key)
        if found is None:
            found = index.found[self.memo_key] = self._find(index)
        return found

    def _find(self, index: TextIndex) -> list[Span]:
        sought = list(self.exact or self.words)
        exact = self.exact is not None
        starts = self._spans(index, index.positions_of(sought[0], exact=exact), len(sought))
        if len(sought) == 1:
            return starts
        return [
            span for span in starts if index.tokens_at(span[0], len(sought), exact=exact) == sought
        ]

    def requirements(self) -> Requirements:
        if len(self.words) == 1:  # an exact word
            return [frozenset(self.words)]
        return [frozenset({pair}) for pair in dict.fromkeys(pairwise(self.words))]


@dataclass(frozen=True, slots=True, eq=False)
class _Prefix(_WordLeafBase):
    """``word*``: any word starting with ``prefix`` (folded, or exact with ``=``)."""

    label: str
    key: tuple[str, ...]
    description: str
    scope: str | None
    prefix: str
    folded: str  # the folded prefix, for the index: an exact match implies a folded one
    exact: bool
    memo_key: object

    def find(self, index: TextIndex) -> Sequence[Span]:
        found = index.found.get(self.memo_key)
        if found is None:
            found = index.found[self.memo_key] = self._find(index)
        return found

    def _find(self, index: TextIndex) -> list[Span]:
        matching = index.with_prefix(self.prefix, exact=self.exact)
        positions = chain.from_iterable(index.positions_of(w, exact=self.exact) for w in matching)
        return self._spans(index, sorted(positions), 1)

    def requirements(self) -> Requirements:
        return [frozenset({"*" + self.folded[:HEAD_MAX]})]

    def _absent(self) -> str:
        where = f" in {self.scope}" if self.scope else ""
        return f'no word starting with "{self.prefix}"{where}'


@dataclass(frozen=True, slots=True, eq=False)
class _Regex:
    """``/pattern/``: RE2 over the NFKC text of each field value in scope."""

    label: str
    key: tuple[str, ...]
    description: str
    scope: str | None
    regex: Regex

    def holds(self, index: TextIndex) -> bool:
        held = index.held.get(self)
        if held is None:
            found = (self.regex.search(index.regex_text(value)) for value in self._values(index))
            held = index.held[self] = any(match is not None for match in found)
        return held

    def found(self, index: TextIndex) -> list[Contribution] | None:
        return [(self, None)] if self.holds(index) else None

    def hits(self, index: TextIndex, spans: Sequence[Span] | None = None) -> list[Hit]:
        return [
            index.regex_hit(value, *match.span(), self.label)
            for value in self._values(index)
            for match in self.regex.finditer(index.regex_text(value))
        ]

    def explain(self, index: TextIndex) -> Explanation:
        held = self.holds(index)
        hits = tuple(self.hits(index)) if held else ()
        note = "" if held else (f"no match in {self.scope}" if self.scope else "no match")
        return Explanation(self.description, held, hits=hits, note=note)

    def requirements(self) -> Requirements:
        return []  # nothing to look up: evaluated for every document

    def _values(self, index: TextIndex) -> range:
        return range(len(index.texts))[index.value_range(self.scope)]


# ---------------------------------------------------------------------------------------------
# Entities and operators.


@dataclass(frozen=True, slots=True, eq=False)
class _Entity:
    """``@id``: any of its names (any case) or exact names; every one found is reported."""

    description: str
    leaves: tuple[WordLeaf, ...]
    memo_key: object

    def holds(self, index: TextIndex) -> bool:
        held = index.held.get(self.memo_key)
        if held is None:
            held = index.held[self.memo_key] = any(leaf.holds(index) for leaf in self.leaves)
        return held

    def found(self, index: TextIndex) -> list[Contribution] | None:
        if not self.holds(index):
            return None
        return [(leaf, None) for leaf in self.leaves if leaf.holds(index)]

    def explain(self, index: TextIndex) -> Explanation:
        found = self.found(index)
        hits = tuple(hit for leaf, _ in found or () for hit in leaf.hits(index))
        note = "" if found else f"none of its {len(self.leaves)} names found"
        return Explanation(self.description, found is not None, hits=hits, note=note)

    def requirements(self) -> Requirements:
        return _either(self.leaves)


@dataclass(frozen=True, slots=True, eq=False)
class _All:
    parts: tuple[Matcher, ...]

    def holds(self, index: TextIndex) -> bool:
        return all(part.holds(index) for part in self.parts)

    def found(self, index: TextIndex) -> list[Contribution] | None:
        collected: list[Contribution] = []
        for part in self.parts:
            found = part.found(index)
            if found is None:
                return None
            collected += found
        return collected

    def explain(self, index: TextIndex) -> Explanation:
        explained = tuple(part.explain(index) for part in self.parts)
        return Explanation("AND", all(part.held for part in explained), explained)

    def requirements(self) -> Requirements:
        return [group for part in self.parts for group in part.requirements()]


@dataclass(frozen=True, slots=True, eq=False)
class _Any:
    branches: tuple[Matcher, ...]

    def holds(self, index: TextIndex) -> bool:
        return any(branch.holds(index) for branch in self.branches)

    def found(self, index: TextIndex) -> list[Contribution] | None:
        # No short cut after the first branch: the alert names every branch that was present.
        collected: list[Contribution] | None = None
        for branch in self.branches:
            found = branch.found(index)
            if found is not None:
                collected = [*(collected or ()), *found]
        return collected

    def explain(self, index: TextIndex) -> Explanation:
        explained = tuple(branch.explain(index) for branch in self.branches)
        return Explanation("OR", any(branch.held for branch in explained), explained)

    def requirements(self) -> Requirements:
        return _either(self.branches)


@dataclass(frozen=True, slots=True, eq=False)
class _Not:
    child: Matcher

    def holds(self, index: TextIndex) -> bool:
        return not self.child.holds(index)

    def found(self, index: TextIndex) -> list[Contribution] | None:
        return None if self.child.holds(index) else []

    def explain(self, index: TextIndex) -> Explanation:
        explained = self.child.explain(index)
        return Explanation("NOT", not explained.held, (explained,))

    def requirements(self) -> Requirements:
        return []  # what is absent narrows nothing down


@dataclass(frozen=True, slots=True, eq=False)
class _Near:
    """Two sides within ``distance`` words of each other in one field value: at most that
    many words between them, in either order, not overlapping."""

    left: Matcher
    right: Matcher
    distance: int
    left_leaves: tuple[WordLeaf, ...]
    right_leaves: tuple[WordLeaf, ...]

    def holds(self, index: TextIndex) -> bool:
        return self.found(index) is not None

    def found(self, index: TextIndex) -> list[Contribution] | None:
        if not (self.left.holds(index) and self.right.holds(index)):
            return None
        return index.remember(("near", self), lambda: self._pairs(index)) or None

    def _pairs(self, index: TextIndex) -> list[Contribution]:
        """Each leaf of either side with the spans that have a partner on the other side."""
        left = [(leaf, span) for leaf in self.left_leaves for span in leaf.find(index)]
        right = sorted(
            ((span, leaf) for leaf in self.right_leaves for span in leaf.find(index)),
            key=lambda found: found[0],
        )
        starts = [span[0] for span, _ in right]
        longest = max((end - start for (start, end), _ in right), default=0)
        used: dict[WordLeaf, dict[Span, None]] = {}
        for leaf, (start, end) in left:
            low = bisect_left(starts, start - self.distance - longest)
            for other_span, other in right[low : bisect_right(starts, end + self.distance)]:
                if 0 <= _words_between((start, end), other_span) <= self.distance:
                    used.setdefault(leaf, {})[(start, end)] = None
                    used.setdefault(other, {})[other_span] = None
        order = self.left_leaves + self.right_leaves
        return [(leaf, sorted(used[leaf])) for leaf in dict.fromkeys(order) if leaf in used]

    def explain(self, index: TextIndex) -> Explanation:
        sides = (self.left.explain(index), self.right.explain(index))
        found = self.found(index)
        hits = tuple(hit for leaf, spans in found or () for hit in leaf.hits(index, spans))
        note = ""
        if found is None and all(side.held for side in sides):
            note = f"both found, but never within {self.distance} words in one field"
        return Explanation(f"NEAR/{self.distance}", found is not None, sides, hits, note)

    def requirements(self) -> Requirements:
        return self.left.requirements() + self.right.requirements()


def _words_between(one: Span, other: Span) -> int:
    """Words strictly between two spans; -1 when they overlap."""
    if one[1] <= other[0]:
        return other[0] - one[1]
    if other[1] <= one[0]:
        return one[0] - other[1]
    return -1


# ---------------------------------------------------------------------------------------------
# Requirements: what RuleSet indexes rules by.


def _either(options: Sequence[Matcher]) -> Requirements:
    """Groups for alternatives. If each needs (A1 and A2) or (B1 and B2), then both
    (A1 or B1) and (A2 or B2) are needed: the most selective groups, and the next ones."""
    if len(options) == 1:
        return options[0].requirements()
    firsts: set[Key] = set()
    seconds: set[Key] = set()
    for option in options:
        groups = sorted(option.requirements(), key=lambda group: cost(group, {}))
        if not groups:
            return []  # this one could hold without any indexed key
        firsts |= groups[0]
        seconds |= groups[min(1, len(groups) - 1)]
    return [_simplest(firsts), _simplest(seconds)]


def _simplest(group: set[Key]) -> Keys:
    """``group`` without the pairs it need not list: a pair implies each of its words."""
    return frozenset(
        key for key in group if not (isinstance(key, tuple) and not group.isdisjoint(key))
    )


def _key_cost(key: Key) -> float:
    """How often a document is expected to have ``key``: a guess without statistics."""
    if isinstance(key, tuple):
        return 0.5  # two words in a row: rarer than either
    if key.startswith("*"):
        return 4.0  # a prefix's first letters are shared by many words
    if key in _COMMON:
        return 8.0
    return 1.0 + 4.0 / len(key)


def cost(group: Keys, uses: Mapping[Key, int]) -> float:
    """How often a document is expected to satisfy ``group``: lower is more selective.
    ``uses`` counts the rules that need each key; a key many rules need is taken for a
    popular subject, one that many articles have too."""
    return sum(_key_cost(key) * math.log2(2 + uses.get(key, 0)) for key in group)


# ---------------------------------------------------------------------------------------------
# From syntax to matchers.


def build(node: Syntax, entities: Mapping[str, Names]) -> Matcher:
    """The matcher for ``node``; every @entity in it must be in ``entities``."""
    if isinstance(node, Term):
        return _term(node.text, node.words, node.exact, node.prefix, node.scope, node.describe())
    if isinstance(node, EntityRef):
        return _entity(node, entities[node.entity_id])
    if isinstance(node, RegexTerm):
        return _Regex(node.text, ("/", node.text), node.describe(), node.scope, node.regex)
    if isinstance(node, Not):
        return _Not(build(node.child, entities))
    if isinstance(node, Near):
        left, right = build(node.left, entities), build(node.right, entities)
        return _Near(left, right, node.distance, _word_leaves(left), _word_leaves(right))
    if isinstance(node, And):
        return _All(tuple(build(part, entities) for part in node.parts))
    return _Any(tuple(build(branch, entities) for branch in node.branches))


def entity_leaves(names: Names, scope: str | None) -> tuple[WordLeaf, ...]:
    """An entity's usable names (with letters or digits) as terms, names before exact ones."""
    plain, exact = names
    leaves = [_name(name, exact=False, scope=scope) for name in plain]
    leaves += [_name(name, exact=True, scope=scope) for name in exact]
    return tuple(leaf for leaf in leaves if leaf is not None)


def _entity(node: EntityRef, names: Names) -> _Entity:
    leaves = entity_leaves(names, node.scope)
    return _Entity(node.describe(), leaves, _shared("entity", leaves))


def _name(name: str, *, exact: bool, scope: str | None) -> WordLeaf | None:
    folded = _words(name)
    if not folded:
        return None
    kept = _exact_words(name) if exact else None
    written = ("=" if exact else "") + (f'"{name}"' if len(folded) > 1 else name)
    return _term(name, folded, kept, False, scope, f"{scope}:{written}" if scope else written)


@lru_cache(maxsize=1 << 16)
def _term(
    label: str,
    folded: tuple[str, ...],
    exact: tuple[str, ...] | None,
    prefix: bool,
    scope: str | None,
    description: str,
) -> WordLeaf:
    """The (shared) leaf for a word, phrase or prefix."""
    if prefix:
        sought = exact[0] if exact else folded[0]
        key: tuple[str, ...] = ("*=" if exact else "*", sought)
        memo_key = _shared("prefix", sought, exact is not None, scope)
        return _Prefix(
            label, key, description, scope, sought, folded[0], exact is not None, memo_key
        )
    if exact is None and len(folded) == 1:
        return _Word(label, ("w", *folded), description, scope, folded[0])
    key = ("=", *exact) if exact else ("w", *folded)
    memo_key = _shared("phrase", folded, exact, scope)
    return _Phrase(label, key, description, scope, folded, exact, memo_key)


def _word_leaves(matcher: Matcher) -> tuple[WordLeaf, ...]:
    """The terms on one side of NEAR (the parser allows only terms, entities and ORs)."""
    if isinstance(matcher, _Entity):
        return matcher.leaves
    if isinstance(matcher, _Any):
        return tuple(chain.from_iterable(_word_leaves(branch) for branch in matcher.branches))
    assert isinstance(matcher, _WordLeafBase)
    return (matcher,)


@lru_cache(maxsize=8192)  # thousands of rules share the same entity names
def _words(text: str) -> tuple[str, ...]:
    return tuple(words(text))


@lru_cache(maxsize=8192)
def _exact_words(text: str) -> tuple[str, ...]:
    return tuple(exact_words(text))
