"""The rule language: a ``match`` string -> a syntax tree, or a QuerySyntaxError with a caret at
the mistake. No I/O.

    parse(text) -> Syntax  (Term, EntityRef, Regex, Not, Near, And, Or)

Grammar. NOT binds tightest, then NEAR, then AND (written, or implied by putting terms side by
side), then OR. Only the UPPERCASE words are operators; ``and`` is an ordinary word.

    query   := or END
    or      := and ("OR" and)*
    and     := near (["AND"] near)*
    near    := unary [("NEAR" | "NEAR/" n) unary]       n from 0 to 1000, default 10
    unary   := ("NOT" | "-") unary | primary
    primary := [field ":"] atom                         field: title summary content tags
    atom    := word | word* | "a phrase" | =word | ="a phrase"    author link feed
             | @entity | /regex/ | /regex/i | "(" or ")"

What each form means:

    word        the whole word in any case, accents folded ("text" says what a word is)
    word*       a word that starts with it: one word, at least 2 letters or digits
    =word       case counts, nothing else does: =Café finds "Cafe", not "cafe"; also
                ="a phrase" and =Word*
    "a phrase"  its words one after another in one field value, punctuation ignored
    @entity     any of its names (any case) or exact names (case counts)
    a NEAR/n b  both in one field value, either order, not overlapping, with at most n
                words between them: NEAR/0 is side by side; NEAR alone is NEAR/10
    field:x     only that field (every term inside "field:(...)"). Without one a term reads
                title, summary, content and tags; author, link and feed only when named.
                Each tag and each author is a value of its own
    /re/, /re/i RE2 syntax, searched in each field value (^ and $ are the value's ends) of
                its NFKC text with case kept and apostrophes made ASCII. A pattern that
                matches empty text is refused, as it would match anything

Scopes cannot nest. NEAR's sides are things at word positions: words, phrases, prefixes,
@entities, or OR-groups of those. A word followed by a colon and a space ("Breaking: x") is
a word; "name:term" with no space must name a field. Entities are only named here;
``query`` checks that they exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from watcher.errors import QuerySyntaxError
from watcher.rules.document import FIELDS
from watcher.rules.regex import Regex, RegexError, compile_regex
from watcher.rules.text import exact_words, words

NEAR_DEFAULT = 10
NEAR_MAX = 1000
PREFIX_MIN = 2  # folded characters before '*': "un*" is allowed, "u*" would match half the text

# ---------------------------------------------------------------------------------------------
# The tree.


@dataclass(frozen=True, slots=True)
class Term:
    """A word, phrase or prefix. ``text`` is as written (a prefix keeps its '*'); ``words``
    are folded; ``exact`` holds the case-kept words when the term was written with '='."""

    text: str
    words: tuple[str, ...]
    exact: tuple[str, ...] | None
    prefix: bool
    quoted: bool
    scope: str | None
    position: int

    def describe(self) -> str:
        written = f'"{self.text}"' if self.quoted else self.text
        return _scoped(self.scope, ("=" if self.exact else "") + written)


@dataclass(frozen=True, slots=True)
class EntityRef:
    entity_id: str
    scope: str | None
    position: int

    def describe(self) -> str:
        return _scoped(self.scope, f"@{self.entity_id}")


@dataclass(frozen=True, slots=True)
class RegexTerm:
    text: str  # as written: /pattern/flags
    regex: Regex = field(compare=False)
    scope: str | None = None
    position: int = 0

    def describe(self) -> str:
        return _scoped(self.scope, self.text)


@dataclass(frozen=True, slots=True)
class Not:
    child: Syntax
    position: int


@dataclass(frozen=True, slots=True)
class Near:
    left: Syntax
    right: Syntax
    distance: int
    position: int


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Syntax, ...]
    position: int


@dataclass(frozen=True, slots=True)
class Or:
    branches: tuple[Syntax, ...]
    position: int


Syntax = Term | EntityRef | RegexTerm | Not | Near | And | Or


def _scoped(scope: str | None, text: str) -> str:
    return f"{scope}:{text}" if scope else text


def entity_refs(node: Syntax) -> list[EntityRef]:
    """Every @entity in ``node``, in query order."""
    if isinstance(node, EntityRef):
        return [node]
    return [ref for child in children(node) for ref in entity_refs(child)]


def children(node: Syntax) -> tuple[Syntax, ...]:
    if isinstance(node, Not):
        return (node.child,)
    if isinstance(node, Near):
        return (node.left, node.right)
    if isinstance(node, And):
        return node.parts
    if isinstance(node, Or):
        return node.branches
    return ()


def needs_a_term(node: Syntax) -> bool:
    """True when ``node`` can only hold if something is present (not merely absent)."""
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(map(needs_a_term, node.parts))
    if isinstance(node, Or):
        return all(map(needs_a_term, node.branches))
    return True


# ---------------------------------------------------------------------------------------------
# Lexing: the query string -> tokens that remember their column, for error carets.

_TokenKind = Literal[
    "word", "phrase", "exact", "regex", "entity", "field", "AND", "OR", "NOT", "NEAR", "(", ")",
    "end",
]  # fmt: skip

_OPERATORS: Mapping[str, _TokenKind] = {"AND": "AND", "OR": "OR", "NOT": "NOT"}
_BINARY = frozenset({"AND", "OR", "NEAR"})
_TERM_STARTS: frozenset[_TokenKind] = frozenset(
    {"word", "phrase", "exact", "regex", "entity", "field", "(", "NOT"}
)

# Every character of a query falls into exactly one of these, so finditer covers the string.
_LEXEME = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<paren>[()])
    | (?P<phrase>"[^"]*")
    | (?P<quote>")                          # a quote that is never closed
    | (?P<exact>=(?=[^\s()@/=-]))           # =word, ="phrase"
    | (?P<equals>=)
    | (?P<regex>/(?:[^/\\]|\\.)*/[^\s()"]*) # /pattern/flags, \/ inside
    | (?P<slash>/)                          # a regex that is never closed
    | (?P<minus>-(?=[^\s)]))                # -term, -"phrase", -@entity, -(group)
    | (?P<dash>-)                           # a minus with nothing to exclude
    | (?P<entity>@[^\s()"]*)
    | (?P<field>[A-Za-z]+:(?=[^\s)])(?!//)) # title:..., but not https://
    | (?P<bare>[^\s()"]+)
    """,
    re.VERBOSE,
)
_ENTITY_ID = re.compile(r"[\w-]*")
_NEAR = re.compile(r"NEAR(?:/(\d{1,9}))?")
_LONE_FIELD = re.compile(r"([A-Za-z]+):")
_REGEX_PARTS = re.compile(r"/((?:[^/\\]|\\.)*)/(.*)", re.DOTALL)

_LEXING_ERRORS = {
    "quote": "unterminated quote",
    "dash": "'-' must be written directly before the term it excludes",
    "equals": "'=' must be written directly before a word or phrase",
    "slash": "unterminated regex: end it with '/' (write \\/ for a slash inside it)",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _TokenKind
    text: str  # a word as written, a phrase without quotes, an entity id without its '@'
    position: int
    distance: int = 0  # NEAR's


def _lex(query: str) -> list[_Token]:
    tokens = [
        _token(lexeme, query) for lexeme in _LEXEME.finditer(query) if lexeme.lastgroup != "space"
    ]
    tokens.append(_Token("end", "", len(query)))
    return tokens


def _token(lexeme: re.Match[str], query: str) -> _Token:
    kind, text, start = str(lexeme.lastgroup), lexeme.group(), lexeme.start()
    if kind == "paren":
        return _Token("(" if text == "(" else ")", text, start)
    if kind == "phrase":
        return _Token("phrase", text[1:-1], start)
    if kind in ("exact", "regex"):
        return _Token("exact" if kind == "exact" else "regex", text, start)
    if kind == "minus":
        return _Token("NOT", text, start)
    if kind == "entity":
        return _Token("entity", _entity_id(text, start, query), start)
    if kind == "field":
        return _Token("field", _field(text[:-1], start, query), start)
    if kind == "bare":
        return _bare(text, start, query)
    raise QuerySyntaxError(_LEXING_ERRORS[kind], query, start)


def _bare(text: str, start: int, query: str) -> _Token:
    if text in _OPERATORS:
        return _Token(_OPERATORS[text], text, start)
    if text.startswith("NEAR"):
        return _near(text, start, query)
    lone = _LONE_FIELD.fullmatch(text)
    if lone and lone.group(1) in FIELDS:
        raise QuerySyntaxError(f"'{text}' must be written directly before its term", query, start)
    return _Token("word", text, start)


def _near(text: str, start: int, query: str) -> _Token:
    if text == "NEAR":
        return _Token("NEAR", text, start, NEAR_DEFAULT)
    near = _NEAR.fullmatch(text)
    if near is None or near.group(1) is None:
        if not text.startswith("NEAR/"):
            return _Token("word", text, start)  # NEARBY, NEAR-TERM: ordinary words
        raise QuerySyntaxError("expected a number after 'NEAR/', as in NEAR/5", query, start + 5)
    distance = int(near.group(1))
    if distance > NEAR_MAX:
        message = f"NEAR allows at most {NEAR_MAX} words between its terms"
        raise QuerySyntaxError(message, query, start + 5)
    return _Token("NEAR", text, start, distance)


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


def _field(name: str, start: int, query: str) -> str:
    if name not in FIELDS:
        message = f"unknown field '{name}:'; fields are " + ", ".join(FIELDS)
        raise QuerySyntaxError(message, query, start)
    return name


# ---------------------------------------------------------------------------------------------
# Parsing: recursive descent, one method per grammar rule.


def parse(query: str) -> Syntax:
    """The syntax tree of ``query``; QuerySyntaxError at the first mistake."""
    return _Parser(query).parse()


class _Parser:
    def __init__(self, query: str) -> None:
        self._query = query
        self._tokens = _lex(query)
        self._at = 0
        self._scope: str | None = None

    def parse(self) -> Syntax:
        root = self._or()
        if self._peek().kind == ")":  # _or stops only at ")" or the end
            raise self._error("unmatched ')'", self._peek())
        return root

    def _or(self) -> Syntax:
        start = self._peek().position
        branches = [self._and()]
        while self._peek().kind == "OR":
            self._advance()
            branches.append(self._and())
        return branches[0] if len(branches) == 1 else Or(tuple(branches), start)

    def _and(self) -> Syntax:
        start = self._peek().position
        parts = [self._near()]
        while (kind := self._peek().kind) == "AND" or kind in _TERM_STARTS:
            if kind == "AND":
                self._advance()
            parts.append(self._near())
        return parts[0] if len(parts) == 1 else And(tuple(parts), start)

    def _near(self) -> Syntax:
        left = self._unary()
        if self._peek().kind != "NEAR":
            return left
        operator = self._advance()
        right = self._unary()
        if self._peek().kind == "NEAR":
            raise self._error("NEAR cannot be chained; join two NEARs with AND", self._peek())
        for side in (left, right):
            self._check_near_operand(side)
        return Near(left, right, operator.distance, operator.position)

    def _check_near_operand(self, node: Syntax) -> None:
        if isinstance(node, Or):
            for branch in node.branches:
                self._check_near_operand(branch)
        elif isinstance(node, RegexTerm):
            message = "a /regex/ cannot be used with NEAR: it matches characters, not words"
            raise QuerySyntaxError(message, self._query, node.position)
        elif isinstance(node, Not):
            message = "NOT cannot be a side of NEAR (NOT binds first); write NOT (a NEAR b)"
            raise QuerySyntaxError(message, self._query, node.position)
        elif not isinstance(node, Term | EntityRef):
            message = (
                "NEAR needs a word, phrase, prefix or @entity on each side "
                "(or several, joined with OR in parentheses)"
            )
            raise QuerySyntaxError(message, self._query, node.position)

    def _unary(self) -> Syntax:
        if self._peek().kind == "NOT":
            operator = self._advance()
            return Not(self._unary(), operator.position)
        return self._primary()

    def _primary(self) -> Syntax:
        if self._peek().kind != "field":
            return self._atom()
        scope = self._advance()
        if self._scope is not None:
            raise self._error(f"'{scope.text}:' inside '{self._scope}:': scopes cannot nest", scope)
        self._scope = scope.text
        try:
            if self._peek().kind in ("NOT", "field"):
                raise self._error(f"'{scope.text}:' needs a term or a (group) after it", scope)
            return self._atom()
        finally:
            self._scope = None

    def _atom(self) -> Syntax:
        token = self._peek()
        if token.kind == "(":
            return self._group()
        if token.kind not in ("entity", "regex", "exact", "word", "phrase"):
            raise self._missing_term(token)
        self._advance()
        if token.kind == "entity":
            return EntityRef(token.text, self._scope, token.position)
        if token.kind == "regex":
            return self._regex(token)
        if token.kind == "exact":
            return self._exact(token)
        return self._term(token, exact=False)

    def _group(self) -> Syntax:
        opening = self._advance()
        inner = self._or()
        if self._peek().kind != ")":
            raise self._error("unclosed parenthesis", opening)
        self._advance()
        if isinstance(inner, And | Or):  # errors about the group point at its parenthesis
            return replace(inner, position=opening.position)
        return inner

    def _exact(self, marker: _Token) -> Syntax:
        token = self._peek()
        if token.kind not in ("word", "phrase"):
            raise self._error(_LEXING_ERRORS["equals"], marker)
        self._advance()
        return replace(self._term(token, exact=True), position=marker.position)

    def _term(self, token: _Token, *, exact: bool) -> Term:
        if token.kind == "word" and "*" in token.text:
            return self._prefix(token, exact=exact)
        found = tuple(words(token.text))
        if found:
            kept = tuple(exact_words(token.text)) if exact else None
            quoted = token.kind == "phrase"
            return Term(token.text, found, kept, False, quoted, self._scope, token.position)
        if token.kind == "phrase" and not token.text.strip():
            raise self._error("empty phrase", token)
        shown = f'"{token.text}"' if token.kind == "phrase" else f"'{token.text}'"
        raise self._error(f"{shown} has no letters or digits to match", token)

    def _prefix(self, token: _Token, *, exact: bool) -> Term:
        stem = token.text[:-1]
        if "*" in stem or not token.text.endswith("*"):
            column = token.position + token.text.index("*")
            raise QuerySyntaxError("'*' can only end a word, as in sanction*", self._query, column)
        found = words(stem)
        if len(found) != 1:
            problem = "one word" if found else "letters or digits"
            message = f"a prefix needs {problem} before '*', as in sanction*"
            raise self._error(message, token)
        if len(found[0]) < PREFIX_MIN:
            message = f"a prefix needs at least {PREFIX_MIN} letters or digits before '*'"
            raise self._error(message, token)
        kept = tuple(exact_words(stem)) if exact else None
        return Term(token.text, tuple(found), kept, True, False, self._scope, token.position)

    def _regex(self, token: _Token) -> RegexTerm:
        parts = _REGEX_PARTS.fullmatch(token.text)
        assert parts is not None  # the lexer only makes a regex token of this shape
        pattern, flags = parts.groups()
        closing = len(pattern) + 1
        for offset, flag in enumerate(flags):
            if flag != "i":
                message = f"unknown regex flag '{flag}': the only flag is i (ignore case)"
                raise QuerySyntaxError(message, self._query, token.position + closing + 1 + offset)
        if not pattern:
            raise self._error("empty regex", token)
        try:
            regex = compile_regex(pattern, ignore_case="i" in flags)
        except RegexError as exc:
            raise self._error(f"invalid regex: {exc}", token) from None
        if regex.search("") is not None:
            raise self._error("this regex matches empty text, so it would match anything", token)
        return RegexTerm(token.text, regex, self._scope, token.position)

    def _missing_term(self, token: _Token) -> QuerySyntaxError:
        """The error for finding ``token`` where a term should start, aimed at its cause."""
        previous = self._tokens[self._at - 1] if self._at else None
        if previous is not None and (previous.kind in _BINARY or previous.kind == "NOT"):
            return self._error(f"'{previous.text}' needs a term after it", previous)
        if previous is not None and previous.kind == "field":
            return self._error(f"'{previous.text}:' needs a term or a (group) after it", previous)
        if token.kind in _BINARY:
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
