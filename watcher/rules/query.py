"""A rule's compiled query: what a user's ``match`` string selects, what it reports, and why it
held or not. No I/O.

    compile_query(text, entities) -> Query
    Query.match(document) -> terms;  .hits(document) -> (Hit, ...);  .explain(document)

``syntax`` parses the language (its docstring has the grammar), ``nodes`` evaluates it against
a document's index. An entity is a name for a group of words: ``names`` match in any case,
``exact`` ones only as written (WHO the organisation, not "who").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from watcher.errors import RuleError
from watcher.rules.document import Document, TextIndex
from watcher.rules.nodes import Contribution, Matcher, Names, build, entity_leaves, terms
from watcher.rules.results import Explanation, Hit
from watcher.rules.syntax import Syntax, entity_refs, needs_a_term, parse


@dataclass(frozen=True, slots=True)
class Entity:
    """What ``@id`` stands for: ``names`` in any case, ``exact`` names only as written."""

    names: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()


EntityDefinition = Entity | Sequence[str]  # a plain sequence (or one string) means names


@dataclass(frozen=True, slots=True, eq=False)
class Query:
    """A compiled rule: build it once with ``compile_query``, then test many documents."""

    text: str  # the query as the user wrote it
    entities: frozenset[str]  # the entity ids it references
    syntax: Syntax = field(repr=False)
    matcher: Matcher = field(repr=False)

    def match(self, document: Document) -> tuple[str, ...]:
        """The terms that made ``document`` match, in query order without repeats; () if none."""
        return terms(leaf for leaf, _ in self.matcher.found(document.index) or ())

    def hits(self, document: Document) -> tuple[Hit, ...]:
        """Where the terms that made ``document`` match were found; () if it does not match.
        Terms under NOT never count; the same stretch of text is reported once."""
        index = document.index
        return _distinct_hits(index, self.matcher.found(index) or [])

    def explain(self, document: Document) -> Explanation:
        """The query as a tree, each part marked with whether it held and where."""
        return self.matcher.explain(document.index)


def _distinct_hits(index: TextIndex, found: Sequence[Contribution]) -> tuple[Hit, ...]:
    hits: dict[tuple[str, int, int, int], Hit] = {}
    for leaf, spans in found:
        for hit in leaf.hits(index, spans):
            hits.setdefault((hit.field, hit.index, hit.start, hit.end), hit)
    return tuple(hits.values())


def compile_query(text: str, entities: Mapping[str, EntityDefinition]) -> Query:
    """Parse ``text`` against the entity definitions (id -> Entity, or id -> names).

    Raises QuerySyntaxError (with the column) for a malformed query, and RuleError for an
    unknown or unusable entity, or a query that could match without finding any term.
    """
    syntax = parse(text)
    names = _entity_names(syntax, entities)
    if not needs_a_term(syntax):
        raise RuleError(
            f"query {text!r} would match articles for what they lack alone: it needs a word, "
            "phrase, @entity or /regex/ outside NOT (in every OR branch)"
        )
    return Query(text, frozenset(names), syntax, build(syntax, names))


def _entity_names(syntax: Syntax, entities: Mapping[str, EntityDefinition]) -> dict[str, Names]:
    """The (names, exact names) of each entity the query uses, checked to exist and usable."""
    ids = list(dict.fromkeys(ref.entity_id for ref in entity_refs(syntax)))
    unknown = [entity_id for entity_id in ids if entity_id not in entities]
    if unknown:
        plural = "entity" if len(unknown) == 1 else "entities"
        raise RuleError(f"unknown {plural} " + ", ".join(f"@{entity}" for entity in unknown))
    names = {entity_id: _as_names(entities[entity_id]) for entity_id in ids}
    for entity_id, entity_names in names.items():
        if not entity_leaves(entity_names, None):
            raise RuleError(f"entity @{entity_id} has no name with letters or digits")
    return names


def _as_names(definition: EntityDefinition) -> Names:
    if isinstance(definition, Entity):
        return tuple(definition.names), tuple(definition.exact)
    if isinstance(definition, str):  # a lone string is a Sequence[str] too: one name, not letters
        return (definition,), ()
    return tuple(definition), ()
