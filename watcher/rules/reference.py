"""A slow, plainly correct evaluator of the rule language, for tests to hold the fast one to.
No I/O.

    reference_match(syntax, entities, document) -> the terms a match reports; () if none

It reads the syntax tree straight, word list by word list, with none of the index, memo,
interning or rule selection that ``nodes`` and ``ruleset`` use to be fast. It shares only the
definition of a word (``text``) and the parser: what it checks is evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from watcher.rules.document import FIELDS, UNSCOPED, Document
from watcher.rules.syntax import And, EntityRef, Near, Not, Or, RegexTerm, Syntax, Term
from watcher.rules.text import exact_words, regex_text, words

Names = tuple[tuple[str, ...], tuple[str, ...]]  # an entity's (names, exact names)


@dataclass(frozen=True)
class _Value:
    field: str
    text: str


@dataclass(frozen=True)
class _Leaf:
    """One thing to look for: a query term, or one name of an entity."""

    label: str
    key: tuple[str, ...]
    sought: tuple[str, ...]  # folded words, or case-kept ones when ``exact``
    exact: bool
    prefix: bool
    scope: str | None


Occurrence = tuple[int, int, int]  # value number, first word, end word


def reference_match(
    syntax: Syntax, entities: Mapping[str, Names], document: Document
) -> tuple[str, ...]:
    values = _values(document)
    result = _evaluate(syntax, entities, values)
    if result is None:
        return ()
    labels: dict[tuple[str, ...], str] = {}
    for leaf in result:
        labels.setdefault(leaf.key, leaf.label)
    return tuple(labels.values())


def _values(document: Document) -> list[_Value]:
    texts = {
        "title": [document.title],
        "summary": [document.summary],
        "content": [document.content],
        "tags": list(document.tags),
        "author": list(document.authors),
        "link": [document.link],
        "feed": [document.feed],
    }
    return [_Value(field, text) for field in FIELDS for text in texts[field]]


def _evaluate(
    node: Syntax, entities: Mapping[str, Names], values: list[_Value]
) -> list[_Leaf] | None:
    """The leaves that made ``node`` hold, or None when it does not hold."""
    if isinstance(node, Term | EntityRef):
        found = [leaf for leaf in _leaves(node, entities) if _occurrences(leaf, values)]
        return found or None
    if isinstance(node, RegexTerm):
        in_scope = (value for value in values if _in_scope(value, node.scope))
        if any(node.regex.search(regex_text(value.text)[0]) for value in in_scope):
            return [_Leaf(node.text, ("/", node.text), (), False, False, node.scope)]
        return None
    if isinstance(node, Not):
        return [] if _evaluate(node.child, entities, values) is None else None
    if isinstance(node, Near):
        return _near(node, entities, values)
    if isinstance(node, And):
        parts = [_evaluate(part, entities, values) for part in node.parts]
        if any(part is None for part in parts):
            return None
        return [leaf for part in parts if part is not None for leaf in part]
    branches = [_evaluate(branch, entities, values) for branch in node.branches]
    held = [branch for branch in branches if branch is not None]
    return [leaf for branch in held for leaf in branch] if held else None


def _near(node: Near, entities: Mapping[str, Names], values: list[_Value]) -> list[_Leaf] | None:
    left, right = _side(node.left, entities), _side(node.right, entities)
    used: dict[_Leaf, None] = {}
    for one in left:
        for other in right:
            if _close(_occurrences(one, values), _occurrences(other, values), node.distance):
                used[one] = None
                used[other] = None
    ordered = [leaf for leaf in dict.fromkeys(left + right) if leaf in used]
    return ordered or None


def _close(ones: list[Occurrence], others: list[Occurrence], distance: int) -> bool:
    for value, start, end in ones:
        for other_value, other_start, other_end in others:
            if value != other_value:
                continue
            if end <= other_start:
                between = other_start - end
            elif other_end <= start:
                between = start - other_end
            else:
                continue  # overlapping occurrences are not two things near each other
            if between <= distance:
                return True
    return False


def _side(node: Syntax, entities: Mapping[str, Names]) -> list[_Leaf]:
    if isinstance(node, Or):
        return [leaf for branch in node.branches for leaf in _side(branch, entities)]
    assert isinstance(node, Term | EntityRef)
    return _leaves(node, entities)


def _leaves(node: Term | EntityRef, entities: Mapping[str, Names]) -> list[_Leaf]:
    if isinstance(node, Term):
        exact = node.exact is not None
        sought = node.exact if node.exact is not None else node.words
        key: tuple[str, ...] = ("=", *sought) if exact else ("w", *sought)
        if node.prefix:
            key = ("*=" if exact else "*", sought[0])
        return [_Leaf(node.text, key, sought, exact, node.prefix, node.scope)]
    plain, exact_names = entities[node.entity_id]
    leaves = []
    for name in plain:
        if found := tuple(words(name)):
            leaves.append(_Leaf(name, ("w", *found), found, False, False, node.scope))
    for name in exact_names:
        if found := tuple(exact_words(name)):
            leaves.append(_Leaf(name, ("=", *found), found, True, False, node.scope))
    return leaves


def _occurrences(leaf: _Leaf, values: list[_Value]) -> list[Occurrence]:
    found = []
    for number, value in enumerate(values):
        if not _in_scope(value, leaf.scope):
            continue
        tokens = exact_words(value.text) if leaf.exact else words(value.text)
        found += [(number, start, end) for start, end in _spans(leaf, tokens)]
    return found


def _spans(leaf: _Leaf, tokens: Sequence[str]) -> Iterator[tuple[int, int]]:
    if leaf.prefix:
        yield from (
            (i, i + 1) for i, token in enumerate(tokens) if token.startswith(leaf.sought[0])
        )
        return
    length = len(leaf.sought)
    for start in range(len(tokens) - length + 1):
        if tuple(tokens[start : start + length]) == leaf.sought:
            yield start, start + length


def _in_scope(value: _Value, scope: str | None) -> bool:
    return value.field in UNSCOPED if scope is None else value.field == scope
