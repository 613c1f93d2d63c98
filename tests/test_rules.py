"""The rule matcher as a user meets it: which articles a rule selects, what it reports, and
how it explains a mistake in the rule."""

# Cyrillic capitals that look Latin (the Russian for NATO) are the point of several cases.
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from watcher.errors import QuerySyntaxError, RuleError
from watcher.rules import Document, Query, compile_query

ENTITIES: Mapping[str, Sequence[str]] = {
    "nato": ("NATO", "North Atlantic Treaty Organization"),
    "ukraine": ("Ukraine", "Ukrainian", "Kyiv"),
    "ua": ("Україна", "Киев"),
    "us": ("U.S.", "United States"),
}


def terms(query: str, title: str, **fields: str) -> tuple[str, ...]:
    return compile_query(query, ENTITIES).match(Document(title=title, **fields))


# --- which articles match ---------------------------------------------------------------------

WHOLE_WORDS = [
    # (query, article title, matches)
    ("NATO", "NATO summit opens", True),
    ("NATO", "Senator resigns", False),
    ("NATO", "Natoli wins the race", False),
    ("NATO", "nato summit", True),
    ("nato", "NATO SUMMIT", True),
    ("Ukraine", "Ukraine's grain exports", True),
    ("Ukraine", "Ukraine\u2019s grain exports", True),
    ("Ukraine", "Ukrainian grain", False),
    ("NATO", "NATO-led forces", True),
    ("led", "NATO-led forces", True),
    ("NATO-led", "NATO-led forces", True),
    ("NATO-led", "NATO led forces", True),
    ("NATO-led", "NATO forces led", False),
    ("U.S.", "the U.S. and allies", True),
    ("U.S.", "US and allies", False),
    ("Ukraine's", "Ukraine\u2019s navy", True),
    ("Ukraine\u2019s", "Ukraine's navy", True),
    ("cafe", "Caf\u00e9 society", True),
    ("Caf\u00e9", "cafe society", True),
    ("cafe", "Cafe\u0301 society", True),  # the accent as a separate combining mark
    ("Zurich", "Z\u00fcrich talks", True),
    ("strasse", "Hauptstra\u00dfe closed", False),  # whole words: a compound does not count
    ("Strasse", "Stra\u00dfe closed", True),
    ("finance", "\ufb01nance ministers", True),  # the "fi" ligature is two letters
    ("nato", "#nato_summit trends", True),
    ("2024", "Budget 2024 passed", True),
    ("Украина", "Война: Украина и НАТО", True),
    ("НАТО", "Война: Украина и НАТО", True),
    ("НАТО", "НАТОвский саммит", False),
    ("Ελλάδα", "ΕΛΛΑΔΑ: εκλογές", True),  # Greek, case and tonos folded
    ("εκλογες", "Ελλάδα: Εκλογές", True),
    ("北约", "北约领导人会晤", True),  # Chinese is written without spaces
    ("领导", "北约领导人会晤", True),
    ("北领", "北约领导人会晤", False),
    ("भारत", "भारत में चुनाव", True),  # Devanagari vowel signs stay inside the word
    ("भा", "भारत में चुनाव", False),
]


@pytest.mark.parametrize(("query", "title", "matches"), WHOLE_WORDS)
def test_words_match_whole_words_ignoring_case_accents_and_script(
    query: str, title: str, matches: bool
) -> None:
    assert bool(terms(query, title)) is matches


PHRASES = [
    # (query, fields, matches)
    ('"Black Sea"', {"title": "Drills in the Black Sea"}, True),
    ('"Black Sea"', {"title": "Black, Sea"}, True),  # punctuation between words is ignored
    ('"Black Sea"', {"title": "Sea Black"}, False),
    ('"Black Sea"', {"title": "black cat at sea"}, False),
    ('"Black Sea"', {"title": "Drills in the Black", "summary": "Sea of Azov"}, False),
    ('"Black Sea"', {"title": "A", "summary": "x Black", "content": "Sea y"}, False),
    ('"world europe"', {"title": "Headline", "tags": ("world", "europe")}, False),
    ("europe", {"title": "Headline", "tags": ("world", "Europe")}, True),
    ('"black sea"', {"title": "Headline", "content": "warships in the BLACK SEA today"}, True),
    ('"prime minister\'s"', {"title": "the Prime Minister\u2019s office"}, True),
    ("@nato", {"title": "North Atlantic Treaty Organization meets"}, True),
    ("@nato", {"title": "North Atlantic Treaty-Organization meets"}, True),
    ("@nato", {"title": "North Atlantic Organization"}, False),
    ("@nato", {"title": "North Atlantic", "summary": "Treaty Organization"}, False),
]


@pytest.mark.parametrize(("query", "fields", "matches"), PHRASES)
def test_phrases_need_consecutive_words_within_one_field(
    query: str, fields: dict[str, str | tuple[str, ...]], matches: bool
) -> None:
    query_ = compile_query(query, ENTITIES)
    assert bool(query_.match(Document(**fields))) is matches  # type: ignore[arg-type]


OPERATORS = [
    # (query, article title, matches)
    ("nato ukraine", "NATO and Ukraine", True),
    ("nato ukraine", "NATO alone", False),
    ("nato AND ukraine", "NATO alone", False),
    ("nato OR ukraine", "Ukraine alone", True),
    ("nato OR ukraine", "Russia alone", False),
    # OR binds loosest: a OR b c == a OR (b AND c)
    ("alpha OR beta gamma", "alpha", True),
    ("alpha OR beta gamma", "beta", False),
    ("alpha OR beta gamma", "beta gamma", True),
    ("(alpha OR beta) gamma", "alpha", False),
    ("alpha OR beta AND gamma", "alpha", True),
    # NOT binds tightest: NOT a b == (NOT a) AND b
    ("NOT alpha beta", "beta", True),
    ("NOT alpha beta", "alpha beta", False),
    ("NOT alpha beta", "alpha", False),
    ("beta NOT (alpha OR gamma)", "beta gamma", False),
    ("beta NOT (alpha OR gamma)", "beta delta", True),
    ("nato -sport", "NATO football sport", False),
    ("nato -sport", "NATO summit", True),
    ('nato -"Black Sea"', "NATO in the Black Sea", False),
    ('nato -"Black Sea"', "NATO black cat at sea", True),
    ("nato -@ukraine", "NATO in Kyiv", False),
    ("nato -(sport OR music)", "NATO music awards", False),
    ("nato NOT NOT summit", "NATO summit", True),
    # only UPPERCASE words are operators
    ("salt and pepper", "salt pepper", False),
    ("salt and pepper", "salt and pepper", True),
    ("war or peace", "war", False),
    ("to be or not to be", "To be, or not to be", True),
    ("x-ray", "X-ray", True),
    ('@nato AND (Ukraine OR "Black Sea") AND NOT sport', "NATO ships in the Black Sea", True),
    ('@nato AND (Ukraine OR "Black Sea") AND NOT sport', "NATO sport in Ukraine", False),
]


@pytest.mark.parametrize(("query", "title", "matches"), OPERATORS)
def test_operators_and_precedence(query: str, title: str, matches: bool) -> None:
    assert bool(terms(query, title)) is matches


ENTITY_SCRIPTS = [
    ("@ua", "Україна та НАТО", True),
    ("@ua", "УКРАЇНА та НАТО", True),
    ("@ua", "Саммит в Киеве", False),  # a different case ending is a different word
    ("@ua", "Саммит: Киев, среда", True),
    ("@us", "U.S. troops", True),
    ("@us", "United States troops", True),
    ("@us", "US troops", False),
]


@pytest.mark.parametrize(("query", "title", "matches"), ENTITY_SCRIPTS)
def test_entities_match_any_of_their_names(query: str, title: str, matches: bool) -> None:
    assert bool(terms(query, title)) is matches


# --- what a match reports ---------------------------------------------------------------------

REPORTED = [
    # (query, article title, reported terms)
    ("nato ukraine", "Ukraine and NATO", ("nato", "ukraine")),
    ("NATO OR nato", "NATO", ("NATO",)),
    ("nato @nato", "NATO", ("nato",)),  # the same words once, spelled as first written
    (
        "@nato @ukraine",
        "North Atlantic Treaty Organization meets in Kyiv",
        (
            "North Atlantic Treaty Organization",
            "Kyiv",
        ),
    ),
    ("@ukraine", "Kyiv says Ukraine will", ("Ukraine", "Kyiv")),  # names in config order
    ("@ukraine", "KYIV", ("Kyiv",)),  # the name as configured, not as the article spells it
    ("beta OR alpha OR gamma", "alpha beta gamma", ("beta", "alpha", "gamma")),
    ("beta OR alpha OR delta", "alpha", ("alpha",)),
    ("nato NOT sport", "NATO", ("nato",)),
    ("nato OR (kyiv NOT sport)", "NATO Kyiv", ("nato", "kyiv")),
    ('"black sea" OR "Black  Sea"', "Black Sea", ("black sea",)),
    ("NATO-led", "NATO-led", ("NATO-led",)),
    ("nato", "Senator", ()),
]


@pytest.mark.parametrize(("query", "title", "expected"), REPORTED)
def test_reported_terms(query: str, title: str, expected: tuple[str, ...]) -> None:
    assert terms(query, title) == expected


def test_issue_example_nato_and_ukraine() -> None:
    entities = {
        "nato": ["NATO", "North Atlantic Treaty Organization"],
        "ukraine": ["Ukraine", "Ukrainian", "Kyiv"],
    }
    query = compile_query("@nato AND @ukraine", entities)

    hit = Document(title="North Atlantic Treaty Organization leaders meet in Kyiv")
    miss = Document(title="Senator visits Kyiv")

    assert query.match(hit) == ("North Atlantic Treaty Organization", "Kyiv")
    assert query.match(miss) == ()
    assert query.entities == frozenset({"nato", "ukraine"})
    assert query.text == "@nato AND @ukraine"


def test_one_query_and_one_document_are_reused_freely() -> None:
    nato = compile_query("nato", ENTITIES)
    kyiv = compile_query("@ukraine", ENTITIES)
    documents = [Document(title="NATO"), Document(title="Kyiv"), Document(title="NATO in Kyiv")]

    assert [nato.match(d) for d in documents] == [("nato",), (), ("nato",)]
    assert [kyiv.match(d) for d in documents] == [(), ("Kyiv",), ("Kyiv",)]
    assert isinstance(nato, Query)


def test_a_document_is_frozen_and_compares_by_its_text() -> None:
    document = Document(title="NATO", tags=("world",))
    compile_query("nato", ENTITIES).match(document)  # builds the cached index

    assert document == Document(title="NATO", tags=("world",))
    assert hash(document) == hash(Document(title="NATO", tags=("world",)))
    with pytest.raises(AttributeError):
        document.title = "changed"  # type: ignore[misc]


# --- mistakes in a rule -----------------------------------------------------------------------

SYNTAX_ERRORS = [
    # (query, column of the caret, words of the message)
    ("", 0, "empty query"),
    ("   ", 0, "empty query"),
    ("(nato", 0, "unclosed parenthesis"),
    ("nato (ukraine OR (kyiv)", 5, "unclosed parenthesis"),
    ("nato)", 4, "unmatched ')'"),
    (")", 0, "unmatched ')'"),
    ("()", 0, "empty parentheses"),
    ("nato (", 5, "unclosed parenthesis"),
    ('nato "Black Sea', 5, "unterminated quote"),
    ('nato ""', 5, "empty phrase"),
    ('nato "  "', 5, "empty phrase"),
    ('nato "!!"', 5, "no letters or digits"),
    ("nato & ukraine", 5, "no letters or digits"),
    ("nato AND", 5, "'AND' needs a term after it"),
    ("nato OR", 5, "'OR' needs a term after it"),
    ("nato OR OR kyiv", 5, "'OR' needs a term after it"),
    ("(nato AND) kyiv", 6, "'AND' needs a term after it"),
    ("AND nato", 0, "'AND' needs a term before it"),
    ("nato (OR kyiv)", 6, "'OR' needs a term before it"),
    ("nato NOT", 5, "'NOT' needs a term after it"),
    ("NOT", 0, "'NOT' needs a term after it"),
    ("nato -", 5, "'-' must be written directly before"),
    ("nato - sport", 5, "'-' must be written directly before"),
    ("nato (-)", 6, "'-' must be written directly before"),
    ("nato @", 5, "expected an entity id after '@'"),
    ("nato @ ukraine", 5, "expected an entity id after '@'"),
    ("@na.to", 3, "letters, digits"),
]


@pytest.mark.parametrize(("query", "position", "message"), SYNTAX_ERRORS)
def test_syntax_errors_point_at_the_mistake(query: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        compile_query(query, ENTITIES)

    error = caught.value
    assert error.position == position
    assert error.query == query
    assert message in error.message
    assert str(error).splitlines()[-1] == "    " + " " * position + "^"
    assert isinstance(error, RuleError)  # callers can catch every bad rule as one kind


RULE_ERRORS = [
    # (query, entities, words of the message)
    ("@foo", {}, "unknown entity @foo"),
    ("nato AND @foo", ENTITIES, "unknown entity @foo"),
    ("@foo OR @bar OR @foo", ENTITIES, "unknown entities @foo, @bar"),
    ("@NATO", ENTITIES, "unknown entity @NATO"),  # ids are exact, like TOML keys
    ("@dots", {"dots": ["...", "!"]}, "entity @dots has no name"),
    ("@empty", {"empty": []}, "entity @empty has no name"),
    ("NOT sport", ENTITIES, "lack alone"),
    ("-sport", ENTITIES, "lack alone"),
    ("nato OR NOT sport", ENTITIES, "lack alone"),
]


@pytest.mark.parametrize(("query", "entities", "message"), RULE_ERRORS)
def test_rule_errors_name_the_problem(
    query: str, entities: Mapping[str, Sequence[str]], message: str
) -> None:
    with pytest.raises(RuleError, match=message) as caught:
        compile_query(query, entities)
    assert not isinstance(caught.value, QuerySyntaxError)


def test_syntax_is_checked_before_entities() -> None:
    with pytest.raises(QuerySyntaxError):
        compile_query("@foo AND", ENTITIES)


def test_unusable_names_are_skipped_when_the_entity_has_usable_ones() -> None:
    query = compile_query("@mixed", {"mixed": ["!!!", "NATO"]})
    assert query.match(Document(title="NATO")) == ("NATO",)


def test_an_entity_given_as_one_string_is_one_name() -> None:
    query = compile_query("@nato", {"nato": "NATO"})
    assert query.match(Document(title="NATO")) == ("NATO",)
    assert query.match(Document(title="A to Z")) == ()
