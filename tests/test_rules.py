"""The rule matcher as a user meets it: which articles a rule selects, what it reports, and
how it explains a mistake in the rule."""

# Cyrillic capitals that look Latin (the Russian for NATO) are the point of several cases.
# ruff: noqa: RUF001

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytest

from watcher.errors import QuerySyntaxError, RuleError
from watcher.rules import Document, Entity, Query, compile_query

ENTITIES: Mapping[str, Entity | Sequence[str]] = {
    "nato": ("NATO", "North Atlantic Treaty Organization"),
    "ukraine": ("Ukraine", "Ukrainian", "Kyiv"),
    "ua": ("Україна", "Киев"),
    "us": ("U.S.", "United States"),
    "who": Entity(names=("World Health Organization",), exact=("WHO",)),
    "un": Entity(names=("United Nations",), exact=("UN", "U.N.")),
}


def terms(query: str, title: str, **fields: str) -> tuple[str, ...]:
    return compile_query(query, ENTITIES).match(Document(title=title, **fields))


def selects(query: str, document: Document) -> bool:
    return bool(compile_query(query, ENTITIES).match(document))


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


PREFIXES = [
    # (query, article title, matches)
    ("sanction*", "EU sanctions bite", True),
    ("sanction*", "Firms SANCTIONED today", True),
    ("sanction*", "A sanction", True),
    ("sanction*", "Unsanctioned trade", False),  # the word must start with it
    ("sanction*", "sanc tion", False),
    ("sanc*", "Sanctions", True),
    ("un*", "UN talks", True),  # two letters are enough
    ("Украин*", "Украинская делегация", True),
    ("украин*", "УКРАИНА", True),
    ("caf*", "Café society", True),  # accents are folded as for whole words
    ("=Sanc*", "Sanctions", True),  # '=' makes a prefix case-sensitive
    ("=Sanc*", "sanctions", False),
    ("title:sanction* kyiv", "Kyiv sanctions", True),
]


@pytest.mark.parametrize(("query", "title", "matches"), PREFIXES)
def test_prefixes_match_words_that_start_with_them(query: str, title: str, matches: bool) -> None:
    assert bool(terms(query, title)) is matches


EXACT = [
    # (query, article title, matches): '=' keeps case, and nothing else changes
    ("=US", "US troops withdraw", True),
    ("=US", "Talks with us", False),
    ("us", "US troops withdraw", True),  # without '=', any case
    ("=US", "U.S. troops", False),  # a different word: "U" and "S"
    ("=WHO", "WHO warns of outbreak", True),
    ("=WHO", "Who warns of outbreak", False),
    ("=WHO", "WHO’s chief", True),  # possessives as for any word
    ("=Café", "Cafe opens", True),  # accents still fold
    ("=Café", "cafe opens", False),
    ("=ﬁnance", "finance", True),  # NFKC: the ligature is "fi"
    ('="World Health"', "World Health body", True),
    ('="World Health"', "world health body", False),
    ("=Україна", "Україна та НАТО", True),
    ("=Україна", "УКРАЇНА та НАТО", False),
    # entities: names in any case, exact names only as written
    ("@who", "WHO warns", True),
    ("@who", "Who warns?", False),
    ("@who", "world health organization warns", True),
    ("@un", "UN envoy", True),
    ("@un", "Un envoy", False),
    ("@un", "U.N. envoy", True),
    ("@un", "united nations envoy", True),
]


@pytest.mark.parametrize(("query", "title", "matches"), EXACT)
def test_exact_words_and_names_keep_their_case(query: str, title: str, matches: bool) -> None:
    assert bool(terms(query, title)) is matches


NEAR = [
    # (query, fields, matches)
    ("nato NEAR/2 kyiv", {"title": "NATO meets in Kyiv"}, True),  # two words between
    ("nato NEAR/1 kyiv", {"title": "NATO meets in Kyiv"}, False),
    ("nato NEAR/2 kyiv", {"title": "Kyiv: a NATO summit"}, True),  # either order
    ("nato NEAR/0 summit", {"title": "NATO summit"}, True),  # side by side
    ("nato NEAR/0 summit", {"title": "NATO's summit"}, False),  # "s" is a word between
    ("nato NEAR kyiv", {"content": "NATO " + "word " * 10 + "Kyiv"}, True),  # default 10
    ("nato NEAR kyiv", {"content": "NATO " + "word " * 11 + "Kyiv"}, False),
    ("nato NEAR/5 kyiv", {"title": "NATO meets", "summary": "Kyiv waits"}, False),  # fields
    ("nato NEAR/5 kyiv", {"tags": ("NATO", "Kyiv")}, False),  # two tags are two values
    ("nato NEAR/5 kyiv", {"title": "Kyiv", "content": "NATO and Kyiv"}, True),
    ('"black sea" NEAR/3 grain', {"title": "Grain ships leave the Black Sea"}, True),
    ('"black sea" NEAR/1 grain', {"title": "Grain ships leave the Black Sea"}, False),
    ("sanction* NEAR/3 @nato", {"title": "North Atlantic Treaty Organization sanctions"}, True),
    ("(kyiv OR odesa) NEAR/1 port", {"title": "Odesa port reopens"}, True),
    ("(kyiv OR odesa) NEAR/1 port", {"title": "Kyiv says the port reopens"}, False),
    ("=WHO NEAR/3 vaccine", {"title": "WHO approves vaccine"}, True),
    ("=WHO NEAR/3 vaccine", {"title": "who approves vaccine"}, False),
    ("nato NEAR/3 nato", {"title": "NATO summit"}, False),  # two occurrences are needed
    ("nato NEAR/3 nato", {"title": "NATO meets NATO"}, True),
    ('"black sea" NEAR/3 sea', {"title": "the Black Sea"}, False),  # overlapping is not near
    ("title:nato NEAR/3 kyiv", {"title": "Kyiv", "summary": "NATO in Kyiv"}, False),
]


@pytest.mark.parametrize(("query", "fields", "matches"), NEAR)
def test_near_counts_words_between_two_terms_in_one_field(
    query: str, fields: dict[str, str | tuple[str, ...]], matches: bool
) -> None:
    document = Document(**{"title": "", **fields})  # type: ignore[arg-type]
    assert selects(query, document) is matches


PRECEDENCE = [
    # (query, article title, matches): NOT, then NEAR, then AND, then OR
    ("alpha NEAR/1 beta gamma", "alpha beta gamma", True),  # (alpha NEAR beta) AND gamma
    ("alpha NEAR/1 beta gamma", "alpha x x beta gamma", False),
    ("alpha OR beta NEAR/1 gamma", "alpha", True),  # alpha OR (beta NEAR gamma)
    ("alpha OR beta NEAR/1 gamma", "beta x x gamma", False),
    ("alpha NEAR/1 beta -gamma", "alpha beta gamma", False),
    ("alpha NEAR/1 beta -gamma", "alpha beta", True),
    ("(alpha OR beta) NEAR/0 gamma", "beta gamma", True),
]


@pytest.mark.parametrize(("query", "title", "matches"), PRECEDENCE)
def test_near_binds_after_not_and_before_and(query: str, title: str, matches: bool) -> None:
    assert bool(terms(query, title)) is matches


ARTICLE = Document(
    title="NATO summit opens",
    summary="Leaders meet in Vilnius",
    content="The alliance discussed Ukraine.",
    tags=("World", "Europe"),
    authors=("Jane Doe",),
    link="https://example.org/world/nato-summit",
    feed="bbc-world BBC News",
)

FIELD_SCOPES = [
    # (query, matches) against ARTICLE
    ("title:nato", True),
    ("summary:nato", False),
    ("title:(vilnius OR summit)", True),
    ("summary:(vilnius OR summit)", True),
    ("content:(vilnius OR summit)", False),
    ('title:"summit opens"', True),
    ('summary:"summit opens"', False),
    ("title:@nato", True),
    ("content:@ukraine", True),
    ("tags:europe", True),
    ('tags:"world europe"', False),  # each tag is its own value
    ("author:doe", True),
    ("doe", False),  # a term without a field reads title, summary, content and tags
    ("author:nato", False),
    ("link:example.org", True),
    ("link:nato-summit", True),
    ("link:https://example.org/world", True),
    ("example", False),
    ("feed:bbc-world", True),
    ('feed:"bbc news"', True),
    ("bbc", False),
    ("europe", True),
    ("title:nato -summary:nato", True),
    ("title:nato -title:summit", False),
    ("title:sum*", True),
    ("content:=Ukraine", True),
    ("content:=ukraine", False),
]


@pytest.mark.parametrize(("query", "matches"), FIELD_SCOPES)
def test_field_scopes_look_only_in_their_field(query: str, matches: bool) -> None:
    assert selects(query, ARTICLE) is matches


REGEXES = [
    # (query, fields, matches): RE2 over the NFKC text, case kept
    ("/nato/", {"title": "nato summit"}, True),
    ("/nato/", {"title": "NATO summit"}, False),
    ("/nato/i", {"title": "NATO summit"}, True),
    ("/sanction(s|ed)\\b/", {"content": "firms sanctioned"}, True),
    ("/^Breaking/", {"title": "News", "summary": "Breaking: a summit"}, True),  # per field
    ("title:/^Breaking/", {"title": "News", "summary": "Breaking: a summit"}, False),
    ("/Summit$/", {"title": "NATO Summit", "summary": "later"}, True),
    ("/finance/", {"title": "ﬁnance ministers"}, True),  # the ligature is NFKC "fi"
    ("/Café/", {"title": "Café society"}, True),  # NFKC composes the accent
    ("/Ukraine's/", {"title": "Ukraine’s navy"}, True),  # apostrophes made ASCII
    ("/\\d{4}-\\d{2}/", {"title": "Budget 2024-25"}, True),
    ("link:/\\/sport\\//", {"title": "x", "link": "https://e.org/sport/1"}, True),
    ("link:/\\/sport\\//", {"title": "x", "link": "https://e.org/news/1"}, False),
    ("tags:/^Eur/", {"title": "x", "tags": ("World", "Europe")}, True),
    ("/нато/i", {"title": "НАТО"}, True),
    ("/nato/ kyiv", {"title": "nato in Kyiv"}, True),
    ("/nato/ -kyiv", {"title": "nato in Kyiv"}, False),
]


@pytest.mark.parametrize(("query", "fields", "matches"), REGEXES)
def test_regexes_run_on_each_field_value(
    query: str, fields: dict[str, str | tuple[str, ...]], matches: bool
) -> None:
    document = Document(**{"title": "", **fields})  # type: ignore[arg-type]
    assert selects(query, document) is matches


def test_a_pathological_regex_runs_in_linear_time() -> None:
    query = compile_query("/(a+)+$/", ENTITIES)  # catastrophic backtracking for Python's re
    started = time.perf_counter()
    assert query.match(Document(title="", content="a" * 100_000 + "b")) == ()
    assert query.match(Document(title="", content="a" * 100_000)) == ("/(a+)+$/",)
    assert time.perf_counter() - started < 1.0


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
    # prefixes and exact words
    ("sanc*tion", 4, "'*' can only end a word"),
    ("*", 0, "a prefix needs letters or digits before '*'"),
    ("nato s*", 5, "at least 2 letters or digits"),
    ("U.S.*", 0, "a prefix needs one word before '*'"),
    ("= US", 0, "'=' must be written directly before a word or phrase"),
    ("=@who", 0, "'=' must be written directly before a word or phrase"),
    ("nato =(kyiv)", 5, "'=' must be written directly before a word or phrase"),
    # NEAR
    ("nato NEAR", 5, "'NEAR' needs a term after it"),
    ("NEAR/3 kyiv", 0, "'NEAR/3' needs a term before it"),
    ("nato NEAR/x kyiv", 10, "expected a number after 'NEAR/'"),
    ("nato NEAR/1001 kyiv", 10, "at most 1000 words"),
    ("a NEAR b NEAR c", 9, "NEAR cannot be chained"),
    ("NOT a NEAR b", 0, "NOT cannot be a side of NEAR"),
    ("a NEAR (b c)", 7, "NEAR needs a word, phrase, prefix or @entity"),
    ("a NEAR (b OR -c)", 13, "NOT cannot be a side of NEAR"),
    ("/nato/ NEAR kyiv", 0, "a /regex/ cannot be used with NEAR"),
    # fields
    ("foo:bar", 0, "unknown field 'foo:'; fields are title, summary, content, tags, author"),
    ("nato Title:nato", 5, "unknown field 'Title:'"),
    ("title: nato", 0, "'title:' must be written directly before its term"),
    ("title:(summary:nato)", 7, "scopes cannot nest"),
    ("title:-nato", 0, "'title:' needs a term or a (group) after it"),
    ("nato title:OR kyiv", 5, "'title:' needs a term or a (group) after it"),
    # regexes
    ("/(nato/", 0, "invalid regex: missing )"),
    ("/(a)\\1/", 0, "invalid regex: invalid escape sequence"),  # RE2: no backreferences
    ("nato /kyiv", 5, "unterminated regex"),
    ("/nato/x", 6, "unknown regex flag 'x'"),
    ("nato //", 5, "empty regex"),
    ("/x*/", 0, "matches empty text"),
    ("kyiv /" + "x" * 100_000 + "/", 5, "invalid regex: pattern too large"),
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
    assert str(error).splitlines()[-2] == "    " + query
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
    ("title:nato OR -title:sport", ENTITIES, "lack alone"),
    ("@missing NEAR kyiv", ENTITIES, "unknown entity @missing"),
    ("@blank", {"blank": Entity()}, "entity @blank has no name"),
    ("@marks", {"marks": Entity(names=("...",), exact=("!",))}, "entity @marks has no name"),
]


@pytest.mark.parametrize(("query", "entities", "message"), RULE_ERRORS)
def test_rule_errors_name_the_problem(
    query: str, entities: Mapping[str, Entity | Sequence[str]], message: str
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


def test_entities_may_be_given_as_entity_or_as_a_list_of_names() -> None:
    entities = {"who": Entity(names=("World Health Organization",), exact=("WHO",))}
    document = Document(title="WHO and the World Health Organization")
    assert compile_query("@who", entities).match(document) == ("World Health Organization", "WHO")
    assert compile_query("@who", {"who": ["who"]}).match(document) == ("who",)
