"""Many rules matched together, at a cost per article that barely grows with their number.
No I/O.

    RuleSet({name: query}).match(document) -> [(name, terms), ...] in rule order

A rule can only hold if the article has a key of each of its requirement groups (see
``Matcher.requirements``): "@nato AND kyiv" needs one of NATO's names, and "kyiv". Each rule
is filed under its most selective group and the next one about other words (two groups about
one word say much the same); the keys an article has select the rules worth evaluating, and
only those run. Rules that require nothing indexable (a lone /regex/) run for every article.
This is sound because a rule that could match by what is absent alone is refused when it is
compiled.

Selective means: few articles are expected to have it. Without statistics of the articles,
two guesses combine: the kind of key (two words in a row are rarer than one; "the" is common)
and how many rules need the key (a name in a thousand rules is a popular subject).

A group of several keys (an entity's names, an OR) is satisfied by any one of them, so a rule
is filed under each key of its first group, paired with each key of its second.

An article's keys are looked up straight from its words, in one set operation per kind: its
words always, the pairs of words in a row when a rule needs a phrase, the words of a field
when a rule reads that field, and the first letters of its words only when a rule has nothing
but prefixes to be filed under (a rule with something else is filed under that instead: first
letters cost every article more than the few extra rules cost). The same keys answer most of
what the selected rules ask (see ``nodes.flatten``): whether a word or a name is there is one
lookup, not a walk down the rule's tree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import chain, pairwise
from typing import TypeVar

from watcher.rules.document import Document, TextIndex
from watcher.rules.nodes import (
    HEAD,
    Flat,
    Key,
    Keys,
    Leaf,
    Proximity,
    cost,
    field_key,
    flatten,
    terms,
    words_of,
)
from watcher.rules.query import EntityDefinition, Query, compile_query

_MOST_PAIRS = 64  # (first key, second key) entries one rule may be filed under

Rules = tuple[int, ...]  # rule numbers, ascending
AnyLeaf = TypeVar("AnyLeaf", bound=Leaf)


class RuleSet:
    """Compiled rules under their names, matched in one pass per article."""

    def __init__(self, rules: Mapping[str, Query]) -> None:
        self._names = tuple(rules)
        self._flat = tuple(flatten(query.matcher) for query in rules.values())
        requirements = [set(query.matcher.requirements()) for query in rules.values()]
        heads = any(groups and all(map(_has_heads, groups)) for groups in requirements)
        uses = Counter(key for groups in requirements for key in set().union(*groups))
        alone: dict[Key, list[int]] = {}
        paired: dict[Key, dict[Key, list[int]]] = {}
        always: list[int] = []
        for number, groups in enumerate(requirements):
            usable = [group for group in groups if heads or not _has_heads(group)]
            chosen = _chosen(sorted(usable, key=lambda group: cost(group, uses)))
            if not chosen:
                always.append(number)
            elif len(chosen) == 1:
                for key in chosen[0]:
                    alone.setdefault(key, []).append(number)
            else:
                for first in chosen[0]:
                    for second in chosen[1]:
                        paired.setdefault(first, {}).setdefault(second, []).append(number)
        self._always = tuple(always)
        # key -> (rules filed under it alone, the keys it is paired with, and their rules)
        self._filed: dict[Key, tuple[Rules, frozenset[Key], dict[Key, Rules]]] = {
            key: (
                tuple(alone.get(key, ())),
                frozenset(paired.get(key, ())),
                {second: tuple(rules) for second, rules in paired.get(key, {}).items()},
            )
            for key in alone.keys() | paired.keys()
        }
        self._firsts = frozenset(self._filed)
        seconds = (seconds for _, seconds, _ in self._filed.values())
        self._keys(self._firsts, *seconds, self._probes())

    def _probes(self) -> Keys:
        """The keys that the rules' flat forms look up."""
        atoms = (
            atom
            for flat in self._flat
            for part in (*flat.parts, flat.excluded)
            if isinstance(part, tuple | Proximity)
            for atom in (part.left + part.right if isinstance(part, Proximity) else part)
        )
        return frozenset(probe for probe, _ in atoms if probe is not None)

    def _keys(self, *groups: Keys) -> None:
        """Sorts the keys that rules are filed under or test by what computes them."""
        every: set[Key] = set().union(*groups)
        self._words = frozenset(key for key in every if isinstance(key, str))
        self._pairs = frozenset(key for key in every if isinstance(key, tuple))
        self._head_lengths = sorted(
            {len(key) - len(HEAD) for key in self._words if key.startswith(HEAD)}
        )
        self._fields: dict[str, dict[str, str]] = {}  # field -> {word: its key}
        for key in self._words:
            if (found := field_key(key)) is not None:
                self._fields.setdefault(found[0], {})[found[1]] = key

    @classmethod
    def compile(
        cls, matches: Mapping[str, str], entities: Mapping[str, EntityDefinition]
    ) -> RuleSet:
        """Rules from their ``match`` strings; the first bad one raises its RuleError."""
        return cls({name: compile_query(text, entities) for name, text in matches.items()})

    def __len__(self) -> int:
        return len(self._names)

    def match(self, document: Document) -> list[tuple[str, tuple[str, ...]]]:
        """(rule name, matched terms) for each rule that matches, in the order given."""
        index = document.index
        present = self._present(index)
        found = []
        for number in sorted(self._candidates(present)):
            terms = _terms(self._flat[number], present, index)
            if terms:
                found.append((self._names[number], terms))
        return found

    # --- selecting rules for a document -------------------------------------------------------
    # Set operations on whole collections, so that the loops run in C, not once per key.

    def _present(self, index: TextIndex) -> frozenset[Key]:
        """The article's keys that some rule is filed under or tests. Straight from its
        words: sets of all its words and pairs would cost more than these lookups."""
        unscoped = index.tokens_in(None)
        found: list[Iterable[Key]] = []
        if self._pairs:
            found.append(self._pairs.intersection(chain.from_iterable(map(pairwise, unscoped))))
        for length in self._head_lengths:
            heads = {HEAD + word[:length] for word in chain.from_iterable(unscoped)}
            found.append(self._words & heads)
        for field, keys in self._fields.items():
            words = chain.from_iterable(index.tokens_in(field))
            found.append(map(keys.__getitem__, keys.keys() & words))
        return self._words.intersection(chain.from_iterable(unscoped)).union(*found)

    def _candidates(self, present: frozenset[Key]) -> set[int]:
        candidates = set(self._always)
        for alone, seconds, by_second in map(self._filed.__getitem__, present & self._firsts):
            candidates.update(alone, *map(by_second.__getitem__, seconds & present))
        return candidates


def _terms(flat: Flat, present: frozenset[Key], index: TextIndex) -> tuple[str, ...]:
    """What ``Query.match`` reports for the document, from the rule's flat form."""
    if flat.excluded and _held(flat.excluded, present, index):
        return ()
    leaves: list[Leaf] = []
    for part in flat.parts:
        if isinstance(part, tuple):
            held = _held(part, present, index)
            if not held:
                return ()
            leaves += held
            continue
        if isinstance(part, Proximity):
            near = part.near
            left = _held(part.left, present, index)
            right = _held(part.right, present, index) if left else None
            if not right:
                return ()
            found = near.close(index, left, right)
        else:
            found = part.found(index)
        if found is None:
            return ()
        leaves += [leaf for leaf, _ in found]
    return tuple([leaf.label for leaf in leaves]) if flat.distinct else terms(leaves)


def _held(
    clause: Iterable[tuple[Key | None, AnyLeaf]], present: frozenset[Key], index: TextIndex
) -> list[AnyLeaf]:
    """The terms of ``clause`` that hold: a set lookup for those with a probe."""
    return [
        leaf
        for probe, leaf in clause
        if (probe in present if probe is not None else leaf.holds(index))
    ]


def _chosen(ranked: list[Keys]) -> list[Keys]:
    """The groups to file a rule under, from its groups, most selective first."""
    if not ranked:
        return []
    about = words_of(ranked[0])
    others = [group for group in ranked[1:] if about.isdisjoint(words_of(group))]
    if others and len(ranked[0]) * len(others[0]) <= _MOST_PAIRS:
        return [ranked[0], others[0]]
    return ranked[:1]  # (two entities with dozens of names each: the first alone)


def _has_heads(group: Keys) -> bool:
    """Whether ``group`` names a prefix's first letters: it needs every word's first letters."""
    return any(isinstance(key, str) and key.startswith(HEAD) for key in group)
