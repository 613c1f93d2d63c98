"""The fast matcher and the RuleSet, held to a slow reference evaluator on random rules and
random articles: same matches, same reported terms, hits that point at the original text."""

# Cyrillic and typographic apostrophes are part of the vocabulary on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from collections.abc import Mapping

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from watcher.errors import RuleError
from watcher.rules import Document, Entity, Query, RuleSet, compile_query
from watcher.rules.reference import Names, reference_match

# Few words, in several spellings, so that random rules and texts often meet.
VOCABULARY = [
    "nato", "NATO", "Nato", "café", "cafe", "CAFÉ", "us", "US", "who", "WHO", "sanction",
    "sanctions", "Sanctioned", "kyiv", "Kyiv", "Київ", "black", "Black", "sea", "SEA",
    "straße", "strasse", "ﬁnance", "finance", "led", "the", "2024", "北约", "Treaty",
]  # fmt: skip
PREFIXES = ["sa", "sanc", "Sanc", "ca", "caf", "fi", "ky", "Ки", "str", "bl", "20"]
FIELDS = ["title", "summary", "content", "tags", "author", "link", "feed"]
SEPARATORS = [" ", " ", " ", ", ", "-", "’s ", "'s ", ". ", " (", ") ", ": ", "\n"]
OPERATORS = {"AND", "OR", "NOT", "NEAR"}
REGEXES = ["/nato/", "/NATO/", "/nato/i", "/caf[eé]/i", "/^Black/", "/sea$/i", "/\\d{4}/"]

ENTITIES: Mapping[str, Entity] = {
    "nato": Entity(("NATO", "North Atlantic Treaty Organization")),
    "who": Entity(("World Health Organization",), ("WHO",)),
    "kyiv": Entity(("Kyiv", "Київ", "Kiev")),
    "us": Entity((), ("US", "U.S.")),
}
NAMES: Mapping[str, Names] = {key: (e.names, e.exact) for key, e in ENTITIES.items()}

word = st.sampled_from(VOCABULARY)
phrase = st.lists(word, min_size=2, max_size=3).map(lambda ws: '"' + " ".join(ws) + '"')
prefix = st.sampled_from(PREFIXES).map(lambda stem: stem + "*")
exact = st.one_of(word, phrase).map(lambda term: "=" + term)
entity = st.sampled_from(sorted(ENTITIES)).map(lambda name: "@" + name)
regex = st.sampled_from(REGEXES)
word_term = st.one_of(word, word, phrase, prefix, exact, entity)


def scoped(term: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(term, st.tuples(st.sampled_from(FIELDS), term).map(":".join))


near_side = st.one_of(
    scoped(word_term),
    st.lists(word_term, min_size=2, max_size=3).map(lambda ts: "(" + " OR ".join(ts) + ")"),
)
near = st.tuples(near_side, st.integers(0, 4), near_side).map(
    lambda t: f"({t[0]} NEAR/{t[1]} {t[2]})"
)
atom = st.one_of(scoped(word_term), scoped(word_term), scoped(regex), near)


def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: f"{p[0]} {p[1]}"),
        pair.map(lambda p: f"{p[0]} AND {p[1]}"),
        pair.map(lambda p: f"{p[0]} OR {p[1]}"),
        pair.map(lambda p: f"({p[0]} OR {p[1]})"),
        pair.map(lambda p: f"{p[0]} NOT {p[1]}"),
        pair.map(lambda p: f"{p[0]} -({p[1]})"),
    )


query = st.recursive(atom, combine, max_leaves=4)


def documents(words: list[str]) -> st.SearchStrategy[Document]:
    """Articles written mostly with ``words`` (a rule's own words), so that rules match, or
    nearly match, often."""
    word = st.one_of(st.sampled_from(words), st.sampled_from(words), st.sampled_from(VOCABULARY))
    # Often empty, often short: a word then tends to be in one field only, and two words at
    # one exact distance, which is where scopes and NEAR can go wrong.
    filler = st.sampled_from(["x", "y", "z", "more", "words"])
    text = st.one_of(
        st.just(""),
        st.lists(st.tuples(st.one_of(word, filler), st.sampled_from(SEPARATORS)), max_size=8).map(
            lambda pairs: "".join(w + s for w, s in pairs).strip()
        ),
    )
    short = st.lists(word, min_size=1, max_size=2).map(" ".join)
    return st.builds(
        Document,
        title=text,
        summary=text,
        content=text,
        tags=st.lists(short, max_size=3).map(tuple),
        authors=st.lists(short, max_size=2).map(tuple),
        link=st.lists(word, max_size=4).map(lambda ws: "https://example.org/" + "-".join(ws)),
        feed=st.sampled_from(["", "world-news", "NATO watch", "Київ daily"]),
    )


def words_of(*queries: str) -> list[str]:
    """The words a rule mentions, entity names included, to write articles with."""
    found = [w for q in queries for w in re.findall(r"[^\W_]+", q) if w not in OPERATORS]
    for entity_id in {w for q in queries for w in re.findall(r"@([\w-]+)", q)}:
        for name in ENTITIES[entity_id].names + ENTITIES[entity_id].exact:
            found += name.split()
    return found or VOCABULARY


def checked(examples: int) -> settings:
    """Fixed examples (derandomize) so that CI is stable: about seven seconds in all."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def compiled(text: str) -> Query:
    try:
        return compile_query(text, ENTITIES)
    except RuleError:  # a rule only NOT can satisfy, or NOT inside NEAR: refused, not tested
        assume(False)
        raise


@checked(300)
@given(query, st.data())
def test_the_compiled_query_reports_what_the_reference_reports(
    text: str, data: st.DataObject
) -> None:
    rule = compiled(text)
    doc = data.draw(documents(words_of(text)))
    assert rule.match(doc) == reference_match(rule.syntax, NAMES, doc)


@checked(120)
@given(st.lists(query, min_size=1, max_size=8), st.data())
def test_a_ruleset_agrees_with_each_rule_on_its_own(texts: list[str], data: st.DataObject) -> None:
    rules = {f"rule-{n}": compiled(text) for n, text in enumerate(texts)}
    ruleset = RuleSet(rules)
    docs = data.draw(st.lists(documents(words_of(*texts)), min_size=1, max_size=3))
    for doc in docs:
        alone = [(name, rule.match(Document(**_fields(doc)))) for name, rule in rules.items()]
        assert ruleset.match(doc) == [(name, terms) for name, terms in alone if terms]


@checked(60)
@given(st.lists(query, min_size=10, max_size=40), st.data())
def test_a_large_ruleset_reports_what_the_reference_reports(
    texts: list[str], data: st.DataObject
) -> None:
    """Enough rules that they share terms, entities and keys: rules filed under pairs of
    keys, under one, or evaluated always, and evaluated from their flat form."""
    rules = {}
    for n, text in enumerate(texts):
        try:
            rules[f"rule-{n}"] = compile_query(text, ENTITIES)
        except RuleError:  # refused rules are another test's subject
            continue
    ruleset = RuleSet(rules)
    docs = data.draw(st.lists(documents(words_of(*texts)), min_size=1, max_size=3))
    for doc in docs:
        expected = [
            (name, reference_match(rule.syntax, NAMES, doc)) for name, rule in rules.items()
        ]
        assert ruleset.match(doc) == [(name, terms) for name, terms in expected if terms]


@checked(150)
@given(query, st.data())
def test_hits_quote_the_original_text_exactly_when_the_rule_matches(
    text: str, data: st.DataObject
) -> None:
    rule = compiled(text)
    doc = data.draw(documents(words_of(text)))
    hits = rule.hits(doc)
    assert bool(hits) == bool(rule.match(doc))
    for hit in hits:
        values = {"tags": doc.tags, "author": doc.authors}.get(hit.field)
        original = values[hit.index] if values is not None else getattr(doc, hit.field)
        assert original[hit.start : hit.end] == hit.text
    explanation = rule.explain(doc)
    assert explanation.held is bool(rule.match(doc))


def _fields(doc: Document) -> dict[str, object]:
    """A fresh copy of ``doc``: nothing cached from an earlier evaluation."""
    return {
        "title": doc.title,
        "summary": doc.summary,
        "content": doc.content,
        "tags": doc.tags,
        "authors": doc.authors,
        "link": doc.link,
        "feed": doc.feed,
    }
