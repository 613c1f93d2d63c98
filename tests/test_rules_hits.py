"""Where a rule matched and why it did or did not: hits that quote the article as written,
and explanations a user can read."""

# ruff: noqa: RUF001 - Cyrillic letters in the texts are the point

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from watcher.rules import Document, Entity, Hit, compile_query

ENTITIES: Mapping[str, Entity | Sequence[str]] = {
    "nato": ("NATO", "North Atlantic Treaty Organization"),
    "who": Entity(names=("World Health Organization",), exact=("WHO",)),
}

HITS = [
    # (query, document, hits as (field, text, start, end, term, index))
    (
        "nato",
        Document("NATO summit; nato again"),
        [
            ("title", "NATO", 0, 4, "nato", 0),
            ("title", "nato", 13, 17, "nato", 0),
        ],
    ),
    (
        '"black sea"',
        Document("In the Black, Sea"),
        [("title", "Black, Sea", 7, 17, "black sea", 0)],
    ),
    ("cafe", Document("Le Café"), [("title", "Café", 3, 7, "cafe", 0)]),
    ("cafe", Document("Cafe\u0301 x"), [("title", "Cafe\u0301", 0, 5, "cafe", 0)]),
    (
        "finance",
        Document("The \ufb01nance minister"),
        [("title", "\ufb01nance", 4, 10, "finance", 0)],
    ),
    ("strasse", Document("Die Straße ist zu"), [("title", "Straße", 4, 10, "strasse", 0)]),
    ("Ukraine", Document("Ukraine\u2019s navy"), [("title", "Ukraine", 0, 7, "Ukraine", 0)]),
    ("Україна", Document("УКРАЇНА та НАТО"), [("title", "УКРАЇНА", 0, 7, "Україна", 0)]),
    ("北约", Document("北约领导人会晤"), [("title", "北约", 0, 2, "北约", 0)]),
    ("=US", Document("US and us"), [("title", "US", 0, 2, "US", 0)]),
    (
        "sanction*",
        Document("Sanctions, then more sanctioned firms"),
        [
            ("title", "Sanctions", 0, 9, "sanction*", 0),
            ("title", "sanctioned", 21, 31, "sanction*", 0),
        ],
    ),
    (
        "@nato",
        Document("North Atlantic Treaty Organization (NATO)"),
        [
            ("title", "NATO", 36, 40, "NATO", 0),
            (
                "title",
                "North Atlantic Treaty Organization",
                0,
                34,
                "North Atlantic Treaty Organization",
                0,
            ),
        ],
    ),
    ("@who", Document("WHO, not who"), [("title", "WHO", 0, 3, "WHO", 0)]),
    (
        "tags:europe",
        Document("x", tags=("World", "Europe")),
        [("tags", "Europe", 0, 6, "europe", 1)],
    ),
    ("author:doe", Document("x", authors=("Jane Doe",)), [("author", "Doe", 5, 8, "doe", 0)]),
    ("feed:bbc", Document("x", feed="bbc-world"), [("feed", "bbc", 0, 3, "bbc", 0)]),
    # NOT never reports; NEAR reports the occurrences that were near each other
    ("nato NOT (sport AND kyiv)", Document("NATO sport"), [("title", "NATO", 0, 4, "nato", 0)]),
    (
        "nato NEAR/1 kyiv",
        Document("Kyiv, NATO and far away nato"),
        [
            ("title", "NATO", 6, 10, "nato", 0),
            ("title", "Kyiv", 0, 4, "kyiv", 0),
        ],
    ),
    # regexes: offsets into the original text, even where NFKC changed it
    ("/Sea$/", Document("The Black Sea"), [("title", "Sea", 10, 13, "/Sea$/", 0)]),
    (
        "/finance/",
        Document("The \ufb01nance minister"),
        [
            ("title", "\ufb01nance", 4, 10, "/finance/", 0),
        ],
    ),
    ("/Café/", Document("Le Cafe\u0301 x"), [("title", "Cafe\u0301", 3, 8, "/Café/", 0)]),
    ("nato", Document("Senator"), []),
]


@pytest.mark.parametrize(("query", "document", "expected"), HITS)
def test_hits_quote_the_article_as_written(
    query: str, document: Document, expected: list[tuple[str, str, int, int, str, int]]
) -> None:
    hits = compile_query(query, ENTITIES).hits(document)
    assert sorted(_as_tuples(hits), key=str) == sorted(expected, key=str)
    for hit in hits:
        assert _value(document, hit)[hit.start : hit.end] == hit.text


def _as_tuples(hits: Sequence[Hit]) -> list[tuple[str, str, int, int, str, int]]:
    return [(h.field, h.text, h.start, h.end, h.term, h.index) for h in hits]


def _value(document: Document, hit: Hit) -> str:
    if hit.field == "tags":
        return document.tags[hit.index]
    if hit.field == "author":
        return document.authors[hit.index]
    return str(getattr(document, hit.field))


def test_the_same_text_is_reported_once_in_query_order() -> None:
    hits = compile_query("nato OR NATO OR @nato", ENTITIES).hits(Document("NATO"))
    assert hits == (Hit("title", "NATO", 0, 4, "nato"),)


ARTICLE = Document(
    title="Breaking: NATO summit opens",
    content="Leaders met in Kyiv. The summit skipped sport.",
    tags=("World", "Europe"),
)


def test_explain_shows_which_clause_held_and_where() -> None:
    query = compile_query(
        "@nato AND NOT sport AND (kyiv NEAR/2 summit OR title:/^breaking/i)", ENTITIES
    )
    assert query.explain(ARTICLE).render() == "\n".join(
        [
            "✗ AND",
            '  ✓ @nato  (title: "NATO" at 10-14)',
            "  ✗ NOT",
            '    ✓ sport  (content: "sport" at 40-45)',
            "  ✓ OR",
            '    ✓ NEAR/2  (content: "Kyiv" at 15-19; content: "summit" at 25-31)',
            '      ✓ kyiv  (content: "Kyiv" at 15-19)',
            '      ✓ summit  (title: "summit" at 15-21; content: "summit" at 25-31)',
            '    ✓ title:/^breaking/i  (title: "Breaking" at 0-8)',
        ]
    )


EXPLAINED_MISSES = [
    # (query, the line that says why)
    ("kyiv NEAR/0 summit", "✗ NEAR/0  (both found, but never within 0 words in one field)"),
    ("title:kyiv", "✗ title:kyiv  (not found in title)"),
    ("sanction*", '✗ sanction*  (no word starting with "sanction")'),
    ("@who", "✗ @who  (none of its 2 names found)"),
    ("/^Leaders/ -sport", "✗ AND"),
    ("content:/^leaders/", "✗ content:/^leaders/  (no match in content)"),
    ('=Summit OR "world cup"', '  ✗ "world cup"  (not found)'),
]


@pytest.mark.parametrize(("query", "line"), EXPLAINED_MISSES)
def test_explain_says_why_a_clause_did_not_hold(query: str, line: str) -> None:
    explanation = compile_query(query, ENTITIES).explain(ARTICLE)
    assert line in explanation.render().splitlines()
    assert explanation.held is False


def test_long_lists_of_hits_are_counted_not_all_shown() -> None:
    document = Document("nato " * 5)
    line = compile_query("nato", ENTITIES).explain(document).render()
    assert (
        line
        == '✓ nato  (title: "nato" at 0-4; title: "nato" at 5-9; title: "nato" at 10-14; +2 more)'
    )
