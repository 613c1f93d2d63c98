"""The fast paths of tokenising and of the per-article index, held to the plain definitions:
each text on its own (``words``, ``exact_words``), word sets instead of substring searches,
whole-document scans instead of windows. Random Unicode and news-like typography both."""

# Typographic apostrophes, quotes and dashes are the point of some of these texts.
# ruff: noqa: RUF001

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.rules import Document
from watcher.rules.document import STRIDE, TextIndex
from watcher.rules.text import exact_words, exact_words_of, folded_streams, words

# What feeds mostly send: ASCII with typographic quotes, dashes, no-break spaces and
# ellipses, which the fast path converts (the ellipsis changes length: no fast path then).
NEWS = st.text(alphabet="abcXYZ019 ,.-'’‘“”—–\u00a0…«»\n", max_size=40)
ANY = st.text(max_size=40)  # any Unicode: accents, other scripts, marks, ligatures
TEXTS = st.lists(st.one_of(NEWS, NEWS, ANY), max_size=6)


def checked(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


@checked(400)
@given(TEXTS)
def test_folding_texts_together_splits_them_as_folding_each_alone(texts: list[str]) -> None:
    assert [stream.split() for stream in folded_streams(texts)] == [words(t) for t in texts]


@checked(400)
@given(TEXTS)
def test_exact_words_of_several_texts_are_each_texts_exact_words(texts: list[str]) -> None:
    assert exact_words_of(texts) == [exact_words(text) for text in texts]


@checked(300)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_ascii_words_are_runs_of_letters_and_digits_lowercased(text: str) -> None:
    expected = re.findall(r"[A-Za-z0-9]+", text)
    assert words(text) == [word.lower() for word in expected]
    assert exact_words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ukraine\u2019s NATO-led “air defence” — now", ["ukraine", "s", "nato", "led", "air"]),
        ("Київ\u02bcs café…", ["киів", "s", "cafe"]),  # accents go, the diaeresis of ї too
        ("ﬁnance STRASSE Straße", ["finance", "strasse", "strasse"]),
    ],
)
def test_news_typography_separates_words(text: str, expected: list[str]) -> None:
    assert words(text)[: len(expected)] == expected
    assert [stream.split() for stream in folded_streams([text, text])] == [words(text)] * 2


WORDS = ["nato", "kyiv", "київ", "black", "sea", "s", "led", "x"]
PREFIXES = sorted({word[i : i + 2] for word in WORDS for i in range(len(word) - 1)})  # "ea" too
SCOPES = [None, "title", "summary", "content", "tags", "author", "link", "feed"]


def documents() -> st.SearchStrategy[Document]:
    word = st.sampled_from(["NATO", "Kyiv", "Київ", "black", "Sea", "’s", "-led", "x", "y"])
    text = st.lists(word, max_size=8).map(" ".join)
    values = st.lists(text, max_size=3).map(tuple)
    return st.builds(
        Document,
        title=text,
        summary=text,
        content=text,
        tags=values,
        authors=values,
        link=text,
        feed=text,
    )


@checked(200)
@given(documents())
def test_substring_searches_agree_with_the_word_sets(document: Document) -> None:
    index = TextIndex(document)
    for scope in SCOPES:
        present = index.words_in(scope)
        for word in WORDS:
            assert index.has_word(word, scope) == (word in present)
        for prefix in PREFIXES:
            assert index.has_prefix(prefix, scope) == any(w.startswith(prefix) for w in present)


@checked(200)
@given(documents(), st.integers(0, 10), st.integers(0, 12))
def test_positions_in_a_window_are_the_positions_that_fall_in_it(
    document: Document, first: int, width: int
) -> None:
    index = TextIndex(document)
    for scope in SCOPES:
        everywhere = [p for word in WORDS for p in index.positions_of(word, scope)]
        for value in {p // STRIDE for p in everywhere}:
            window = (value * STRIDE + first, value * STRIDE + first + width)
            for word in WORDS:
                within = index.positions_within(word, scope, window)
                low, high = window
                expected = [p for p in index.positions_of(word, scope) if low <= p < high]
                assert within == expected
