"""The rule language, first version: parse a ``match`` string into a tree of small nodes, and
test documents against it. No I/O.

    compile_query(text, entities) -> Query;  Query.match(document) -> the terms that matched

Grammar. NOT binds tightest, then AND (written, or implied by putting terms side by side),
then OR. Only the UPPERCASE words are operators; ``and`` is an ordinary word.

    query   := or END
    or      := and ("OR" and)*
    and     := unary ["AND"] unary ...
    unary   := ("NOT" | "-") unary | primary
    primary := word | "a phrase" | @entity | "(" or ")"

Parsing happens once per rule. Matching is dictionary and set lookups in the document's
``TextIndex``, so one article can be tested against thousands of rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, Protocol

from watcher.errors import QuerySyntaxError, RuleError
from watcher.rules.text import Document, TextIndex, words

# ---------------------------------------------------------------------------------------------
# Lexing: the query string -> tokens that remember their column, for error carets.

_TokenKind = Literal["word", "phrase", "entity", "AND", "OR", "NOT", "(", ")", "end"]

_OPERATORS: Mapping[str, _TokenKind] = {"AND": "AND", "OR": "OR", "NOT": "NOT"}
_TERM_STARTS: frozenset[_TokenKind] = frozenset({"word", "phrase", "entity", "(", "NOT"})

# Every character of a query falls into exactly one of these, so finditer covers the string.
_LEXEME = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<paren>[()])
    | (?P<phrase>"[^"]*")
    | (?P<quote>")              # a quote that is never closed
    | (?P<minus>-(?=[^\s)]))    # -term, -"phrase", -@entity, -(group)
    | (?P<dash>-)               # a minus with nothing to exclude
    | (?P<entity>@[^\s()"]*)
    | (?P<bare>[^\s()"]+)
    """,
    re.VERBOSE,
)
_ENTITY_ID = re.compile(r"[\w-]*")

_LEXING_ERRORS = {
    "quote": "unterminated quote",
    "dash": "'-' must be written directly before the term it excludes",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _TokenKind
    text: str  # a word as written, a phrase without its quotes, an entity id without its '@'
    position: int


def _lex(query: str) -> list[_Token]:
    tokens = [
        _token(lexeme, query) for lexeme in _LEXEME.finditer(query) if lexeme.lastgroup != "space"
    ]
    tokens.append(_Token("end", "", len(query)))
    return tokens


def _token(lexeme: re.Match[str], query: str) -> _Token:
    kind, text, start = lexeme.lastgroup, lexeme.group(), lexeme.start()
    if kind == "paren":
        return _Token("(" if text == "(" else ")", text, start)
    if kind == "phrase":
        return _Token("phrase", text[1:-1], start)
    if kind == "minus":
        return _Token("NOT", text, start)
    if kind == "entity":
        return _Token("entity", _entity_id(text, start, query), start)
    if kind == "bare":
        return _Token(_OPERATORS.get(text, "word"), text, start)
    raise QuerySyntaxError(_LEXING_ERRORS[str(kind)], query, start)


def _entity_id(lexeme: str, start: int, query: str) -> str:
    entity_id = lexeme[1:]
    if not entity_id:
        raise QuerySyntaxError("expected an entity id after '@'", query, start)
    valid = _ENTITY_ID.match(entity_id)
    valid_length = valid.end() if valid else 0
    if valid_length < len(entity_id):
        message = "an entity id has only letters, digits, '_' and '-'"
        raise QuerySyntaxError(message, query, start + 1 + valid_length)
    return entity_id


# ---------------------------------------------------------------------------------------------
# The compiled tree. ``find`` returns the terms that made a node match (possibly none, as for
# NOT), or None when it does not match, so "matched" and "what to report" take one walk.


class _Node(Protocol):
    def find(self, index: TextIndex) -> tuple[_Term, ...] | None: ...

    def always_reports(self) -> bool:
        """True when every match reports a term: the node needs something to be present."""
        ...


@dataclass(frozen=True, slots=True)
class _Term:
    """A word or phrase, reported as written in the query or in the entity's names."""

    label: str
    words: tuple[str, ...]

    def find(self, index: TextIndex) -> tuple[_Term, ...] | None:
        return (self,) if index.contains(self.words) else None

    def always_reports(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _Entity:
    """``@id``: any of its names; every name found is reported, in the config's order."""

    entity_id: str
    names: tuple[_Term, ...]

    def find(self, index: TextIndex) -> tuple[_Term, ...] | None:
        found = tuple(name for name in self.names if index.contains(name.words))
        return found or None

    def always_reports(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class _AllOf:
    parts: tuple[_Node, ...]

    def find(self, index: TextIndex) -> tuple[_Term, ...] | None:
        found: list[_Term] = []
        for part in self.parts:
            terms = part.find(index)
            if terms is None:
                return None
            found.extend(terms)
        return tuple(found)

    def always_reports(self) -> bool:
        return any(part.always_reports() for part in self.parts)


@dataclass(frozen=True, slots=True)
class _AnyOf:
    branches: tuple[_Node, ...]

    def find(self, index: TextIndex) -> tuple[_Term, ...] | None:
        # No short cut after the first branch: the alert names every branch that was present.
        found = [terms for branch in self.branches if (terms := branch.find(index)) is not None]
        if not found:
            return None
        return tuple(term for terms in found for term in terms)

    def always_reports(self) -> bool:
        return all(branch.always_reports() for branch in self.branches)


@dataclass(frozen=True, slots=True)
class _Not:
    excluded: _Node

    def find(self, index: TextIndex) -> tuple[_Term, ...] | None:
        return None if self.excluded.find(index) is not None else ()

    def always_reports(self) -> bool:
        return False


# ---------------------------------------------------------------------------------------------
# Parsing: recursive descent, one method per grammar rule.


@lru_cache(maxsize=8192)  # thousands of rules share the same entity names
def _term_words(term: str) -> tuple[str, ...]:
    return tuple(words(term))


def _entity_names(names: Sequence[str]) -> tuple[_Term, ...]:
    if isinstance(names, str):  # a lone string is a Sequence[str] too: one name, not letters
        names = (names,)
    return tuple(_Term(name, found) for name in names if (found := _term_words(name)))


class _Parser:
    def __init__(self, query: str, entities: Mapping[str, Sequence[str]]) -> None:
        self._query = query
        self._tokens = _lex(query)
        self._at = 0
        self._entities = entities
        self.entity_nodes: list[_Entity] = []  # checked once the syntax is known to be good

    def parse(self) -> _Node:
        root = self._or()
        if self._peek().kind == ")":  # _or stops only at ")" or the end
            raise self._error("unmatched ')'", self._peek())
        return root

    def _or(self) -> _Node:
        branches = [self._and()]
        while self._peek().kind == "OR":
            self._advance()
            branches.append(self._and())
        return branches[0] if len(branches) == 1 else _AnyOf(tuple(branches))

    def _and(self) -> _Node:
        parts = [self._unary()]
        while (kind := self._peek().kind) == "AND" or kind in _TERM_STARTS:
            if kind == "AND":
                self._advance()
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else _AllOf(tuple(parts))

    def _unary(self) -> _Node:
        if self._peek().kind == "NOT":
            self._advance()
            return _Not(self._unary())
        return self._primary()

    def _primary(self) -> _Node:
        token = self._peek()
        if token.kind == "(":
            return self._group()
        if token.kind == "entity":
            self._advance()
            return self._entity(token)
        if token.kind in ("word", "phrase"):
            self._advance()
            return self._term(token)
        raise self._missing_term(token)

    def _group(self) -> _Node:
        opening = self._advance()
        inner = self._or()
        if self._peek().kind != ")":
            raise self._error("unclosed parenthesis", opening)
        self._advance()
        return inner

    def _term(self, token: _Token) -> _Node:
        found = _term_words(token.text)
        if found:
            return _Term(token.text, found)
        if token.kind == "phrase" and not token.text.strip():
            raise self._error("empty phrase", token)
        shown = f'"{token.text}"' if token.kind == "phrase" else f"'{token.text}'"
        raise self._error(f"{shown} has no letters or digits to match", token)

    def _entity(self, token: _Token) -> _Node:
        node = _Entity(token.text, _entity_names(self._entities.get(token.text, ())))
        self.entity_nodes.append(node)
        return node

    def _missing_term(self, token: _Token) -> QuerySyntaxError:
        """The error for finding ``token`` where a term should start, aimed at its cause."""
        previous = self._tokens[self._at - 1] if self._at else None
        if previous is not None and previous.kind in _OPERATORS.values():
            return self._error(f"'{previous.text}' needs a term after it", previous)
        if token.kind in ("AND", "OR"):
            return self._error(f"'{token.text}' needs a term before it", token)
        if previous is None:
            if token.kind == "end":
                return QuerySyntaxError("empty query", self._query, 0)
            return self._error("unmatched ')'", token)
        if token.kind == ")":
            return self._error("empty parentheses", previous)
        return self._error("unclosed parenthesis", previous)

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _advance(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _error(self, message: str, token: _Token) -> QuerySyntaxError:
        return QuerySyntaxError(message, self._query, token.position)


# ---------------------------------------------------------------------------------------------
# The public face.


@dataclass(frozen=True, slots=True, eq=False)
class Query:
    """A compiled rule: build it once with ``compile_query``, then ``match`` many documents."""

    text: str  # the query as the user wrote it
    entities: frozenset[str]  # the entity ids it references
    _root: _Node = field(repr=False)

    def match(self, document: Document) -> tuple[str, ...]:
        """The terms that made ``document`` match, in query order without repeats; () if none."""
        found = self._root.find(document.index)
        if not found:
            return ()
        # Repeats are judged on the normalised words, so "nato OR NATO" reports one term.
        labels: dict[tuple[str, ...], str] = {}
        for term in found:
            labels.setdefault(term.words, term.label)
        return tuple(labels.values())


def compile_query(text: str, entities: Mapping[str, Sequence[str]]) -> Query:
    """Parse ``text`` against the entity definitions (id -> names).

    Raises QuerySyntaxError (with the column) for a malformed query, and RuleError for an
    unknown or unusable entity, or a query that could match without finding any term.
    """
    parser = _Parser(text, entities)
    root = parser.parse()
    _check_entities(parser.entity_nodes, entities)
    if not root.always_reports():
        raise RuleError(
            f"query {text!r} would match articles for what they lack alone: it needs a word, "
            "phrase or @entity outside NOT (in every OR branch)"
        )
    return Query(text, frozenset(node.entity_id for node in parser.entity_nodes), root)


def _check_entities(nodes: Sequence[_Entity], entities: Mapping[str, Sequence[str]]) -> None:
    missing = (node.entity_id for node in nodes if node.entity_id not in entities)
    unknown = list(dict.fromkeys(missing))  # each once, in query order
    if unknown:
        plural = "entity" if len(unknown) == 1 else "entities"
        raise RuleError(f"unknown {plural} " + ", ".join(f"@{entity}" for entity in unknown))
    for node in nodes:
        if not node.names:
            raise RuleError(f"entity @{node.entity_id} has no name with letters or digits")
