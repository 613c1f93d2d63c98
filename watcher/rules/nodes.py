"""Compiled rules: the syntax tree turned into small matchers that read a document's
TextIndex. No I/O.

    build(syntax, entities) -> Matcher
    matcher.found(index)         the terms that made the node hold, and where; None if it
                                 does not hold (NOT holds with nothing to report: [])
    matcher.holds(index)         only whether it holds: what NOT asks, with short cuts
    matcher.explain(index)       the node as an Explanation, every part evaluated
    matcher.requirements()       groups of keys such that a document must have a key of
                                 every group for the node to hold: RuleSet's index
    flatten(matcher) -> Flat     the matcher as RuleSet evaluates it: most terms become a
                                 key looked up in the keys RuleSet found in the document

Term leaves are interned: every rule that says "black sea" in the title shares one leaf, and
what it found in a document is kept in that document's memo for the next rule.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, pairwise
from typing import Protocol

from watcher.rules.document import STRIDE, UNSCOPED, Span, TextIndex
from watcher.rules.regex import Regex
from watcher.rules.results import Explanation, Hit
from watcher.rules.syntax import And, EntityRef, Near, Not, RegexTerm, Syntax, Term
from watcher.rules.text import exact_words, words

# A key is something a document has, in one of four forms that no folded word (letters, digits
# and marks only) can be mistaken for:
#     "kyiv"            a word of the fields an unscoped term reads (title, summary, ...)
#     ("black", "sea")  two words in a row within one value of those fields
#     "*san"            HEAD and the first letters of a word of those fields
#     "title:kyiv"      a word of one field: field, ":", word
Key = str | tuple[str, str]
Keys = frozenset[Key]
Requirements = list[Keys]  # all of these groups, a key of each; [] requires nothing
Names = tuple[tuple[str, ...], tuple[str, ...]]  # an entity's (names, exact names)
HEAD = "*"
HEAD_MAX = 3  # a prefix is indexed by this many first letters (fewer if it is shorter)
_UNSCOPED_INDEX = frozenset({None, *UNSCOPED})  # the scopes whose words the plain keys cover
_FIELD = ":"

# Words too common to be worth indexing a rule by when it has another term to offer.
_COMMON = frozenset(
    words(
        "a an and are as at be but by for from had has have he her his in is it its not of on "
        "or said she that the their they this to was were will with"
    )
)


class Matcher(Protocol):
    def found(self, index: TextIndex) -> Sequence[Contribution] | None: ...

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

    @property
    def length(self) -> int: ...  # the words a span of it covers

    def find(self, index: TextIndex) -> Sequence[Span]: ...

    def find_within(self, index: TextIndex, window: Span) -> Sequence[Span]: ...


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

    def find_within(self, index: TextIndex, window: Span) -> Sequence[Span]:
        """The spans of ``find`` that start in ``window`` (positions inside one value)."""
        low, high = window
        return [span for span in self.find(index) if low <= span[0] < high]

    @property
    def length(self) -> int:
        return 1

    @abstractmethod
    def requirements(self) -> Requirements:
        """The words a document must contain for the term to hold (the RuleSet's index)."""

    def holds(self, index: TextIndex) -> bool:
        return bool(self.find(index))

    def found(self, index: TextIndex) -> Sequence[Contribution] | None:
        return ((self, None),) if self.holds(index) else None

    def hits(self, index: TextIndex, spans: Sequence[Span] | None = None) -> list[Hit]:
        found = self.find(index) if spans is None else spans
        return [index.word_hit(span, self.label) for span in found]

    def explain(self, index: TextIndex) -> Explanation:
        held = self.holds(index)
        hits = tuple(self.hits(index)) if held else ()
        return Explanation(self.description, held, hits=hits, note="" if held else self._absent())

    def _absent(self) -> str:
        return f"not found in {self.scope}" if self.scope else "not found"


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
        return [(p, p + 1) for p in index.positions_of(self.word, self.scope)]

    def find_within(self, index: TextIndex, window: Span) -> Sequence[Span]:
        return [(p, p + 1) for p in index.positions_within(self.word, self.scope, window)]

    def requirements(self) -> Requirements:
        return [frozenset({_word_key(self.word, self.scope)})]


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
    # Two words in any case, unscoped (most names): one lookup in the document's pairs.
    pair: tuple[str, str] | None
    sought: list[str]  # ``exact`` or ``words``, as a list: what the index's tokens compare to

    def holds(self, index: TextIndex) -> bool:
        if self.pair is not None:
            return self.pair in index.unscoped_pairs
        return bool(self.find(index))

    def find(self, index: TextIndex) -> Sequence[Span]:
        if not self._possible(index):
            return ()
        found: list[Span] | None = index.memo.get(self.memo_key)
        if found is None:
            found = index.memo[self.memo_key] = self._find(index)
        return found

    def _possible(self, index: TextIndex) -> bool:
        """Whether the document has each word, before positions are looked at. Not asked of
        a pair, whose places are only looked for once it is known to hold (a NEAR, a hit):
        building the document's pairs would cost more than the places of its first word."""
        if self.pair is not None:
            return True
        return all(index.has_word(word, self.scope) for word in self.words)

    def _find(self, index: TextIndex) -> list[Span]:
        exact = self.exact is not None
        return self._spans(index, index.positions_of(self.sought[0], self.scope, exact=exact))

    def find_within(self, index: TextIndex, window: Span) -> Sequence[Span]:
        if not self._possible(index):
            return ()
        exact = self.exact is not None
        first = self.sought[0]
        return self._spans(index, index.positions_within(first, self.scope, window, exact=exact))

    def _spans(self, index: TextIndex, starts: list[int]) -> list[Span]:
        """The spans of the phrase at ``starts``, where its first word is."""
        sought, length = self.sought, len(self.sought)
        if length > 1:
            exact = self.exact is not None
            starts = [p for p in starts if index.tokens_at(p, length, exact=exact) == sought]
        return [(p, p + length) for p in starts]

    @property
    def length(self) -> int:
        return len(self.sought)

    def requirements(self) -> Requirements:
        groups: Requirements = []
        if self.scope is not None or len(self.words) == 1:  # each word, in its field
            groups += [
                frozenset({_word_key(word, self.scope)}) for word in dict.fromkeys(self.words)
            ]
        if self.scope in _UNSCOPED_INDEX:  # and each two in a row: kept for those fields
            groups += [frozenset({pair}) for pair in dict.fromkeys(pairwise(self.words))]
        return groups


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

    def holds(self, index: TextIndex) -> bool:
        if self.exact:
            return bool(self.find(index))
        return index.has_prefix(self.prefix, self.scope)

    def find(self, index: TextIndex) -> Sequence[Span]:
        found: list[Span] | None = index.memo.get(self.memo_key)
        if found is None:
            found = index.memo[self.memo_key] = self._find(index)
        return found

    def _find(self, index: TextIndex) -> list[Span]:
        matching = index.with_prefix(self.prefix, exact=self.exact)
        found = (index.positions_of(word, self.scope, exact=self.exact) for word in matching)
        return [(p, p + 1) for p in sorted(chain.from_iterable(found))]

    def requirements(self) -> Requirements:
        if self.scope not in _UNSCOPED_INDEX:
            return []  # no first letters are kept for those fields: evaluated when selected
        return [frozenset({HEAD + self.folded[:HEAD_MAX]})]

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
        held: bool | None = index.memo.get(self)
        if held is None:
            found = (self.regex.search(index.regex_text(value)) for value in self._values(index))
            held = index.memo[self] = any(match is not None for match in found)
        return held

    def found(self, index: TextIndex) -> Sequence[Contribution] | None:
        return ((self, None),) if self.holds(index) else None

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
    scope: str | None
    leaves: tuple[WordLeaf, ...]
    memo_key: object
    # A word (in scope) or two words in a row (unscoped) that a document has if any name
    # holds: most entities are absent, and two set operations say so without the names.
    words: frozenset[str]
    pairs: frozenset[tuple[str, str]]

    def holds(self, index: TextIndex) -> bool:
        return self.found(index) is not None

    def found(self, index: TextIndex) -> Sequence[Contribution] | None:
        # Popular entities appear in many rules: what they found is kept for the next one.
        found: tuple[Contribution, ...] | None = index.memo.get(self.memo_key)
        if found is None:
            if self.words.isdisjoint(index.words_in(self.scope)) and (
                not self.pairs or self.pairs.isdisjoint(index.unscoped_pairs)
            ):
                found = ()
            else:
                found = tuple([(leaf, None) for leaf in self.leaves if leaf.holds(index)])
            index.memo[self.memo_key] = found
        return found or None  # an entity that holds has found one of its names

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

    def found(self, index: TextIndex) -> Sequence[Contribution] | None:
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

    def found(self, index: TextIndex) -> Sequence[Contribution] | None:
        # No short cut after the first branch: the alert names every branch that was present.
        collected: Sequence[Contribution] | None = None
        for branch in self.branches:
            found = branch.found(index)
            if found is not None:
                collected = found if collected is None else (*collected, *found)
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

    def found(self, index: TextIndex) -> Sequence[Contribution] | None:
        return None if self.child.holds(index) else ()

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
    anchor_left: bool  # whether the left side is expected rarer: its places are looked up

    def holds(self, index: TextIndex) -> bool:
        return self.found(index) is not None

    def found(self, index: TextIndex) -> Sequence[Contribution] | None:
        if not (self.left.holds(index) and self.right.holds(index)):
            return None
        return self.close(index, self.left_leaves, self.right_leaves)

    def close(
        self, index: TextIndex, left: Sequence[WordLeaf], right: Sequence[WordLeaf]
    ) -> Sequence[Contribution] | None:
        """``found``, once ``left`` and ``right`` are known to be the leaves of each side
        that hold (or to include them): the others need not be looked for."""
        found: list[Contribution] | None = index.memo.get(self)
        if found is None:
            found = index.memo[self] = self._pairs(index, left, right)
        return found or None

    def _pairs(
        self, index: TextIndex, left: Sequence[WordLeaf], right: Sequence[WordLeaf]
    ) -> list[Contribution]:
        """Each leaf of either side with the spans that have a partner on the other side.
        The anchor side's places are looked up in full, the other side's only around them:
        a few words, not the whole document."""
        anchors, others = (left, right) if self.anchor_left else (right, left)
        distance = self.distance
        reach = distance + max(other.length for other in others)
        used: dict[WordLeaf, dict[Span, None]] = {}
        for leaf in anchors:
            for span in leaf.find(index):
                start, end = span
                window = (max(start - reach, start - start % STRIDE), end + distance + 1)
                for other in others:
                    for other_span in other.find_within(index, window):
                        if 0 <= _words_between(span, other_span) <= distance:
                            used.setdefault(leaf, {})[span] = None
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


def terms(leaves: Iterable[Leaf]) -> tuple[str, ...]:
    """What a match reports: the labels of ``leaves`` in order, each term once. Repeats are
    judged on the normalised words, so "nato OR NATO" reports one term."""
    labels: dict[tuple[str, ...], str] = {}
    for leaf in leaves:
        labels.setdefault(leaf.key, leaf.label)
    return tuple(labels.values())


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
    """``group`` without the keys it need not list: those that imply another of its keys."""
    return frozenset(key for key in group if group.isdisjoint(_implied(key)))


def _implied(key: Key) -> tuple[Key, ...]:
    """The other keys a document has whenever it has ``key``."""
    if isinstance(key, tuple):
        return key  # two words in a row: each word
    field = field_key(key)
    return (field[1],) if field is not None and field[0] in UNSCOPED else ()


def words_of(group: Keys) -> set[str]:
    """The words ``group``'s keys are about. Two groups about one word say much the same:
    "black sea" anywhere and "sea" in the title are seldom one without the other."""
    found: set[str] = set()
    for key in group:
        if isinstance(key, tuple):
            found.update(key)
        elif not key.startswith(HEAD):
            field = field_key(key)
            found.add(key if field is None else field[1])
    return found


def _word_key(word: str, scope: str | None) -> str:
    return word if scope is None else f"{scope}{_FIELD}{word}"


def field_key(key: str) -> tuple[str, str] | None:
    """(field, word) for a key of one field's word, else None."""
    field, colon, word = key.partition(_FIELD)
    return (field, word) if colon else None


def _key_cost(key: Key) -> float:
    """How often a document is expected to have ``key``: a guess without statistics."""
    if isinstance(key, tuple):
        return 0.5  # two words in a row: rarer than either
    if key.startswith(HEAD):
        return 4.0  # a prefix's first letters are shared by many words
    field = field_key(key)
    word = key if field is None else field[1]  # rarer in one field, but by how much?
    if word in _COMMON:
        return 8.0
    return 1.0 + 4.0 / len(word)


def cost(group: Keys, uses: Mapping[Key, int]) -> float:
    """How often a document is expected to satisfy ``group``: lower is more selective.
    ``uses`` counts the rules that need each key; a key many rules need is taken for a
    popular subject, one that many articles have too (a word of one field counts the rules
    that need the word anywhere)."""
    return sum(_key_cost(key) * math.log2(2 + _uses(key, uses)) for key in group)


def _uses(key: Key, uses: Mapping[Key, int]) -> int:
    found = uses.get(key, 0)
    if isinstance(key, str) and (field := field_key(key)) is not None:
        found += uses.get(field[1], 0)
    return found


# ---------------------------------------------------------------------------------------------
# Flat rules: what RuleSet evaluates. The tree costs a call per node, per rule; most rules are
# an AND of ORs of terms, whose terms mostly hold exactly when the document has a key (a word,
# two words in a row), and RuleSet has looked up every key its rules need at once.

# A term, and its probe: a key that a document has exactly when the term holds, or None when
# the term itself must be asked.
Atom = tuple[Key | None, Leaf]
Clause = tuple[Atom, ...]  # terms of which one must hold; every one that holds is reported


@dataclass(frozen=True, slots=True)
class Flat:
    """A matcher as an AND, in query order, of clauses (its ORs of terms and entities), of
    NEARs, and of the matchers that do not flatten (an OR of ANDs...), which report as in the
    tree; ``excluded`` are terms that rule a document out (its NOTs of terms). ``distinct``:
    no two terms report the same words, so the terms found need no de-duplication."""

    parts: tuple[Clause | Proximity | Matcher, ...]
    excluded: Clause
    distinct: bool


@dataclass(frozen=True, slots=True)
class Proximity:
    """A NEAR, and the probes of each side's terms (as for a clause): where a side has none
    of its terms, the places of the other side's need not be looked up."""

    near: _Near
    left: tuple[tuple[Key | None, WordLeaf], ...]  # each of near.left_leaves, with its probe
    right: tuple[tuple[Key | None, WordLeaf], ...]


def flatten(matcher: Matcher) -> Flat:
    """``matcher`` as a Flat: it holds and reports exactly as ``matcher.found`` does."""
    parts = matcher.parts if isinstance(matcher, _All) else (matcher,)
    flat: list[Clause | Proximity | Matcher] = []
    excluded: list[Atom] = []
    for part in parts:
        clause = _clause(part)
        negated = _clause(part.child) if isinstance(part, _Not) else None
        if negated is not None:
            excluded += negated
        elif clause is not None:
            flat.append(clause)
        elif isinstance(part, _Near):
            flat.append(_proximity(part))
        else:
            flat.append(part)
    reported = [leaf.key for part in flat for _, leaf in (part if isinstance(part, tuple) else ())]
    distinct = all(isinstance(part, tuple) for part in flat) and len(set(reported)) == len(reported)
    return Flat(tuple(flat), tuple(excluded), distinct)


def _proximity(near: _Near) -> Proximity:
    left = tuple((_probe(leaf), leaf) for leaf in near.left_leaves)
    return Proximity(near, left, tuple((_probe(leaf), leaf) for leaf in near.right_leaves))


def _clause(matcher: Matcher) -> Clause | None:
    """``matcher`` as a clause, if it is a term, an entity or an OR of those."""
    if isinstance(matcher, _Entity):
        return tuple((_probe(leaf), leaf) for leaf in matcher.leaves)
    if isinstance(matcher, _Any):
        clauses = [_clause(branch) for branch in matcher.branches]
        if any(clause is None for clause in clauses):
            return None
        return tuple(atom for clause in clauses if clause is not None for atom in clause)
    if isinstance(matcher, _WordLeafBase | _Regex):
        return ((_probe(matcher), matcher),)
    return None


def _probe(leaf: Leaf) -> Key | None:
    """A key that a document has exactly when ``leaf`` holds, if there is one."""
    if isinstance(leaf, _Word):
        return _word_key(leaf.word, leaf.scope)
    if isinstance(leaf, _Phrase):
        return leaf.pair
    return None


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
        anchor_left = _rarity(left) <= _rarity(right)
        return _Near(
            left, right, node.distance, _word_leaves(left), _word_leaves(right), anchor_left
        )
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
    words: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for leaf in leaves:
        if isinstance(leaf, _Phrase) and leaf.pair is not None:
            pairs.add(leaf.pair)
        else:  # every name is a word or a phrase (of one word, when exact)
            assert isinstance(leaf, _Word | _Phrase)
            words.add(leaf.word if isinstance(leaf, _Word) else leaf.words[0])
    memo_key = _shared("entity", leaves)
    return _Entity(
        node.describe(), node.scope, leaves, memo_key, frozenset(words), frozenset(pairs)
    )


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
    pair = (folded[0], folded[1]) if exact is None and scope is None and len(folded) == 2 else None
    compared = list(exact or folded)
    return _Phrase(label, key, description, scope, folded, exact, memo_key, pair, compared)


def _rarity(matcher: Matcher) -> float:
    """How often a document is expected to have what ``matcher`` needs (see ``cost``)."""
    return min((cost(group, {}) for group in matcher.requirements()), default=math.inf)


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
