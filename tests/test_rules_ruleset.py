"""Many rules at once: a RuleSet reports exactly what each rule reports on its own, in the
order the rules were given, however it picks the rules worth evaluating."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from watcher.errors import QuerySyntaxError, RuleError
from watcher.rules import Document, Entity, RuleSet, compile_query

ENTITIES: Mapping[str, Entity | Sequence[str]] = {
    "nato": ("NATO", "North Atlantic Treaty Organization"),
    "ukraine": ("Ukraine", "Ukrainian", "Kyiv"),
    "who": Entity(names=("World Health Organization",), exact=("WHO",)),
    "us": Entity(names=("United States",), exact=("US", "U.S.")),
}

RULES = {
    "nato": "@nato",
    "nato-kyiv": "@nato AND kyiv",
    "nato-near-kyiv": "@nato NEAR/3 kyiv",
    "who-vaccines": "@who (vaccine* OR jab*)",
    "us-not-sport": "=US -sport",
    "title-sea": 'title:"black sea"',
    "regex-only": "/\\bgrain\\s+corridor\\b/i",
    "regex-and-word": "/^Breaking/ odesa",
    "short-prefix": "un*",
    "either": "(Ukraine OR Ukrainian) AND (port OR ports)",
    "author": "author:doe OR feed:wire",
    "no-nato": "kyiv NOT @nato",
}

DOCUMENTS = [
    Document("NATO meets in Kyiv"),
    Document("Kyiv talks", summary="North Atlantic Treaty Organization allies"),
    Document("WHO approves vaccines", content="The US and who else? Not sport."),
    Document("Drills in the Black Sea", tags=("world",), authors=("Jane Doe",)),
    Document("Breaking: Odesa port", content="Grain  corridor reopens for Ukrainian ports"),
    Document("Untitled", feed="the wire"),
    Document("Kyiv alone"),
    Document("Nothing to see"),
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.title)
def test_a_ruleset_reports_what_each_rule_reports_alone(document: Document) -> None:
    queries = {name: compile_query(text, ENTITIES) for name, text in RULES.items()}
    expected = [(name, terms) for name, q in queries.items() if (terms := q.match(document))]
    assert RuleSet(queries).match(document) == expected


def test_each_article_gets_the_rules_that_match_it_with_their_terms() -> None:
    ruleset = RuleSet.compile(RULES, ENTITIES)
    found = {document.title: ruleset.match(document) for document in DOCUMENTS}
    assert found == {
        "NATO meets in Kyiv": [
            ("nato", ("NATO",)),
            ("nato-kyiv", ("NATO", "kyiv")),
            ("nato-near-kyiv", ("NATO", "kyiv")),
        ],
        "Kyiv talks": [
            ("nato", ("North Atlantic Treaty Organization",)),
            ("nato-kyiv", ("North Atlantic Treaty Organization", "kyiv")),
        ],
        "WHO approves vaccines": [("who-vaccines", ("WHO", "vaccine*"))],
        "Drills in the Black Sea": [("title-sea", ("black sea",)), ("author", ("doe",))],
        "Breaking: Odesa port": [
            ("regex-only", ("/\\bgrain\\s+corridor\\b/i",)),
            ("regex-and-word", ("/^Breaking/", "odesa")),
            ("either", ("Ukrainian", "port", "ports")),
        ],
        "Untitled": [("short-prefix", ("un*",)), ("author", ("wire",))],
        "Kyiv alone": [("no-nato", ("kyiv",))],
        "Nothing to see": [],
    }


def test_rules_come_back_in_the_order_given() -> None:
    names = ["zulu", "alpha", "mike"]
    ruleset = RuleSet({name: compile_query("nato", ENTITIES) for name in names})
    assert [name for name, _ in ruleset.match(Document("NATO"))] == names
    assert len(ruleset) == 3


def test_an_empty_ruleset_matches_nothing() -> None:
    assert RuleSet({}).match(Document("NATO")) == []


def test_a_document_can_be_matched_again_with_the_same_result() -> None:
    ruleset = RuleSet.compile(RULES, ENTITIES)
    document = DOCUMENTS[4]
    assert ruleset.match(document) == ruleset.match(document)
    assert compile_query("title:odesa", ENTITIES).match(document) == ("odesa",)


def test_compiling_a_ruleset_reports_the_bad_rule() -> None:
    with pytest.raises(QuerySyntaxError, match="unclosed parenthesis"):
        RuleSet.compile({"good": "nato", "bad": "(nato"}, ENTITIES)
    with pytest.raises(RuleError, match="unknown entity @nope"):
        RuleSet.compile({"bad": "@nope"}, ENTITIES)
