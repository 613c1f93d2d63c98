"""Many rules matched together, at a cost per article that barely grows with their number.
No I/O.

    RuleSet({name: query}).match(document) -> [(name, terms), ...] in rule order

A rule can only hold if the article has a key of each of its requirement groups (see
``Matcher.requirements``): "@nato AND kyiv" needs one of NATO's names, and "kyiv". Each rule
is filed under its two most selective groups; an article's words say which groups it
satisfies, those select the rules worth evaluating, and only those run. Rules that require
nothing indexable (a lone /regex/) run for every article. This is sound because a rule that
could match by what is absent alone is refused when it is compiled.

Selective means: few articles are expected to have it. Without statistics of the articles,
two guesses combine: the kind of key (two words in a row are rarer than one; "the" is common)
and how many rules need the key (a name in a thousand rules is a popular subject).

A group of several keys (an entity's names, an OR) is satisfied by any one of them, so a rule
is filed under each key of its first group, paired with each key of its second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from operator import itemgetter

from watcher.rules.document import Document, TextIndex
from watcher.rules.nodes import Key, Keys, cost
from watcher.rules.query import EntityDefinition, Query, compile_query

_MOST_PAIRS = 64  # (first key, second key) entries one rule may be filed under


class RuleSet:
    """Compiled rules under their names, matched in one pass per article."""

    def __init__(self, rules: Mapping[str, Query]) -> None:
        self._names = tuple(rules)
        self._queries = tuple(rules.values())
        self._heads: dict[int, set[str]] = {}  # prefix length -> first letters that matter
        # key -> (rules filed under it alone, {second key: rules filed under both})
        self._filed: dict[Key, tuple[list[int], dict[Key, list[int]]]] = {}
        self._always: list[int] = []
        self._pairs_needed = False  # whether any key is two words in a row
        requirements = [set(query.matcher.requirements()) for query in self._queries]
        uses = Counter(key for groups in requirements for key in set().union(*groups))
        for number, groups in enumerate(requirements):
            self._file(number, sorted(groups, key=lambda group: cost(group, uses))[:2])

    @classmethod
    def compile(
        cls, matches: Mapping[str, str], entities: Mapping[str, EntityDefinition]
    ) -> RuleSet:
        """Rules from their ``match`` strings; the first bad one raises its RuleError."""
        return cls({name: compile_query(text, entities) for name, text in matches.items()})

    def __len__(self) -> int:
        return len(self._queries)

    def match(self, document: Document) -> list[tuple[str, tuple[str, ...]]]:
        """(rule name, matched terms) for each rule that matches, in the order given."""
        index = document.index
        found = []
        for number in sorted(self._candidates(index)):
            terms = self._queries[number].terms_in(index)
            if terms:
                found.append((self._names[number], terms))
        return found

    # --- filing rules -------------------------------------------------------------------------

    def _file(self, number: int, groups: list[Keys]) -> None:
        """File rule ``number`` under every key of its first group, each with every key of
        its second: "@nato AND (kyiv OR odesa)" under (nato, kyiv) and (nato, odesa). Two
        entities with dozens of names each would make too many pairs: the first alone then."""
        if len(groups) == 2 and len(groups[0]) * len(groups[1]) > _MOST_PAIRS:
            groups = groups[:1]
        for key in set().union(*groups):
            if isinstance(key, tuple):
                self._pairs_needed = True
            elif key.startswith("*"):  # a prefix's first letters
                self._heads.setdefault(len(key) - 1, set()).add(key[1:])
        if not groups:
            self._always.append(number)
        elif len(groups) == 1:
            for key in groups[0]:
                self._filed.setdefault(key, ([], {}))[0].append(number)
        else:
            for first in groups[0]:
                by_second = self._filed.setdefault(first, ([], {}))[1]
                for second in groups[1]:
                    by_second.setdefault(second, []).append(number)

    # --- selecting rules for a document -------------------------------------------------------
    # Set operations on whole collections, so that the loops run in C, not once per word.

    def _candidates(self, index: TextIndex) -> set[int]:
        present = self._present(index)
        candidates = set(self._always)
        for key in self._filed.keys() & present:
            alone, by_second = self._filed[key]
            candidates.update(alone, *map(by_second.__getitem__, present.intersection(by_second)))
        return candidates

    def _present(self, index: TextIndex) -> frozenset[Key]:
        """The document's keys: its words, its pairs of words if rules need them, and the
        prefixes' first letters that its words start with."""
        words: frozenset[Key] = index.all_words
        present = words | index.pairs if self._pairs_needed else words
        heads: list[str] = []
        for length, wanted in self._heads.items():
            heads += wanted.intersection(map(itemgetter(slice(length)), index.all_words))
        return present.union("*" + head for head in heads) if heads else present
